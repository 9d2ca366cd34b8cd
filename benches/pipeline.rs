//! Per-stage and end-to-end latency of the analysis pipeline on a synthetic
//! 1000×1300 radiograph: `cargo bench --bench pipeline`.

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
    let limits = DecodeLimits::default();
    let model = Arc::new(TractModel::embedded().expect("model"));
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
    c.bench_function("preprocess/1000x1300", |b| {
        b.iter(|| preprocess(&img, &spec).expect("preprocess"))
    });
    c.bench_function("inference", |b| {
        b.iter(|| model.infer(tensor.clone(), Sex::Male).expect("infer"))
    });
    c.bench_function("scoring", |b| {
        b.iter(|| build_report(&out, &req, model.info(), input.clone(), None))
    });
    c.bench_function("analysis/png8_1000x1300", |b| {
        b.iter(|| analyzer.analyze(&png8, &req).expect("analyze"))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
