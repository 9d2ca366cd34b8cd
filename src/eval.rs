//! Evaluation of a model over a labelled manifest through the same
//! [`Analyzer::analyze`] path as the service (`boneage eval`).
//!
//! Manifest layout (CSV with header): `id,image,boneage_months,male`; image paths
//! are relative to the manifest's folder unless an images folder is given.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::analysis::{AnalysisRequest, Analyzer};
use crate::Sex;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("cannot read manifest {path}: {reason}")]
    Manifest { path: String, reason: String },
    #[error("cannot write {path}: {reason}")]
    Output { path: String, reason: String },
}

/// One labelled image of a manifest.
#[derive(Debug, Clone)]
pub struct ManifestRow {
    pub id: String,
    pub image: PathBuf,
    pub boneage_months: f64,
    pub sex: Sex,
}

/// Reads a manifest; `images` overrides the folder image paths are relative to.
pub fn read_manifest(path: &Path, images: Option<&Path>) -> Result<Vec<ManifestRow>, EvalError> {
    let err = |reason: String| EvalError::Manifest {
        path: path.display().to_string(),
        reason,
    };
    let base = match images {
        Some(d) => d.to_path_buf(),
        None => path.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    let mut rdr = csv::Reader::from_path(path).map_err(|e| err(e.to_string()))?;
    let headers = rdr.headers().map_err(|e| err(e.to_string()))?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| err(format!("no column `{name}`")))
    };
    let (ci, cim, cb, cm) = (
        col("id")?,
        col("image")?,
        col("boneage_months")?,
        col("male")?,
    );
    let mut rows = Vec::new();
    for (n, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| err(e.to_string()))?;
        let line = n + 2;
        let field = |i: usize| rec.get(i).unwrap_or("").trim();
        let boneage_months: f64 = field(cb)
            .parse()
            .map_err(|_| err(format!("line {line}: boneage_months {:?}", field(cb))))?;
        let sex = match field(cm) {
            "1" | "true" | "True" => Sex::Male,
            "0" | "false" | "False" => Sex::Female,
            other => {
                return Err(err(format!(
                    "line {line}: male must be 0 or 1, not {other:?}"
                )))
            }
        };
        rows.push(ManifestRow {
            id: field(ci).to_string(),
            image: base.join(field(cim)),
            boneage_months,
            sex,
        });
    }
    Ok(rows)
}

/// The fixed validation split of `scripts/train.py`: numeric ids divisible by 10.
pub fn is_validation_id(id: &str) -> bool {
    id.parse::<u64>().is_ok_and(|n| n % 10 == 0)
}

/// The outcome for one image.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    pub id: String,
    pub boneage_months: f64,
    pub male: u8,
    pub predicted_months: Option<f64>,
    pub interval_lo: Option<f64>,
    pub interval_hi: Option<f64>,
    pub rus_score: Option<u32>,
    /// Rejection or failure code; empty when analysed.
    pub error: String,
}

/// Analyses one manifest row.
pub fn predict(analyzer: &Analyzer, row: &ManifestRow) -> Prediction {
    let mut p = Prediction {
        id: row.id.clone(),
        boneage_months: row.boneage_months,
        male: u8::from(row.sex == Sex::Male),
        predicted_months: None,
        interval_lo: None,
        interval_hi: None,
        rus_score: None,
        error: String::new(),
    };
    let bytes = match std::fs::read(&row.image) {
        Ok(b) => b,
        Err(_) => {
            p.error = "file_not_readable".into();
            return p;
        }
    };
    let req = AnalysisRequest {
        sex: row.sex,
        chronological_age_months: None,
    };
    match analyzer.analyze(&bytes, &req) {
        Ok(r) => {
            p.predicted_months = Some(r.bone_age.months);
            p.interval_lo = Some(r.bone_age.interval_90[0]);
            p.interval_hi = Some(r.bone_age.interval_90[1]);
            p.rus_score = Some(r.tw3.rus_score);
        }
        Err(e) => p.error = e.code().to_string(),
    }
    p
}

/// Error statistics of a group of predictions (months).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Stats {
    pub n: usize,
    pub mae: Option<f64>,
    pub rmse: Option<f64>,
    pub mean_signed_error: Option<f64>,
    /// Share of readings inside the 90% interval.
    pub coverage_90: Option<f64>,
}

fn stats<'a>(preds: impl Iterator<Item = &'a Prediction>) -> Stats {
    let (mut n, mut abs, mut sq, mut signed, mut cov) = (0usize, 0.0, 0.0, 0.0, 0usize);
    for p in preds {
        let (Some(m), Some(lo), Some(hi)) = (p.predicted_months, p.interval_lo, p.interval_hi)
        else {
            continue;
        };
        let e = m - p.boneage_months;
        n += 1;
        abs += e.abs();
        sq += e * e;
        signed += e;
        if lo <= p.boneage_months && p.boneage_months <= hi {
            cov += 1;
        }
    }
    let f = |v: f64| if n == 0 { None } else { Some(v / n as f64) };
    Stats {
        n,
        mae: f(abs),
        rmse: f(sq).map(f64::sqrt),
        mean_signed_error: f(signed),
        coverage_90: f(cov as f64),
    }
}

/// The summary `boneage eval` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub images: usize,
    pub analysed: usize,
    pub rejected: usize,
    pub overall: Stats,
    /// By the reference bone age: 0–5, 5–10, 10–15, 15–19 years.
    pub by_age_band: Vec<(String, Stats)>,
    pub by_sex: Vec<(String, Stats)>,
}

pub fn summarize(preds: &[Prediction]) -> Summary {
    let analysed = preds.iter().filter(|p| p.error.is_empty()).count();
    let by_age_band = [(0, 5), (5, 10), (10, 15), (15, 19)]
        .iter()
        .map(|&(lo, hi)| {
            let (lo_m, hi_m) = (lo as f64 * 12.0, hi as f64 * 12.0);
            let last = hi == 19;
            let s = stats(preds.iter().filter(|p| {
                p.boneage_months >= lo_m
                    && (p.boneage_months < hi_m || (last && p.boneage_months <= 240.0))
            }));
            (format!("{lo}-{hi}y"), s)
        })
        .collect();
    let by_sex = [("male", 1u8), ("female", 0u8)]
        .iter()
        .map(|&(name, v)| {
            (
                name.to_string(),
                stats(preds.iter().filter(|p| p.male == v)),
            )
        })
        .collect();
    Summary {
        images: preds.len(),
        analysed,
        rejected: preds.len() - analysed,
        overall: stats(preds.iter()),
        by_age_band,
        by_sex,
    }
}

/// Writes one CSV row per prediction.
pub fn write_predictions(path: &Path, preds: &[Prediction]) -> Result<(), EvalError> {
    let err = |e: csv::Error| EvalError::Output {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let mut w = csv::Writer::from_path(path).map_err(err)?;
    for p in preds {
        w.serialize(p).map_err(err)?;
    }
    w.flush().map_err(|e| EvalError::Output {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(truth: f64, pred: Option<f64>, male: u8) -> Prediction {
        Prediction {
            id: "x".into(),
            boneage_months: truth,
            male,
            predicted_months: pred,
            interval_lo: pred.map(|v| v - 10.0),
            interval_hi: pred.map(|v| v + 10.0),
            rus_score: None,
            error: if pred.is_some() {
                String::new()
            } else {
                "corrupt_image".into()
            },
        }
    }

    #[test]
    fn summary_statistics() {
        let preds = vec![
            p(24.0, Some(30.0), 1),
            p(130.0, Some(110.0), 0),
            p(200.0, None, 1),
        ];
        let s = summarize(&preds);
        assert_eq!((s.images, s.analysed, s.rejected), (3, 2, 1));
        assert_eq!(s.overall.mae, Some(13.0));
        assert_eq!(s.overall.mean_signed_error, Some(-7.0));
        assert!((s.overall.rmse.unwrap() - ((36.0 + 400.0) / 2.0f64).sqrt()).abs() < 1e-9);
        assert_eq!(s.overall.coverage_90, Some(0.5));
        assert_eq!(s.by_age_band[0].1.mae, Some(6.0));
        assert_eq!(s.by_age_band[2].1.mae, Some(20.0));
        assert_eq!(s.by_age_band[3].1.n, 0);
        assert_eq!(s.by_sex[0].1.mae, Some(6.0));
    }

    #[test]
    fn manifest_errors_name_the_problem() {
        let dir = std::env::temp_dir().join(format!("boneage-eval-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let m = dir.join("m.csv");
        std::fs::write(
            &m,
            "id,image,boneage_months,male\n1,a.png,100,1\n2,b.png,abc,0\n",
        )
        .unwrap();
        let e = read_manifest(&m, None).unwrap_err().to_string();
        assert!(e.contains("line 3"), "{e}");
        std::fs::write(&m, "id,image,male\n1,a.png,1\n").unwrap();
        assert!(read_manifest(&m, None)
            .unwrap_err()
            .to_string()
            .contains("boneage_months"));
        std::fs::write(&m, "id,image,boneage_months,male\n7,img/a.png,100.5,0\n").unwrap();
        let rows = read_manifest(&m, None).unwrap();
        assert_eq!(rows[0].image, dir.join("img/a.png"));
        assert_eq!(rows[0].sex, Sex::Female);
    }
}
