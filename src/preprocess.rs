//! Stage 2: grey image → model input tensor, as the model's contract says.

use tract_onnx::prelude::tract_ndarray::Array4;

use crate::decode::GreyImage;
use crate::error::AnalysisError;

/// How the whole image is brought to the model's input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resize {
    /// Resize width and height independently to the input size (aspect not kept),
    /// the way the RSNA `sq100` training images were made.
    Squash,
}

/// Intensity normalisation applied after resizing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalization {
    /// Subtract the image's mean, divide by its (population) standard deviation.
    PerImageZscore,
}

/// What the model expects as input (read from its contract).
#[derive(Debug, Clone)]
pub struct PreprocessSpec {
    pub height: u32,
    pub width: u32,
    pub resize: Resize,
    pub normalization: Normalization,
}

/// One test-time view of the model input: the resized image turned about its centre,
/// scaled and optionally mirrored, before normalisation. The model's bone age is the
/// mean over its declared views (`boneage.tta`, see `model.rs`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct View {
    /// Degrees, counter-clockwise on screen (PyTorch `affine_grid` convention).
    pub rotation_deg: f32,
    /// Greater than 1 enlarges the content.
    pub scale: f32,
    pub mirror: bool,
}

impl View {
    pub const IDENTITY: View = View {
        rotation_deg: 0.0,
        scale: 1.0,
        mirror: false,
    };

    pub fn is_identity(&self) -> bool {
        *self == Self::IDENTITY
    }
}

/// Produces the `[1, 1, H, W]` float tensor for one image.
pub fn preprocess(img: &GreyImage, spec: &PreprocessSpec) -> Result<Array4<f32>, AnalysisError> {
    let resized = resize(img, spec)?;
    to_tensor(resized, spec)
}

/// The input tensors of `views` of one image (resized once, its minimum shifted to 0,
/// then each view warped and normalised), in the order given.
pub fn preprocess_views(
    img: &GreyImage,
    spec: &PreprocessSpec,
    views: &[View],
) -> Result<Vec<Array4<f32>>, AnalysisError> {
    let mut resized = resize(img, spec)?;
    // What a view brings in from outside the frame is the image's own black (its
    // minimum), whatever grey level that is in this file: shifted to 0 here, which the
    // normalisation undoes for the pixels that were there.
    shift_to_black(&mut resized);
    let (w, h) = (spec.width as usize, spec.height as usize);
    views
        .iter()
        .map(|v| to_tensor(warp(&resized, w, h, *v), spec))
        .collect()
}

/// The image resized (aspect kept, same filter as the model input) to fit `factor`
/// times the model input in each direction.
pub fn scale_to(
    img: &GreyImage,
    spec: &PreprocessSpec,
    factor: u32,
) -> Result<GreyImage, AnalysisError> {
    let (mw, mh) = (spec.width * factor, spec.height * factor);
    let k = (mw as f64 / img.width.max(1) as f64).min(mh as f64 / img.height.max(1) as f64);
    let w = ((img.width as f64 * k).round() as u32).clamp(1, mw);
    let h = ((img.height as f64 * k).round() as u32).clamp(1, mh);
    Ok(GreyImage {
        width: w,
        height: h,
        pixels: squash(img, w, h)?,
        ..img.clone()
    })
}

/// Shifts the values so that their minimum is 0: what a view or a turn brings in from
/// outside the frame (0) is then the image's own black, whatever its grey scale.
pub fn shift_to_black(px: &mut [f32]) {
    let black = px.iter().copied().fold(f32::INFINITY, f32::min);
    if black.is_finite() {
        for v in px {
            *v -= black;
        }
    }
}

fn resize(img: &GreyImage, spec: &PreprocessSpec) -> Result<Vec<f32>, AnalysisError> {
    let n = img.width as usize * img.height as usize;
    if img.pixels.len() != n {
        return Err(AnalysisError::CorruptImage(
            "pixel buffer does not match the image size".into(),
        ));
    }
    match spec.resize {
        Resize::Squash => squash(img, spec.width, spec.height),
    }
}

fn to_tensor(mut data: Vec<f32>, spec: &PreprocessSpec) -> Result<Array4<f32>, AnalysisError> {
    match spec.normalization {
        Normalization::PerImageZscore => zscore(&mut data),
    }
    Array4::from_shape_vec((1, 1, spec.height as usize, spec.width as usize), data)
        .map_err(|e| AnalysisError::Inference(format!("tensor shape: {e}")))
}

/// An affine map from the points of an output image to those of its source, both in
/// normalised coordinates: [-1, 1] across each image's own width and height, pixel
/// centres at (2i + 1)/n − 1 (PyTorch's `affine_grid` with `align_corners = false`).
/// A source point is `m · p + t` for the output point `p`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine {
    pub m: [[f64; 2]; 2],
    pub t: (f64, f64),
}

impl Affine {
    pub const IDENTITY: Affine = Affine {
        m: [[1.0, 0.0], [0.0, 1.0]],
        t: (0.0, 0.0),
    };

    /// The source point of the output point `(x, y)`.
    pub fn apply(&self, (x, y): (f64, f64)) -> (f64, f64) {
        (
            self.m[0][0] * x + self.m[0][1] * y + self.t.0,
            self.m[1][0] * x + self.m[1][1] * y + self.t.1,
        )
    }

    /// `self` after `inner`: an output point is taken through `inner`, then `self`.
    pub fn after(&self, inner: &Affine) -> Affine {
        let (a, b) = (self.m, inner.m);
        let mul = |i: usize, j: usize| a[i][0] * b[0][j] + a[i][1] * b[1][j];
        Affine {
            m: [[mul(0, 0), mul(0, 1)], [mul(1, 0), mul(1, 1)]],
            t: self.apply(inner.t),
        }
    }
}

impl View {
    /// The view as the map from output to source points in the input's normalised
    /// coordinates: (1/scale)·R(θ)·F, F the mirror.
    pub fn affine(&self) -> Affine {
        let th = (self.rotation_deg as f64).to_radians();
        let (c, s) = (th.cos() / self.scale as f64, th.sin() / self.scale as f64);
        let f = if self.mirror { -1.0 } else { 1.0 };
        Affine {
            m: [[f * c, -s], [f * s, c]],
            t: (0.0, 0.0),
        }
    }
}

/// `src` (`w`×`h`, row-major) seen through `view`, sampled exactly as the training
/// script's PyTorch `affine_grid` + `grid_sample` (bilinear, zeros outside,
/// `align_corners = false`): output point (x, y) in [-1, 1] reads the source at
/// (f·c·x − s·y, f·s·x + c·y) with c = cos(θ)/scale, s = sin(θ)/scale and f = −1
/// when mirrored.
pub fn warp(src: &[f32], w: usize, h: usize, view: View) -> Vec<f32> {
    if view.is_identity() {
        return src.to_vec();
    }
    resample(src, (w, h), (w, h), &view.affine())
}

/// The `out` (width, height) image whose every pixel reads `src` (`size`, row-major)
/// at the point `map` gives it (see [`Affine`]): bilinear, zeros outside the source.
/// The one sampler of views, turns and boxes.
pub fn resample(src: &[f32], size: (usize, usize), out: (usize, usize), map: &Affine) -> Vec<f32> {
    let ((w, h), (ow, oh)) = (size, out);
    let (wf, hf) = (w as f64, h as f64);
    let at = |x: i64, y: i64| -> f64 {
        if x < 0 || y < 0 || x >= w as i64 || y >= h as i64 {
            0.0
        } else {
            src[y as usize * w + x as usize] as f64
        }
    };
    let mut pixels = Vec::with_capacity(ow * oh);
    for i in 0..oh {
        let yn = (2 * i + 1) as f64 / oh as f64 - 1.0;
        for j in 0..ow {
            let xn = (2 * j + 1) as f64 / ow as f64 - 1.0;
            let (xs, ys) = map.apply((xn, yn));
            let px = ((xs + 1.0) * wf - 1.0) / 2.0;
            let py = ((ys + 1.0) * hf - 1.0) / 2.0;
            let (x0, y0) = (px.floor(), py.floor());
            let (ax, ay) = (px - x0, py - y0);
            let (x0, y0) = (x0 as i64, y0 as i64);
            let v = at(x0, y0) * (1.0 - ax) * (1.0 - ay)
                + at(x0 + 1, y0) * ax * (1.0 - ay)
                + at(x0, y0 + 1) * (1.0 - ax) * ay
                + at(x0 + 1, y0 + 1) * ax * ay;
            pixels.push(v as f32);
        }
    }
    pixels
}

/// The views of the part of an image that `frame` maps the views' frame to (a box of
/// the image turned in its own geometry, [`crate::quality::Framing::affine`]), each
/// sampled once from the resized input with `frame` composed after the view.
/// Otherwise as [`preprocess_views`].
pub fn preprocess_framed_views(
    img: &GreyImage,
    spec: &PreprocessSpec,
    views: &[View],
    frame: &Affine,
) -> Result<Vec<Array4<f32>>, AnalysisError> {
    let mut resized = resize(img, spec)?;
    shift_to_black(&mut resized);
    let size = (spec.width as usize, spec.height as usize);
    views
        .iter()
        .map(|v| {
            to_tensor(
                resample(&resized, size, size, &frame.after(&v.affine())),
                spec,
            )
        })
        .collect()
}

fn squash(img: &GreyImage, width: u32, height: u32) -> Result<Vec<f32>, AnalysisError> {
    use fast_image_resize as fr;
    if img.width == width && img.height == height {
        return Ok(img.pixels.clone());
    }
    let corrupt =
        || AnalysisError::CorruptImage("pixel buffer does not match the image size".into());
    let src = fr::images::ImageRef::new(
        img.width,
        img.height,
        bytemuck::cast_slice(&img.pixels),
        fr::PixelType::F32,
    )
    .map_err(|_| corrupt())?;
    let mut dst = fr::images::Image::new(width, height, fr::PixelType::F32);
    // The convolution "bilinear" filter: a triangle whose support widens with the
    // scale factor, i.e. an antialiased downscale like PIL's BILINEAR used at
    // training time (tests/parity.rs holds the two together).
    let options =
        fr::ResizeOptions::new().resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Bilinear));
    fr::Resizer::new()
        .resize(&src, &mut dst, &options)
        .map_err(|e| AnalysisError::Inference(format!("resize: {e}")))?;
    Ok(dst
        .buffer()
        .chunks_exact(4)
        .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// In-place per-image standardisation (population SD, floor 1e-6).
pub fn zscore(data: &mut [f32]) {
    if data.is_empty() {
        return;
    }
    let n = data.len() as f64;
    let mean = data.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = data.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    let std = var.sqrt().max(1e-6);
    for v in data.iter_mut() {
        *v = ((*v as f64 - mean) / std) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::SourceFormat;

    fn spec() -> PreprocessSpec {
        PreprocessSpec {
            height: 8,
            width: 8,
            resize: Resize::Squash,
            normalization: Normalization::PerImageZscore,
        }
    }

    #[test]
    fn output_is_standardised_and_shaped() {
        let pixels: Vec<f32> = (0..40 * 30).map(|i| (i % 97) as f32 / 97.0).collect();
        let img = GreyImage {
            width: 40,
            height: 30,
            bit_depth: 8,
            format: SourceFormat::Png,
            pixels,
        };
        let t = preprocess(&img, &spec()).unwrap();
        assert_eq!(t.shape(), &[1, 1, 8, 8]);
        let mean: f32 = t.iter().sum::<f32>() / 64.0;
        let var: f32 = t.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 64.0;
        assert!(mean.abs() < 1e-4, "mean {mean}");
        assert!((var - 1.0).abs() < 1e-3, "var {var}");
    }

    #[test]
    fn framed_views_of_the_whole_frame_are_the_plain_views_and_a_box_zooms() {
        let img = GreyImage {
            width: 40,
            height: 30,
            bit_depth: 8,
            format: SourceFormat::Png,
            pixels: (0..40 * 30).map(|i| ((i * 7) % 31) as f32 / 31.0).collect(),
        };
        let spec = spec();
        let views = [
            View::IDENTITY,
            View {
                rotation_deg: 8.0,
                scale: 1.06,
                mirror: true,
            },
        ];
        let plain = preprocess_views(&img, &spec, &views).unwrap();
        let framed = preprocess_framed_views(&img, &spec, &views, &Affine::IDENTITY).unwrap();
        for (a, b) in plain.iter().zip(&framed) {
            assert!(a.iter().zip(b.iter()).all(|(x, y)| (x - y).abs() < 1e-5));
        }
        // A box of half the frame about its centre is the view scaled by 2.
        let half = Affine {
            m: [[0.5, 0.0], [0.0, 0.5]],
            t: (0.0, 0.0),
        };
        let zoom = View {
            scale: 2.0,
            ..View::IDENTITY
        };
        let a = preprocess_views(&img, &spec, &[zoom]).unwrap();
        let b = preprocess_framed_views(&img, &spec, &[View::IDENTITY], &half).unwrap();
        assert!(a[0]
            .iter()
            .zip(b[0].iter())
            .all(|(x, y)| (x - y).abs() < 1e-5));
    }

    #[test]
    fn flat_image_does_not_divide_by_zero() {
        let img = GreyImage {
            width: 8,
            height: 8,
            bit_depth: 8,
            format: SourceFormat::Png,
            pixels: vec![0.5; 64],
        };
        let t = preprocess(&img, &spec()).unwrap();
        assert!(t.iter().all(|v| v.is_finite() && *v == 0.0));
    }

    #[test]
    fn views_warp_as_affine_grid_does() {
        // 4×4 ramp: mirroring reverses rows exactly; a quarter turn maps columns to
        // rows; identity is untouched; scale 2 samples between the central pixels.
        // Expected values from PyTorch 2.5.1 (affine_grid + grid_sample, bilinear, zeros,
        // align_corners=False) on a 5×4 image, rounded to 5 decimals.
        let src: Vec<f32> = (0..20).map(|i| ((i * 7) % 11) as f32 / 10.0).collect();
        assert_eq!(warp(&src, 5, 4, View::IDENTITY), src);
        let cases: [(f32, f32, bool, [f32; 20]); 4] = [
            (
                90.0,
                1.0,
                false,
                [
                    0.585, 0.69375, 0.8125, 0.68375, 0.135, 0.66375, 0.39625, 0.35, 0.51, 0.585,
                    0.495, 0.69, 0.50625, 0.3225, 0.41625, 0.07875, 0.2275, 0.31875, 0.41, 0.495,
                ],
            ),
            (
                0.0,
                2.0,
                false,
                [
                    0.85, 0.65, 0.45, 0.3875, 0.325, 0.675, 0.6125, 0.55, 0.35, 0.15, 0.225,
                    0.4375, 0.65, 0.45, 0.25, 0.05, 0.4, 0.75, 0.55, 0.35,
                ],
            ),
            (
                17.0,
                1.1,
                true,
                [
                    0.55253, 0.65046, 0.58062, 0.44092, 0.4098, 0.83152, 0.18043, 0.44662, 0.75184,
                    0.42718, 0.5461, 0.44816, 0.58259, 0.2535, 0.31517, 0.31124, 0.73906, 0.51196,
                    0.26538, 0.36296,
                ],
            ),
            (
                -30.0,
                0.9,
                false,
                [
                    0.0064, 0.09982, 0.68216, 0.2031, 0.15398, 0.27788, 0.4241, 0.63545, 0.45679,
                    0.73464, 0.40491, 0.35459, 0.55734, 0.42397, 0.59606, 0.0473, 0.53151, 0.4746,
                    0.5488, 0.03217,
                ],
            ),
        ];
        for (rotation_deg, scale, mirror, want) in cases {
            let view = View {
                rotation_deg,
                scale,
                mirror,
            };
            let got = warp(&src, 5, 4, view);
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 2e-5, "{view:?}: {got:?}");
            }
        }
        let v = |rotation_deg, scale, mirror| View {
            rotation_deg,
            scale,
            mirror,
        };
        let t = preprocess_views(
            &GreyImage {
                width: 8,
                height: 8,
                bit_depth: 8,
                format: SourceFormat::Png,
                pixels: (0..64).map(|i| i as f32 / 64.0).collect(),
            },
            &spec(),
            &[View::IDENTITY, v(10.0, 1.05, true)],
        )
        .unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].shape(), &[1, 1, 8, 8]);
    }

    #[test]
    fn mismatched_buffer_is_an_error() {
        let img = GreyImage {
            width: 8,
            height: 8,
            bit_depth: 8,
            format: SourceFormat::Png,
            pixels: vec![0.5; 10],
        };
        assert!(preprocess(&img, &spec()).is_err());
    }
}
