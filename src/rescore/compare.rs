//! Comparing two model versions over the same exams (or the same image files):
//! how many bone ages changed, by how much (mean and largest |Δ|, overall and by
//! age band), and which exams' classification by the Greulich–Pyle bone-age SDS
//! ([`crate::growth::bone_age_sds`]) crosses ±2 SD between the two.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use super::files::{Format, ResultRow};
use super::RescoreError;
use crate::growth::bone_age_sds;
use crate::Sex;

/// Age bands, in years: lower bound inclusive, upper exclusive.
const BANDS: [(&str, f64, f64); 5] = [
    ("0-5", 0.0, 5.0),
    ("5-10", 5.0, 10.0),
    ("10-15", 10.0, 15.0),
    ("15-19", 15.0, 19.0),
    ("19+", 19.0, f64::INFINITY),
];

/// Bone ages that differ by less than this (months) are the same: reports give
/// two decimals.
const SAME_WITHIN: f64 = 0.005;

/// One exam (or image) analysed by both versions.
#[derive(Debug, Clone, PartialEq)]
pub struct PairInput {
    /// Exam id, or the file's path and sha256.
    pub key: String,
    pub sex: Option<Sex>,
    pub chronological_age_months: Option<f64>,
    pub from_bone_age_months: f64,
    pub to_bone_age_months: f64,
}

/// One compared exam, as written to the CSV.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompareRow {
    pub key: String,
    pub sex: Option<Sex>,
    pub chronological_age_months: Option<f64>,
    /// By chronological age when known, else by the first version's bone age.
    pub age_band: &'static str,
    pub from_bone_age_months: f64,
    pub to_bone_age_months: f64,
    /// to − from, months.
    pub delta_months: f64,
    pub from_sds: Option<f64>,
    pub to_sds: Option<f64>,
    /// `delayed` (SDS < −2), `normal`, `advanced` (SDS > +2) or `unavailable` (no
    /// age or sex, or an age outside the reference table).
    pub from_class: &'static str,
    pub to_class: &'static str,
    /// The classification differs between the versions (both available).
    pub crossed: bool,
}

/// Changes within one group of exams.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Changes {
    pub group: String,
    pub n: usize,
    /// Exams whose bone age differs (at the reports' two decimals).
    pub changed: usize,
    pub mean_abs_delta_months: Option<f64>,
    pub max_abs_delta_months: Option<f64>,
    /// Exams whose SDS classification crossed ±2 SD.
    pub crossed: usize,
}

/// A comparison of two versions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub from_version: String,
    pub to_version: String,
    pub overall: Changes,
    pub by_age_band: Vec<Changes>,
    #[serde(skip)]
    pub rows: Vec<CompareRow>,
}

fn band(years: f64) -> &'static str {
    BANDS
        .iter()
        .find(|(_, lo, hi)| years >= *lo && years < *hi)
        .map_or("19+", |(name, _, _)| name)
}

/// SDS and its class (beyond ±2 SD, strictly).
fn classify(sex: Option<Sex>, age: Option<f64>, bone_age: f64) -> (Option<f64>, &'static str) {
    let (Some(sex), Some(age)) = (sex, age) else {
        return (None, "unavailable");
    };
    match bone_age_sds(sex, age, bone_age) {
        Ok(s) if s.sds < -2.0 => (Some(s.sds), "delayed"),
        Ok(s) if s.sds > 2.0 => (Some(s.sds), "advanced"),
        Ok(s) => (Some(s.sds), "normal"),
        Err(_) => (None, "unavailable"),
    }
}

fn changes<'a>(group: &str, rows: impl Iterator<Item = &'a CompareRow>) -> Changes {
    let (mut n, mut changed, mut crossed, mut sum, mut max) = (0usize, 0usize, 0usize, 0.0, 0.0f64);
    for r in rows {
        let d = r.delta_months.abs();
        n += 1;
        sum += d;
        max = max.max(d);
        changed += usize::from(d >= SAME_WITHIN);
        crossed += usize::from(r.crossed);
    }
    let round = |v: f64| (v * 1000.0).round() / 1000.0;
    Changes {
        group: group.to_string(),
        n,
        changed,
        mean_abs_delta_months: (n > 0).then(|| round(sum / n as f64)),
        max_abs_delta_months: (n > 0).then(|| round(max)),
        crossed,
    }
}

/// Compares the pairs.
pub fn compare(from_version: &str, to_version: &str, pairs: Vec<PairInput>) -> Comparison {
    let rows: Vec<CompareRow> = pairs
        .into_iter()
        .map(|p| {
            let years = p.chronological_age_months.unwrap_or(p.from_bone_age_months) / 12.0;
            let (from_sds, from_class) =
                classify(p.sex, p.chronological_age_months, p.from_bone_age_months);
            let (to_sds, to_class) =
                classify(p.sex, p.chronological_age_months, p.to_bone_age_months);
            let round = |v: f64| (v * 1000.0).round() / 1000.0;
            CompareRow {
                age_band: band(years),
                delta_months: round(p.to_bone_age_months - p.from_bone_age_months),
                from_sds: from_sds.map(round),
                to_sds: to_sds.map(round),
                crossed: from_class != to_class
                    && from_class != "unavailable"
                    && to_class != "unavailable",
                from_class,
                to_class,
                key: p.key,
                sex: p.sex,
                chronological_age_months: p.chronological_age_months,
                from_bone_age_months: p.from_bone_age_months,
                to_bone_age_months: p.to_bone_age_months,
            }
        })
        .collect();
    let overall = changes("all", rows.iter());
    let by_age_band = BANDS
        .iter()
        .map(|(name, _, _)| changes(name, rows.iter().filter(|r| r.age_band == *name)))
        .filter(|c| c.n > 0)
        .collect();
    Comparison {
        from_version: from_version.to_string(),
        to_version: to_version.to_string(),
        overall,
        by_age_band,
        rows,
    }
}

/// The pairs of two file-mode outputs: images (path and sha256) accepted in both.
/// Each file's version is that of its rows; a file with several models' rows
/// uses the rows of `from_version` / `to_version` when given.
pub fn pairs_from_files(
    from: &Path,
    to: &Path,
    from_version: Option<&str>,
    to_version: Option<&str>,
) -> Result<(String, String, Vec<PairInput>), RescoreError> {
    let (fv, a) = accepted_rows(from, from_version)?;
    let (tv, b) = accepted_rows(to, to_version)?;
    let mut pairs = Vec::new();
    for (key, ra) in &a {
        if let Some(rb) = b.get(key) {
            let (Some(x), Some(y)) = (ra.bone_age_months, rb.bone_age_months) else {
                continue;
            };
            pairs.push(PairInput {
                key: format!("{}#{}", key.0, key.1),
                sex: ra.sex.as_deref().and_then(Sex::parse),
                chronological_age_months: ra.chronological_age_months,
                from_bone_age_months: x,
                to_bone_age_months: y,
            });
        }
    }
    pairs.sort_by(|p, q| p.key.cmp(&q.key));
    Ok((fv, tv, pairs))
}

/// The pairs of the stored exams matched by `filter` that both versions analysed.
pub fn pairs_from_store(
    store: &crate::store::Store,
    filter: &crate::store::RescoreFilter,
    from_version: &str,
    to_version: &str,
) -> Result<Vec<PairInput>, RescoreError> {
    Ok(store
        .version_pairs(filter, from_version, to_version)?
        .into_iter()
        .map(|p| PairInput {
            key: p.exam_id,
            sex: Some(p.sex),
            chronological_age_months: p.chronological_age_months,
            from_bone_age_months: p.from_bone_age_months,
            to_bone_age_months: p.to_bone_age_months,
        })
        .collect())
}

type Rows = HashMap<(String, String), ResultRow>;

fn accepted_rows(path: &Path, version: Option<&str>) -> Result<(String, Rows), RescoreError> {
    let format = Format::from_path(path)?;
    if !path.exists() {
        return Err(RescoreError::Input {
            path: path.display().to_string(),
            reason: "no such file".into(),
        });
    }
    let mut text = std::fs::read_to_string(path).map_err(|e| RescoreError::io(path, e))?;
    // Read-only: a torn last line (a run killed while writing) is ignored, not cut.
    text.truncate(text.rfind('\n').map_or(0, |i| i + 1));
    let bad = |reason: String| RescoreError::Output {
        path: path.display().to_string(),
        reason,
    };
    let rows: Vec<ResultRow> = match format {
        Format::Csv => csv::Reader::from_reader(text.as_bytes())
            .deserialize()
            .collect::<Result<_, _>>()
            .map_err(|e| bad(e.to_string()))?,
        Format::Jsonl => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()
            .map_err(|e| bad(e.to_string()))?,
    };
    let versions: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r.model_version.as_str()).collect();
    let version = match (version, versions.len()) {
        (Some(v), _) => v.to_string(),
        (None, 1) => versions
            .iter()
            .next()
            .map_or(String::new(), |v| v.to_string()),
        (None, 0) => return Err(bad("it has no rows".into())),
        (None, _) => {
            return Err(bad(format!(
                "it holds several model versions ({}); name one",
                versions.into_iter().collect::<Vec<_>>().join(", ")
            )))
        }
    };
    let map = rows
        .into_iter()
        .filter(|r| r.model_version == version && r.outcome == "accepted")
        .map(|r| (r.key(), r))
        .collect();
    Ok((version, map))
}

/// Writes one CSV row per compared exam.
pub fn write_csv(path: &Path, c: &Comparison) -> Result<(), RescoreError> {
    let bad = |reason: String| RescoreError::Output {
        path: path.display().to_string(),
        reason,
    };
    let mut w = csv::Writer::from_path(path).map_err(|e| bad(e.to_string()))?;
    for r in &c.rows {
        w.serialize(r).map_err(|e| bad(e.to_string()))?;
    }
    w.flush().map_err(|e| RescoreError::io(path, e))
}

/// A short text summary.
pub fn summary_text(c: &Comparison) -> String {
    let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    let mut out = format!(
        "{} → {}: {} exams in both, {} changed; mean |Δ| {} months, largest {} months; {} crossed ±2 SD (GP bone-age SDS)\n",
        c.from_version,
        c.to_version,
        c.overall.n,
        c.overall.changed,
        f(c.overall.mean_abs_delta_months),
        f(c.overall.max_abs_delta_months),
        c.overall.crossed
    );
    out += "age band (y)  n  changed  mean |Δ|  max |Δ|  crossed\n";
    for b in &c.by_age_band {
        out += &format!(
            "{:<12} {:>3} {:>8} {:>9} {:>8} {:>8}\n",
            b.group,
            b.n,
            b.changed,
            f(b.mean_abs_delta_months),
            f(b.max_abs_delta_months),
            b.crossed
        );
    }
    for r in c.rows.iter().filter(|r| r.crossed) {
        out += &format!(
            "crossed: {} ({} → {}, SDS {} → {})\n",
            r.key,
            r.from_class,
            r.to_class,
            f(r.from_sds),
            f(r.to_sds)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(key: &str, sex: Sex, age: Option<f64>, a: f64, b: f64) -> PairInput {
        PairInput {
            key: key.into(),
            sex: Some(sex),
            chronological_age_months: age,
            from_bone_age_months: a,
            to_bone_age_months: b,
        }
    }

    #[test]
    fn counts_means_bands_and_crossings_by_hand() {
        // Boys, 120 months: the GP Brush table gives mean/SD at 120 months; a bone
        // age far above crosses +2 SD, one equal to the age does not.
        let at120 = bone_age_sds(Sex::Male, 120.0, 120.0).unwrap();
        let sd = at120.reference_sd_months;
        let mean = at120.reference_mean_months;
        let pairs = vec![
            pair("a", Sex::Male, Some(120.0), mean, mean), // unchanged, normal
            pair(
                "b",
                Sex::Male,
                Some(120.0),
                mean + 1.9 * sd,
                mean + 2.1 * sd,
            ), // crosses
            pair("c", Sex::Female, Some(30.0), 30.0, 33.0), // 0-5 band, Δ 3
            pair("d", Sex::Male, None, 200.0, 199.0),      // no age: band by bone age
        ];
        let c = compare("1", "2", pairs);
        assert_eq!(c.overall.n, 4);
        assert_eq!(c.overall.changed, 3);
        let d_b = (2.1 - 1.9) * sd;
        let want_mean = (0.0 + d_b + 3.0 + 1.0) / 4.0;
        assert!((c.overall.mean_abs_delta_months.unwrap() - want_mean).abs() < 1e-3);
        assert_eq!(c.overall.max_abs_delta_months, Some(3.0));
        assert_eq!(c.overall.crossed, 1);
        let b = c.rows.iter().find(|r| r.key == "b").unwrap();
        assert_eq!(
            (b.from_class, b.to_class, b.crossed),
            ("normal", "advanced", true)
        );
        let d = c.rows.iter().find(|r| r.key == "d").unwrap();
        assert_eq!(
            (d.age_band, d.from_class, d.crossed),
            ("15-19", "unavailable", false)
        );
        let bands: Vec<(&str, usize)> = c
            .by_age_band
            .iter()
            .map(|b| (b.group.as_str(), b.n))
            .collect();
        assert_eq!(bands, vec![("0-5", 1), ("10-15", 2), ("15-19", 1)]);
        let text = summary_text(&c);
        assert!(text.contains("4 exams in both, 3 changed"), "{text}");
        assert!(text.contains("crossed: b (normal → advanced"), "{text}");
    }

    #[test]
    fn two_output_files_pair_on_path_and_sha_and_ignore_a_torn_line() {
        let dir = std::env::temp_dir().join(format!("boneage-cmp-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let row = |path: &str, version: &str, ba: Option<f64>| ResultRow {
            id: path.into(),
            path: path.into(),
            image_sha256: "ab".into(),
            model_name: "m".into(),
            model_version: version.into(),
            model_sha256: version.repeat(64).chars().take(64).collect(),
            outcome: if ba.is_some() { "accepted" } else { "rejected" }.into(),
            error_code: ba.is_none().then(|| "not_a_hand".to_string()),
            error_reason: None,
            sex: Some("male".into()),
            chronological_age_months: Some(120.0),
            bone_age_months: ba,
            bone_age_sd_months: None,
            interval_90_lo: None,
            interval_90_hi: None,
            bone_age_sds: None,
            tw3_rus_score: None,
            tw3_rus_bone_age_months: None,
            quality_passes: None,
            laterality: None,
            analysis_id: None,
        };
        let write = |name: &str, rows: &[ResultRow], torn: &str| {
            let mut text: String = rows
                .iter()
                .map(|r| serde_json::to_string(r).unwrap() + "\n")
                .collect();
            text += torn;
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let a = write(
            "a.jsonl",
            &[
                row("x.png", "1", Some(100.0)),
                row("y.png", "1", Some(90.0)),
            ],
            "{\"id\": \"z",
        );
        let b = write(
            "b.jsonl",
            &[row("x.png", "2", Some(104.5)), row("y.png", "2", None)],
            "",
        );
        let before = std::fs::read(&a).unwrap();
        let (fv, tv, pairs) = pairs_from_files(&a, &b, None, None).unwrap();
        assert_eq!((fv.as_str(), tv.as_str()), ("1", "2"));
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0].key, "x.png#ab");
        assert_eq!(
            pairs[0].to_bone_age_months - pairs[0].from_bone_age_months,
            4.5
        );
        assert_eq!(
            std::fs::read(&a).unwrap(),
            before,
            "comparison is read-only"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn band_edges() {
        assert_eq!(band(0.0), "0-5");
        assert_eq!(band(4.999), "0-5");
        assert_eq!(band(5.0), "5-10");
        assert_eq!(band(15.0), "15-19");
        assert_eq!(band(19.0), "19+");
    }
}
