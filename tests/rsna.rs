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

/// Parity: the Rust path (decode → preprocess → tract → scoring) on the sq100
/// validation split gives the MAE that the training script's PyTorch evaluation
/// measured on the same images and baked into the model (`boneage.validation_mae_months`).
#[test]
fn rust_path_matches_the_training_evaluation() {
    let Some(dir) = rsna_dir() else { return };
    let model = default_model();
    let want: f64 = model.info().metadata["boneage.validation_mae_months"]
        .parse()
        .unwrap();
    let mut rows = eval::read_manifest(&dir.join("sq100/labels.csv"), None).unwrap();
    rows.retain(|r| eval::is_validation_id(&r.id));
    assert!(rows.len() > 1000, "{} validation rows", rows.len());
    // The model alone, as the training script measured it (quality control would
    // refuse some images and turn others upright).
    let analyzer = Analyzer::new(model.clone(), Default::default()).without_quality_control();
    let preds: Vec<_> = rows.iter().map(|r| eval::predict(&analyzer, r)).collect();
    let s = eval::summarize(&preds);
    assert_eq!(s.rejected, 0);
    let mae = s.overall.mae.unwrap();
    eprintln!(
        "sq100 validation: n={} Rust MAE={mae:.3}, training evaluation {want:.2}, coverage {:.3}",
        s.overall.n,
        s.overall.coverage_90.unwrap()
    );
    assert!((mae - want).abs() <= 0.2, "Rust {mae:.3} vs Python {want}");

    // Joint localisation on the held-out annotated images, against the figure the
    // training script measured (`boneage.joint_error_px100`).
    let Some(want_px) = model.info().metadata.get("boneage.joint_error_px100") else {
        return;
    };
    let want_px: f64 = want_px.parse().unwrap();
    let mut truth = eval::read_rois(&dir.join("rois.csv")).unwrap();
    truth.retain(|_, t| t.split == "eval");
    let mut all = eval::read_manifest(&dir.join("sq100/labels.csv"), None).unwrap();
    all.retain(|r| truth.contains_key(&r.id));
    let preds: Vec<_> = all.iter().map(|r| eval::predict(&analyzer, r)).collect();
    let loc = eval::localisation(&preds, &truth);
    let px = loc.mean_px100.unwrap();
    eprintln!(
        "joint localisation on {} held-out images: mean {px:.2} px100 (training evaluation {want_px:.2}), \
         {:.1} px of the original radiograph",
        loc.images,
        loc.mean_px_original.unwrap()
    );
    assert!(loc.images >= 80, "{} annotated held-out images", loc.images);
    assert!(
        (px - want_px).abs() <= 0.2,
        "Rust {px:.3} vs Python {want_px}"
    );
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
