//! Per-stage and end-to-end latency of the analysis pipeline on synthetic
//! radiographs: `cargo bench --bench pipeline`. Decoding of an 8-bit PNG of
//! 1000×1300, a 16-bit PNG of 2000×2500 and the same as a DR-style DICOM
//! (MONOCHROME1, 14 bits stored; JPEG lossless when dcmtk's `dcmcjpeg` is on the
//! PATH, else uncompressed, and the benchmark's name says which); preprocessing;
//! one model pass on one and two threads; scoring; whole analyses.
//! `scripts/benchmarks.py` measures the same on a real radiograph, beside onnxruntime.

use std::sync::Arc;

use boneage::analysis::{build_report, AnalysisRequest, Analyzer};
use boneage::decode::{decode, DecodeLimits};
use boneage::model::{Backend, TractModel};
use boneage::preprocess::preprocess;
use boneage::synth::{hand_radiograph_16, hand_radiograph_8, png_bytes, HandParams};
use boneage::Sex;
use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let p = HandParams::default();
    let png8 = png_bytes(hand_radiograph_8(&p));
    let png16 = png_bytes(hand_radiograph_16(&HandParams {
        width: 2000,
        height: 2500,
        ..p.clone()
    }));
    let (dicom, dicom_name) = dr_dicom(2000, 2500);
    let limits = DecodeLimits::default();
    let model = Arc::new(TractModel::embedded().expect("model"));
    let model2 = TractModel::embedded().expect("model").with_threads(2);
    let spec = model.preprocess_spec().clone();
    let img = decode(&png8, &limits).expect("decode");
    let tensor = preprocess(&img, &spec).expect("preprocess");
    let req = AnalysisRequest::new(Sex::Male, Some(120.0));
    let input = boneage::report::InputInfo {
        format: img.format,
        width: img.width,
        height: img.height,
        bit_depth: img.bit_depth,
        sha256: String::new(),
    };
    let out = model.infer(tensor.clone(), Sex::Male).expect("infer");
    let analyzer = Analyzer::new(model.clone(), limits.clone());

    c.bench_function("decode/png8_1000x1300", |b| {
        b.iter(|| decode(&png8, &limits).expect("decode"))
    });
    c.bench_function("decode/png16_2000x2500", |b| {
        b.iter(|| decode(&png16, &limits).expect("decode"))
    });
    c.bench_function(&format!("decode/{dicom_name}"), |b| {
        b.iter(|| boneage::decode::decode_upload(&dicom, &limits).expect("decode"))
    });
    c.bench_function("preprocess/1000x1300", |b| {
        b.iter(|| preprocess(&img, &spec).expect("preprocess"))
    });
    c.bench_function("inference/1_thread", |b| {
        b.iter(|| model.infer(tensor.clone(), Sex::Male).expect("infer"))
    });
    c.bench_function("inference/2_threads", |b| {
        b.iter(|| model2.infer(tensor.clone(), Sex::Male).expect("infer"))
    });
    c.bench_function("scoring", |b| {
        b.iter(|| build_report(&out, &req, model.info(), input.clone(), None))
    });
    c.bench_function("analysis/png8_1000x1300", |b| {
        b.iter(|| analyzer.analyze(&png8, &req).expect("analyze"))
    });
    c.bench_function(&format!("analysis/{dicom_name}"), |b| {
        b.iter(|| analyzer.analyze(&dicom, &req).expect("analyze"))
    });
}

/// A DR-style DICOM of the synthetic hand: MONOCHROME1, 14 bits stored, JPEG
/// lossless (process 14, SV1) by `dcmcjpeg +e1` when dcmtk is installed.
fn dr_dicom(width: u32, height: u32) -> (Vec<u8>, String) {
    let img = hand_radiograph_16(&HandParams {
        width,
        height,
        ..HandParams::default()
    });
    let px: Vec<u16> = img.as_raw().iter().map(|&v| 16383 - (v >> 2)).collect();
    let tags = boneage::dicom::DicomTags {
        monochrome1: true,
        bits_stored: 14,
        ..Default::default()
    };
    let raw = boneage::dicom::encode_dicom(&px, width, height, &tags).expect("encode");
    let dir = std::env::temp_dir().join(format!("boneage-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let (src, dst) = (dir.join("raw.dcm"), dir.join("jpegll.dcm"));
    let converted = std::fs::write(&src, &raw).is_ok()
        && std::process::Command::new("dcmcjpeg")
            .arg("+e1")
            .arg(&src)
            .arg(&dst)
            .status()
            .is_ok_and(|s| s.success());
    let out = match converted.then(|| std::fs::read(&dst).ok()).flatten() {
        Some(bytes) => (bytes, format!("dicom_jpegll_{width}x{height}")),
        None => (raw, format!("dicom_raw_{width}x{height}")),
    };
    let _ = std::fs::remove_dir_all(&dir);
    out
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
