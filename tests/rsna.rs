//! Real RSNA 2017 radiographs (../shared/data/rsna), when the folder exists.
//! A fresh clone has no such folder: these tests then say so and pass.

mod common;

use boneage::analysis::Analyzer;
use boneage::eval::{self, ManifestRow};
use boneage::Sex;
use common::*;

/// The half512 rows of the fixed validation split, read as `boneage eval` reads them.
fn half512_validation(dir: &std::path::Path) -> Vec<ManifestRow> {
    let mut rows = eval::read_manifest(&dir.join("half512/labels.csv"), None).unwrap();
    rows.retain(|r| eval::is_validation_id(&r.id));
    rows
}

/// The default model on held-out real radiographs (never seen in training) at their
/// half512 resolution, through the same path as the service and `boneage eval`.
#[test]
fn default_model_is_accurate_on_held_out_real_radiographs() {
    let Some(dir) = rsna_dir() else { return };
    let rows = half512_validation(&dir);
    assert!(rows.len() >= 80, "{} validation rows", rows.len());
    let analyzer = Analyzer::new(default_model(), Default::default());
    let preds: Vec<_> = rows.iter().map(|r| eval::predict(&analyzer, r)).collect();
    let s = eval::summarize(&preds);
    assert_eq!(
        s.rejected,
        0,
        "{:?}",
        preds.iter().find(|p| !p.error.is_empty())
    );
    let mae = s.overall.mae.unwrap();
    let coverage = s.overall.coverage_90.unwrap();
    eprintln!(
        "half512 validation: n={} MAE={mae:.2} months, 90% interval coverage={coverage:.3}",
        rows.len()
    );
    assert!(mae < MAE_BOUND, "MAE {mae:.2} months");
    assert!((0.75..=0.98).contains(&coverage), "coverage {coverage:.3}");
}

/// Upper bound on the validation MAE of the shipped model (models/README.md reports the measured value).
const MAE_BOUND: f64 = 15.0;

#[tokio::test]
async fn a_real_radiograph_over_http() {
    let Some(dir) = rsna_dir() else { return };
    let rows = half512_validation(&dir);
    let r = &rows[0];
    let bytes = std::fs::read(&r.image).unwrap();
    let srv = TestServer::default().await;
    let c = client();
    let sex = if r.sex == Sex::Male { "male" } else { "female" };
    let resp = post_multipart(
        &c,
        &srv.url("/v1/analyses"),
        Some((bytes, "image/png")),
        &[("sex", sex)],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["joints"].as_array().unwrap().len(), 13);
    let months = v["bone_age"]["months"].as_f64().unwrap();
    assert!((0.0..=240.0).contains(&months), "{months}");
    srv.stop().await;
}
