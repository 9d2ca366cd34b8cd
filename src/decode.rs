//! Stage 1: bytes → grey image with metadata (PNG, JPEG, TIFF here; DICOM in
//! [`crate::dicom`]).
//!
//! Dimensions are read from the header and checked against [`DecodeLimits`]
//! before any pixel buffer is allocated, so a decompression bomb costs nothing.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, ImageReader};
use serde::Serialize;

use crate::dicom::{self, DicomHeader};
use crate::error::AnalysisError;

/// Bounds on what the decoder accepts. The defaults bound one decode to about
/// `max_pixels * 6` bytes (16-bit decode buffer + the f32 working image).
#[derive(Debug, Clone)]
pub struct DecodeLimits {
    pub max_width: u32,
    pub max_height: u32,
    pub max_pixels: u64,
    /// Below this on the short side there is too little detail for a bone age.
    pub min_side: u32,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_width: 12_000,
            max_height: 12_000,
            max_pixels: 40_000_000,
            min_side: 64,
        }
    }
}

/// The container format of the uploaded file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    Png,
    Jpeg,
    Tiff,
    Dicom,
}

/// A decoded upload: the image, and the DICOM header when it was a DICOM file.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub image: GreyImage,
    pub dicom: Option<DicomHeader>,
}

/// Decodes any supported upload: DICOM Part 10, PNG, JPEG or TIFF.
pub fn decode_upload(bytes: &[u8], limits: &DecodeLimits) -> Result<Decoded, AnalysisError> {
    if dicom::is_dicom(bytes) {
        let (image, header) = dicom::decode_dicom(bytes, limits)?;
        return Ok(Decoded {
            image,
            dicom: Some(header),
        });
    }
    Ok(Decoded {
        image: decode(bytes, limits)?,
        dicom: None,
    })
}

/// A decoded radiograph: one grey channel, intensities in [0, 1], row-major.
/// Bright = dense (bone), as in a MONOCHROME2 radiograph.
#[derive(Debug, Clone)]
pub struct GreyImage {
    pub width: u32,
    pub height: u32,
    /// Bits per sample of the source (8 or 16).
    pub bit_depth: u8,
    pub format: SourceFormat,
    pub pixels: Vec<f32>,
}

/// Decodes PNG, TIFF (8/16-bit grey or colour) and JPEG into a [`GreyImage`]
/// (DICOM goes through [`decode_upload`]).
pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<GreyImage, AnalysisError> {
    if bytes.is_empty() {
        return Err(AnalysisError::MissingField(
            "the image is empty (0 bytes)".into(),
        ));
    }
    if dicom::is_dicom(bytes) {
        return dicom::decode_dicom(bytes, limits).map(|(img, _)| img);
    }
    let (format, image_format) = match image::guess_format(bytes) {
        Ok(ImageFormat::Png) => (SourceFormat::Png, ImageFormat::Png),
        Ok(ImageFormat::Jpeg) => (SourceFormat::Jpeg, ImageFormat::Jpeg),
        Ok(ImageFormat::Tiff) => (SourceFormat::Tiff, ImageFormat::Tiff),
        Ok(other) => {
            return Err(AnalysisError::UnsupportedFormat(format!(
                "{other:?} images are not supported; send DICOM, PNG, TIFF or JPEG"
            )))
        }
        Err(_) => {
            return Err(AnalysisError::UnsupportedFormat(
                "the file is not a recognised image (DICOM, PNG, TIFF or JPEG expected)".into(),
            ))
        }
    };
    let (width, height) = ImageReader::with_format(Cursor::new(bytes), image_format)
        .into_dimensions()
        .map_err(|e| AnalysisError::CorruptImage(format!("cannot read the image header: {e}")))?;
    check_dimensions(width, height, limits)?;

    let mut reader = ImageReader::with_format(Cursor::new(bytes), image_format);
    let mut lim = image::Limits::default();
    lim.max_image_width = Some(limits.max_width);
    lim.max_image_height = Some(limits.max_height);
    // Largest legitimate buffer: 4 channels x 16 bits at the pixel limit.
    lim.max_alloc = Some(limits.max_pixels.saturating_mul(8));
    reader.limits(lim);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(l) => {
            AnalysisError::ImageTooLarge(format!("image exceeds limits: {l}"))
        }
        other => AnalysisError::CorruptImage(format!("cannot decode the image: {other}")),
    })?;
    if img.width() != width || img.height() != height {
        return Err(AnalysisError::CorruptImage(
            "decoded size differs from the header".into(),
        ));
    }
    Ok(to_grey(img, format))
}

/// Checks header dimensions before allocation.
pub fn check_dimensions(
    width: u32,
    height: u32,
    limits: &DecodeLimits,
) -> Result<(), AnalysisError> {
    if width == 0 || height == 0 {
        return Err(AnalysisError::CorruptImage(format!(
            "the image has no pixels ({width}x{height})"
        )));
    }
    if width > limits.max_width
        || height > limits.max_height
        || (width as u64) * (height as u64) > limits.max_pixels
    {
        return Err(AnalysisError::ImageTooLarge(format!(
            "{width}x{height} pixels exceeds the limit of {}x{} and {} megapixels",
            limits.max_width,
            limits.max_height,
            limits.max_pixels / 1_000_000
        )));
    }
    if width.min(height) < limits.min_side {
        return Err(AnalysisError::ImageTooSmall(format!(
            "{width}x{height} pixels is too small to assess bone age (short side must be at least {} pixels)",
            limits.min_side
        )));
    }
    Ok(())
}

fn to_grey(img: DynamicImage, format: SourceFormat) -> GreyImage {
    let (width, height) = (img.width(), img.height());
    let sixteen = matches!(
        img.color(),
        image::ColorType::L16
            | image::ColorType::La16
            | image::ColorType::Rgb16
            | image::ColorType::Rgba16
    );
    let (bit_depth, pixels) = if sixteen {
        let l = match img {
            DynamicImage::ImageLuma16(l) => l,
            other => other.to_luma16(),
        };
        (
            16,
            l.into_raw()
                .into_iter()
                .map(|v| v as f32 / 65535.0)
                .collect(),
        )
    } else {
        let l = match img {
            DynamicImage::ImageLuma8(l) => l,
            other => other.to_luma8(),
        };
        (
            8,
            l.into_raw().into_iter().map(|v| v as f32 / 255.0).collect(),
        )
    };
    GreyImage {
        width,
        height,
        bit_depth,
        format,
        pixels,
    }
}
