//! Stage 3: the ONNX model — load, validate its contract, infer — behind the
//! [`Backend`] trait. [`TractModel`] is the CPU backend (tract, one optimised plan
//! with concrete shapes, shared by all workers).
//!
//! ## Model contract, version 1
//! `metadata_props` (all required):
//! - `boneage.contract_version` = `1`
//! - `boneage.model_name`, `boneage.model_version`
//! - `boneage.input_height`, `boneage.input_width` (static input size)
//! - `boneage.input_resize` = `squash`
//! - `boneage.normalization` = `per_image_zscore`
//! - `boneage.outputs`: comma list containing `bone_age_months`, `bone_age_log_var`, `stage_probs`
//! - `boneage.uncertainty` = `log_var` (natural log of the variance in months²)
//! - `boneage.bones` = `radius,ulna,mc1,mc3,mc5,pp1,pp3,pp5,mp3,mp5,dp1,dp3,dp5`
//! - `boneage.stages` = `A,B,C,D,E,F,G,H,I`
//! - `boneage.stage_basis`: how the per-bone stage outputs were obtained, one
//!   [`StageBasis`] for all bones or 13 comma-separated ones in bone order (reported per joint)
//!
//! Inputs `image: f32[N,1,H,W]`, `sex: f32[N,1]` (1 = male, 0 = female). Outputs, by
//! name: `bone_age_months: f32[N,1]`, `bone_age_log_var: f32[N,1]`,
//! `stage_probs: f32[N,13,9]` (probabilities over stages A–I per bone).
//!
//! Optional joint output: when `boneage.outputs` also lists `joint_points`, the graph
//! has `joint_points: f32[N,J,2]` (each joint's centre as x, y fractions of the input
//! width and height) and the metadata names them:
//! - `boneage.joints`: J comma-separated joint names
//! - `boneage.bone_joints`: 13 `bone:joint` pairs in bone order, the joint region that
//!   holds each bone's epiphysis (`bone:` with no joint when there is none)
//! - `boneage.joint_region_px` (optional): receptive field of the regional stage features
//!
//! A bone whose stage basis is `joint_region*` must have a joint region.
//!
//! Optional test-time views, both keys or neither:
//! - `boneage.tta`: `rotation_deg,scale,mirror` triples separated by `;` (mirror 0 or
//!   1; at most [`MAX_VIEWS`], one of them the identity `0,1,0`): the bone age is the
//!   mean of the model's `bone_age_months` over these views of the input
//!   ([`crate::preprocess::warp`]), its log-variance the mean of `bone_age_log_var`
//! - `boneage.tta_log_var_shift`: added to that mean log-variance (calibrated for the
//!   averaged prediction, whose errors are smaller than one view's)
//!
//! Optional quality-control calibration (with joints), the first three keys all or none:
//! - `boneage.joint_template`: the template hand, one centred `x,y` pair per joint
//!   separated by `;`
//! - `boneage.qc_max_shape_residual`, `boneage.qc_max_sd_months`: the thresholds
//! - `boneage.hand_frame` (optional): `cx,cy,u,v`, how the typical training film frames
//!   its hand ([`crate::quality::HandFrame`]); the views that give the bone age are then
//!   the box of the film that frames this hand so ([`crate::quality::Framing`])

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tract_onnx::prelude::*;

pub use tract_onnx::prelude::tract_ndarray::Array4;

use crate::error::{AnalysisError, ModelError};
use crate::preprocess::{Normalization, PreprocessSpec, Resize, View};
use crate::scoring::{Bone, Stage};
use crate::Sex;

pub const CONTRACT_VERSION: &str = "1";
const REQUIRED_OUTPUTS: [&str; 3] = ["bone_age_months", "bone_age_log_var", "stage_probs"];
const JOINT_OUTPUT: &str = "joint_points";
const MAX_JOINTS: usize = 64;
/// Most test-time views a model may declare (each is one more model pass).
pub const MAX_VIEWS: usize = 16;

/// The views a model's bone age is averaged over (`boneage.tta`) and the log-variance
/// shift calibrated for that average.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Tta {
    pub views: Vec<View>,
    pub log_var_shift: f32,
}

/// How a bone's stage output was obtained (`boneage.stage_basis`), reported with
/// every joint so that no derived stage passes for an observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StageBasis {
    /// From the whole image, by a head trained on the stage typical for the reader's
    /// bone age: it restates the global maturity estimate and is not an observation.
    TypicalForBoneAge,
    /// From the features of this joint's own region only (see the model card for the
    /// region size), by a head trained on the stage typical for the reader's bone age
    /// (no expert stage labels): a regional maturity estimate, not validated
    /// against expert TW3 staging.
    JointRegion,
    /// From this joint's own region, by a head trained on expert TW stage labels.
    JointRegionSupervised,
}

impl StageBasis {
    pub const ALL: [StageBasis; 3] = [
        StageBasis::TypicalForBoneAge,
        StageBasis::JointRegion,
        StageBasis::JointRegionSupervised,
    ];

    pub fn id(self) -> &'static str {
        match self {
            StageBasis::TypicalForBoneAge => "typical_for_bone_age",
            StageBasis::JointRegion => "joint_region",
            StageBasis::JointRegionSupervised => "joint_region_supervised",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.id() == s)
    }

    /// Whether the stage comes from the joint's own region.
    pub fn is_regional(self) -> bool {
        !matches!(self, StageBasis::TypicalForBoneAge)
    }
}

/// The default model, embedded in the binary so the service runs from anywhere.
pub static EMBEDDED_MODEL: &[u8] = include_bytes!("../models/boneage-default.onnx");
pub const EMBEDDED_MODEL_PATH: &str = "models/boneage-default.onnx";

/// What a loaded model is, as `GET /v1/model` and `boneage model info` report it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ModelInfo {
    pub name: String,
    pub version: String,
    pub sha256: String,
    pub contract_version: String,
    pub input_height: u32,
    pub input_width: u32,
    pub input_resize: String,
    pub normalization: String,
    pub outputs: Vec<String>,
    /// How each bone's stage is obtained, in [`Bone::ALL`] order.
    pub stage_basis: Vec<StageBasis>,
    /// Joints the model locates (`joint_points`), empty when it locates none.
    pub joints: Vec<String>,
    /// Index into `joints` of the region that holds each bone's epiphysis, in
    /// [`Bone::ALL`] order.
    #[serde(skip)]
    pub bone_joint: [Option<usize>; 13],
    /// Receptive field (input pixels) of the regional stage features, when declared.
    pub joint_region_px: Option<u32>,
    /// Quality-control calibration (`boneage.joint_template`, `boneage.qc_*`), for a
    /// model that locates joints and declares it.
    pub quality: Option<crate::quality::Thresholds>,
    /// Test-time views (`boneage.tta`), when the model declares them.
    pub tta: Option<Tta>,
    /// Where it was loaded from: a path, or `embedded:models/boneage-default.onnx`.
    pub source: String,
    /// All `metadata_props` of the file.
    pub metadata: std::collections::BTreeMap<String, String>,
}

/// One image's raw model outputs.
#[derive(Debug, Clone)]
pub struct ModelOutput {
    pub bone_age_months: f32,
    pub bone_age_log_var: f32,
    /// Stage probabilities, `[bone][stage]` in [`Bone::ALL`] × [`Stage::ALL`] order.
    pub stage_probs: [[f32; 9]; 13],
    /// Joint centres as (x, y) fractions of the input width and height, in
    /// [`ModelInfo::joints`] order; empty when the model locates no joints.
    pub joint_points: Vec<[f32; 2]>,
}

/// Runs `f` (a tract plan run) on `executor`'s threads, or on the caller's thread.
pub(crate) fn on_executor<R>(
    executor: Option<&tract_linalg::multithread::Executor>,
    f: impl FnOnce() -> R,
) -> R {
    match executor {
        None => f(),
        Some(ex) => tract_linalg::multithread::multithread_tract_scope(ex.clone(), f),
    }
}

/// An inference backend. Implementations are shared across worker threads.
pub trait Backend: Send + Sync {
    fn info(&self) -> &ModelInfo;
    fn preprocess_spec(&self) -> &PreprocessSpec;
    fn infer(
        &self,
        image: tract_ndarray::Array4<f32>,
        sex: Sex,
    ) -> Result<ModelOutput, AnalysisError>;
}

/// The tract CPU backend.
pub struct TractModel {
    plan: Arc<TypedRunnableModel>,
    info: ModelInfo,
    spec: PreprocessSpec,
    /// Index of each required output in the plan's outputs.
    out_idx: [usize; 3],
    /// Index of `joint_points`, when the contract declares it.
    joint_idx: Option<usize>,
    /// tract's multithreaded executor for one inference, when more than one thread
    /// is asked for ([`TractModel::with_threads`]); `None` runs on the caller's thread.
    executor: Option<tract_linalg::multithread::Executor>,
    threads: usize,
}

impl std::fmt::Debug for TractModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TractModel")
            .field("info", &self.info)
            .finish()
    }
}

impl TractModel {
    /// Loads the model embedded in the binary.
    pub fn embedded() -> Result<Self, ModelError> {
        Self::from_bytes(EMBEDDED_MODEL, &format!("embedded:{EMBEDDED_MODEL_PATH}"))
    }

    /// Runs each inference's matrix products on `threads` threads (tract's rayon
    /// executor, one pool owned by this model); 1 (the default) keeps inference on the
    /// calling worker thread. The pool is shared by every worker that calls
    /// [`Backend::infer`], so `workers × threads` should not exceed the cores.
    pub fn with_threads(mut self, threads: usize) -> Self {
        let threads = threads.max(1);
        self.threads = threads;
        self.executor = (threads > 1).then(|| {
            tract_linalg::multithread::Executor::multithread_with_name(threads, "boneage-tract")
        });
        self
    }

    /// Threads one inference uses (see [`TractModel::with_threads`]).
    pub fn threads(&self) -> usize {
        self.threads
    }

    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self, ModelError> {
        let onnx = tract_onnx::onnx();
        let proto = onnx
            .proto_model_for_read(&mut &bytes[..])
            .map_err(|e| ModelError::Parse {
                origin: origin.into(),
                reason: format!("{e:#}"),
            })?;
        let meta: HashMap<String, String> = proto
            .metadata_props
            .iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect();
        let sha256 = hex::encode(Sha256::digest(bytes));
        let (info, spec) = validate_contract(&meta, sha256, origin)?;

        let prep = |e: TractError| ModelError::Prepare {
            origin: origin.into(),
            reason: format!("{e:#}"),
        };
        let mut model = onnx.model_for_proto_model(&proto).map_err(prep)?;
        let input_names: Vec<String> = model
            .input_outlets()
            .map_err(prep)?
            .iter()
            .map(|o| model.node(o.node).name.clone())
            .collect();
        let img_pos = input_names.iter().position(|n| n == "image");
        let sex_pos = input_names.iter().position(|n| n == "sex");
        let (2, Some(img_pos), Some(sex_pos)) = (input_names.len(), img_pos, sex_pos) else {
            return Err(ModelError::Contract {
                origin: origin.into(),
                problems: format!(
                    "inputs must be exactly `image` and `sex`, found {input_names:?}"
                ),
            });
        };
        let (h, w) = (spec.height as usize, spec.width as usize);
        model = model
            .with_input_fact(img_pos, f32::fact([1, 1, h, w]).into())
            .and_then(|m| m.with_input_fact(sex_pos, f32::fact([1, 1]).into()))
            .map_err(prep)?;
        // Feed inputs in the order image, sex whatever the file's order.
        if img_pos != 0 {
            let outlets = model.input_outlets().map_err(prep)?.to_vec();
            model
                .set_input_outlets(&[outlets[img_pos], outlets[sex_pos]])
                .map_err(prep)?;
        }
        let output_names: Vec<String> = model
            .output_outlets()
            .map_err(prep)?
            .iter()
            .map(|o| {
                model
                    .outlet_label(*o)
                    .map(str::to_string)
                    .unwrap_or_else(|| model.node(o.node).name.clone())
            })
            .collect();
        let mut out_idx = [0usize; 3];
        for (slot, want) in out_idx.iter_mut().zip(REQUIRED_OUTPUTS) {
            *slot = output_names.iter().position(|n| n == want).ok_or_else(|| {
                ModelError::Contract {
                    origin: origin.into(),
                    problems: format!("graph has no output `{want}` (outputs: {output_names:?})"),
                }
            })?;
        }
        let joint_idx = if info.joints.is_empty() {
            None
        } else {
            Some(
                output_names
                    .iter()
                    .position(|n| n == JOINT_OUTPUT)
                    .ok_or_else(|| ModelError::Contract {
                        origin: origin.into(),
                        problems: format!(
                            "graph has no output `{JOINT_OUTPUT}` (outputs: {output_names:?})"
                        ),
                    })?,
            )
        };
        let plan = model
            .into_optimized()
            .map_err(prep)?
            .into_runnable()
            .map_err(prep)?;
        let m = TractModel {
            plan,
            info,
            spec,
            out_idx,
            joint_idx,
            executor: None,
            threads: 1,
        };
        // One dry run proves the output shapes match the contract.
        let probe = tract_ndarray::Array4::<f32>::zeros((1, 1, h, w));
        m.infer(probe, Sex::Male)
            .map_err(|e| ModelError::Contract {
                origin: origin.into(),
                problems: e.to_string(),
            })?;
        Ok(m)
    }
}

impl Backend for TractModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn preprocess_spec(&self) -> &PreprocessSpec {
        &self.spec
    }

    fn infer(
        &self,
        image: tract_ndarray::Array4<f32>,
        sex: Sex,
    ) -> Result<ModelOutput, AnalysisError> {
        let want = [1, 1, self.spec.height as usize, self.spec.width as usize];
        if image.shape() != want {
            return Err(AnalysisError::Inference(format!(
                "input shape {:?}, expected {want:?}",
                image.shape()
            )));
        }
        let sex_v = if sex == Sex::Male { 1.0f32 } else { 0.0 };
        let sex_t = tract_ndarray::Array2::from_elem((1, 1), sex_v);
        let inputs = tvec!(Tensor::from(image).into(), Tensor::from(sex_t).into());
        let outputs = on_executor(self.executor.as_ref(), || self.plan.run(inputs))
            .map_err(|e| AnalysisError::Inference(format!("{e:#}")))?;
        let get = |i: usize| -> Result<Vec<f32>, AnalysisError> {
            let t = outputs.get(self.out_idx[i]).ok_or_else(|| {
                AnalysisError::Inference(format!("missing output {}", REQUIRED_OUTPUTS[i]))
            })?;
            let view = t.to_plain_array_view::<f32>().map_err(|e| {
                AnalysisError::Inference(format!("output {}: {e}", REQUIRED_OUTPUTS[i]))
            })?;
            Ok(view.iter().copied().collect())
        };
        let mean = get(0)?;
        let log_var = get(1)?;
        let probs = get(2)?;
        if mean.len() != 1
            || log_var.len() != 1
            || probs.len() != Bone::ALL.len() * Stage::ALL.len()
        {
            return Err(AnalysisError::Inference(format!(
                "output sizes {}, {}, {} do not match the contract (1, 1, 117)",
                mean.len(),
                log_var.len(),
                probs.len()
            )));
        }
        let mut stage_probs = [[0f32; 9]; 13];
        for (b, row) in stage_probs.iter_mut().enumerate() {
            row.copy_from_slice(&probs[b * 9..(b + 1) * 9]);
        }
        if !mean[0].is_finite() || !log_var[0].is_finite() || probs.iter().any(|p| !p.is_finite()) {
            return Err(AnalysisError::Inference(
                "the model produced a non-finite value".into(),
            ));
        }
        let mut joint_points = Vec::new();
        if let Some(i) = self.joint_idx {
            let t = outputs.get(i).ok_or_else(|| {
                AnalysisError::Inference(format!("missing output {JOINT_OUTPUT}"))
            })?;
            let view = t
                .to_plain_array_view::<f32>()
                .map_err(|e| AnalysisError::Inference(format!("output {JOINT_OUTPUT}: {e}")))?;
            let flat: Vec<f32> = view.iter().copied().collect();
            if flat.len() != self.info.joints.len() * 2 || flat.iter().any(|v| !v.is_finite()) {
                return Err(AnalysisError::Inference(format!(
                    "output {JOINT_OUTPUT} has {} values, expected {} finite ones",
                    flat.len(),
                    self.info.joints.len() * 2
                )));
            }
            joint_points = flat.chunks_exact(2).map(|c| [c[0], c[1]]).collect();
        }
        Ok(ModelOutput {
            bone_age_months: mean[0],
            bone_age_log_var: log_var[0],
            stage_probs,
            joint_points,
        })
    }
}

/// Checks the `metadata_props` against contract version 1; lists every problem.
pub fn validate_contract(
    meta: &HashMap<String, String>,
    sha256: String,
    origin: &str,
) -> Result<(ModelInfo, PreprocessSpec), ModelError> {
    let mut problems: Vec<String> = Vec::new();
    let mut get = |key: &str| -> String {
        match meta.get(key) {
            Some(v) if !v.trim().is_empty() => v.trim().to_string(),
            _ => {
                problems.push(format!("missing metadata `{key}`"));
                String::new()
            }
        }
    };
    let contract_version = get("boneage.contract_version");
    let name = get("boneage.model_name");
    let version = get("boneage.model_version");
    let h = get("boneage.input_height");
    let w = get("boneage.input_width");
    let input_resize = get("boneage.input_resize");
    let normalization = get("boneage.normalization");
    let outputs = get("boneage.outputs");
    let uncertainty = get("boneage.uncertainty");
    let bones = get("boneage.bones");
    let stages = get("boneage.stages");
    let stage_basis_raw = get("boneage.stage_basis");

    if !contract_version.is_empty() && contract_version != CONTRACT_VERSION {
        problems.push(format!("contract version {contract_version} is not supported (this build reads {CONTRACT_VERSION})"));
    }
    let parse_dim = |v: &str, key: &str, problems: &mut Vec<String>| -> u32 {
        match v.parse::<u32>() {
            Ok(d) if (16..=2048).contains(&d) => d,
            _ if v.is_empty() => 0,
            _ => {
                problems.push(format!("`{key}` = {v:?} is not an input size in 16..=2048"));
                0
            }
        }
    };
    let height = parse_dim(&h, "boneage.input_height", &mut problems);
    let width = parse_dim(&w, "boneage.input_width", &mut problems);
    let resize = match input_resize.as_str() {
        "squash" => Some(Resize::Squash),
        "" => None,
        other => {
            problems.push(format!(
                "`boneage.input_resize` = {other:?} is not supported (squash)"
            ));
            None
        }
    };
    let norm = match normalization.as_str() {
        "per_image_zscore" => Some(Normalization::PerImageZscore),
        "" => None,
        other => {
            problems.push(format!(
                "`boneage.normalization` = {other:?} is not supported (per_image_zscore)"
            ));
            None
        }
    };
    let output_list: Vec<String> = outputs
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if !outputs.is_empty() {
        for want in REQUIRED_OUTPUTS {
            if !output_list.iter().any(|o| o == want) {
                problems.push(format!("`boneage.outputs` does not declare `{want}`"));
            }
        }
    }
    if !uncertainty.is_empty() && uncertainty != "log_var" {
        problems.push(format!(
            "`boneage.uncertainty` = {uncertainty:?} is not supported (log_var)"
        ));
    }
    let want_bones: Vec<&str> = Bone::ALL.iter().map(|b| b.id()).collect();
    if !bones.is_empty() && bones.split(',').map(str::trim).collect::<Vec<_>>() != want_bones {
        problems.push(format!("`boneage.bones` must be {}", want_bones.join(",")));
    }
    if !stages.is_empty()
        && stages.split(',').map(str::trim).collect::<Vec<_>>()
            != ["A", "B", "C", "D", "E", "F", "G", "H", "I"]
    {
        problems.push("`boneage.stages` must be A,B,C,D,E,F,G,H,I".into());
    }
    let stage_basis = parse_stage_basis(&stage_basis_raw, &mut problems);
    let has_joints = output_list.iter().any(|o| o == JOINT_OUTPUT);
    let (joints, bone_joint) = if has_joints {
        parse_joints(meta, &mut problems)
    } else {
        (Vec::new(), [None; 13])
    };
    for (i, (basis, joint)) in stage_basis.iter().zip(bone_joint).enumerate() {
        if basis.is_regional() && joint.is_none() {
            problems.push(format!(
                "bone `{}` has stage basis `{}` but no joint region (`boneage.bone_joints` with a `{JOINT_OUTPUT}` output)",
                Bone::ALL[i].id(),
                basis.id()
            ));
        }
    }
    let joint_region_px = match meta.get("boneage.joint_region_px").map(|v| v.trim()) {
        None | Some("") => None,
        Some(v) => match v.parse::<u32>() {
            Ok(px) => Some(px),
            Err(_) => {
                problems.push(format!(
                    "`boneage.joint_region_px` = {v:?} is not a number of pixels"
                ));
                None
            }
        },
    };
    let quality = parse_quality(meta, joints.len(), &mut problems);
    let tta = parse_tta(meta, &mut problems);
    if !problems.is_empty() {
        return Err(ModelError::Contract {
            origin: origin.into(),
            problems: problems.join("; "),
        });
    }
    let (Some(resize), Some(normalization_kind)) = (resize, norm) else {
        return Err(ModelError::Contract {
            origin: origin.into(),
            problems: "incomplete preprocessing".into(),
        });
    };
    let spec = PreprocessSpec {
        height,
        width,
        resize,
        normalization: normalization_kind,
    };
    let info = ModelInfo {
        name,
        version,
        sha256,
        contract_version,
        input_height: height,
        input_width: width,
        input_resize,
        normalization,
        outputs: output_list,
        stage_basis,
        joints,
        bone_joint,
        joint_region_px,
        quality,
        tta,
        source: origin.to_string(),
        metadata: meta.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    };
    Ok((info, spec))
}

/// `boneage.joint_template` (`x,y;x,y;...`, one pair per joint) with
/// `boneage.qc_max_shape_residual` and `boneage.qc_max_sd_months`: all or none.
fn parse_quality(
    meta: &HashMap<String, String>,
    joints: usize,
    problems: &mut Vec<String>,
) -> Option<crate::quality::Thresholds> {
    let keys = [
        "boneage.joint_template",
        "boneage.qc_max_shape_residual",
        "boneage.qc_max_sd_months",
    ];
    let vals: Vec<Option<&str>> = keys
        .iter()
        .map(|k| meta.get(*k).map(|v| v.trim()).filter(|v| !v.is_empty()))
        .collect();
    if vals.iter().all(Option::is_none) {
        return None;
    }
    let (Some(t), Some(r), Some(s)) = (vals[0], vals[1], vals[2]) else {
        problems.push(format!("quality control needs all of {}", keys.join(", ")));
        return None;
    };
    let template: Option<Vec<(f64, f64)>> = t
        .split(';')
        .map(|pair| {
            let (x, y) = pair.split_once(',')?;
            let (x, y) = (x.trim().parse::<f64>().ok()?, y.trim().parse::<f64>().ok()?);
            (x.is_finite() && y.is_finite()).then_some((x, y))
        })
        .collect();
    let positive = |v: &str| v.parse::<f64>().ok().filter(|x| x.is_finite() && *x > 0.0);
    match (template, positive(r), positive(s)) {
        (Some(template), Some(max_shape_residual), Some(max_sd_months))
            if template.len() == joints && joints >= 3 =>
        {
            Some(crate::quality::Thresholds {
                template,
                max_shape_residual,
                max_sd_months,
                hand_frame: parse_hand_frame(meta, problems),
            })
        }
        _ => {
            problems.push(format!(
                "quality control metadata is malformed: `boneage.joint_template` needs one \
                 `x,y` pair per joint ({joints}) and the thresholds must be positive numbers"
            ));
            None
        }
    }
}

/// `boneage.hand_frame` (`cx,cy,u,v`, see [`crate::quality::HandFrame`]): optional.
fn parse_hand_frame(
    meta: &HashMap<String, String>,
    problems: &mut Vec<String>,
) -> Option<crate::quality::HandFrame> {
    let text = meta.get("boneage.hand_frame").map(|v| v.trim())?;
    let v: Vec<f64> = text
        .split(',')
        .filter_map(|t| t.trim().parse::<f64>().ok())
        .filter(|x| x.is_finite() && *x > 0.0 && *x < 1.0)
        .collect();
    match v.as_slice() {
        &[cx, cy, u, v] => Some(crate::quality::HandFrame { cx, cy, u, v }),
        _ => {
            problems.push(format!(
                "`boneage.hand_frame` must be four numbers in (0, 1), `cx,cy,u,v`: {text:?}"
            ));
            None
        }
    }
}

/// `boneage.tta` with `boneage.tta_log_var_shift`: both or neither.
fn parse_tta(meta: &HashMap<String, String>, problems: &mut Vec<String>) -> Option<Tta> {
    let get = |k: &str| meta.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let (views, shift) = match (get("boneage.tta"), get("boneage.tta_log_var_shift")) {
        (None, None) => return None,
        (Some(v), Some(s)) => (v, s),
        _ => {
            problems.push(
                "test-time views need both `boneage.tta` and `boneage.tta_log_var_shift`".into(),
            );
            return None;
        }
    };
    let parse_view = |t: &str| -> Option<View> {
        let f: Vec<&str> = t.split(',').map(str::trim).collect();
        let [r, s, m] = f.as_slice() else {
            return None;
        };
        let rotation_deg = r.parse::<f32>().ok().filter(|r| r.abs() <= 45.0)?;
        let scale = s.parse::<f32>().ok().filter(|s| (0.5..=2.0).contains(s))?;
        let mirror = match *m {
            "0" => false,
            "1" => true,
            _ => return None,
        };
        Some(View {
            rotation_deg,
            scale,
            mirror,
        })
    };
    let parsed: Option<Vec<View>> = views.split(';').map(parse_view).collect();
    let shift = shift
        .parse::<f32>()
        .ok()
        .filter(|s| s.is_finite() && s.abs() < 10.0);
    match (parsed, shift) {
        (Some(views), Some(log_var_shift))
            if (1..=MAX_VIEWS).contains(&views.len()) && views.iter().any(View::is_identity) =>
        {
            Some(Tta {
                views,
                log_var_shift,
            })
        }
        _ => {
            problems.push(format!(
                "`boneage.tta` must be 1 to {MAX_VIEWS} `rotation_deg,scale,mirror` views (|rotation| \
                 ≤ 45, scale 0.5–2, mirror 0 or 1) including the identity `0,1,0`, and \
                 `boneage.tta_log_var_shift` a number"
            ));
            None
        }
    }
}

/// One basis for all bones, or 13 in bone order.
fn parse_stage_basis(raw: &str, problems: &mut Vec<String>) -> Vec<StageBasis> {
    if raw.is_empty() {
        return vec![StageBasis::TypicalForBoneAge; 13];
    }
    let mut out = Vec::new();
    for v in raw.split(',').map(str::trim) {
        match StageBasis::parse(v) {
            Some(b) => out.push(b),
            None => {
                let known: Vec<_> = StageBasis::ALL.iter().map(|b| b.id()).collect();
                problems.push(format!(
                    "`boneage.stage_basis` value {v:?} is not one of {}",
                    known.join(", ")
                ));
                return vec![StageBasis::TypicalForBoneAge; 13];
            }
        }
    }
    match out.len() {
        1 => vec![out[0]; 13],
        13 => out,
        n => {
            problems.push(format!(
                "`boneage.stage_basis` has {n} values: give one, or one per bone (13)"
            ));
            vec![StageBasis::TypicalForBoneAge; 13]
        }
    }
}

/// `boneage.joints` and `boneage.bone_joints`, for a model with a `joint_points` output.
fn parse_joints(
    meta: &HashMap<String, String>,
    problems: &mut Vec<String>,
) -> (Vec<String>, [Option<usize>; 13]) {
    let mut bone_joint = [None; 13];
    let joints: Vec<String> = meta
        .get("boneage.joints")
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
        .unwrap_or_default();
    let well_formed = |j: &str| {
        !j.is_empty()
            && j.len() <= 32
            && j.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
    };
    if joints.is_empty() || joints.iter().all(|j| j.is_empty()) {
        problems.push(format!("a `{JOINT_OUTPUT}` output needs `boneage.joints`"));
        return (Vec::new(), bone_joint);
    }
    if joints.len() > MAX_JOINTS
        || !joints.iter().all(|j| well_formed(j))
        || (1..joints.len()).any(|i| joints[..i].contains(&joints[i]))
    {
        problems.push(format!(
            "`boneage.joints` must be at most {MAX_JOINTS} distinct names of lower-case letters, digits and `_`"
        ));
        return (Vec::new(), bone_joint);
    }
    let pairs: Vec<&str> = meta
        .get("boneage.bone_joints")
        .map(|v| v.split(',').map(str::trim).collect())
        .unwrap_or_default();
    if pairs.len() != 13 {
        problems.push(format!(
            "`boneage.bone_joints` must give 13 `bone:joint` pairs in bone order, found {}",
            pairs.len()
        ));
        return (joints, bone_joint);
    }
    for (i, pair) in pairs.iter().enumerate() {
        let bone = Bone::ALL[i].id();
        match pair.split_once(':') {
            Some((b, j)) if b.trim() == bone => {
                let j = j.trim();
                if j.is_empty() {
                    continue;
                }
                match joints.iter().position(|x| x == j) {
                    Some(k) => bone_joint[i] = Some(k),
                    None => problems.push(format!(
                        "`boneage.bone_joints`: joint {j:?} of `{bone}` is not in `boneage.joints`"
                    )),
                }
            }
            _ => problems.push(format!(
                "`boneage.bone_joints` entry {} must be `{bone}:<joint or empty>`, found {pair:?}",
                i + 1
            )),
        }
    }
    (joints, bone_joint)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good_meta() -> HashMap<String, String> {
        [
            ("boneage.contract_version", "1"),
            ("boneage.model_name", "m"),
            ("boneage.model_version", "0"),
            ("boneage.input_height", "100"),
            ("boneage.input_width", "100"),
            ("boneage.input_resize", "squash"),
            ("boneage.normalization", "per_image_zscore"),
            (
                "boneage.outputs",
                "bone_age_months,bone_age_log_var,stage_probs",
            ),
            ("boneage.uncertainty", "log_var"),
            (
                "boneage.bones",
                "radius,ulna,mc1,mc3,mc5,pp1,pp3,pp5,mp3,mp5,dp1,dp3,dp5",
            ),
            ("boneage.stages", "A,B,C,D,E,F,G,H,I"),
            ("boneage.stage_basis", "typical_for_bone_age"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn complete_metadata_passes() {
        let (info, spec) = validate_contract(&good_meta(), "x".into(), "t").unwrap();
        assert_eq!((spec.height, spec.width), (100, 100));
        assert_eq!(info.stage_basis, vec![StageBasis::TypicalForBoneAge; 13]);
        assert!(info.joints.is_empty());
    }

    fn joint_meta() -> HashMap<String, String> {
        let mut m = good_meta();
        m.insert(
            "boneage.outputs".into(),
            "bone_age_months,bone_age_log_var,stage_probs,joint_points".into(),
        );
        m.insert("boneage.joints".into(), "wrist,mcp3,radius".into());
        m.insert(
            "boneage.bone_joints".into(),
            "radius:radius,ulna:,mc1:,mc3:mcp3,mc5:,pp1:,pp3:mcp3,pp5:,mp3:,mp5:,dp1:,dp3:,dp5:"
                .into(),
        );
        m.insert(
            "boneage.stage_basis".into(),
            "joint_region,typical_for_bone_age,typical_for_bone_age,joint_region,\
             typical_for_bone_age,typical_for_bone_age,joint_region_supervised,\
             typical_for_bone_age,typical_for_bone_age,typical_for_bone_age,\
             typical_for_bone_age,typical_for_bone_age,typical_for_bone_age"
                .into(),
        );
        m
    }

    #[test]
    fn per_bone_basis_and_joint_regions_are_read() {
        let (info, _) = validate_contract(&joint_meta(), "x".into(), "t").unwrap();
        assert_eq!(info.joints, ["wrist", "mcp3", "radius"]);
        assert_eq!(info.bone_joint[0], Some(2));
        assert_eq!(info.bone_joint[3], Some(1));
        assert_eq!(info.bone_joint[6], Some(1));
        assert_eq!(info.bone_joint[1], None);
        assert_eq!(info.stage_basis[0], StageBasis::JointRegion);
        assert_eq!(info.stage_basis[6], StageBasis::JointRegionSupervised);
        assert_eq!(info.stage_basis[1], StageBasis::TypicalForBoneAge);
    }

    #[test]
    fn a_regional_stage_without_a_region_is_refused() {
        let mut m = joint_meta();
        // ulna (2nd) claims a regional stage but has no joint region.
        let b = m["boneage.stage_basis"].replacen(
            "joint_region,typical_for_bone_age",
            "joint_region,joint_region",
            1,
        );
        m.insert("boneage.stage_basis".into(), b);
        let err = validate_contract(&m, "x".into(), "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`ulna`"), "{err}");
        // ...and so is a regional basis on a model that locates nothing.
        let mut m = good_meta();
        m.insert("boneage.stage_basis".into(), "joint_region".into());
        assert!(validate_contract(&m, "x".into(), "t").is_err());
    }

    #[test]
    fn bad_joint_metadata_is_named() {
        for (k, v, needle) in [
            ("boneage.stage_basis", "observed", "observed"),
            (
                "boneage.stage_basis",
                "joint_region,joint_region",
                "2 values",
            ),
            ("boneage.joints", "", "boneage.joints"),
            ("boneage.joints", "a,a", "distinct"),
            ("boneage.bone_joints", "radius:radius", "13"),
            (
                "boneage.bone_joints",
                "radius:elbow,ulna:,mc1:,mc3:mcp3,mc5:,pp1:,pp3:mcp3,pp5:,mp3:,mp5:,dp1:,dp3:,dp5:",
                "elbow",
            ),
            ("boneage.joint_region_px", "wide", "joint_region_px"),
        ] {
            let mut m = joint_meta();
            m.insert(k.into(), v.into());
            let err = validate_contract(&m, "x".into(), "t")
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{k}={v}: {err}");
        }
    }

    #[test]
    fn test_time_views_are_read_and_checked() {
        let (info, _) = validate_contract(&good_meta(), "x".into(), "t").unwrap();
        assert!(info.tta.is_none());
        let mut m = good_meta();
        m.insert("boneage.tta".into(), "0,1,0; -8,1,0 ;0,1.06,1".into());
        m.insert("boneage.tta_log_var_shift".into(), "-0.25".into());
        let (info, _) = validate_contract(&m, "x".into(), "t").unwrap();
        let tta = info.tta.unwrap();
        assert_eq!(tta.views.len(), 3);
        assert_eq!(tta.views[1].rotation_deg, -8.0);
        assert!(tta.views[2].mirror && tta.views[2].scale == 1.06);
        assert_eq!(tta.log_var_shift, -0.25);
        for (views, shift, needle) in [
            ("0,1,0", "", "both"),
            ("-8,1,0", "0", "identity"),
            ("0,1,0;60,1,0", "0", "45"),
            ("0,1,0;0,3,0", "0", "scale"),
            ("0,1,0;0,1,2", "0", "mirror"),
            ("0,1,0;0,1", "0", "rotation_deg,scale,mirror"),
            ("0,1,0", "NaN", "a number"),
        ] {
            let mut m = good_meta();
            m.insert("boneage.tta".into(), views.into());
            m.insert("boneage.tta_log_var_shift".into(), shift.into());
            let e = validate_contract(&m, "x".into(), "t")
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{views} / {shift}: {e}");
        }
        let mut m = good_meta();
        let many = vec!["0,1,0"; MAX_VIEWS + 1].join(";");
        m.insert("boneage.tta".into(), many);
        m.insert("boneage.tta_log_var_shift".into(), "0".into());
        assert!(validate_contract(&m, "x".into(), "t").is_err());
    }

    #[test]
    fn every_missing_key_is_named() {
        for key in good_meta().keys() {
            let mut m = good_meta();
            m.remove(key);
            let err = validate_contract(&m, "x".into(), "t")
                .unwrap_err()
                .to_string();
            assert!(err.contains(key.as_str()), "{key}: {err}");
        }
    }

    #[test]
    fn wrong_values_are_refused() {
        for (k, v) in [
            ("boneage.contract_version", "2"),
            ("boneage.input_height", "abc"),
            ("boneage.input_resize", "letterbox"),
            ("boneage.outputs", "bone_age_months"),
            ("boneage.bones", "radius"),
        ] {
            let mut m = good_meta();
            m.insert(k.into(), v.into());
            assert!(validate_contract(&m, "x".into(), "t").is_err(), "{k}={v}");
        }
    }

    #[test]
    fn embedded_model_loads_and_infers() {
        let m = TractModel::embedded().unwrap();
        let spec = m.preprocess_spec().clone();
        let x =
            tract_ndarray::Array4::<f32>::zeros((1, 1, spec.height as usize, spec.width as usize));
        let out = m.infer(x, Sex::Female).unwrap();
        assert!(out.bone_age_months.is_finite());
        for row in out.stage_probs {
            let s: f32 = row.iter().sum();
            assert!((s - 1.0).abs() < 1e-3, "stage probabilities sum to {s}");
        }
        assert_eq!(m.info().sha256.len(), 64);
    }

    #[test]
    fn two_inference_threads_give_the_same_outputs() {
        let one = TractModel::embedded().unwrap();
        let two = TractModel::embedded().unwrap().with_threads(2);
        assert_eq!((one.threads(), two.threads()), (1, 2));
        let spec = one.preprocess_spec().clone();
        let (h, w) = (spec.height as usize, spec.width as usize);
        let x = tract_ndarray::Array4::<f32>::from_shape_fn((1, 1, h, w), |(_, _, y, x)| {
            ((x * 7 + y * 13) % 23) as f32 / 11.0 - 1.0
        });
        let a = one.infer(x.clone(), Sex::Male).unwrap();
        let b = two.infer(x, Sex::Male).unwrap();
        assert!((a.bone_age_months - b.bone_age_months).abs() < 1e-3);
        assert!((a.bone_age_log_var - b.bone_age_log_var).abs() < 1e-4);
        for (p, q) in a.joint_points.iter().zip(&b.joint_points) {
            assert!((p[0] - q[0]).abs() < 1e-4 && (p[1] - q[1]).abs() < 1e-4);
        }
    }

    #[test]
    fn garbage_is_a_parse_error() {
        let err = TractModel::from_bytes(b"not an onnx file at all", "garbage").unwrap_err();
        assert!(
            matches!(err, ModelError::Parse { .. } | ModelError::Contract { .. }),
            "{err}"
        );
    }
}
