//! Bone-age assessment from a hand radiograph.
//!
//! The library follows the data: [`decode`] (bytes → grey image) → [`preprocess`]
//! (→ model tensor) → [`model`] (tract: load, validate contract, infer) →
//! [`scoring`] (TW3 tables) → [`growth`] (reference SDs) → [`report`] (JSON).
//! [`analysis`] chains the stages; the HTTP server ([`http`]) and the CLI are thin
//! faces over [`analysis::Analyzer`].

pub mod analysis;
pub mod bench;
pub mod decode;
pub mod dicom;
pub mod error;
pub mod eval;
pub mod growth;
pub mod http;
pub mod model;
pub mod pool;
pub mod preprocess;
pub mod quality;
pub mod render;
pub mod report;
pub mod rescore;
pub mod scoring;
pub mod store;
pub mod synth;

use serde::{Deserialize, Serialize};

/// The child's sex, as the model and the reference tables need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Sex {
    Male,
    Female,
}

impl Sex {
    /// Parses `male`/`female` (also `m`/`f`, `M`/`F`, as DICOM writes them).
    pub fn parse(s: &str) -> Option<Sex> {
        match s.trim().to_ascii_lowercase().as_str() {
            "male" | "m" | "boy" => Some(Sex::Male),
            "female" | "f" | "girl" => Some(Sex::Female),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Sex::Male => "male",
            Sex::Female => "female",
        }
    }
}
