//! In-process timing of the full analysis (`boneage bench`): the same
//! [`Analyzer::analyze`] call the service makes, repeated, with per-stage medians,
//! then one model pass alone ([`Backend::infer`] on the preprocessed tensor) so the
//! inference figure can be set beside another runtime's on the same input.

use serde::Serialize;

use crate::analysis::{AnalysisRequest, Analyzer};
use crate::decode::decode_upload;
use crate::error::AnalysisError;
use crate::preprocess::preprocess;
use crate::Sex;
use tract_onnx::prelude::*;

#[derive(Debug, Clone, Serialize)]
pub struct StageMedians {
    pub decode: f64,
    pub preprocess: f64,
    pub inference: f64,
    pub scoring: f64,
    pub total: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub runs: usize,
    pub warmup_runs: usize,
    pub image: ImageDesc,
    pub model: String,
    /// Threads one inference used.
    pub threads: usize,
    /// Model passes one analysis took (quality control: 1 for an upright left hand).
    pub passes: u8,
    /// Median milliseconds of each stage over `runs` (`inference` sums the passes).
    pub median_ms: StageMedians,
    /// Fastest and slowest total (ms).
    pub min_total_ms: f64,
    pub max_total_ms: f64,
    /// One model pass alone on this image's preprocessed tensor, `runs` times.
    pub model_pass_ms: Spread,
    /// With `--batch N`: one pass over N copies of the tensor, per image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batched: Option<Batched>,
}

/// What batching buys: the same model planned for a batch of `size` images.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Batched {
    pub size: usize,
    /// Milliseconds of one batched pass divided by `size`.
    pub per_image_ms: Spread,
    /// Milliseconds of one batched pass (the latency each image of it waits).
    pub pass_ms: Spread,
}

/// Median, fastest and slowest of a set of timings (ms).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageDesc {
    pub width: u32,
    pub height: u32,
    pub bit_depth: u8,
    pub bytes: usize,
}

/// The tensor the model sees for this upload (the first pass: no quality-control
/// corrections), for [`run`]'s model-only timing and for other runtimes' benchmarks.
pub fn model_input(
    analyzer: &Analyzer,
    bytes: &[u8],
) -> Result<tract_onnx::prelude::tract_ndarray::Array4<f32>, AnalysisError> {
    let decoded = decode_upload(bytes, analyzer.limits())?;
    preprocess(&decoded.image, analyzer.model().preprocess_spec())
}

/// Runs `warmup` untimed analyses, then `runs` timed ones (at least 1), then
/// `runs` timed model passes on the preprocessed tensor.
pub fn run(
    analyzer: &Analyzer,
    bytes: &[u8],
    req: &AnalysisRequest,
    runs: usize,
    warmup: usize,
    threads: usize,
) -> Result<BenchResult, AnalysisError> {
    let runs = runs.max(1);
    let first = analyzer.analyze(bytes, req)?;
    for _ in 1..warmup {
        analyzer.analyze(bytes, req)?;
    }
    let mut t: [Vec<f64>; 5] = Default::default();
    for _ in 0..runs {
        let r = analyzer.analyze(bytes, req)?.timings_ms;
        for (v, x) in t
            .iter_mut()
            .zip([r.decode, r.preprocess, r.inference, r.scoring, r.total])
        {
            v.push(x);
        }
    }
    let [d, p, i, s, tot] = t.map(median);
    let tensor = model_input(analyzer, bytes)?;
    for _ in 0..warmup {
        analyzer.model().infer(tensor.clone(), req.sex)?;
    }
    let mut pass = Vec::with_capacity(runs);
    for _ in 0..runs {
        let x = tensor.clone();
        let a = std::time::Instant::now();
        analyzer.model().infer(x, req.sex)?;
        pass.push(a.elapsed().as_secs_f64() * 1000.0);
    }
    let pass = median(pass);
    let info = analyzer.model().info();
    Ok(BenchResult {
        runs,
        warmup_runs: warmup.max(1),
        image: ImageDesc {
            width: first.input.width,
            height: first.input.height,
            bit_depth: first.input.bit_depth,
            bytes: bytes.len(),
        },
        model: format!("{} {}", info.name, info.version),
        threads,
        passes: first.quality.passes,
        median_ms: StageMedians {
            decode: d.0,
            preprocess: p.0,
            inference: i.0,
            scoring: s.0,
            total: tot.0,
        },
        min_total_ms: tot.1,
        max_total_ms: tot.2,
        model_pass_ms: Spread {
            median: pass.0,
            min: pass.1,
            max: pass.2,
        },
        batched: None,
    })
}

/// Plans the ONNX model `onnx` for a batch of `size` images (tract, optimised, the
/// same way [`crate::model::TractModel`] plans batch 1) and times `runs` passes
/// over `size` copies of `image` (after `warmup` untimed ones), on `threads` threads.
pub fn batched_pass(
    onnx: &[u8],
    size: usize,
    image: &tract_ndarray::Array4<f32>,
    sex: Sex,
    runs: usize,
    warmup: usize,
    threads: usize,
) -> Result<Batched, AnalysisError> {
    let fail = |e: TractError| AnalysisError::Inference(format!("batched plan: {e:#}"));
    let size = size.max(1);
    let (h, w) = (image.shape()[2], image.shape()[3]);
    let mut model = tract_onnx::onnx()
        .model_for_read(&mut &onnx[..])
        .map_err(fail)?;
    let names: Vec<String> = model
        .input_outlets()
        .map_err(fail)?
        .iter()
        .map(|o| model.node(o.node).name.clone())
        .collect();
    let batch_img =
        tract_ndarray::Array4::from_shape_fn((size, 1, h, w), |(_, _, y, x)| image[[0, 0, y, x]]);
    let sex_v = if sex == Sex::Male { 1.0f32 } else { 0.0 };
    let batch_sex = tract_ndarray::Array2::from_elem((size, 1), sex_v);
    let mut inputs: Vec<Tensor> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let (fact, t): (TypedFact, Tensor) = match name.as_str() {
            "image" => (f32::fact([size, 1, h, w]), batch_img.clone().into()),
            "sex" => (f32::fact([size, 1]), batch_sex.clone().into()),
            other => {
                return Err(AnalysisError::Inference(format!(
                    "batched plan: unexpected input {other:?}"
                )))
            }
        };
        model = model.with_input_fact(i, fact.into()).map_err(fail)?;
        inputs.push(t);
    }
    let plan = model
        .into_optimized()
        .map_err(fail)?
        .into_runnable()
        .map_err(fail)?;
    let executor = (threads > 1)
        .then(|| tract_linalg::multithread::Executor::multithread_with_name(threads, "bench"));
    let run_once = || -> Result<f64, AnalysisError> {
        let tv: TVec<TValue> = inputs.iter().map(|t| t.clone().into()).collect();
        let a = std::time::Instant::now();
        crate::model::on_executor(executor.as_ref(), || plan.run(tv)).map_err(fail)?;
        Ok(a.elapsed().as_secs_f64() * 1000.0)
    };
    for _ in 0..warmup {
        run_once()?;
    }
    let mut t = Vec::with_capacity(runs.max(1));
    for _ in 0..runs.max(1) {
        t.push(run_once()?);
    }
    let per: Vec<f64> = t.iter().map(|v| v / size as f64).collect();
    let (pm, pmin, pmax) = median(per);
    let (m, min, max) = median(t);
    Ok(Batched {
        size,
        per_image_ms: Spread {
            median: pm,
            min: pmin,
            max: pmax,
        },
        pass_ms: Spread {
            median: m,
            min,
            max,
        },
    })
}

/// (median, min, max), rounded to µs.
fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    let m = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    let r = |x: f64| (x * 1000.0).round() / 1000.0;
    (r(m), r(v[0]), r(v[n - 1]))
}

#[cfg(test)]
mod tests {
    #[test]
    fn median_odd_even() {
        assert_eq!(super::median(vec![3.0, 1.0, 2.0]).0, 2.0);
        assert_eq!(super::median(vec![4.0, 1.0, 2.0, 3.0]), (2.5, 1.0, 4.0));
    }
}
