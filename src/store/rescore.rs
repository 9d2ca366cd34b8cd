//! Batch re-scoring in the store: which exams with a kept image still need an
//! analysis by a given model, the new analyses (added to the exam, never replacing
//! an earlier one), the failures, the jobs started from the API, and the pairs of
//! analyses a comparison of two model versions reads.
//!
//! Idempotency rests on the schema: `analyses` is `UNIQUE(exam_id, model_sha256)`
//! and `rescore_failures` has the primary key `(exam_id, model_sha256)`, so an exam
//! is analysed by a model at most once whoever (process, machine, job) tries, and
//! [`Store::rescore_page`] only returns exams with neither.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, OptionalExtension};
use serde::Serialize;
use time::Date;

use super::images::{self, is_sha256_hex};
use super::{format_date, now_timestamp, parse_stored_date, parse_stored_sex};
use super::{Store, StoreError, Tenant};
use crate::Sex;

/// Which stored exams a re-scoring covers: exams whose image was kept, of one
/// tenant or of all (administrator), optionally by exam date and by the model
/// version of their latest analysis.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RescoreFilter {
    /// `None`: every tenant (the CLI, an administrator tool).
    #[serde(skip)]
    tenant_id: Option<i64>,
    /// Exams on or after this date (exams without a date are then left out).
    #[serde(serialize_with = "super::serialize_opt_date")]
    pub from: Option<Date>,
    /// Exams on or before this date.
    #[serde(serialize_with = "super::serialize_opt_date")]
    pub to: Option<Date>,
    /// Only exams whose latest analysis is by this model version.
    pub only_model_version: Option<String>,
}

impl RescoreFilter {
    /// Every tenant's exams.
    pub fn all_tenants() -> RescoreFilter {
        RescoreFilter::default()
    }

    /// One tenant's exams.
    pub fn tenant(tenant: &Tenant) -> RescoreFilter {
        RescoreFilter {
            tenant_id: Some(tenant.id()),
            ..Default::default()
        }
    }

    /// The WHERE clause over `exams e` and its parameters (from `?1`).
    fn clause(&self) -> Result<(String, Vec<SqlValue>), StoreError> {
        let mut sql = String::from("e.image_stored = 1");
        let mut args: Vec<SqlValue> = Vec::new();
        if let Some(t) = self.tenant_id {
            args.push(SqlValue::Integer(t));
            sql += &format!(" AND e.tenant_id = ?{}", args.len());
        }
        if let Some(d) = self.from {
            args.push(SqlValue::Text(format_date(d)?));
            sql += &format!(" AND e.exam_date >= ?{}", args.len());
        }
        if let Some(d) = self.to {
            args.push(SqlValue::Text(format_date(d)?));
            sql += &format!(" AND e.exam_date <= ?{}", args.len());
        }
        if let Some(v) = &self.only_model_version {
            args.push(SqlValue::Text(v.clone()));
            sql += &format!(
                " AND (SELECT l.model_version FROM analyses l WHERE l.exam_id = e.id
                       ORDER BY l.created_at DESC, l.rowid DESC LIMIT 1) = ?{}",
                args.len()
            );
        }
        Ok((sql, args))
    }

    /// The clause plus "not yet analysed (nor failed) by `model_sha256`".
    fn pending_clause(&self, model_sha256: &str) -> Result<(String, Vec<SqlValue>), StoreError> {
        let (mut sql, mut args) = self.clause()?;
        args.push(SqlValue::Text(model_sha256.to_string()));
        let n = args.len();
        sql += &format!(
            " AND NOT EXISTS (SELECT 1 FROM analyses a WHERE a.exam_id = e.id AND a.model_sha256 = ?{n})
              AND NOT EXISTS (SELECT 1 FROM rescore_failures f WHERE f.exam_id = e.id AND f.model_sha256 = ?{n})"
        );
        Ok((sql, args))
    }
}

/// A stored exam whose kept image is to be analysed again.
#[derive(Debug, Clone, PartialEq)]
pub struct ExamToRescore {
    pub exam_id: String,
    pub patient_id: Option<String>,
    pub exam_date: Option<Date>,
    pub image_sha256: String,
    /// The kept image.
    pub image_path: PathBuf,
    /// The request's fields as first received (see `POST /v1/analyses`).
    pub inputs_json: serde_json::Value,
}

/// The result of re-analysing one exam, to be stored.
#[derive(Debug, Clone)]
pub enum RescoreOutcome {
    /// A new analysis of the exam.
    Analysis {
        exam_id: String,
        /// The report's id.
        id: String,
        bone_age_months: f64,
        bone_age_sd_months: f64,
        result_json: serde_json::Value,
        model_name: String,
        model_version: String,
        model_sha256: String,
    },
    /// The model could not analyse the exam (refused or failed), and why.
    Failure {
        exam_id: String,
        model_sha256: String,
        code: String,
        reason: String,
    },
}

impl RescoreOutcome {
    fn exam_id(&self) -> &str {
        match self {
            RescoreOutcome::Analysis { exam_id, .. } | RescoreOutcome::Failure { exam_id, .. } => {
                exam_id
            }
        }
    }
}

/// What [`Store::record_rescores`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recorded {
    /// New analyses stored.
    pub analyses: u64,
    /// New failures stored.
    pub failures: u64,
    /// Outcomes for an exam that this model had already analysed (or failed on),
    /// e.g. by another process: nothing was written for them.
    pub duplicates: u64,
}

/// A re-scoring job started from the API (`POST /v1/rescore-jobs`).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RescoreJob {
    pub id: String,
    /// `queued`, `running`, `finished` or `failed`.
    pub state: String,
    /// The exams it covers (`from`, `to`, `only_model_version`).
    #[schema(value_type = Object)]
    pub filter: serde_json::Value,
    pub model_name: String,
    pub model_version: String,
    pub model_sha256: String,
    /// Exams matched by the filter when the job started.
    pub total: u64,
    /// Exams analysed by this job.
    pub done: u64,
    /// Exams already analysed by this model (or failed) before the job started.
    pub skipped: u64,
    /// Exams the model could not analyse; the reasons are in `failed_by_code`.
    pub failed: u64,
    pub failed_by_code: BTreeMap<String, u64>,
    /// Why the job itself failed, if it did.
    pub error: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

/// The bone ages of two model versions on one exam, for a comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionPair {
    pub exam_id: String,
    pub sex: Sex,
    pub chronological_age_months: Option<f64>,
    pub from_bone_age_months: f64,
    pub to_bone_age_months: f64,
}

const JOB_SELECT: &str = "SELECT id, state, filter_json, model_name, model_version, model_sha256,
    total, done, skipped, failed, failed_by_code, error, created_at, started_at, finished_at,
    tenant_id FROM rescore_jobs";

fn job_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(RescoreJob, String, String, i64)> {
    let count = |i: usize| -> rusqlite::Result<u64> { Ok(r.get::<_, i64>(i)?.max(0) as u64) };
    Ok((
        RescoreJob {
            id: r.get(0)?,
            state: r.get(1)?,
            filter: serde_json::Value::Null,
            model_name: r.get(3)?,
            model_version: r.get(4)?,
            model_sha256: r.get(5)?,
            total: count(6)?,
            done: count(7)?,
            skipped: count(8)?,
            failed: count(9)?,
            failed_by_code: BTreeMap::new(),
            error: r.get(11)?,
            created_at: r.get(12)?,
            started_at: r.get(13)?,
            finished_at: r.get(14)?,
        },
        r.get(2)?,
        r.get(10)?,
        r.get(15)?,
    ))
}

fn parse_job(raw: (RescoreJob, String, String, i64)) -> Result<(RescoreJob, i64), StoreError> {
    let (mut job, filter, by_code, tenant_id) = raw;
    job.filter = serde_json::from_str(&filter)
        .map_err(|_| StoreError::corrupt("rescore_jobs.filter_json is not JSON"))?;
    job.failed_by_code = serde_json::from_str(&by_code)
        .map_err(|_| StoreError::corrupt("rescore_jobs.failed_by_code is not a JSON map"))?;
    Ok((job, tenant_id))
}

/// The filter a job was created with.
fn filter_of_job(job: &RescoreJob, tenant_id: i64) -> Result<RescoreFilter, StoreError> {
    let f = &job.filter;
    let date = |key: &str| -> Result<Option<Date>, StoreError> {
        f[key]
            .as_str()
            .map(|d| parse_stored_date(d, "rescore_jobs.filter_json"))
            .transpose()
    };
    Ok(RescoreFilter {
        tenant_id: Some(tenant_id),
        from: date("from")?,
        to: date("to")?,
        only_model_version: f["only_model_version"].as_str().map(str::to_string),
    })
}

impl Store {
    /// The tenant called `name`, for the administrator's `--tenant` filter; `None`
    /// if there is none.
    pub fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
        self.read(|tx| {
            Ok(tx
                .query_row(
                    "SELECT id, name FROM tenants WHERE name = ?1",
                    [name],
                    |r| Ok(Tenant::new(r.get(0)?, r.get(1)?)),
                )
                .optional()?)
        })
    }

    /// How many exams the filter matches, and how many of them `model_sha256` has
    /// neither analysed nor failed on yet.
    pub fn count_rescore(
        &self,
        filter: &RescoreFilter,
        model_sha256: &str,
    ) -> Result<(u64, u64), StoreError> {
        let (all_sql, all_args) = filter.clause()?;
        let (pending_sql, pending_args) = filter.pending_clause(model_sha256)?;
        self.read(|tx| {
            let matched: i64 = tx.query_row(
                &format!("SELECT count(*) FROM exams e WHERE {all_sql}"),
                params_from_iter(all_args),
                |r| r.get(0),
            )?;
            let pending: i64 = tx.query_row(
                &format!("SELECT count(*) FROM exams e WHERE {pending_sql}"),
                params_from_iter(pending_args),
                |r| r.get(0),
            )?;
            Ok((matched.max(0) as u64, pending.max(0) as u64))
        })
    }

    /// Up to `limit` exams matched by the filter that `model_sha256` has neither
    /// analysed nor failed on, in exam-id order after `after` (keyset paging, so a
    /// million exams are never held at once).
    pub fn rescore_page(
        &self,
        filter: &RescoreFilter,
        model_sha256: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ExamToRescore>, StoreError> {
        let (mut sql, mut args) = filter.pending_clause(model_sha256)?;
        if let Some(a) = after {
            args.push(SqlValue::Text(a.to_string()));
            sql += &format!(" AND e.id > ?{}", args.len());
        }
        args.push(SqlValue::Integer(limit.min(i64::MAX as usize) as i64));
        let lim = args.len();
        let raws = self.read(|tx| {
            let mut stmt = tx.prepare(&format!(
                "SELECT e.id, e.patient_id, e.exam_date, e.image_sha256, e.inputs_json
                 FROM exams e WHERE {sql} ORDER BY e.id LIMIT ?{lim}"
            ))?;
            let rows = stmt.query_map(params_from_iter(args), |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })?;
        raws.into_iter()
            .map(|(exam_id, patient_id, date, sha, inputs)| {
                if !is_sha256_hex(&sha) {
                    return Err(StoreError::corrupt("exams.image_sha256 is not a sha256"));
                }
                Ok(ExamToRescore {
                    exam_id,
                    patient_id,
                    exam_date: date
                        .as_deref()
                        .map(|d| parse_stored_date(d, "exams.exam_date"))
                        .transpose()?,
                    image_path: images::image_path(&self.images_dir, &sha),
                    image_sha256: sha,
                    inputs_json: serde_json::from_str(&inputs)
                        .map_err(|_| StoreError::corrupt("exams.inputs_json is not JSON"))?,
                })
            })
            .collect()
    }

    /// Stores the outcomes in one transaction: each analysis as a new row of its
    /// exam, each failure once per (exam, model). An outcome for an exam the model
    /// has already analysed or failed on writes nothing (counted in
    /// [`Recorded::duplicates`]). With `job`, that job's counters move in the same
    /// transaction, so they always equal what is stored.
    pub fn record_rescores(
        &self,
        outcomes: &[RescoreOutcome],
        job: Option<&str>,
    ) -> Result<Recorded, StoreError> {
        let now = now_timestamp()?;
        let mut prepared = Vec::with_capacity(outcomes.len());
        for o in outcomes {
            if let RescoreOutcome::Analysis {
                result_json,
                bone_age_months,
                bone_age_sd_months,
                model_sha256,
                ..
            } = o
            {
                let valid = |v: f64| v.is_finite() && v >= 0.0;
                if !valid(*bone_age_months) || !valid(*bone_age_sd_months) {
                    return Err(StoreError::invalid("bone ages must be finite numbers ≥ 0"));
                }
                if !is_sha256_hex(model_sha256) {
                    return Err(StoreError::invalid(
                        "model_sha256 must be 64 lowercase hex digits",
                    ));
                }
                prepared
                    .push(Some(serde_json::to_string(result_json).map_err(|e| {
                        StoreError::invalid(format!("result_json: {e}"))
                    })?));
            } else {
                prepared.push(None);
            }
        }
        self.write(|tx| {
            let mut rec = Recorded::default();
            let mut by_code: BTreeMap<String, u64> = BTreeMap::new();
            for (o, result) in outcomes.iter().zip(&prepared) {
                let changed = match o {
                    RescoreOutcome::Analysis {
                        exam_id,
                        id,
                        bone_age_months,
                        bone_age_sd_months,
                        model_name,
                        model_version,
                        model_sha256,
                        ..
                    } => {
                        let n = tx.execute(
                            "INSERT INTO analyses (id, exam_id, bone_age_months, bone_age_sd_months,
                                 result_json, model_name, model_version, model_sha256, created_at)
                             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9
                             WHERE NOT EXISTS (SELECT 1 FROM rescore_failures
                                               WHERE exam_id = ?2 AND model_sha256 = ?8)
                             ON CONFLICT (exam_id, model_sha256) DO NOTHING",
                            params![
                                id,
                                exam_id,
                                bone_age_months,
                                bone_age_sd_months,
                                result,
                                model_name,
                                model_version,
                                model_sha256,
                                now
                            ],
                        )?;
                        rec.analyses += n as u64;
                        n
                    }
                    RescoreOutcome::Failure {
                        exam_id,
                        model_sha256,
                        code,
                        reason,
                    } => {
                        // An exam this model has analysed is not also a failure.
                        let n = tx.execute(
                            "INSERT INTO rescore_failures (exam_id, model_sha256, code, reason, created_at)
                             SELECT ?1, ?2, ?3, ?4, ?5
                             WHERE NOT EXISTS (SELECT 1 FROM analyses
                                               WHERE exam_id = ?1 AND model_sha256 = ?2)
                             ON CONFLICT (exam_id, model_sha256) DO NOTHING",
                            params![exam_id, model_sha256, code, reason, now],
                        )?;
                        rec.failures += n as u64;
                        if n > 0 {
                            *by_code.entry(code.clone()).or_default() += 1;
                        }
                        n
                    }
                };
                if changed == 0 {
                    rec.duplicates += 1;
                    tracing::debug!(exam_id = o.exam_id(), "already re-scored by this model");
                }
            }
            if let Some(job) = job {
                let old: Option<String> = tx
                    .query_row(
                        "SELECT failed_by_code FROM rescore_jobs WHERE id = ?1",
                        [job],
                        |r| r.get(0),
                    )
                    .optional()?;
                let mut merged: BTreeMap<String, u64> = match old {
                    Some(t) => serde_json::from_str(&t).map_err(|_| {
                        StoreError::corrupt("rescore_jobs.failed_by_code is not a JSON map")
                    })?,
                    None => return Err(StoreError::NotFound),
                };
                for (k, v) in by_code {
                    *merged.entry(k).or_default() += v;
                }
                let merged = serde_json::to_string(&merged)
                    .map_err(|e| StoreError::invalid(format!("failed_by_code: {e}")))?;
                tx.execute(
                    "UPDATE rescore_jobs SET done = done + ?2, failed = failed + ?3,
                         failed_by_code = ?4 WHERE id = ?1",
                    params![job, rec.analyses as i64, rec.failures as i64, merged],
                )?;
            }
            Ok(rec)
        })
    }

    /// Forgets the failures of `model_sha256` on the exams matched by the filter, so
    /// that a run retries them (e.g. after a kept image was restored). Returns how
    /// many were forgotten.
    pub fn clear_rescore_failures(
        &self,
        filter: &RescoreFilter,
        model_sha256: &str,
    ) -> Result<u64, StoreError> {
        let (sql, mut args) = filter.clause()?;
        args.push(SqlValue::Text(model_sha256.to_string()));
        let n = args.len();
        self.write(|tx| {
            Ok(tx.execute(
                &format!(
                    "DELETE FROM rescore_failures WHERE model_sha256 = ?{n}
                     AND exam_id IN (SELECT e.id FROM exams e WHERE {sql})"
                ),
                params_from_iter(args),
            )? as u64)
        })
    }

    /// The recorded failure of `model_sha256` on an exam: `(code, reason)`.
    pub fn rescore_failure(
        &self,
        exam_id: &str,
        model_sha256: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        self.read(|tx| {
            Ok(tx
                .query_row(
                    "SELECT code, reason FROM rescore_failures WHERE exam_id = ?1 AND model_sha256 = ?2",
                    [exam_id, model_sha256],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?)
        })
    }

    /// Creates a queued job over the tenant's exams, to be run with the model
    /// named.
    pub fn create_rescore_job(
        &self,
        tenant: &Tenant,
        filter: &RescoreFilter,
        model_name: &str,
        model_version: &str,
        model_sha256: &str,
    ) -> Result<RescoreJob, StoreError> {
        if !is_sha256_hex(model_sha256) {
            return Err(StoreError::invalid(
                "model_sha256 must be 64 lowercase hex digits",
            ));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let filter_json = serde_json::to_string(filter)
            .map_err(|e| StoreError::invalid(format!("filter: {e}")))?;
        let now = now_timestamp()?;
        self.write(|tx| {
            tx.execute(
                "INSERT INTO rescore_jobs (id, tenant_id, filter_json, model_name, model_version,
                     model_sha256, state, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'queued', ?7)",
                params![
                    id,
                    tenant.id(),
                    filter_json,
                    model_name,
                    model_version,
                    model_sha256,
                    now
                ],
            )?;
            Ok(())
        })?;
        self.get_rescore_job(tenant, &id)?
            .ok_or_else(|| StoreError::corrupt("a job just created cannot be read back"))
    }

    /// The tenant's job `id`; `None` if there is none (also when it is another
    /// tenant's).
    pub fn get_rescore_job(
        &self,
        tenant: &Tenant,
        id: &str,
    ) -> Result<Option<RescoreJob>, StoreError> {
        let raw = self.read(|tx| {
            Ok(tx
                .query_row(
                    &format!("{JOB_SELECT} WHERE id = ?1 AND tenant_id = ?2"),
                    params![id, tenant.id()],
                    job_from_row,
                )
                .optional()?)
        })?;
        raw.map(|r| parse_job(r).map(|(j, _)| j)).transpose()
    }

    /// The ids of the jobs not finished (queued or running), oldest first: what a
    /// starting server resumes.
    pub fn unfinished_rescore_jobs(&self) -> Result<Vec<String>, StoreError> {
        self.read(|tx| {
            let mut stmt = tx.prepare(
                "SELECT id FROM rescore_jobs WHERE state IN ('queued', 'running')
                 ORDER BY created_at, rowid",
            )?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<String>, _>>()?)
        })
    }

    /// Marks job `id` running and returns it with the filter it covers; on its first
    /// start also records `total` (exams matched) and `skipped` (already analysed by
    /// its model). `None` if the job does not exist or has ended.
    pub fn start_rescore_job(
        &self,
        id: &str,
    ) -> Result<Option<(RescoreJob, RescoreFilter)>, StoreError> {
        let raw = self.read(|tx| {
            Ok(tx
                .query_row(&format!("{JOB_SELECT} WHERE id = ?1"), [id], job_from_row)
                .optional()?)
        })?;
        let Some(raw) = raw else { return Ok(None) };
        let (job, tenant_id) = parse_job(raw)?;
        if job.state != "queued" && job.state != "running" {
            return Ok(None);
        }
        let filter = filter_of_job(&job, tenant_id)?;
        if job.state == "queued" {
            let (matched, pending) = self.count_rescore(&filter, &job.model_sha256)?;
            let now = now_timestamp()?;
            self.write(|tx| {
                tx.execute(
                    "UPDATE rescore_jobs SET state = 'running', started_at = ?2, total = ?3,
                         skipped = ?4 WHERE id = ?1 AND state = 'queued'",
                    params![id, now, matched as i64, (matched - pending) as i64],
                )?;
                Ok(())
            })?;
        }
        let raw = self.read(|tx| {
            Ok(tx.query_row(&format!("{JOB_SELECT} WHERE id = ?1"), [id], job_from_row)?)
        })?;
        let (job, _) = parse_job(raw)?;
        Ok(Some((job, filter)))
    }

    /// Ends job `id`: `finished`, or `failed` with the reason.
    pub fn finish_rescore_job(&self, id: &str, error: Option<&str>) -> Result<(), StoreError> {
        let now = now_timestamp()?;
        let state = if error.is_some() {
            "failed"
        } else {
            "finished"
        };
        self.write(|tx| {
            tx.execute(
                "UPDATE rescore_jobs SET state = ?2, error = ?3, finished_at = ?4 WHERE id = ?1",
                params![id, state, error, now],
            )?;
            Ok(())
        })
    }

    /// Exams matched by the filter that have an analysis by both versions (the
    /// latest of each), in exam-id order.
    pub fn version_pairs(
        &self,
        filter: &RescoreFilter,
        from_version: &str,
        to_version: &str,
    ) -> Result<Vec<VersionPair>, StoreError> {
        let (mut sql, mut args) = filter.clause()?;
        args.push(SqlValue::Text(from_version.to_string()));
        let a = args.len();
        args.push(SqlValue::Text(to_version.to_string()));
        let b = args.len();
        sql = format!(
            "SELECT e.id, e.sex, e.chronological_age_months, fa.bone_age_months, ta.bone_age_months
             FROM exams e
             JOIN analyses fa ON fa.id = (SELECT x.id FROM analyses x
                 WHERE x.exam_id = e.id AND x.model_version = ?{a}
                 ORDER BY x.created_at DESC, x.rowid DESC LIMIT 1)
             JOIN analyses ta ON ta.id = (SELECT y.id FROM analyses y
                 WHERE y.exam_id = e.id AND y.model_version = ?{b}
                 ORDER BY y.created_at DESC, y.rowid DESC LIMIT 1)
             WHERE {}
             ORDER BY e.id",
            // Comparison covers every stored exam, kept image or not.
            sql.replacen("e.image_stored = 1", "1 = 1", 1)
        );
        let raws = self.read(|tx| {
            let mut stmt = tx.prepare(&sql)?;
            let rows = stmt.query_map(params_from_iter(args), |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<f64>>(2)?,
                    r.get::<_, f64>(3)?,
                    r.get::<_, f64>(4)?,
                ))
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })?;
        raws.into_iter()
            .map(|(exam_id, sex, ca, f, t)| {
                Ok(VersionPair {
                    exam_id,
                    sex: parse_stored_sex(&sex, "exams.sex")?,
                    chronological_age_months: ca,
                    from_bone_age_months: f,
                    to_bone_age_months: t,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewAnalysis;
    use serde_json::json;
    use time::macros::date;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn open() -> (Dir, Store) {
        let dir = std::env::temp_dir().join(format!("boneage-rescore-{}", uuid::Uuid::new_v4()));
        let store = Store::open(&dir.join("boneage.db")).unwrap();
        (Dir(dir), store)
    }

    const SHA_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const SHA_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    /// Stores an exam analysed by model A (version 1), image kept or not.
    fn exam(store: &Store, tenant: &Tenant, image: &[u8], keep: bool, day: Date) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        let rec = NewAnalysis {
            id: id.clone(),
            patient_id: None,
            exam_date: Some(day),
            chronological_age_months: Some(100.0),
            sex: Sex::Male,
            bone_age_months: 100.0,
            bone_age_sd_months: 6.0,
            height_cm: None,
            weight_kg: None,
            mother_height_cm: None,
            father_height_cm: None,
            image_sha256: images::sha256_hex(image),
            image: keep.then_some(image),
            inputs_json: json!({"sex": "male", "chronological_age_months": "100"}),
            result_json: json!({"id": id}),
            model_name: "m".into(),
            model_version: "1".into(),
            model_sha256: SHA_A.into(),
        };
        store.insert_analysis(tenant, &rec).unwrap().exam_id
    }

    fn analysis(exam_id: &str, months: f64) -> RescoreOutcome {
        RescoreOutcome::Analysis {
            exam_id: exam_id.into(),
            id: uuid::Uuid::new_v4().to_string(),
            bone_age_months: months,
            bone_age_sd_months: 6.0,
            result_json: json!({"bone_age": {"months": months}}),
            model_name: "m".into(),
            model_version: "2".into(),
            model_sha256: SHA_B.into(),
        }
    }

    #[test]
    fn pending_exams_are_kept_unanalysed_ones_and_recording_is_idempotent() {
        let (_d, store) = open();
        let t = store.local_tenant().unwrap();
        store.create_token("other").unwrap();
        let o = store.tenant_by_name("other").unwrap().unwrap();
        let e1 = exam(&store, &t, b"one", true, date!(2025 - 01 - 10));
        let e2 = exam(&store, &t, b"two", true, date!(2025 - 03 - 10));
        let _not_kept = exam(&store, &t, b"three", false, date!(2025 - 03 - 10));
        let e4 = exam(&store, &o, b"four", true, date!(2025 - 03 - 10));

        let all = RescoreFilter::all_tenants();
        assert_eq!(store.count_rescore(&all, SHA_B).unwrap(), (3, 3));
        assert_eq!(store.count_rescore(&all, SHA_A).unwrap(), (3, 0));
        let mine = RescoreFilter::tenant(&t);
        let page = store.rescore_page(&mine, SHA_B, None, 10).unwrap();
        let mut want = vec![e1.clone(), e2.clone()];
        want.sort();
        assert_eq!(
            page.iter().map(|e| e.exam_id.clone()).collect::<Vec<_>>(),
            want
        );
        assert!(page[0].image_path.exists());
        // Paging: one at a time, after the last id.
        let first = store.rescore_page(&mine, SHA_B, None, 1).unwrap();
        let second = store
            .rescore_page(&mine, SHA_B, Some(&first[0].exam_id), 1)
            .unwrap();
        assert_eq!(first.len() + second.len(), 2);
        assert_ne!(first[0].exam_id, second[0].exam_id);
        // Dates.
        let march = RescoreFilter {
            from: Some(date!(2025 - 02 - 01)),
            ..RescoreFilter::tenant(&t)
        };
        assert_eq!(store.count_rescore(&march, SHA_B).unwrap(), (1, 1));

        // Record: one analysis, one failure; again: duplicates only.
        let outs = vec![
            analysis(&e1, 101.0),
            RescoreOutcome::Failure {
                exam_id: e2.clone(),
                model_sha256: SHA_B.into(),
                code: "not_a_hand".into(),
                reason: "r".into(),
            },
        ];
        let r = store.record_rescores(&outs, None).unwrap();
        assert_eq!((r.analyses, r.failures, r.duplicates), (1, 1, 0));
        let again = vec![analysis(&e1, 102.0), analysis(&e2, 90.0)];
        let r = store.record_rescores(&again, None).unwrap();
        assert_eq!((r.analyses, r.failures, r.duplicates), (0, 0, 2));
        assert_eq!(store.count_rescore(&mine, SHA_B).unwrap(), (2, 0));
        assert_eq!(
            store.rescore_failure(&e2, SHA_B).unwrap(),
            Some(("not_a_hand".into(), "r".into()))
        );
        // Forgetting the failure makes e2 pending again (other filters untouched).
        let other_tenant = RescoreFilter::tenant(&o);
        assert_eq!(
            store.clear_rescore_failures(&other_tenant, SHA_B).unwrap(),
            0
        );
        assert_eq!(store.clear_rescore_failures(&mine, SHA_B).unwrap(), 1);
        assert_eq!(store.count_rescore(&mine, SHA_B).unwrap(), (2, 1));
        assert_eq!(store.rescore_failure(&e2, SHA_B).unwrap(), None);
        // The earlier analysis is kept beside the new one.
        let both = store.version_pairs(&all, "1", "2").unwrap();
        assert_eq!(both.len(), 1);
        assert_eq!(both[0].exam_id, e1);
        assert_eq!(both[0].from_bone_age_months, 100.0);
        assert_eq!(both[0].to_bone_age_months, 101.0);
        // Latest version: e1's latest is now "2", so "1" leaves e2 and e4 (both
        // pending again, e2's failure having been forgotten).
        let latest1 = RescoreFilter {
            only_model_version: Some("1".into()),
            ..RescoreFilter::all_tenants()
        };
        assert_eq!(store.count_rescore(&latest1, SHA_B).unwrap(), (2, 2));
        let _ = e4;
    }

    #[test]
    fn jobs_are_tenant_scoped_and_count_in_the_same_transaction() {
        let (_d, store) = open();
        let t = store.local_tenant().unwrap();
        store.create_token("other").unwrap();
        let o = store.tenant_by_name("other").unwrap().unwrap();
        let e1 = exam(&store, &t, b"one", true, date!(2025 - 01 - 10));
        let e2 = exam(&store, &t, b"two", true, date!(2025 - 01 - 11));
        exam(&store, &o, b"x", true, date!(2025 - 01 - 11));
        // e2 is already done by B before the job.
        store.record_rescores(&[analysis(&e2, 1.0)], None).unwrap();

        let job = store
            .create_rescore_job(&t, &RescoreFilter::tenant(&t), "m", "2", SHA_B)
            .unwrap();
        assert_eq!(job.state, "queued");
        assert!(store.get_rescore_job(&o, &job.id).unwrap().is_none());
        assert_eq!(
            store.unfinished_rescore_jobs().unwrap(),
            vec![job.id.clone()]
        );
        let (running, filter) = store.start_rescore_job(&job.id).unwrap().unwrap();
        assert_eq!(running.state, "running");
        assert_eq!((running.total, running.skipped), (2, 1));
        assert_eq!(filter, RescoreFilter::tenant(&t));
        let fail = RescoreOutcome::Failure {
            exam_id: e1.clone(),
            model_sha256: SHA_B.into(),
            code: "poor_exposure".into(),
            reason: "flat".into(),
        };
        store.record_rescores(&[fail], Some(&job.id)).unwrap();
        // A restart: still running, counters kept, totals not recounted.
        let (resumed, _) = store.start_rescore_job(&job.id).unwrap().unwrap();
        assert_eq!((resumed.total, resumed.skipped, resumed.failed), (2, 1, 1));
        assert_eq!(resumed.failed_by_code.get("poor_exposure"), Some(&1));
        store.finish_rescore_job(&job.id, None).unwrap();
        let done = store.get_rescore_job(&t, &job.id).unwrap().unwrap();
        assert_eq!(done.state, "finished");
        assert!(done.finished_at.is_some());
        assert!(store.unfinished_rescore_jobs().unwrap().is_empty());
        assert!(store.start_rescore_job(&job.id).unwrap().is_none());
    }
}
