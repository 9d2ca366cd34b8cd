//! The service's preprocessing agrees numerically with the training preprocessing.
//!
//! `tests/fixtures/parity/*.png` are synthetic radiographs (`boneage synth`);
//! `*.train.f32` beside them hold what `scripts/train.py` feeds its network for the
//! same file (written by `scripts/parity_fixtures.py`: PIL decode, BILINEAR resize,
//! per-image z-score). Here the same files go through `decode` → `preprocess` with
//! the default model's contract and the two tensors are compared.

mod common;

use std::path::Path;

use boneage::decode::{self, DecodeLimits};
use boneage::preprocess;

fn expected(png: &Path) -> Vec<f32> {
    let bytes = std::fs::read(png.with_extension("train.f32")).unwrap();
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn service_tensor(png: &Path) -> Vec<f32> {
    let model = common::default_model();
    let bytes = std::fs::read(png).unwrap();
    let img = decode::decode(&bytes, &DecodeLimits::default()).unwrap();
    let t = preprocess::preprocess(&img, model.preprocess_spec()).unwrap();
    t.iter().copied().collect()
}

/// (max, mean) absolute difference, in units of the image's standard deviation.
fn compare(name: &str) -> (f32, f32) {
    let png = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parity")
        .join(name);
    let (want, got) = (expected(&png), service_tensor(&png));
    assert_eq!(want.len(), got.len(), "{name}: tensor sizes");
    let diffs: Vec<f32> = want.iter().zip(&got).map(|(a, b)| (a - b).abs()).collect();
    let max = diffs.iter().copied().fold(0.0, f32::max);
    let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
    eprintln!("{name}: max |diff| {max:.5}, mean |diff| {mean:.6} (z units)");
    (max, mean)
}

#[test]
fn same_tensor_when_no_resize_is_needed() {
    let (max, _) = compare("synth-100x100.png");
    assert!(max < 1e-5, "max diff {max}");
}

#[test]
fn resized_uploads_match_the_training_resize() {
    for name in ["synth-379x512.png", "synth-1000x1300.png"] {
        let (max, mean) = compare(name);
        // PIL rounds to 8 bits after each resize pass; the service keeps f32. Half a
        // grey level per pass is about 0.01 of a standard deviation here.
        assert!(mean < 0.01, "{name}: mean diff {mean}");
        assert!(max < 0.05, "{name}: max diff {max}");
    }
}
