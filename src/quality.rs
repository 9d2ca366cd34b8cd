//! Quality control and geometry: is this a hand radiograph the model can read, and
//! which way up, which side and which polarity is it?
//!
//! Two measurements decide, both calibrated per model on real radiographs at their
//! own resolution (`scripts/train.py`, written into the model's metadata):
//! - the **shape residual**: the located joints, in the upload's pixel geometry, are
//!   fitted by a similarity transform (optionally with a reflection) onto the mean
//!   hand shape of expert annotations (`boneage.joint_template`); the residual is the
//!   share of the template's size the fit leaves unexplained (0 = a perfect hand
//!   shape, about 0.9 for points without structure);
//! - the model's **SD**: its uncertainty, which grows on images unlike its training data.
//!
//! The same fit gives the corrections: a reflected fit is a right hand (mirrored to
//! the left-hand convention), its angle the rotation of the hand (undone beyond
//! [`ROTATION_CORRECTION_DEG`]); a poor fit that the inverted image fits better is an
//! inverted grey scale.

use serde::Serialize;
use utoipa::ToSchema;

use crate::decode::GreyImage;
use crate::error::AnalysisError;
use crate::preprocess::{resample, Affine};

/// Rotations the model tolerates itself (it was trained with ±20°); beyond this the
/// image is turned upright before the final inference.
pub const ROTATION_CORRECTION_DEG: f64 = 20.0;
/// A fit that is hand-shaped but not clear (see [`SEARCH_MAX_RESIDUAL_SHARE`]) is
/// turned upright beyond this tilt, in case the tilt misled the model.
pub const UNCLEAR_CORRECTION_DEG: f64 = 5.0;
/// A first pass that shows no clear hand shape is retried turned this far either way.
pub const SEARCH_TURN_DEG: f64 = 45.0;
/// A hand found by that search must fit the template this well (a share of the
/// shape-residual limit): real hands turned upright fit at a few hundredths of the
/// limit, the non-hands of the negative set that pass at all near it.
pub const SEARCH_MAX_RESIDUAL_SHARE: f64 = 0.25;
/// Below this spread of grey levels (1st to 99th percentile, on a 0–1 scale) the
/// image is blank or flat.
pub const MIN_DYNAMIC_RANGE: f64 = 0.04;
/// A first pass scoring above this (see [`Thresholds::score`]) is retried with the
/// grey scale inverted, and the better of the two kept.
pub const RETRY_INVERTED_SCORE: f64 = 0.7;

/// The model's quality-control calibration (from its metadata).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Thresholds {
    /// Template joint positions (centred, unit size), in the model's joint order.
    #[serde(skip)]
    pub template: Vec<(f64, f64)>,
    pub max_shape_residual: f64,
    pub max_sd_months: f64,
    /// Where the typical training film holds the hand (`boneage.hand_frame`), when the
    /// model declares it: the views are then framed like that (see [`Framing`]).
    #[serde(skip)]
    pub hand_frame: Option<HandFrame>,
}

/// How a film frames its hand, from the located joints, as fractions of the width and
/// height: the joints' centroid (`cx`, `cy`) and their RMS spread about it across
/// (`u`) and along (`v`) the frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HandFrame {
    pub cx: f64,
    pub cy: f64,
    pub u: f64,
    pub v: f64,
}

/// A box of a frame turned about its centre, in that frame's normalised coordinates
/// ([-1, 1] across the width and height): the box's centre and its half width and
/// half height. [`Framing::WHOLE`] is the frame itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Framing {
    pub turn_deg: f64,
    pub center: (f64, f64),
    pub half: (f64, f64),
}

/// The least and greatest box side, as a share of the frame's side.
const FRAMING_HALF_RANGE: (f64, f64) = (0.25, 4.0);

impl Framing {
    pub const WHOLE: Framing = Framing {
        turn_deg: 0.0,
        center: (0.0, 0.0),
        half: (1.0, 1.0),
    };

    /// The box as fractions of the (turned) frame's width and height.
    pub fn view_box(&self) -> ViewBox {
        let (hx, hy) = self.clamped_half();
        ViewBox {
            center: [(self.center.0 + 1.0) / 2.0, (self.center.1 + 1.0) / 2.0],
            half: [hx / 2.0, hy / 2.0],
        }
    }

    /// The box's half width and height, within the least and greatest box allowed.
    fn clamped_half(&self) -> (f64, f64) {
        let (lo, hi) = FRAMING_HALF_RANGE;
        (self.half.0.clamp(lo, hi), self.half.1.clamp(lo, hi))
    }

    /// The map from the box's normalised coordinates to those of the `w`×`h` image it
    /// is a box of ([`Affine`]): a point of the box is `center + half · p` in the
    /// turned frame, which reads the image at that point turned back by `turn_deg`
    /// about the centre in the image's own pixel geometry (in normalised coordinates
    /// D⁻¹·R·D, D the half width and height, so that a squashed input turns as the
    /// image itself does).
    pub fn affine(&self, w: f64, h: f64) -> Affine {
        let (w, h) = (w.max(1.0), h.max(1.0));
        // Clockwise by d on screen reads the source at R(−d) of the output point.
        let th = self.turn_deg.to_radians();
        let (c, s) = (th.cos(), th.sin());
        let turn = Affine {
            m: [[c, s * h / w], [-s * w / h, c]],
            t: (0.0, 0.0),
        };
        let (hx, hy) = self.clamped_half();
        turn.after(&Affine {
            m: [[hx, 0.0], [0.0, hy]],
            t: self.center,
        })
    }

    /// The box of the frame turned by `turn_deg` that holds the hand as `typical`
    /// does: `points` are joint positions (pixels) in a `w`×`h` image of the same
    /// upload turned by `points_turn_deg` (both clockwise on screen, about the
    /// centre). None when the points do not span a hand.
    pub fn restoring(
        typical: &HandFrame,
        points: &[(f64, f64)],
        w: f64,
        h: f64,
        points_turn_deg: f64,
        turn_deg: f64,
    ) -> Option<Framing> {
        if points.is_empty() || !(w > 0.0 && h > 0.0 && typical.u > 0.0 && typical.v > 0.0) {
            return None;
        }
        // From the points' frame to the turned one: clockwise on screen by the difference.
        let a = (turn_deg - points_turn_deg).to_radians();
        let (c, s) = (a.cos(), a.sin());
        let turned: Vec<(f64, f64)> = points
            .iter()
            .map(|&(x, y)| {
                let (dx, dy) = (x - w / 2.0, y - h / 2.0);
                (c * dx - s * dy, s * dx + c * dy)
            })
            .collect();
        let n = turned.len() as f64;
        let (mx, my) = turned
            .iter()
            .fold((0.0, 0.0), |(a, b), p| (a + p.0 / n, b + p.1 / n));
        let spread = |d: &dyn Fn(&(f64, f64)) -> f64| {
            (turned.iter().map(|p| d(p).powi(2)).sum::<f64>() / n).sqrt()
        };
        let (sx, sy) = (spread(&|p| p.0 - mx), spread(&|p| p.1 - my));
        if !(sx.is_finite() && sy.is_finite() && sx > 1e-6 * w && sy > 1e-6 * h) {
            return None;
        }
        // The box the typical film would be around this hand, in pixels.
        let (bw, bh) = (sx / typical.u, sy / typical.v);
        let (bx, by) = (mx - (typical.cx - 0.5) * bw, my - (typical.cy - 0.5) * bh);
        let (lo, hi) = FRAMING_HALF_RANGE;
        Some(Framing {
            turn_deg,
            center: (bx / (w / 2.0), by / (h / 2.0)),
            half: ((bw / w).clamp(lo, hi), (bh / h).clamp(lo, hi)),
        })
    }
}

impl ShapeFit {
    /// The turn (degrees, clockwise on screen, within ±180) that brings the hand
    /// upright as the hand it shows: a left hand for a direct fit, a right hand for a
    /// reflected one. A reflected fit's rotation is that of the mirrored hand about the
    /// vertical axis, i.e. half a turn more than the right hand's own.
    pub fn upright_turn_deg(&self) -> f64 {
        if self.reflected {
            let t = (180.0 - self.rotation_deg).rem_euclid(360.0);
            if t > 180.0 {
                t - 360.0
            } else {
                t
            }
        } else {
            self.rotation_deg
        }
    }
}

impl Thresholds {
    /// 0 for a perfect fit with no uncertainty; each term is 1 at its threshold.
    pub fn score(&self, fit: &ShapeFit, sd_months: f64) -> f64 {
        fit.residual / self.max_shape_residual + sd_months / self.max_sd_months
    }

    pub fn accepts(&self, fit: &ShapeFit, sd_months: f64) -> bool {
        fit.residual <= self.max_shape_residual && sd_months <= self.max_sd_months
    }
}

/// Result of fitting located joints to the template.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct ShapeFit {
    pub residual: f64,
    /// The best fit needs a reflection: the image shows a right hand (or a mirrored left).
    pub reflected: bool,
    /// Rotation (degrees, clockwise on screen) that brings the hand upright.
    pub rotation_deg: f64,
}

/// Similarity (Procrustes) fit of `points` (pixels) onto the template.
pub fn fit_shape(points: &[(f64, f64)], template: &[(f64, f64)]) -> Option<ShapeFit> {
    if points.len() != template.len() || points.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), p| (a + p.0 / n, b + p.1 / n));
    let mut z: Vec<(f64, f64)> = points.iter().map(|p| (p.0 - mx, p.1 - my)).collect();
    let norm = z.iter().map(|p| p.0 * p.0 + p.1 * p.1).sum::<f64>().sqrt();
    if !(norm.is_finite() && norm > 1e-9) {
        return Some(ShapeFit {
            residual: 1.0,
            reflected: false,
            rotation_deg: 0.0,
        });
    }
    for p in &mut z {
        p.0 /= norm;
        p.1 /= norm;
    }
    let tn: f64 = template.iter().map(|t| t.0 * t.0 + t.1 * t.1).sum();
    let mut best: Option<ShapeFit> = None;
    for reflected in [false, true] {
        // a = <z, t> / <z, z> over complex numbers (z conjugated when reflected);
        // <z, z> = 1.
        let (mut ar, mut ai) = (0.0, 0.0);
        for (p, t) in z.iter().zip(template) {
            let (zr, zi) = if reflected { (p.0, -p.1) } else { (p.0, p.1) };
            // conj(z) * t
            ar += zr * t.0 + zi * t.1;
            ai += zr * t.1 - zi * t.0;
        }
        // |t - a z|^2 = |t|^2 - |a|^2 (z unit, a the least-squares optimum), over |t|^2
        let residual = ((tn - (ar * ar + ai * ai)) / tn).clamp(0.0, 1.0);
        let fit = ShapeFit {
            residual,
            reflected,
            rotation_deg: ai.atan2(ar).to_degrees(),
        };
        if best.is_none_or(|b| fit.residual < b.residual) {
            best = Some(fit);
        }
    }
    best
}

/// The long side of the copy the hand count is made on.
const COUNT_SIDE: u32 = 128;
/// 4-neighbour erosions of the bright mask before regions are counted.
const ERODE_STEPS: usize = 2;
/// The second region's least area, as a share of the frame (after erosion).
const MIN_SECOND_AREA: f64 = 0.015;

/// What the hand count saw: the two largest bright regions (bone and soft tissue on a
/// dark background, after an Otsu threshold and one erosion), as shares of the frame.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct HandCount {
    /// Area of the largest region over the frame.
    pub largest: f64,
    /// Area of the second largest over the largest (0 when there is none).
    pub second_ratio: f64,
    /// The two are tall, large, hand-like (filling under 85% of their bounding box)
    /// and side by side with no horizontal overlap.
    pub side_by_side: bool,
    /// The bounding box of the largest region, as fractions of the frame (x0, y0, x1,
    /// y1): where a hand too small for the model to find on the whole frame is.
    #[serde(skip)]
    pub largest_box: Option<[f64; 4]>,
}

impl HandCount {
    /// Two hands: a second region at least 35% of the first and 1.5% of the frame (after erosion), both
    /// at least 40% of the frame's height, side by side. Measured on real
    /// radiographs (`tests/quality.rs`): RSNA shows such images (both hands on one
    /// film), and single hands with film edges and labels are not counted twice.
    pub fn multiple(&self) -> bool {
        self.side_by_side && self.second_ratio >= 0.35
    }
}

/// Counts the large bright regions of an image (see [`HandCount`]). Film edges (narrow
/// strips along a side, or regions as wide as the frame) are not counted.
pub fn count_hands(img: &GreyImage) -> HandCount {
    let none = HandCount {
        largest: 0.0,
        second_ratio: 0.0,
        side_by_side: false,
        largest_box: None,
    };
    let (w0, h0) = (img.width as f64, img.height as f64);
    if img.width < 8
        || img.height < 8
        || img.pixels.len() != img.width as usize * img.height as usize
    {
        return none;
    }
    let k = (COUNT_SIDE as f64 / w0.max(h0)).min(1.0);
    let (w, h) = (
        ((w0 * k).round() as usize).max(1),
        ((h0 * k).round() as usize).max(1),
    );
    // Box-average down to w × h (each output pixel the mean of its source cell).
    let mut small = vec![0f32; w * h];
    let mut count = vec![0u32; w * h];
    let (sw, sh) = (img.width as usize, img.height as usize);
    for y in 0..sh {
        let oy = (y * h / sh).min(h - 1);
        for x in 0..sw {
            let ox = (x * w / sw).min(w - 1);
            let v = img.pixels[y * sw + x];
            small[oy * w + ox] += if v.is_finite() {
                v.clamp(0.0, 1.0)
            } else {
                0.0
            };
            count[oy * w + ox] += 1;
        }
    }
    for (v, c) in small.iter_mut().zip(&count) {
        *v /= (*c).max(1) as f32;
    }
    let t = otsu(&small);
    let mask: Vec<bool> = small.iter().map(|&v| v > t).collect();
    // Erosions part regions joined by a thin bridge and remove the thin bright lines
    // of film edges.
    let mut eroded = mask;
    for _ in 0..ERODE_STEPS {
        let m = eroded.clone();
        for y in 0..h {
            for x in 0..w {
                let i = y * w + x;
                eroded[i] = m[i]
                    && (y == 0 || m[i - w])
                    && (y + 1 == h || m[i + w])
                    && (x == 0 || m[i - 1])
                    && (x + 1 == w || m[i + 1]);
            }
        }
    }
    // Connected regions (4-neighbour) with their area and bounding box.
    let mut seen = vec![false; w * h];
    let mut regions: Vec<(usize, usize, usize, usize, usize)> = Vec::new(); // area, x0, x1, y0, y1
    let mut stack = Vec::new();
    for start in 0..w * h {
        if !eroded[start] || seen[start] {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let (mut area, mut x0, mut x1, mut y0, mut y1) = (0, w, 0, h, 0);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            area += 1;
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
            let mut visit = |j: usize| {
                if eroded[j] && !seen[j] {
                    seen[j] = true;
                    stack.push(j);
                }
            };
            if x > 0 {
                visit(i - 1);
            }
            if x + 1 < w {
                visit(i + 1);
            }
            if y > 0 {
                visit(i - w);
            }
            if y + 1 < h {
                visit(i + w);
            }
        }
        let width = x1 - x0 + 1;
        let frame_wide = width + 3 > w;
        let edge_strip = (x0 == 0 || x1 + 1 == w) && (width as f64) < 0.2 * w as f64;
        if !frame_wide && !edge_strip {
            regions.push((area, x0, x1, y0, y1));
        }
    }
    regions.sort_by_key(|r| std::cmp::Reverse(r.0));
    let Some(&a) = regions.first() else {
        return none;
    };
    let frame = (w * h) as f64;
    // The box grown back by the erosions.
    let e = ERODE_STEPS as f64;
    let mut out = HandCount {
        largest: a.0 as f64 / frame,
        largest_box: Some([
            ((a.1 as f64 - e) / w as f64).max(0.0),
            ((a.3 as f64 - e) / h as f64).max(0.0),
            ((a.2 as f64 + 1.0 + e) / w as f64).min(1.0),
            ((a.4 as f64 + 1.0 + e) / h as f64).min(1.0),
        ]),
        ..none
    };
    if let Some(&b) = regions.get(1) {
        out.second_ratio = b.0 as f64 / a.0 as f64;
        let tall =
            |r: (usize, usize, usize, usize, usize)| (r.4 - r.3 + 1) as f64 >= 0.4 * h as f64;
        let apart = b.2 < a.1 || a.2 < b.1;
        // A hand fills well under its bounding box (fingers, gaps); a bar fills it.
        let hand_like = |r: (usize, usize, usize, usize, usize)| {
            (r.0 as f64) < 0.85 * ((r.2 - r.1 + 1) * (r.4 - r.3 + 1)) as f64
        };
        out.side_by_side = tall(a)
            && tall(b)
            && hand_like(a)
            && hand_like(b)
            && apart
            && b.0 as f64 >= MIN_SECOND_AREA * frame;
    }
    out
}

/// A hand whose bright region (with its margin) covers at most this share of the
/// frame is small enough to be looked for again in that box ([`hand_crop`]).
pub const SMALL_HAND_AREA: f64 = 0.5;
/// The margin added around that region on each side, as a share of its longer side.
const HAND_CROP_MARGIN: f64 = 0.15;

/// The box of a frame (as [`Framing`], unturned) around the bright region `b` (x0,
/// y0, x1, y1 as fractions of the frame, [`HandCount::largest_box`]) with a margin,
/// when it covers at most [`SMALL_HAND_AREA`] of the frame and at least a tenth of
/// each side: where the model looks again for a hand too small to find on the whole
/// frame (a small hand on a wide canvas).
pub fn hand_crop(b: [f64; 4]) -> Option<Framing> {
    let [x0, y0, x1, y1] = b;
    let m = HAND_CROP_MARGIN * (x1 - x0).max(y1 - y0);
    let (x0, y0) = ((x0 - m).max(0.0), (y0 - m).max(0.0));
    let (x1, y1) = ((x1 + m).min(1.0), (y1 + m).min(1.0));
    let (bw, bh) = (x1 - x0, y1 - y0);
    let ok = bw.is_finite() && bh.is_finite() && bw >= 0.1 && bh >= 0.1;
    (ok && bw * bh <= SMALL_HAND_AREA).then_some(Framing {
        turn_deg: 0.0,
        center: (x0 + x1 - 1.0, y0 + y1 - 1.0),
        half: (bw, bh),
    })
}

/// The least width of the strip [`beside_hand`] looks at, as a share of the frame.
pub const SECOND_HAND_MIN_SHARE: f64 = 0.3;
/// How far a hand reaches beyond its located joints across the frame, as a share of
/// their spread (the soft tissue beside the thumb and the little finger).
const HAND_MARGIN_SHARE: f64 = 0.25;

/// The widest vertical strip of a `w`×`h` frame beside the hand whose joints are at
/// `points` (pixels), clear of the hand, when it is at least [`SECOND_HAND_MIN_SHARE`]
/// of the frame wide: where a second hand would be. Full height, as a box of the
/// unturned frame ([`Framing`]).
pub fn beside_hand(points: &[(f64, f64)], w: f64, h: f64) -> Option<Framing> {
    if points.is_empty() || !(w > 0.0 && h > 0.0) {
        return None;
    }
    let x0 = points.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let x1 = points.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
    if !(x0.is_finite() && x1.is_finite()) {
        return None;
    }
    let margin = HAND_MARGIN_SHARE * (x1 - x0);
    let left = (0.0, (x0 - margin).clamp(0.0, w));
    let right = ((x1 + margin).clamp(0.0, w), w);
    let (a, b) = if left.1 - left.0 >= right.1 - right.0 {
        left
    } else {
        right
    };
    (b - a >= SECOND_HAND_MIN_SHARE * w).then(|| Framing {
        turn_deg: 0.0,
        center: ((a + b) / w - 1.0, 0.0),
        half: ((b - a) / w, 1.0),
    })
}

/// Otsu's threshold over 256 bins of values in 0–1.
fn otsu(v: &[f32]) -> f32 {
    let mut hist = [0f64; 256];
    for &x in v {
        hist[((x.clamp(0.0, 1.0) * 255.0).round()) as usize] += 1.0;
    }
    let n: f64 = hist.iter().sum();
    let total: f64 = hist.iter().enumerate().map(|(i, c)| i as f64 * c).sum();
    let (mut w0, mut sum0, mut best, mut best_t) = (0.0, 0.0, -1.0, 0usize);
    for (t, &c) in hist.iter().enumerate() {
        w0 += c;
        sum0 += t as f64 * c;
        let w1 = n - w0;
        if w0 == 0.0 || w1 == 0.0 {
            continue;
        }
        let (m0, m1) = (sum0 / w0, (total - sum0) / w1);
        let between = w0 * w1 * (m0 - m1) * (m0 - m1);
        if between > best {
            (best, best_t) = (between, t);
        }
    }
    best_t as f32 / 255.0
}

/// A frame whose outer tenth is brighter on average than its central half: a bright
/// background (an inverted grey scale). The hand count counts such a frame inverted,
/// and only such a frame is retried inverted (980 of 1,000 half512 radiographs look
/// inverted once inverted).
pub fn looks_inverted(img: &GreyImage) -> bool {
    let (w, h) = (img.width as usize, img.height as usize);
    if w < 10 || h < 10 || img.pixels.len() != w * h {
        return false;
    }
    let (bx, by) = (w / 10, h / 10);
    let (mut border, mut nb, mut centre, mut nc) = (0f64, 0usize, 0f64, 0usize);
    for y in 0..h {
        for x in 0..w {
            let v = img.pixels[y * w + x];
            if !v.is_finite() {
                continue;
            }
            if x < bx || x >= w - bx || y < by || y >= h - by {
                border += v as f64;
                nb += 1;
            } else if x >= w / 4 && x < w - w / 4 && y >= h / 4 && y < h - h / 4 {
                centre += v as f64;
                nc += 1;
            }
        }
    }
    nb > 0 && nc > 0 && border / nb as f64 > centre / nc as f64
}

/// Refuses an image with two or more hands side by side.
pub fn check_single_hand(img: &GreyImage) -> Result<HandCount, AnalysisError> {
    let c = count_hands(img);
    if c.multiple() {
        return Err(AnalysisError::MultipleHands(format!(
            "the image shows more than one hand (two large regions side by side, the second \
             {:.0}% of the first). Send a radiograph of the left hand alone.",
            100.0 * c.second_ratio
        )));
    }
    Ok(c)
}

/// Grey-level spread of an image.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct Exposure {
    /// 1st and 99th percentiles of the grey levels (0–1).
    pub p01: f64,
    pub p99: f64,
    pub mean: f64,
}

pub fn exposure(img: &GreyImage) -> Exposure {
    // Written for speed (a plain loop was a tenth of a whole analysis): per block of
    // 1024 pixels, the sum in 16 independent f32 lanes, the bins computed in a
    // vectorisable pass, then counted into four histograms so that neighbouring
    // pixels in the same bin do not wait on each other. u32 counts cannot overflow
    // under the decoder's pixel limit.
    let mut hists = [[0u32; 256]; 4];
    let mut sum = 0.0f64;
    let mut bins = [0u8; 1024];
    for block in img.pixels.chunks(1024) {
        let mut lanes = [0.0f32; 16];
        let mut sixteens = block.chunks_exact(16);
        for q in &mut sixteens {
            for (acc, &v) in lanes.iter_mut().zip(q) {
                *acc += v;
            }
        }
        lanes[0] += sixteens.remainder().iter().sum::<f32>();
        sum += lanes.iter().map(|&x| x as f64).sum::<f64>();
        let bins = &mut bins[..block.len()];
        for (b, &v) in bins.iter_mut().zip(block) {
            // Round half up: in 0.5..=255.5, so `as u8` only truncates (and maps
            // NaN to 0).
            *b = (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8;
        }
        let mut quads = bins.chunks_exact(4);
        for q in &mut quads {
            for (h, &b) in hists.iter_mut().zip(q) {
                h[b as usize] += 1;
            }
        }
        for &b in quads.remainder() {
            hists[0][b as usize] += 1;
        }
    }
    let mut hist = [0u64; 256];
    for h in &hists {
        for (acc, &c) in hist.iter_mut().zip(h.iter()) {
            *acc += c as u64;
        }
    }
    let n = img.pixels.len().max(1) as u64;
    Exposure {
        p01: hist_percentile(&hist, n, 0.01),
        p99: hist_percentile(&hist, n, 0.99),
        mean: sum / n as f64,
    }
}

/// The grey level (bin / 255) below which a share `q` of the `n` counted pixels lie.
fn hist_percentile(hist: &[u64; 256], n: u64, q: f64) -> f64 {
    let target = (q * n as f64).ceil().max(1.0) as u64;
    let mut acc = 0;
    for (i, &c) in hist.iter().enumerate() {
        acc += c;
        if acc >= target {
            return i as f64 / 255.0;
        }
    }
    1.0
}

/// Refuses an image whose grey levels barely vary (blank frame, no exposure).
pub fn check_exposure(e: &Exposure) -> Result<(), AnalysisError> {
    if e.p99 - e.p01 < MIN_DYNAMIC_RANGE {
        return Err(AnalysisError::PoorExposure(format!(
            "the image is almost uniform (grey levels {:.2}–{:.2}): it looks blank or \
             unexposed; please send the radiograph itself",
            e.p01, e.p99
        )));
    }
    Ok(())
}

/// What was done to the image before the final inference.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, ToSchema)]
pub struct Corrections {
    /// The grey scale was inverted (bone was dark).
    pub inverted: bool,
    /// Mirrored left–right: the image shows a right hand, analysed as a left one.
    pub mirrored: bool,
    /// Rotation applied to bring the hand upright (degrees, clockwise on screen; 0 if none).
    pub rotation_deg: f64,
    /// The model's views that give the bone age show the (mirrored) upload turned by
    /// this much (degrees, clockwise on screen): to the template hand's pose, where
    /// `rotation_deg` turned it upright only beyond the model's tolerance. Joints and
    /// stages come from the image turned by `rotation_deg`.
    pub views_turned_deg: f64,
    /// The views show the hand framed as the typical training film frames it (see
    /// `Framing`), enlarged by this factor (below 1: reduced); absent when they show
    /// the whole (turned) frame.
    pub views_zoom: Option<f64>,
    /// The box the views show, when they show a framed hand: in the (mirrored) upload
    /// turned by `views_turned_deg` about its centre.
    pub views_box: Option<ViewBox>,
}

/// A box of an image, as fractions of its width and height: the whole image is
/// centre (0.5, 0.5), half size (0.5, 0.5).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct ViewBox {
    pub center: [f64; 2],
    pub half: [f64; 2],
}

impl ViewBox {
    /// How much the box enlarges the frame (below 1: reduces it): the frame's side
    /// over the box's, as a geometric mean of width and height.
    pub fn zoom(&self) -> f64 {
        0.5 / (self.half[0] * self.half[1]).sqrt()
    }
}

/// Maps points of the corrected working image back to the upload's pixels.
#[derive(Debug, Clone, Copy)]
pub struct Geometry {
    pub width: f64,
    pub height: f64,
    pub corrections: Corrections,
}

impl Geometry {
    pub fn to_upload(&self, x: f64, y: f64) -> (f64, f64) {
        let (cx, cy) = (self.width / 2.0, self.height / 2.0);
        // The working image is the upload mirrored (first), then rotated about the centre.
        let th = -self.corrections.rotation_deg.to_radians();
        let (dx, dy) = (x - cx, y - cy);
        let (rx, ry) = (
            cx + dx * th.cos() - dy * th.sin(),
            cy + dx * th.sin() + dy * th.cos(),
        );
        let ux = if self.corrections.mirrored {
            self.width - rx
        } else {
            rx
        };
        (ux, ry)
    }
}

/// Whether the located joints (pixels of `img`) are brighter than the hand's
/// surroundings (the median of the joints' box widened by 30% each way): bone is
/// bright in a radiograph's usual grey scale. On 1,233 validation radiographs the
/// joints the default model located are brighter in all but one, and darker on 96% of
/// the same films inverted; an inverted reading is kept only when it passes.
pub fn joints_look_bright(img: &GreyImage, points: &[(f64, f64)]) -> bool {
    let (w, h) = (img.width as usize, img.height as usize);
    if points.is_empty() || w == 0 || h == 0 || img.pixels.len() != w * h {
        return false;
    }
    let px = |x: usize, y: usize| img.pixels[y * w + x];
    let clamp_x = |v: f64| (v.max(0.0) as usize).min(w - 1);
    let clamp_y = |v: f64| (v.max(0.0) as usize).min(h - 1);
    // Each joint: the mean over a window a hundredth of the frame across.
    let r = (w.min(h) / 100).max(1) as f64;
    let (mut sum, mut n) = (0f64, 0usize);
    for &(x, y) in points {
        for yy in clamp_y(y - r)..=clamp_y(y + r) {
            for xx in clamp_x(x - r)..=clamp_x(x + r) {
                let v = px(xx, yy);
                if v.is_finite() {
                    sum += v as f64;
                    n += 1;
                }
            }
        }
    }
    let (x0, x1, y0, y1) = points.iter().fold(
        (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ),
        |(a, b, c, d), &(x, y)| (a.min(x), b.max(x), c.min(y), d.max(y)),
    );
    let (mx, my) = (0.3 * (x1 - x0), 0.3 * (y1 - y0));
    let (xa, xb) = (clamp_x(x0 - mx), clamp_x(x1 + mx));
    let (ya, yb) = (clamp_y(y0 - my), clamp_y(y1 + my));
    // At most about 40,000 samples of the box for its median.
    let step = (((xb - xa + 1) * (yb - ya + 1)) as f64 / 40_000.0)
        .sqrt()
        .ceil()
        .max(1.0) as usize;
    let mut region: Vec<f32> = (ya..=yb)
        .step_by(step)
        .flat_map(|y| (xa..=xb).step_by(step).map(move |x| (x, y)))
        .map(|(x, y)| px(x, y))
        .filter(|v| v.is_finite())
        .collect();
    if n == 0 || region.is_empty() {
        return false;
    }
    let mid = region.len() / 2;
    let (_, median, _) = region.select_nth_unstable_by(mid, f32::total_cmp);
    sum / n as f64 > *median as f64
}

pub fn invert(img: &GreyImage) -> GreyImage {
    GreyImage {
        pixels: img.pixels.iter().map(|v| 1.0 - v).collect(),
        ..img.clone()
    }
}

pub fn mirror(img: &GreyImage) -> GreyImage {
    let w = img.width as usize;
    let mut pixels = img.pixels.clone();
    for row in pixels.chunks_exact_mut(w.max(1)) {
        row.reverse();
    }
    GreyImage {
        pixels,
        ..img.clone()
    }
}

/// The image with its minimum shifted to 0 ([`crate::preprocess::shift_to_black`]).
pub fn shift_to_black(mut img: GreyImage) -> GreyImage {
    crate::preprocess::shift_to_black(&mut img.pixels);
    img
}

/// Rotates about the centre by `deg` (clockwise on screen), same size, bilinear;
/// what comes in from outside the frame is black.
pub fn rotate(img: &GreyImage, deg: f64) -> GreyImage {
    frame(
        img,
        &Framing {
            turn_deg: deg,
            ..Framing::WHOLE
        },
    )
}

/// `img` turned by `deg` about its centre onto a canvas just large enough to hold all
/// of it (black fill): nothing is cut off, as when a whole film is scanned askew.
pub fn rotate_expanded(img: &GreyImage, deg: f64) -> GreyImage {
    let th = deg.to_radians();
    let (c, s) = (th.cos().abs(), th.sin().abs());
    let (w, h) = (img.width as f64, img.height as f64);
    // Rounded to whole pixels; a hair of slack keeps exact quarter turns exact.
    let fit = |v: f64| (v - 1e-6).ceil().max(1.0);
    let (ow, oh) = (fit(w * c + h * s), fit(w * s + h * c));
    frame(
        img,
        &Framing {
            turn_deg: deg,
            center: (0.0, 0.0),
            half: (ow / w, oh / h),
        },
    )
}

/// The box `f` of `img` turned by `f.turn_deg` (clockwise on screen, about the centre)
/// at the image's own resolution: bilinear, black outside the source. The whole frame
/// turned is [`rotate`].
pub fn frame(img: &GreyImage, f: &Framing) -> GreyImage {
    let (w, h) = (img.width as usize, img.height as usize);
    let half = f.clamped_half();
    let ow = ((w as f64 * half.0).round() as usize).max(1);
    let oh = ((h as f64 * half.1).round() as usize).max(1);
    GreyImage {
        width: ow as u32,
        height: oh as u32,
        bit_depth: img.bit_depth,
        format: img.format,
        pixels: resample(&img.pixels, (w, h), (ow, oh), &f.affine(w as f64, h as f64)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-like region: a palm with four fingers (fills well under its box).
    fn draw_hand(px: &mut [f32], w: usize, x0: usize, y0: usize, s: usize) {
        let mut fill = |xa: usize, xb: usize, ya: usize, yb: usize| {
            for y in ya..yb {
                for x in xa..xb {
                    px[y * w + x] = 0.8;
                }
            }
        };
        fill(x0, x0 + 4 * s, y0 + 4 * s, y0 + 7 * s); // palm
        for f in 0..4 {
            let fx = x0 + f * s + s / 4;
            fill(fx, fx + s / 2, y0, y0 + 4 * s); // finger
        }
    }

    fn grey(w: usize, h: usize, px: Vec<f32>) -> GreyImage {
        GreyImage {
            width: w as u32,
            height: h as u32,
            bit_depth: 8,
            format: crate::decode::SourceFormat::Png,
            pixels: px,
        }
    }

    #[test]
    fn joints_on_bone_look_bright_and_inverted_ones_do_not() {
        let (w, h) = (120, 160);
        let mut px = vec![0.05f32; w * h];
        draw_hand(&mut px, w, 20, 10, 20);
        // Bone: brighter spots along the fingers and the palm, where joints are located.
        let joints: Vec<(f64, f64)> = (0..4)
            .flat_map(|f| [(25 + 20 * f, 30), (25 + 20 * f, 60), (25 + 20 * f, 100)])
            .map(|(x, y)| (x as f64 + 5.0, y as f64))
            .collect();
        for &(x, y) in &joints {
            for yy in y as usize - 2..=y as usize + 2 {
                for xx in x as usize - 2..=x as usize + 2 {
                    px[yy * w + xx] = 1.0;
                }
            }
        }
        let img = grey(w, h, px);
        assert!(joints_look_bright(&img, &joints));
        assert!(!joints_look_bright(&invert(&img), &joints));
        assert!(!joints_look_bright(&img, &[]));
    }

    #[test]
    fn two_hands_side_by_side_are_counted_and_one_is_not() {
        let (w, h) = (240, 160);
        let mut one = vec![0.05f32; w * h];
        draw_hand(&mut one, w, 80, 10, 20);
        // A film edge: a bright strip along the left side.
        for y in 0..h {
            for x in 0..12 {
                one[y * w + x] = 0.9;
            }
        }
        let c = count_hands(&grey(w, h, one.clone()));
        assert!(!c.multiple(), "{c:?}");
        assert!(check_single_hand(&grey(w, h, one)).is_ok());

        let mut two = vec![0.05f32; w * h];
        draw_hand(&mut two, w, 10, 10, 20);
        draw_hand(&mut two, w, 130, 12, 20);
        let c = count_hands(&grey(w, h, two.clone()));
        assert!(c.multiple(), "{c:?}");
        let e = check_single_hand(&grey(w, h, two)).unwrap_err();
        assert_eq!(e.code(), "multiple_hands");

        // Two solid bars side by side are not hands.
        let mut bars = vec![0.05f32; w * h];
        for y in 10..150 {
            for x in (20..90).chain(140..210) {
                bars[y * w + x] = 0.8;
            }
        }
        assert!(!count_hands(&grey(w, h, bars)).multiple());
    }

    /// The exposure statistics written plainly, for the fast version to match.
    fn exposure_plain(px: &[f32]) -> Exposure {
        let mut hist = [0u64; 256];
        for &v in px {
            let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
            hist[(v * 255.0).round() as usize] += 1;
        }
        let n = px.len() as u64;
        let sum: f64 = px.iter().map(|&v| v as f64).sum();
        Exposure {
            p01: hist_percentile(&hist, n, 0.01),
            p99: hist_percentile(&hist, n, 0.99),
            mean: sum / n as f64,
        }
    }

    #[test]
    fn fast_exposure_matches_the_plain_one() {
        // Odd sizes leave remainders after the 1024-, 16- and 4-pixel blocks; values
        // cover the rounding boundaries and out-of-range ones.
        for (w, h) in [(1usize, 1usize), (7, 3), (33, 31), (1000, 1351)] {
            let px: Vec<f32> = (0..w * h)
                .map(|i| match i % 11 {
                    0 => (i % 256) as f32 / 255.0,
                    1 => ((i % 255) as f32 + 0.5) / 255.0,
                    2 => -0.25,
                    3 => 1.5,
                    _ => ((i * 7919) % 10007) as f32 / 10007.0,
                })
                .collect();
            let img = GreyImage {
                width: w as u32,
                height: h as u32,
                bit_depth: 8,
                format: crate::decode::SourceFormat::Png,
                pixels: px.clone(),
            };
            let (a, b) = (exposure(&img), exposure_plain(&px));
            assert_eq!((a.p01, a.p99), (b.p01, b.p99), "{w}x{h}");
            assert!(
                (a.mean - b.mean).abs() < 1e-5,
                "{w}x{h}: {} {}",
                a.mean,
                b.mean
            );
        }
    }

    fn template() -> Vec<(f64, f64)> {
        let pts = [
            (0.0, -1.0),
            (0.5, -0.6),
            (1.0, 0.2),
            (-0.8, 0.1),
            (-0.2, 0.9),
        ];
        let n = pts.len() as f64;
        let (mx, my) = pts
            .iter()
            .fold((0.0, 0.0), |a, p| (a.0 + p.0 / n, a.1 + p.1 / n));
        let c: Vec<_> = pts.iter().map(|p| (p.0 - mx, p.1 - my)).collect();
        let s = c.iter().map(|p| p.0 * p.0 + p.1 * p.1).sum::<f64>().sqrt();
        c.iter().map(|p| (p.0 / s, p.1 / s)).collect()
    }

    #[test]
    fn exact_shapes_fit_and_reflections_and_rotations_are_found() {
        let t = template();
        // Scaled and shifted copy: perfect fit.
        let same: Vec<_> = t
            .iter()
            .map(|p| (300.0 + 80.0 * p.0, 200.0 + 80.0 * p.1))
            .collect();
        let f = fit_shape(&same, &t).unwrap();
        assert!(
            f.residual < 1e-12 && !f.reflected && f.rotation_deg.abs() < 1e-6,
            "{f:?}"
        );
        // Mirrored left-right: reflected, and upright once reflected (rotation 180
        // about the reflected axis is how a left-right mirror shows).
        let mirrored: Vec<_> = same.iter().map(|p| (1000.0 - p.0, p.1)).collect();
        let f = fit_shape(&mirrored, &t).unwrap();
        assert!(f.residual < 1e-12 && f.reflected, "{f:?}");
        // Turned clockwise on screen (y down) about the origin.
        let turn = |pts: &[(f64, f64)], deg: f64| -> Vec<(f64, f64)> {
            let (c, s) = (deg.to_radians().cos(), deg.to_radians().sin());
            pts.iter()
                .map(|p| (p.0 * c - p.1 * s, p.0 * s + p.1 * c))
                .collect()
        };
        // Rotated by 30 degrees on screen: undoing needs -30.
        let f = fit_shape(&turn(&t, 30.0), &t).unwrap();
        assert!(f.residual < 1e-12 && !f.reflected, "{f:?}");
        assert!((f.rotation_deg + 30.0).abs() < 1e-6, "{f:?}");
        assert!((f.upright_turn_deg() + 30.0).abs() < 1e-6, "{f:?}");
        // A right hand upright needs no turn; turned by ±30 (or 100) degrees it needs
        // the same turn back as a left hand would.
        let f = fit_shape(&mirrored, &t).unwrap();
        assert!(f.upright_turn_deg().abs() < 1e-6, "{f:?}");
        for deg in [30.0f64, -30.0, 100.0] {
            let f = fit_shape(&turn(&mirrored, deg), &t).unwrap();
            assert!(f.residual < 1e-12 && f.reflected, "{f:?}");
            assert!((f.upright_turn_deg() + deg).abs() < 1e-6, "{deg}: {f:?}");
        }
        // Collapsed points: the worst fit.
        let f = fit_shape(&[(5.0, 5.0); 5], &t).unwrap();
        assert_eq!(f.residual, 1.0);
    }

    #[test]
    fn a_small_hand_is_looked_for_in_its_box() {
        // A region of a quarter of the frame, grown by 15% of its side on each side.
        let f = hand_crop([0.4, 0.3, 0.7, 0.6]).unwrap();
        let b = f.view_box();
        assert!((b.center[0] - 0.55).abs() < 1e-9 && (b.center[1] - 0.45).abs() < 1e-9);
        assert!((b.half[0] - 0.195).abs() < 1e-9 && (b.half[1] - 0.195).abs() < 1e-9);
        // Clipped at the frame's edge.
        let b = hand_crop([0.0, 0.5, 0.4, 1.0]).unwrap().view_box();
        assert!((b.center[1] - 0.7125).abs() < 1e-9, "{b:?}");
        // A hand that fills the frame, or a speck, is not cropped to.
        assert_eq!(hand_crop([0.1, 0.05, 0.9, 0.95]), None);
        assert_eq!(hand_crop([0.5, 0.5, 0.52, 0.53]), None);
        // The count gives the box of its largest region.
        let (w, h) = (128usize, 128usize);
        let mut px = vec![0.0f32; w * h];
        draw_hand(&mut px, w, 40, 30, 10);
        let c = count_hands(&grey(w, h, px));
        let [x0, y0, x1, y1] = c.largest_box.unwrap();
        assert!(x0 <= 40.0 / 128.0 && x1 >= 80.0 / 128.0, "{c:?}");
        assert!(y0 <= 30.0 / 128.0 && y1 >= 100.0 / 128.0, "{c:?}");
        assert!(x0 > 0.25 && x1 < 0.7 && y0 > 0.18 && y1 < 0.85, "{c:?}");
    }

    #[test]
    fn the_strip_beside_a_hand_is_where_a_second_hand_would_be() {
        // Joints across x 120–280 of a 1000-wide frame: the strip right of the hand
        // (from 280 + 0.25·160 = 320) is the wider one.
        let pts = [(120.0, 100.0), (280.0, 300.0), (200.0, 500.0)];
        let f = beside_hand(&pts, 1000.0, 600.0).unwrap();
        let b = f.view_box();
        assert!(
            (b.center[0] - 0.66).abs() < 1e-9 && (b.half[0] - 0.34).abs() < 1e-9,
            "{b:?}"
        );
        assert_eq!((b.center[1], b.half[1], f.turn_deg), (0.5, 0.5, 0.0));
        // A hand filling the frame leaves no strip wide enough to hold another.
        let wide = [(150.0, 100.0), (850.0, 300.0)];
        assert_eq!(beside_hand(&wide, 1000.0, 600.0), None);
        assert_eq!(beside_hand(&[], 1000.0, 600.0), None);
    }

    fn img(w: u32, h: u32, f: impl Fn(u32, u32) -> f32) -> GreyImage {
        GreyImage {
            width: w,
            height: h,
            bit_depth: 8,
            format: crate::decode::SourceFormat::Png,
            pixels: (0..h)
                .flat_map(|y| (0..w).map(move |x| (x, y)))
                .map(|(x, y)| f(x, y))
                .collect(),
        }
    }

    #[test]
    fn blank_images_are_poorly_exposed() {
        assert!(check_exposure(&exposure(&img(64, 64, |_, _| 0.5))).is_err());
        assert!(check_exposure(&exposure(&img(64, 64, |x, _| x as f32 / 63.0))).is_ok());
    }

    /// Joints of a hand framed as `typical` frames it in a `w`×`h` film: a fixed
    /// pattern whose centroid and RMS spread are exactly the typical ones.
    fn typical_points(t: &HandFrame, w: f64, h: f64) -> Vec<(f64, f64)> {
        [(-1.0, -1.0), (1.0, -1.0), (-1.0, 1.0), (1.0, 1.0)]
            .iter()
            .map(|&(a, b)| ((t.cx + a * t.u) * w, (t.cy + b * t.v) * h))
            .collect()
    }

    #[test]
    fn a_typically_framed_hand_keeps_its_frame_and_a_small_one_is_boxed() {
        let t = HandFrame {
            cx: 0.48,
            cy: 0.43,
            u: 0.17,
            v: 0.19,
        };
        let f = Framing::restoring(
            &t,
            &typical_points(&t, 380.0, 512.0),
            380.0,
            512.0,
            0.0,
            0.0,
        )
        .unwrap();
        assert!(
            (f.half.0 - 1.0).abs() < 1e-9 && (f.half.1 - 1.0).abs() < 1e-9,
            "{f:?}"
        );
        assert!(f.center.0.abs() < 1e-9 && f.center.1.abs() < 1e-9, "{f:?}");
        // The same film in the middle of a canvas twice as large each way: the box is
        // the original film.
        let pts: Vec<(f64, f64)> = typical_points(&t, 380.0, 512.0)
            .iter()
            .map(|&(x, y)| (x + 190.0, y + 256.0))
            .collect();
        let f = Framing::restoring(&t, &pts, 760.0, 1024.0, 0.0, 0.0).unwrap();
        assert!(
            (f.half.0 - 0.5).abs() < 1e-9 && (f.half.1 - 0.5).abs() < 1e-9,
            "{f:?}"
        );
        assert!(f.center.0.abs() < 1e-9 && f.center.1.abs() < 1e-9, "{f:?}");
        // Cut out, it is the film again.
        let film = img(38, 52, |x, y| ((x * 7 + y * 3) % 11) as f32 / 10.0);
        let canvas = img(76, 104, |x, y| {
            if (19..57).contains(&x) && (26..78).contains(&y) {
                film.pixels[(y - 26) as usize * 38 + (x - 19) as usize]
            } else {
                0.0
            }
        });
        let cut = frame(&canvas, &f);
        assert_eq!((cut.width, cut.height), (38, 52));
        let worst = cut
            .pixels
            .iter()
            .zip(&film.pixels)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "{worst}");
        // Points measured on the film turned by 30 degrees, box wanted in the frame
        // turned by 30: the same box as with no turn at all.
        let th = 30f64.to_radians();
        let turned: Vec<(f64, f64)> = typical_points(&t, 380.0, 512.0)
            .iter()
            .map(|&(x, y)| {
                let (dx, dy) = (x - 190.0, y - 256.0);
                (
                    190.0 + th.cos() * dx - th.sin() * dy,
                    256.0 + th.sin() * dx + th.cos() * dy,
                )
            })
            .collect();
        let g = Framing::restoring(&t, &turned, 380.0, 512.0, 30.0, 0.0).unwrap();
        assert!(
            (g.half.0 - 1.0).abs() < 1e-9 && g.center.0.abs() < 1e-9,
            "{g:?}"
        );
        // No spread, no box.
        assert!(Framing::restoring(&t, &[(5.0, 5.0); 4], 380.0, 512.0, 0.0, 0.0).is_none());
    }

    #[test]
    fn an_expanded_turn_keeps_every_pixel() {
        // A 40 x 20 bright frame on black: turned by 90 degrees onto 20 x 40, and by
        // 30 degrees onto the bounding box of the turned rectangle, it keeps its mass.
        let im = img(40, 20, |_, _| 1.0);
        let q = rotate_expanded(&im, 90.0);
        assert_eq!((q.width, q.height), (20, 40));
        assert!(q.pixels.iter().all(|&v| (v - 1.0).abs() < 1e-5));
        let t = rotate_expanded(&im, 30.0);
        let th = 30f64.to_radians();
        let ew = (40.0 * th.cos() + 20.0 * th.sin()).ceil() as u32;
        let eh = (40.0 * th.sin() + 20.0 * th.cos()).ceil() as u32;
        assert_eq!((t.width, t.height), (ew, eh));
        let mass: f32 = t.pixels.iter().sum();
        assert!((mass - 800.0).abs() < 800.0 * 0.02, "{mass}");
        // The same-frame turn cuts corners off.
        let cut: f32 = rotate(&im, 30.0).pixels.iter().sum();
        assert!(cut < 800.0 * 0.9, "{cut}");
    }

    #[test]
    fn rotation_and_the_geometry_round_trip() {
        // A bright dot at (30, 10) of a 64 x 48 image.
        let im = img(64, 48, |x, y| if (x, y) == (30, 10) { 1.0 } else { 0.0 });
        let r = rotate(&im, 90.0);
        let (i, _) =
            r.pixels
                .iter()
                .enumerate()
                .fold((0, 0.0f32), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
        let (x, y) = ((i % 64) as f64 + 0.5, (i / 64) as f64 + 0.5);
        let g = Geometry {
            width: 64.0,
            height: 48.0,
            corrections: Corrections {
                rotation_deg: 90.0,
                ..Default::default()
            },
        };
        let (ux, uy) = g.to_upload(x, y);
        assert!(
            (ux - 30.5).abs() < 1.01 && (uy - 10.5).abs() < 1.01,
            "({ux}, {uy})"
        );
        // Mirror, then map back.
        let m = mirror(&im);
        assert_eq!(m.pixels[10 * 64 + 33], 1.0);
        let g = Geometry {
            width: 64.0,
            height: 48.0,
            corrections: Corrections {
                mirrored: true,
                ..Default::default()
            },
        };
        assert_eq!(g.to_upload(33.5, 10.5), (30.5, 10.5));
        assert_eq!(invert(&im).pixels[0], 1.0);
    }
}
