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

/// Produces the `[1, 1, H, W]` float tensor for one image.
pub fn preprocess(img: &GreyImage, spec: &PreprocessSpec) -> Result<Array4<f32>, AnalysisError> {
    let n = img.width as usize * img.height as usize;
    if img.pixels.len() != n {
        return Err(AnalysisError::CorruptImage(
            "pixel buffer does not match the image size".into(),
        ));
    }
    let resized = match spec.resize {
        Resize::Squash => squash(img, spec.width, spec.height)?,
    };
    let mut data = resized;
    match spec.normalization {
        Normalization::PerImageZscore => zscore(&mut data),
    }
    Array4::from_shape_vec((1, 1, spec.height as usize, spec.width as usize), data)
        .map_err(|e| AnalysisError::Inference(format!("tensor shape: {e}")))
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
