//! The LMS method (Cole 1990; Cole & Green 1992): a measurement `x` at an age with
//! Box-Cox power `L`, median `M` and coefficient of variation `S` has the z-score
//!
//! ```text
//! z = ((x / M)^L − 1) / (L·S)      L ≠ 0
//! z = ln(x / M) / S                L = 0
//! ```
//!
//! and, inversely, the measurement at a z-score is `M·(1 + L·S·z)^(1/L)`
//! (`M·exp(S·z)` at `L = 0`). Percentiles are `100·Φ(z)` with Φ the standard normal
//! distribution function.
//!
//! The `L ≠ 0` forms are evaluated as `expm1(L·ln(x/M)) / (L·S)` and
//! `M·exp(ln_1p(L·S·z) / L)`: algebraically the same, but without the cancellation
//! of `(x/M)^L − 1` when `L` is tiny, so the formulas tend smoothly to the `L = 0`
//! case (a unit test pins that).
//!
//! Every function returns `None` (never a made-up number) where the formula is
//! undefined: non-finite inputs, `x ≤ 0`, `M ≤ 0`, `S ≤ 0`, or `1 + L·S·z ≤ 0`.

use std::f64::consts::SQRT_2;

/// z-score of `x` against the LMS values `(l, m, s)`; `None` where undefined.
pub fn z_from_lms(x: f64, l: f64, m: f64, s: f64) -> Option<f64> {
    if !valid_lms(l, m, s) || !x.is_finite() || x <= 0.0 {
        return None;
    }
    let ln_ratio = (x / m).ln();
    let z = if l == 0.0 {
        ln_ratio / s
    } else {
        (l * ln_ratio).exp_m1() / (l * s)
    };
    z.is_finite().then_some(z)
}

/// The measurement at z-score `z` for the LMS values `(l, m, s)` (the inverse of
/// [`z_from_lms`]); `None` where undefined (`1 + L·S·z ≤ 0`, non-finite input).
pub fn value_at_z(z: f64, l: f64, m: f64, s: f64) -> Option<f64> {
    if !valid_lms(l, m, s) || !z.is_finite() {
        return None;
    }
    let v = if l == 0.0 {
        m * (s * z).exp()
    } else {
        let lsz = l * s * z;
        if 1.0 + lsz <= 0.0 {
            return None;
        }
        m * (lsz.ln_1p() / l).exp()
    };
    (v.is_finite() && v > 0.0).then_some(v)
}

/// `100·Φ(z)`, the percentile of a z-score. Φ(z) = erfc(−z/√2)/2 (the complementary
/// form keeps precision in the lower tail). NaN in, NaN out.
pub fn percentile_from_z(z: f64) -> f64 {
    50.0 * libm::erfc(-z / SQRT_2)
}

/// The z-score of percentile `p` (0 < p < 100): the inverse of
/// [`percentile_from_z`]. `None` for `p` outside (0, 100) or not finite.
///
/// Φ is increasing, so the inverse is found by bisection on `[−40, 40]` (Φ is 0 or
/// 1 to double precision beyond that) until the bracket cannot shrink any more: the
/// result is the z whose Φ is nearest `p/100` to within a few units in the last
/// place.
pub fn z_for_percentile(p: f64) -> Option<f64> {
    if !p.is_finite() || p <= 0.0 || p >= 100.0 {
        return None;
    }
    let target = p / 100.0;
    let phi = |z: f64| 0.5 * libm::erfc(-z / SQRT_2);
    let (mut lo, mut hi) = (-40.0_f64, 40.0_f64);
    // 200 halvings exhaust any f64 bracket; the loop stops earlier when the
    // midpoint no longer differs from an end.
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if phi(mid) < target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let z = 0.5 * (lo + hi);
    z.is_finite().then_some(z)
}

fn valid_lms(l: f64, m: f64, s: f64) -> bool {
    l.is_finite() && m.is_finite() && s.is_finite() && m > 0.0 && s > 0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn z_at_l_one_is_linear() {
        // L = 1: z = (x/M − 1)/S. WHO 2007 boys 120 months: M = 137.7795, S = 0.04626.
        // x = 150: (150/137.7795 − 1)/0.04626 = 0.0886961/0.04626 = 1.917338…
        let z = z_from_lms(150.0, 1.0, 137.7795, 0.04626).unwrap();
        assert!(close(z, (150.0 / 137.7795 - 1.0) / 0.04626, 1e-12));
        assert!(close(z, 1.917338, 1e-6), "{z}");
        assert_eq!(z_from_lms(137.7795, 1.0, 137.7795, 0.04626), Some(0.0));
    }

    #[test]
    fn z_at_l_zero_is_log() {
        // L = 0: z = ln(x/M)/S. x = M·e^0.1, S = 0.05 → z = 0.1/0.05 = 2.
        let m = 100.0;
        let x = m * 0.1_f64.exp();
        let z = z_from_lms(x, 0.0, m, 0.05).unwrap();
        assert!(close(z, 2.0, 1e-12), "{z}");
        // inverse at L = 0: M·exp(S·z)
        let v = value_at_z(2.0, 0.0, m, 0.05).unwrap();
        assert!(close(v, x, 1e-9));
        assert!(close(
            value_at_z(-1.0, 0.0, 50.0, 0.1).unwrap(),
            50.0 * (-0.1_f64).exp(),
            1e-12
        ));
    }

    #[test]
    fn tiny_l_tends_to_the_l_zero_formula() {
        for (x, m, s) in [(95.0, 100.0, 0.04), (130.0, 120.0, 0.05), (60.0, 57.0, 0.1)] {
            let z0 = z_from_lms(x, 0.0, m, s).unwrap();
            for l in [1e-9, -1e-9, 1e-12] {
                let zl = z_from_lms(x, l, m, s).unwrap();
                assert!(close(zl, z0, 1e-8), "x={x} l={l}: {zl} vs {z0}");
                let v0 = value_at_z(1.5, 0.0, m, s).unwrap();
                let vl = value_at_z(1.5, l, m, s).unwrap();
                assert!(close(vl, v0, 1e-8), "{vl} vs {v0}");
            }
        }
    }

    #[test]
    fn negative_l_hand_computed() {
        // CDC 2000 length-for-age, girls at 0 months: L = −1.295960857,
        // M = 49.28639612, S = 0.05008556. x = 52:
        // (52/49.28639612)^L = exp(L·ln 1.0550578) = exp(−1.295960857 × 0.0535958)
        //                    = exp(−0.0694578) = 0.9328995
        // z = (0.9328995 − 1)/(L·S) = −0.0671005 / −0.0649089 = 1.033764
        let z = z_from_lms(52.0, -1.295960857, 49.28639612, 0.05008556).unwrap();
        assert!(close(z, 1.033764, 1e-6), "{z}");
    }

    #[test]
    fn value_at_z_inverts_z_from_lms() {
        for (l, m, s) in [
            (1.0, 137.7795, 0.04626),
            (-1.295960857, 49.28639612, 0.05008556),
            (0.505564115, 138.8234114, 0.047610108),
            (0.0, 100.0, 0.05),
        ] {
            for z in [-3.0, -1.880794, 0.0, 0.5, 2.0, 3.0] {
                let x = value_at_z(z, l, m, s).unwrap();
                let back = z_from_lms(x, l, m, s).unwrap();
                assert!(close(back, z, 1e-10), "l={l} z={z}: {back}");
            }
            assert!(close(value_at_z(0.0, l, m, s).unwrap(), m, 1e-12));
        }
        // ±2 SD at L = 1: M(1 ± 2S)
        let up = value_at_z(2.0, 1.0, 137.7795, 0.04626).unwrap();
        assert!(close(up, 137.7795 * (1.0 + 2.0 * 0.04626), 1e-10));
    }

    #[test]
    fn undefined_cases_are_none() {
        assert_eq!(z_from_lms(0.0, 1.0, 100.0, 0.05), None);
        assert_eq!(z_from_lms(-5.0, 1.0, 100.0, 0.05), None);
        assert_eq!(z_from_lms(f64::NAN, 1.0, 100.0, 0.05), None);
        assert_eq!(z_from_lms(100.0, 1.0, 0.0, 0.05), None);
        assert_eq!(z_from_lms(100.0, 1.0, 100.0, 0.0), None);
        assert_eq!(z_from_lms(100.0, f64::INFINITY, 100.0, 0.05), None);
        // L = 1, S = 0.05: 1 + L·S·z = 0 at z = −20
        assert_eq!(value_at_z(-20.0, 1.0, 100.0, 0.05), None);
        assert_eq!(value_at_z(-25.0, 1.0, 100.0, 0.05), None);
        assert_eq!(value_at_z(f64::NAN, 1.0, 100.0, 0.05), None);
        assert!(value_at_z(-19.0, 1.0, 100.0, 0.05).is_some());
    }

    #[test]
    fn percentile_of_z() {
        assert!(close(percentile_from_z(0.0), 50.0, 1e-12));
        // Φ(1.959964) = 0.975, Φ(−1) = 0.158655254
        assert!(close(percentile_from_z(1.959964), 97.5, 1e-5));
        assert!(close(percentile_from_z(-1.0), 15.8655254, 1e-6));
        assert!(close(
            percentile_from_z(1.0) + percentile_from_z(-1.0),
            100.0,
            1e-12
        ));
        assert!(percentile_from_z(-10.0) > 0.0);
        assert!(percentile_from_z(f64::NAN).is_nan());
    }

    #[test]
    fn z_of_chart_percentiles() {
        // The standard normal quantiles of the chart percentiles.
        for (p, z) in [
            (3.0, -1.880794),
            (10.0, -1.281552),
            (25.0, -0.674490),
            (50.0, 0.0),
            (75.0, 0.674490),
            (90.0, 1.281552),
            (97.0, 1.880794),
        ] {
            let got = z_for_percentile(p).unwrap();
            assert!(close(got, z, 1e-6), "p={p}: {got}");
        }
    }

    #[test]
    fn z_for_percentile_inverts_phi() {
        for p in [1e-6, 0.01, 0.5, 2.5, 13.0, 50.0, 64.2, 99.0, 99.99] {
            let z = z_for_percentile(p).unwrap();
            let back = percentile_from_z(z);
            assert!(close(back, p, 1e-9 * p.max(1.0)), "p={p}: {back}");
        }
        for p in [0.0, 100.0, -1.0, 101.0, f64::NAN, f64::INFINITY] {
            assert_eq!(z_for_percentile(p), None, "{p}");
        }
    }
}
