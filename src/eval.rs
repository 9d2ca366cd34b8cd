//! Evaluation of a model over a labelled manifest through the same
//! [`Analyzer::analyze`] path as the service (`boneage eval`).
//!
//! Manifest layout (CSV with header): `id,image,boneage_months,male`; image paths
//! are relative to the manifest's folder unless an images folder is given.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::analysis::{AnalysisRequest, Analyzer};
use crate::decode::GreyImage;
use crate::Sex;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("cannot read manifest {path}: {reason}")]
    Manifest { path: String, reason: String },
    #[error("cannot write {path}: {reason}")]
    Output { path: String, reason: String },
}

/// One labelled image of a manifest.
#[derive(Debug, Clone)]
pub struct ManifestRow {
    pub id: String,
    pub image: PathBuf,
    pub boneage_months: f64,
    pub sex: Sex,
}

/// Reads a manifest; `images` overrides the folder image paths are relative to.
pub fn read_manifest(path: &Path, images: Option<&Path>) -> Result<Vec<ManifestRow>, EvalError> {
    let err = |reason: String| EvalError::Manifest {
        path: path.display().to_string(),
        reason,
    };
    let base = match images {
        Some(d) => d.to_path_buf(),
        None => path.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    let mut rdr = csv::Reader::from_path(path).map_err(|e| err(e.to_string()))?;
    let headers = rdr.headers().map_err(|e| err(e.to_string()))?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| err(format!("no column `{name}`")))
    };
    let (ci, cim, cb, cm) = (
        col("id")?,
        col("image")?,
        col("boneage_months")?,
        col("male")?,
    );
    let mut rows = Vec::new();
    for (n, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| err(e.to_string()))?;
        let line = n + 2;
        let field = |i: usize| rec.get(i).unwrap_or("").trim();
        let boneage_months: f64 = field(cb)
            .parse()
            .map_err(|_| err(format!("line {line}: boneage_months {:?}", field(cb))))?;
        let sex = match field(cm) {
            "1" | "true" | "True" => Sex::Male,
            "0" | "false" | "False" => Sex::Female,
            other => {
                return Err(err(format!(
                    "line {line}: male must be 0 or 1, not {other:?}"
                )))
            }
        };
        rows.push(ManifestRow {
            id: field(ci).to_string(),
            image: base.join(field(cim)),
            boneage_months,
            sex,
        });
    }
    Ok(rows)
}

/// The fixed validation split of `scripts/train.py`: numeric ids divisible by 10.
pub fn is_validation_id(id: &str) -> bool {
    id.parse::<u64>().is_ok_and(|n| n % 10 == 0)
}

/// The outcome for one image.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Prediction {
    pub id: String,
    pub boneage_months: f64,
    pub male: u8,
    pub predicted_months: Option<f64>,
    pub interval_lo: Option<f64>,
    pub interval_hi: Option<f64>,
    pub rus_score: Option<u32>,
    /// TW3 RUS bone age from the per-joint stages (null outside the TW3 table).
    pub rus_bone_age_months: Option<f64>,
    /// The upload's size in pixels (empty when it was not decoded).
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// What quality control did before the views were read (`quality.corrections`):
    /// mirrored, inverted, the views' turn and, when the hand was framed, the box the
    /// views show (`views_box`: centre and half size as fractions of the frame).
    pub mirrored: Option<bool>,
    pub inverted: Option<bool>,
    pub views_turned_deg: Option<f64>,
    pub box_cx: Option<f64>,
    pub box_cy: Option<f64>,
    pub box_hx: Option<f64>,
    pub box_hy: Option<f64>,
    /// Rejection or failure code; empty when analysed.
    pub error: String,
    /// Located joints as (name, x, y) fractions of the image width and height.
    #[serde(skip)]
    pub landmarks: Vec<(String, f64, f64)>,
}

/// Analyses one manifest row.
pub fn predict(analyzer: &Analyzer, row: &ManifestRow) -> Prediction {
    let mut p = Prediction {
        id: row.id.clone(),
        boneage_months: row.boneage_months,
        male: u8::from(row.sex == Sex::Male),
        ..Prediction::default()
    };
    let bytes = match std::fs::read(&row.image) {
        Ok(b) => b,
        Err(_) => {
            p.error = "file_not_readable".into();
            return p;
        }
    };
    let req = AnalysisRequest::new(row.sex, None);
    match analyzer.analyze(&bytes, &req) {
        Ok(r) => {
            p.predicted_months = Some(r.bone_age.months);
            p.interval_lo = Some(r.bone_age.interval_90[0]);
            p.interval_hi = Some(r.bone_age.interval_90[1]);
            p.rus_score = Some(r.tw3.rus_score);
            p.rus_bone_age_months = r.tw3.rus_bone_age_months;
            let c = &r.quality.corrections;
            p.width = Some(r.input.width);
            p.height = Some(r.input.height);
            p.mirrored = Some(c.mirrored);
            p.inverted = Some(c.inverted);
            p.views_turned_deg = Some(c.views_turned_deg);
            if let Some(b) = c.views_box {
                (p.box_cx, p.box_cy) = (Some(b.center[0]), Some(b.center[1]));
                (p.box_hx, p.box_hy) = (Some(b.half[0]), Some(b.half[1]));
            }
            let (w, h) = (r.input.width as f64, r.input.height as f64);
            p.landmarks = r
                .landmarks
                .iter()
                .map(|l| (l.name.clone(), l.at.x / w, l.at.y / h))
                .collect();
        }
        Err(e) => p.error = e.code().to_string(),
    }
    p
}

/// Error statistics of a group of predictions (months).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Stats {
    pub n: usize,
    pub mae: Option<f64>,
    pub rmse: Option<f64>,
    pub mean_signed_error: Option<f64>,
    /// Share of readings inside the 90% interval.
    pub coverage_90: Option<f64>,
}

/// Error statistics over (reading, estimate, 90% interval) triples; coverage is
/// only defined where intervals are given.
fn error_stats(items: impl Iterator<Item = (f64, f64, Option<(f64, f64)>)>) -> Stats {
    let (mut n, mut abs, mut sq, mut signed) = (0usize, 0.0, 0.0, 0.0);
    let (mut with_interval, mut cov) = (0usize, 0usize);
    for (truth, estimate, interval) in items {
        let e = estimate - truth;
        n += 1;
        abs += e.abs();
        sq += e * e;
        signed += e;
        if let Some((lo, hi)) = interval {
            with_interval += 1;
            if lo <= truth && truth <= hi {
                cov += 1;
            }
        }
    }
    let f = |v: f64| if n == 0 { None } else { Some(v / n as f64) };
    Stats {
        n,
        mae: f(abs),
        rmse: f(sq).map(f64::sqrt),
        mean_signed_error: f(signed),
        coverage_90: (with_interval > 0).then(|| cov as f64 / with_interval as f64),
    }
}

/// The model's bone age of the analysed predictions.
fn stats<'a>(preds: impl Iterator<Item = &'a Prediction>) -> Stats {
    error_stats(preds.filter_map(|p| {
        let (m, lo, hi) = (p.predicted_months?, p.interval_lo?, p.interval_hi?);
        Some((p.boneage_months, m, Some((lo, hi))))
    }))
}

/// The summary `boneage eval` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub images: usize,
    pub analysed: usize,
    pub rejected: usize,
    /// Rejections by error code (e.g. `not_a_hand`).
    pub rejections: std::collections::BTreeMap<String, usize>,
    pub overall: Stats,
    /// By the reference bone age: 0–5, 5–10, 10–15, 15–19 years.
    pub by_age_band: Vec<(String, Stats)>,
    pub by_sex: Vec<(String, Stats)>,
    /// The TW3 RUS bone age computed from the per-joint stages against the reading
    /// (images whose RUS score falls inside the TW3 table).
    pub tw3_rus_bone_age: Stats,
    /// Joint localisation against expert boxes, when `boneage eval --rois` gives them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub localisation: Option<LocalisationStats>,
    /// Bone-age change under rotation, when `boneage eval --rotations` asks for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation: Option<Vec<RotationStats>>,
    /// Bone-age change on a wider black canvas, when `boneage eval --canvas-scales`
    /// asks for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canvas: Option<Vec<CanvasStats>>,
}

/// How a radiograph is turned for [`rotation_robustness`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RotationCanvas {
    /// The same frame: corners that leave it are cut off (a hand turned on a detector
    /// of the same size, cropped as the original was).
    Same,
    /// A canvas grown to hold the whole turned image (a film scanned askew).
    Expand,
}

/// How far the bone age moves under one change of the film, against the bone age of
/// the image as given, over the images analysed both ways (months).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChangeStats {
    /// Images analysed both as given and changed.
    pub n: usize,
    /// Analysed as given but refused when changed.
    pub refused: usize,
    pub mean_abs_change: Option<f64>,
    pub median_abs_change: Option<f64>,
    pub p90_abs_change: Option<f64>,
    pub max_abs_change: Option<f64>,
    /// Share of images whose bone age moved by less than one month.
    pub within_1_month: Option<f64>,
}

/// [`ChangeStats`] of the radiographs turned by `degrees` (about the centre, black
/// fill, on the `canvas`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RotationStats {
    pub degrees: f64,
    pub canvas: RotationCanvas,
    #[serde(flatten)]
    pub change: ChangeStats,
}

/// [`ChangeStats`] of the radiographs pasted in the middle of a black canvas `scale`
/// times their width and height (a small hand on a wide detector).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CanvasStats {
    pub scale: f64,
    #[serde(flatten)]
    pub change: ChangeStats,
}

/// One radiograph changed once, for `boneage eval --changes-out`: turned by `degrees`
/// or pasted on a canvas `scale` times its size; the bone age as given and changed,
/// and the side and turn each was read with.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ChangeRow {
    pub id: String,
    pub degrees: Option<f64>,
    pub scale: Option<f64>,
    pub base_months: f64,
    /// Empty when the changed film was refused.
    pub months: Option<f64>,
    pub base_mirrored: bool,
    pub mirrored: Option<bool>,
    pub base_views_turned_deg: f64,
    pub views_turned_deg: Option<f64>,
    /// Rejection code of the changed film; empty when analysed.
    pub error: String,
}

/// A change of a film for [`rotation_robustness`] and [`canvas_robustness`].
#[derive(Debug, Clone, Copy)]
enum Change {
    Turn(f64, RotationCanvas),
    Canvas(f64),
}

impl Change {
    fn apply(self, img: &GreyImage) -> GreyImage {
        match self {
            Change::Turn(d, RotationCanvas::Same) => crate::quality::rotate(img, d),
            Change::Turn(d, RotationCanvas::Expand) => crate::quality::rotate_expanded(img, d),
            Change::Canvas(k) => on_canvas(img, k),
        }
    }
}

/// Each of `rows` analysed as given and with each of `changes`, one [`ChangeRow`]
/// per film and change, skipping films that cannot be read or are refused as given.
fn changed_readings(
    analyzer: &Analyzer,
    rows: &[ManifestRow],
    changes: &[Change],
    progress: &dyn Fn(),
) -> Vec<ChangeRow> {
    let mut out = Vec::new();
    for row in rows {
        progress();
        let Ok(bytes) = std::fs::read(&row.image) else {
            continue;
        };
        let Ok(decoded) = crate::decode::decode_upload(&bytes, analyzer.limits()) else {
            continue;
        };
        let req = AnalysisRequest::new(row.sex, None);
        let Ok(base) = analyzer.analyze_image(decoded.image.clone(), &req) else {
            continue;
        };
        for &change in changes {
            let (degrees, scale) = match change {
                Change::Turn(d, _) => (Some(d), None),
                Change::Canvas(k) => (None, Some(k)),
            };
            let mut r = ChangeRow {
                id: row.id.clone(),
                degrees,
                scale,
                base_months: base.bone_age.months,
                base_mirrored: base.quality.corrections.mirrored,
                base_views_turned_deg: base.quality.corrections.views_turned_deg,
                ..ChangeRow::default()
            };
            match analyzer.analyze_image(change.apply(&decoded.image), &req) {
                Ok(t) => {
                    r.months = Some(t.bone_age.months);
                    r.mirrored = Some(t.quality.corrections.mirrored);
                    r.views_turned_deg = Some(t.quality.corrections.views_turned_deg);
                }
                Err(e) => r.error = e.code().to_string(),
            }
            out.push(r);
        }
    }
    out
}

/// [`ChangeStats`] over the rows of one change.
fn change_stats<'a>(rows: impl Iterator<Item = &'a ChangeRow>) -> ChangeStats {
    let (mut c, mut refused) = (Vec::new(), 0);
    for r in rows {
        match r.months {
            Some(m) => c.push((m - r.base_months).abs()),
            None => refused += 1,
        }
    }
    c.sort_by(f64::total_cmp);
    let q = |p: f64| (!c.is_empty()).then(|| c[((c.len() - 1) as f64 * p).round() as usize]);
    ChangeStats {
        n: c.len(),
        refused,
        mean_abs_change: (!c.is_empty()).then(|| c.iter().sum::<f64>() / c.len() as f64),
        median_abs_change: q(0.5),
        p90_abs_change: q(0.9),
        max_abs_change: c.last().copied(),
        within_1_month: (!c.is_empty())
            .then(|| c.iter().filter(|&&d| d < 1.0).count() as f64 / c.len() as f64),
    }
}

/// Bone-age change under each rotation in `degrees`, over `rows` (see
/// [`RotationStats`]), and one [`ChangeRow`] per film and angle.
pub fn rotation_robustness(
    analyzer: &Analyzer,
    rows: &[ManifestRow],
    degrees: &[f64],
    canvas: RotationCanvas,
    progress: &dyn Fn(),
) -> (Vec<RotationStats>, Vec<ChangeRow>) {
    let changes: Vec<Change> = degrees.iter().map(|&d| Change::Turn(d, canvas)).collect();
    let per_film = changed_readings(analyzer, rows, &changes, progress);
    let stats = degrees
        .iter()
        .map(|&d| RotationStats {
            degrees: d,
            canvas,
            change: change_stats(per_film.iter().filter(|r| r.degrees == Some(d))),
        })
        .collect();
    (stats, per_film)
}

/// Bone-age change when each film is pasted in the middle of a black canvas each of
/// `scales` times its width and height, over `rows` (see [`CanvasStats`]), and one
/// [`ChangeRow`] per film and scale.
pub fn canvas_robustness(
    analyzer: &Analyzer,
    rows: &[ManifestRow],
    scales: &[f64],
    progress: &dyn Fn(),
) -> (Vec<CanvasStats>, Vec<ChangeRow>) {
    let changes: Vec<Change> = scales.iter().map(|&k| Change::Canvas(k)).collect();
    let per_film = changed_readings(analyzer, rows, &changes, progress);
    let stats = scales
        .iter()
        .map(|&k| CanvasStats {
            scale: k,
            change: change_stats(per_film.iter().filter(|r| r.scale == Some(k))),
        })
        .collect();
    (stats, per_film)
}

/// `img` in the middle of a black canvas `k` (at least 1) times its width and height.
pub fn on_canvas(img: &GreyImage, k: f64) -> GreyImage {
    let k = if k.is_finite() { k.max(1.0) } else { 1.0 };
    let (w, h) = (img.width as usize, img.height as usize);
    let (ow, oh) = (
        (w as f64 * k).round() as usize,
        (h as f64 * k).round() as usize,
    );
    let (x0, y0) = ((ow - w) / 2, (oh - h) / 2);
    let mut pixels = vec![0f32; ow * oh];
    for y in 0..h {
        pixels[(y0 + y) * ow + x0..(y0 + y) * ow + x0 + w]
            .copy_from_slice(&img.pixels[y * w..(y + 1) * w]);
    }
    GreyImage {
        width: ow as u32,
        height: oh as u32,
        pixels,
        ..img.clone()
    }
}

pub fn summarize(preds: &[Prediction]) -> Summary {
    let analysed = preds.iter().filter(|p| p.error.is_empty()).count();
    let by_age_band = [(0, 5), (5, 10), (10, 15), (15, 19)]
        .iter()
        .map(|&(lo, hi)| {
            let (lo_m, hi_m) = (lo as f64 * 12.0, hi as f64 * 12.0);
            let last = hi == 19;
            let s = stats(preds.iter().filter(|p| {
                p.boneage_months >= lo_m
                    && (p.boneage_months < hi_m || (last && p.boneage_months <= 240.0))
            }));
            (format!("{lo}-{hi}y"), s)
        })
        .collect();
    let by_sex = [("male", 1u8), ("female", 0u8)]
        .iter()
        .map(|&(name, v)| {
            (
                name.to_string(),
                stats(preds.iter().filter(|p| p.male == v)),
            )
        })
        .collect();
    let mut rejections = std::collections::BTreeMap::new();
    for p in preds.iter().filter(|p| !p.error.is_empty()) {
        *rejections.entry(p.error.clone()).or_insert(0) += 1;
    }
    Summary {
        images: preds.len(),
        analysed,
        rejected: preds.len() - analysed,
        rejections,
        overall: stats(preds.iter()),
        by_age_band,
        by_sex,
        // The TW3 bone age has no interval: no coverage for it.
        tw3_rus_bone_age: error_stats(
            preds
                .iter()
                .filter_map(|p| Some((p.boneage_months, p.rus_bone_age_months?, None))),
        ),
        localisation: None,
        rotation: None,
        canvas: None,
    }
}

/// Expert joint centres for one image, from a `rois.csv` in the layout of Koitka et
/// al. (PLOS ONE 2018): `id,split,annotator,label,xmin,ymin,xmax,ymax,image_width,image_height`.
#[derive(Debug, Clone)]
pub struct JointTruth {
    pub split: String,
    /// Original radiograph size (the frame of the box coordinates).
    pub width: f64,
    pub height: f64,
    /// (joint name, x, y) as fractions of width and height, in the names the default
    /// model uses (`dip2..dip5`, `ip1`, `pip2..pip5`, `mcp1..mcp5`, `radius`, `ulna`, `wrist`).
    pub joints: Vec<(String, f64, f64)>,
}

/// Reads the expert boxes of a rois file. Digits are numbered from the thumb, found
/// as the side where the row of MCP joints reaches past the row of DIP joints (so
/// right hands number correctly too); images without exactly 4 DIP, 5 PIP, 5 MCP and
/// one radius, ulna and wrist box are left out (as `scripts/train.py` does).
pub fn read_rois(path: &Path) -> Result<std::collections::HashMap<String, JointTruth>, EvalError> {
    use std::collections::HashMap;
    let err = |reason: String| EvalError::Manifest {
        path: path.display().to_string(),
        reason,
    };
    let mut rdr = csv::Reader::from_path(path).map_err(|e| err(e.to_string()))?;
    let headers = rdr.headers().map_err(|e| err(e.to_string()))?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| err(format!("no column `{name}`")))
    };
    let cols: Vec<usize> = [
        "id",
        "split",
        "annotator",
        "label",
        "xmin",
        "ymin",
        "xmax",
        "ymax",
        "image_width",
        "image_height",
    ]
    .iter()
    .map(|c| col(c))
    .collect::<Result<_, _>>()?;
    type Boxes = HashMap<String, Vec<(f64, f64)>>;
    let mut by: HashMap<String, (String, f64, f64, Boxes)> = HashMap::new();
    for (n, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| err(e.to_string()))?;
        let f = |i: usize| rec.get(cols[i]).unwrap_or("").trim();
        if f(2) != "expert" {
            continue;
        }
        let num = |i: usize| {
            f(i).parse::<f64>()
                .map_err(|_| err(format!("line {}: {:?} is not a number", n + 2, f(i))))
        };
        let (w, h) = (num(8)?, num(9)?);
        if w <= 0.0 || h <= 0.0 {
            return Err(err(format!("line {}: image size must be positive", n + 2)));
        }
        let c = ((num(4)? + num(6)?) / 2.0 / w, (num(5)? + num(7)?) / 2.0 / h);
        by.entry(f(0).to_string())
            .or_insert_with(|| (f(1).to_string(), w, h, HashMap::new()))
            .3
            .entry(f(3).to_string())
            .or_default()
            .push(c);
    }
    let mut out = HashMap::new();
    for (id, (split, width, height, mut lab)) in by {
        let counts = |l: &str| lab.get(l).map_or(0, Vec::len);
        if (counts("DIP"), counts("PIP"), counts("MCP")) != (4, 5, 5)
            || ["Radius", "Ulna", "Wrist"].iter().any(|l| counts(l) != 1)
            || lab.len() != 6
        {
            continue;
        }
        let mut take = |l: &str| {
            let mut v = lab.remove(l).unwrap_or_default();
            v.sort_by(|a, b| a.0.total_cmp(&b.0));
            v
        };
        let (mut m, mut d, mut p) = (take("MCP"), take("DIP"), take("PIP"));
        let thumb_right = (m[4].0 - d[3].0) > (d[0].0 - m[0].0);
        if thumb_right {
            m.reverse();
            d.reverse();
            p.reverse();
        }
        let mut joints = Vec::with_capacity(17);
        let mut push = |name: String, c: (f64, f64)| joints.push((name, c.0, c.1));
        for (k, c) in d.into_iter().enumerate() {
            push(format!("dip{}", k + 2), c);
        }
        for (k, c) in p.into_iter().enumerate() {
            push(
                if k == 0 {
                    "ip1".into()
                } else {
                    format!("pip{}", k + 1)
                },
                c,
            );
        }
        for (k, c) in m.into_iter().enumerate() {
            push(format!("mcp{}", k + 1), c);
        }
        for (l, name) in [("Radius", "radius"), ("Ulna", "ulna"), ("Wrist", "wrist")] {
            push(name.into(), take(l)[0]);
        }
        out.insert(
            id,
            JointTruth {
                split,
                width,
                height,
                joints,
            },
        );
    }
    Ok(out)
}

/// Localisation error of the located joints against expert centres.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LocalisationStats {
    pub images: usize,
    pub joints: usize,
    /// Mean distance, in pixels of a 100 × 100 rendering of the image (fractions × 100).
    pub mean_px100: Option<f64>,
    pub median_px100: Option<f64>,
    /// Mean distance in pixels of the original radiograph.
    pub mean_px_original: Option<f64>,
    /// Share of joints within 5 px100 of the expert centre.
    pub within_5px100: Option<f64>,
    /// Mean px100 distance per joint name.
    pub per_joint_px100: Vec<(String, f64)>,
}

/// Compares predictions' landmarks with the expert joints of the same ids.
pub fn localisation(
    preds: &[Prediction],
    truth: &std::collections::HashMap<String, JointTruth>,
) -> LocalisationStats {
    let mut d100 = Vec::new();
    let mut dorig = 0.0;
    let mut images = 0;
    let mut per: Vec<(String, f64, usize)> = Vec::new();
    for p in preds {
        let Some(t) = truth.get(&p.id) else { continue };
        if p.landmarks.is_empty() {
            continue;
        }
        images += 1;
        for (name, x, y) in &t.joints {
            let Some((_, px, py)) = p.landmarks.iter().find(|l| &l.0 == name) else {
                continue;
            };
            let (dx, dy) = (px - x, py - y);
            let d = 100.0 * (dx * dx + dy * dy).sqrt();
            d100.push(d);
            dorig += ((dx * t.width).powi(2) + (dy * t.height).powi(2)).sqrt();
            match per.iter_mut().find(|e| &e.0 == name) {
                Some(e) => {
                    e.1 += d;
                    e.2 += 1;
                }
                None => per.push((name.clone(), d, 1)),
            }
        }
    }
    let n = d100.len();
    let mean = |v: f64| if n == 0 { None } else { Some(v / n as f64) };
    let mut sorted = d100.clone();
    sorted.sort_by(f64::total_cmp);
    LocalisationStats {
        images,
        joints: n,
        mean_px100: mean(d100.iter().sum()),
        median_px100: (n > 0).then(|| {
            if n % 2 == 1 {
                sorted[n / 2]
            } else {
                (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
            }
        }),
        mean_px_original: mean(dorig),
        within_5px100: mean(d100.iter().filter(|&&d| d <= 5.0).count() as f64),
        per_joint_px100: per.into_iter().map(|(j, s, c)| (j, s / c as f64)).collect(),
    }
}

/// Writes one CSV row per prediction (or per [`RotationRow`]).
pub fn write_predictions<T: Serialize>(path: &Path, preds: &[T]) -> Result<(), EvalError> {
    let err = |e: csv::Error| EvalError::Output {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let mut w = csv::Writer::from_path(path).map_err(err)?;
    for p in preds {
        w.serialize(p).map_err(err)?;
    }
    w.flush().map_err(|e| EvalError::Output {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(truth: f64, pred: Option<f64>, male: u8) -> Prediction {
        Prediction {
            id: "x".into(),
            boneage_months: truth,
            male,
            predicted_months: pred,
            interval_lo: pred.map(|v| v - 10.0),
            interval_hi: pred.map(|v| v + 10.0),
            rus_score: None,
            rus_bone_age_months: pred,
            error: if pred.is_some() {
                String::new()
            } else {
                "corrupt_image".into()
            },
            ..Prediction::default()
        }
    }

    #[test]
    fn summary_statistics() {
        let preds = vec![
            p(24.0, Some(30.0), 1),
            p(130.0, Some(110.0), 0),
            p(200.0, None, 1),
        ];
        let s = summarize(&preds);
        assert_eq!((s.images, s.analysed, s.rejected), (3, 2, 1));
        assert_eq!(s.overall.mae, Some(13.0));
        assert_eq!(s.overall.mean_signed_error, Some(-7.0));
        assert!((s.overall.rmse.unwrap() - ((36.0 + 400.0) / 2.0f64).sqrt()).abs() < 1e-9);
        assert_eq!(s.overall.coverage_90, Some(0.5));
        assert_eq!(s.by_age_band[0].1.mae, Some(6.0));
        assert_eq!(s.by_age_band[2].1.mae, Some(20.0));
        assert_eq!(s.by_age_band[3].1.n, 0);
        assert_eq!(s.by_sex[0].1.mae, Some(6.0));
        assert_eq!(s.tw3_rus_bone_age.n, 2);
        assert_eq!(s.tw3_rus_bone_age.mae, Some(13.0));
        assert_eq!(s.tw3_rus_bone_age.coverage_90, None);
    }

    #[test]
    fn rois_are_numbered_from_the_thumb_and_scored() {
        let dir = std::env::temp_dir().join(format!("boneage-rois-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("rois.csv");
        // A left hand 1000 x 1000: thumb on the right (large x); its MCP reaches
        // past the DIP row on that side. Boxes are 10 px, centred on (x, y).
        let mut csv =
            String::from("id,split,annotator,label,xmin,ymin,xmax,ymax,image_width,image_height\n");
        let mut add = |label: &str, x: f64, y: f64, who: &str| {
            csv += &format!(
                "7,eval,{who},{label},{},{},{},{},1000,1000\n",
                x - 5.0,
                y - 5.0,
                x + 5.0,
                y + 5.0
            )
        };
        for x in [200.0, 350.0, 500.0, 650.0] {
            add("DIP", x, 200.0, "expert");
        }
        for x in [200.0, 350.0, 500.0, 650.0, 850.0] {
            add("PIP", x, 300.0, "expert");
            add("MCP", x, 500.0, "expert");
        }
        add("Radius", 600.0, 900.0, "expert");
        add("Ulna", 400.0, 900.0, "expert");
        add("Wrist", 500.0, 750.0, "expert");
        add("DIP", 1.0, 1.0, "nonexpert"); // ignored
        std::fs::write(&f, csv).unwrap();
        let t = read_rois(&f).unwrap();
        let j = &t["7"];
        let get = |n: &str| {
            j.joints
                .iter()
                .find(|e| e.0 == n)
                .map(|e| (e.1, e.2))
                .unwrap()
        };
        assert_eq!(j.joints.len(), 17);
        assert_eq!(get("mcp1"), (0.85, 0.5));
        assert_eq!(get("ip1"), (0.85, 0.3));
        assert_eq!(get("dip2"), (0.65, 0.2));
        assert_eq!(get("dip5"), (0.2, 0.2));
        assert_eq!(get("pip5"), (0.2, 0.3));
        assert_eq!(get("wrist"), (0.5, 0.75));

        // One prediction 3 px100 off on every joint.
        let mut pred = p(100.0, Some(100.0), 1);
        pred.id = "7".into();
        pred.landmarks = j
            .joints
            .iter()
            .map(|(n, x, y)| (n.clone(), x + 0.03, *y))
            .collect();
        let s = localisation(&[pred], &t);
        assert_eq!((s.images, s.joints), (1, 17));
        assert!((s.mean_px100.unwrap() - 3.0).abs() < 1e-9);
        assert!((s.mean_px_original.unwrap() - 30.0).abs() < 1e-9);
        assert_eq!(s.within_5px100, Some(1.0));
    }

    #[test]
    fn manifest_errors_name_the_problem() {
        let dir = std::env::temp_dir().join(format!("boneage-eval-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let m = dir.join("m.csv");
        std::fs::write(
            &m,
            "id,image,boneage_months,male\n1,a.png,100,1\n2,b.png,abc,0\n",
        )
        .unwrap();
        let e = read_manifest(&m, None).unwrap_err().to_string();
        assert!(e.contains("line 3"), "{e}");
        std::fs::write(&m, "id,image,male\n1,a.png,1\n").unwrap();
        assert!(read_manifest(&m, None)
            .unwrap_err()
            .to_string()
            .contains("boneage_months"));
        std::fs::write(&m, "id,image,boneage_months,male\n7,img/a.png,100.5,0\n").unwrap();
        let rows = read_manifest(&m, None).unwrap();
        assert_eq!(rows[0].image, dir.join("img/a.png"));
        assert_eq!(rows[0].sex, Sex::Female);
    }
}
