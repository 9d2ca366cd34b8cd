//! In-process timing of the full analysis (`boneage bench`): the same
//! [`Analyzer::analyze`] call the service makes, repeated, with per-stage medians.

use serde::Serialize;

use crate::analysis::{AnalysisRequest, Analyzer};
use crate::error::AnalysisError;

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
    /// Median milliseconds of each stage over `runs`.
    pub median_ms: StageMedians,
    /// Fastest and slowest total (ms).
    pub min_total_ms: f64,
    pub max_total_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageDesc {
    pub width: u32,
    pub height: u32,
    pub bit_depth: u8,
    pub bytes: usize,
}

/// Runs `warmup` untimed analyses, then `runs` timed ones (at least 1).
pub fn run(
    analyzer: &Analyzer,
    bytes: &[u8],
    req: &AnalysisRequest,
    runs: usize,
    warmup: usize,
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
        median_ms: StageMedians {
            decode: d.0,
            preprocess: p.0,
            inference: i.0,
            scoring: s.0,
            total: tot.0,
        },
        min_total_ms: tot.1,
        max_total_ms: tot.2,
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
