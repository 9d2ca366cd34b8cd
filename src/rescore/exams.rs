//! Re-scoring stored exams: every exam whose image was kept (filtered by tenant,
//! exam date, model version of its latest analysis) is analysed again from its
//! kept image and its stored inputs, and gets a new `analyses` row for the current
//! model; the earlier analyses stay. An exam already analysed by the model (or
//! recorded as failed by it) is not selected again, and the store refuses a
//! second row for the same (exam, model), so reruns, parallel processes and
//! resumed jobs never duplicate. Results are committed in batches (one
//! transaction each, with the job's counters).

use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::{pipeline, RescoreError, Shard, Summary};
use crate::analysis::{Analyzer, RawFields};
use crate::store::{ExamToRescore, RescoreFilter, RescoreOutcome, Store};

/// Exams read from the store per query.
const PAGE: usize = 256;

/// Settings of a run over stored exams.
#[derive(Debug, Clone)]
pub struct ExamOptions {
    pub workers: usize,
    pub shard: Shard,
    /// Outcomes per transaction (also committed at least every second).
    pub batch: usize,
    /// The API job whose counters move with each commit.
    pub job: Option<String>,
    /// Forget the model's recorded failures on the matched exams first, so they
    /// are tried again (otherwise a failure is a finished outcome).
    pub retry_failed: bool,
}

impl Default for ExamOptions {
    fn default() -> Self {
        ExamOptions {
            workers: super::default_workers(),
            shard: Shard::default(),
            batch: 32,
            job: None,
            retry_failed: false,
        }
    }
}

/// Analyses one exam's kept image again.
fn rescore_one(
    analyzer: &Analyzer,
    exam: &ExamToRescore,
    bytes: std::io::Result<Vec<u8>>,
) -> RescoreOutcome {
    let info = analyzer.model().info();
    let failure = |code: &str, reason: String| RescoreOutcome::Failure {
        exam_id: exam.exam_id.clone(),
        model_sha256: info.sha256.clone(),
        code: code.to_string(),
        reason: reason.chars().take(500).collect(),
    };
    let bytes = match bytes {
        Ok(b) => b,
        Err(_) => {
            return failure(
                "file_not_readable",
                "the kept image could not be read".into(),
            )
        }
    };
    if hex::encode(Sha256::digest(&bytes)) != exam.image_sha256 {
        return failure(
            "corrupt_image",
            "the kept image's bytes do not have the exam's sha256".into(),
        );
    }
    match analyzer.analyze_upload(&bytes, RawFields::from_json(&exam.inputs_json)) {
        Ok(mut report) => {
            report.patient_id = exam.patient_id.clone();
            match serde_json::to_value(&report) {
                Ok(result_json) => RescoreOutcome::Analysis {
                    exam_id: exam.exam_id.clone(),
                    id: report.id.clone(),
                    bone_age_months: report.bone_age.months,
                    bone_age_sd_months: report.bone_age.sd_months,
                    result_json,
                    model_name: info.name.clone(),
                    model_version: info.version.clone(),
                    model_sha256: info.sha256.clone(),
                },
                Err(e) => failure(
                    "internal",
                    format!("the report could not be serialised: {e}"),
                ),
            }
        }
        Err(e) => failure(e.code(), e.to_string()),
    }
}

/// Re-scores the stored exams matched by `filter` (this shard's) with
/// `analyzer`'s model. Exams already analysed or failed by the model are skipped.
pub fn run_exams(
    analyzer: &Analyzer,
    store: &Store,
    filter: &RescoreFilter,
    opts: &ExamOptions,
    bar: &indicatif::ProgressBar,
) -> Result<Summary, RescoreError> {
    let start = Instant::now();
    let model_sha = analyzer.model().info().sha256.clone();
    if opts.retry_failed {
        let n = store.clear_rescore_failures(filter, &model_sha)?;
        tracing::info!(failures = n, "retrying failed exams");
    }
    let (matched, pending) = store.count_rescore(filter, &model_sha)?;
    let mut summary = Summary::new(analyzer, opts.workers.max(1), opts.shard);
    let sharded = opts.shard.count > 1;
    if !sharded {
        summary.total = matched;
        summary.skipped = matched - pending;
        bar.set_length(pending);
    } else {
        bar.set_length(pending / u64::from(opts.shard.count));
    }
    let read = |send: &dyn Fn((ExamToRescore, std::io::Result<Vec<u8>>)) -> bool| {
        let mut after: Option<String> = None;
        loop {
            let page = store.rescore_page(filter, &model_sha, after.as_deref(), PAGE)?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = Some(last.exam_id.clone());
            for exam in page {
                if !opts.shard.contains(&exam.exam_id) {
                    continue;
                }
                let bytes = std::fs::read(&exam.image_path);
                if !send((exam, bytes)) {
                    return Ok(());
                }
            }
        }
    };
    let work = |(exam, bytes): (ExamToRescore, std::io::Result<Vec<u8>>)| {
        rescore_one(analyzer, &exam, bytes)
    };
    let mut batch: Vec<RescoreOutcome> = Vec::with_capacity(opts.batch.max(1));
    let mut last_commit = Instant::now();
    let commit =
        |batch: &mut Vec<RescoreOutcome>, summary: &mut Summary| -> Result<(), RescoreError> {
            if batch.is_empty() {
                return Ok(());
            }
            let rec = store.record_rescores(batch, opts.job.as_deref())?;
            summary.analysed += rec.analyses;
            summary.skipped += rec.duplicates;
            let mut failures = rec.failures;
            for o in batch.iter() {
                if let RescoreOutcome::Failure { code, .. } = o {
                    if failures > 0 {
                        summary.failure(code);
                        failures -= 1;
                    }
                }
            }
            batch.clear();
            Ok(())
        };
    let write = |o: Option<RescoreOutcome>| -> Result<(), RescoreError> {
        if let Some(o) = o {
            batch.push(o);
            bar.inc(1);
        }
        if batch.len() >= opts.batch.max(1)
            || (!batch.is_empty() && last_commit.elapsed() >= Duration::from_secs(1))
        {
            commit(&mut batch, &mut summary)?;
            last_commit = Instant::now();
        }
        Ok(())
    };
    pipeline(opts.workers, Duration::from_millis(250), read, work, write)?;
    commit(&mut batch, &mut summary)?;
    if sharded {
        summary.total = summary.analysed + summary.failed + summary.skipped;
    }
    summary.finish(start.elapsed());
    Ok(summary)
}

/// Runs the API's re-scoring jobs one at a time on its own thread, with its own
/// bounded set of workers (so the service's analyses keep their worker pool), and
/// resumes the jobs a previous server left unfinished.
#[derive(Debug)]
pub struct JobRunner {
    tx: Sender<String>,
}

impl JobRunner {
    /// Starts the runner thread and queues every unfinished job in the store.
    pub fn start(
        analyzer: Arc<Analyzer>,
        store: Arc<Store>,
        workers: usize,
    ) -> std::io::Result<JobRunner> {
        let (tx, rx) = channel::<String>();
        let unfinished = match store.unfinished_rescore_jobs() {
            Ok(ids) => ids,
            Err(e) => {
                tracing::error!(error = %e, "cannot read unfinished re-scoring jobs");
                Vec::new()
            }
        };
        for id in unfinished {
            tracing::info!(job = %id, "resuming re-scoring job");
            let _ = tx.send(id);
        }
        std::thread::Builder::new()
            .name("boneage-rescore".into())
            .spawn(move || {
                while let Ok(id) = rx.recv() {
                    run_job(&analyzer, &store, &id, workers);
                }
            })?;
        Ok(JobRunner { tx })
    }

    /// Queues a job created in the store. `false` if the runner has stopped.
    pub fn submit(&self, id: String) -> bool {
        self.tx.send(id).is_ok()
    }
}

/// Runs (or resumes) job `id` to its end and records how it ended (`finished`,
/// or `failed` with the reason). Does nothing for a job that does not exist or
/// has already ended.
pub fn run_job(analyzer: &Analyzer, store: &Store, id: &str, workers: usize) {
    let (job, filter) = match store.start_rescore_job(id) {
        Ok(Some(found)) => found,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(job = %id, error = %e, "cannot start re-scoring job");
            return;
        }
    };
    let info = analyzer.model().info();
    let error = if job.model_sha256 != info.sha256 {
        Some(format!(
            "the server's model changed since the job was created (job: version {}, sha256 {}; \
             server: version {}, sha256 {}); start a new job",
            job.model_version, job.model_sha256, info.version, info.sha256
        ))
    } else {
        let opts = ExamOptions {
            workers,
            job: Some(id.to_string()),
            ..Default::default()
        };
        match run_exams(
            analyzer,
            store,
            &filter,
            &opts,
            &indicatif::ProgressBar::hidden(),
        ) {
            Ok(s) => {
                tracing::info!(job = %id, analysed = s.analysed, failed = s.failed, skipped = s.skipped, "re-scoring job finished");
                None
            }
            Err(e) => Some(e.to_string()),
        }
    };
    if let Err(e) = store.finish_rescore_job(id, error.as_deref()) {
        tracing::error!(job = %id, error = %e, "cannot record the end of a re-scoring job");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stored_inputs_become_the_same_fields() {
        let inputs = json!({
            "sex": "female",
            "chronological_age_months": null,
            "birth_date": "2015-03-01",
            "exam_date": null,
            "exam_date_fallback": "2026-03-01",
            "height_cm": "144.2",
            "weight_kg": null,
            "mother_height_cm": "163",
            "father_height_cm": "176",
            "tw2_rus_bone_age_months": null,
            "menarche": null,
            "height_reference": "cdc",
            "from_patient": ["sex", "birth_date", "other"],
            "store_image": true,
            "source": {"fields": []}
        });
        let f = RawFields::from_json(&inputs);
        assert_eq!(f.sex.as_deref(), Some("female"));
        assert_eq!(f.birth_date.as_deref(), Some("2015-03-01"));
        assert_eq!(f.exam_date, None);
        assert_eq!(f.exam_date_fallback.as_deref(), Some("2026-03-01"));
        assert_eq!(f.height_cm.as_deref(), Some("144.2"));
        assert_eq!(f.father_height_cm.as_deref(), Some("176"));
        assert_eq!(f.height_reference.as_deref(), Some("cdc"));
        assert_eq!(f.from_patient, vec!["sex", "birth_date"]);
        // The same request as first received: the age comes from the fallback date.
        let (req, _) = f.resolve(None).unwrap();
        assert_eq!(req.exam_date.as_deref(), Some("2026-03-01"));
        assert!(req.chronological_age_months.is_some());
        assert!(RawFields::from_json(&json!({})).sex.is_none());
    }
}
