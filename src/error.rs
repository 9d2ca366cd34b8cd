//! Errors of the analysis pipeline, with the stable machine codes the HTTP face
//! turns into `application/problem+json`.

use thiserror::Error;

/// Why an analysis could not be made. Every variant maps to one stable `code`
/// and one HTTP status; the message is safe to show (no pixels, no names).
#[derive(Debug, Error)]
pub enum AnalysisError {
    #[error("{0}")]
    UnsupportedFormat(String),
    #[error("{0}")]
    CorruptImage(String),
    #[error("{0}")]
    ImageTooLarge(String),
    #[error("{0}")]
    ImageTooSmall(String),
    #[error("{field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("{0}")]
    MissingField(String),
    /// Quality control: the image does not show a hand the model can read.
    #[error("{0}")]
    NotAHand(String),
    /// Quality control: two or more hands side by side; one hand per image.
    #[error("{0}")]
    MultipleHands(String),
    /// Quality control: blank, unexposed or flat image.
    #[error("{0}")]
    PoorExposure(String),
    #[error("inference failed: {0}")]
    Inference(String),
}

impl AnalysisError {
    /// Stable machine-readable code (part of the API contract).
    pub fn code(&self) -> &'static str {
        match self {
            AnalysisError::UnsupportedFormat(_) => "unsupported_format",
            AnalysisError::CorruptImage(_) => "corrupt_image",
            AnalysisError::ImageTooLarge(_) => "image_too_large",
            AnalysisError::ImageTooSmall(_) => "resolution_too_low",
            AnalysisError::InvalidField { .. } => "invalid_field",
            AnalysisError::MissingField(_) => "missing_field",
            AnalysisError::NotAHand(_) => "not_a_hand",
            AnalysisError::MultipleHands(_) => "multiple_hands",
            AnalysisError::PoorExposure(_) => "poor_exposure",
            AnalysisError::Inference(_) => "inference_failed",
        }
    }

    /// HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            AnalysisError::UnsupportedFormat(_) => 415,
            AnalysisError::CorruptImage(_) => 422,
            AnalysisError::ImageTooLarge(_) => 413,
            AnalysisError::ImageTooSmall(_) => 422,
            AnalysisError::NotAHand(_)
            | AnalysisError::MultipleHands(_)
            | AnalysisError::PoorExposure(_) => 422,
            AnalysisError::InvalidField { .. } | AnalysisError::MissingField(_) => 400,
            AnalysisError::Inference(_) => 500,
        }
    }

    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        AnalysisError::InvalidField {
            field,
            reason: reason.into(),
        }
    }
}

/// Why a model could not be loaded. The service refuses to start on any of these.
#[derive(Debug, Error)]
pub enum ModelError {
    #[error("cannot read model file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("model {origin} is not a valid ONNX file: {reason}")]
    Parse { origin: String, reason: String },
    #[error("model {origin} breaks the boneage model contract: {problems}")]
    Contract { origin: String, problems: String },
    #[error("model {origin} could not be prepared for inference: {reason}")]
    Prepare { origin: String, reason: String },
}
