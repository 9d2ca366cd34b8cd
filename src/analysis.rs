//! The pipeline: decode → preprocess → model → scoring → growth → report.
//! Every face (HTTP, CLI, batch) calls [`Analyzer::analyze`].

use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};
use time::Date;

use crate::decode::{self, DecodeLimits, GreyImage};
use crate::dicom::DicomHeader;
use crate::error::AnalysisError;
use crate::growth;
use crate::growth::height::HeightReference;
use crate::model::{Backend, ModelInfo, ModelOutput, StageBasis};
use crate::preprocess;
use crate::quality::{self, Corrections, ShapeFit};
use crate::report::{
    AnalysisReport, BoneAge, ExamGrowth, FieldSource, InputInfo, Joint, Landmark, Measurements,
    ModelRef, Origin, Point, Quality, SdsDetail, ShapeCheck, SourceInfo, Timings, Tw3,
};
use crate::scoring::{self, Bone};
use crate::Sex;

/// z of the two-sided 90% normal interval.
const Z90: f64 = 1.644_853_626_951_472_2;
/// Oldest chronological age accepted (months): the references stop at 19–20 years.
const MAX_AGE_MONTHS: f64 = 240.0;

/// What the caller says about the exam, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisRequest {
    pub sex: Sex,
    pub chronological_age_months: Option<f64>,
    /// ISO dates, when the request or the DICOM header gave them.
    pub birth_date: Option<String>,
    pub exam_date: Option<String>,
    pub measurements: Measurements,
    pub height_reference: HeightReference,
}

impl AnalysisRequest {
    /// A request with only sex and (optionally) age: no dates, no measurements.
    pub fn new(sex: Sex, chronological_age_months: Option<f64>) -> Self {
        AnalysisRequest {
            sex,
            chronological_age_months,
            birth_date: None,
            exam_date: None,
            measurements: Measurements::default(),
            height_reference: HeightReference::default(),
        }
    }
}

/// The request's fields as text, exactly as a face received them.
#[derive(Debug, Clone, Default)]
pub struct RawFields {
    pub sex: Option<String>,
    pub chronological_age_months: Option<String>,
    pub birth_date: Option<String>,
    pub exam_date: Option<String>,
    pub height_cm: Option<String>,
    pub weight_kg: Option<String>,
    pub mother_height_cm: Option<String>,
    pub father_height_cm: Option<String>,
    pub tw2_rus_bone_age_months: Option<String>,
    pub menarche: Option<String>,
    pub height_reference: Option<String>,
    /// The exam date to use when neither the request nor a DICOM header gives one
    /// (a face sets it, e.g. to today's date for an exam filed under a patient).
    /// Not a request field.
    pub exam_date_fallback: Option<String>,
    /// The fields (`sex`, `birth_date`) a face filled from a stored patient record,
    /// so that `source` says so. Not a request field.
    pub from_patient: Vec<&'static str>,
}

/// A measured quantity the request may carry: API name, unit word, accepted range.
const MEASURES: [(&str, &str, f64, f64); 5] = [
    ("height_cm", "cm", 30.0, 250.0),
    ("weight_kg", "kg", 0.5, 300.0),
    ("mother_height_cm", "cm", 100.0, 250.0),
    ("father_height_cm", "cm", 100.0, 250.0),
    ("tw2_rus_bone_age_months", "months", 0.0, MAX_AGE_MONTHS),
];

impl RawFields {
    /// Sets a field by its API name; unknown names are an error (typos must not pass silently).
    pub fn set(&mut self, name: &str, value: String) -> Result<(), AnalysisError> {
        let slot = match name {
            "sex" => &mut self.sex,
            "chronological_age_months" | "age_months" => &mut self.chronological_age_months,
            "birth_date" => &mut self.birth_date,
            "exam_date" => &mut self.exam_date,
            "height_cm" => &mut self.height_cm,
            "weight_kg" => &mut self.weight_kg,
            "mother_height_cm" => &mut self.mother_height_cm,
            "father_height_cm" => &mut self.father_height_cm,
            "tw2_rus_bone_age_months" => &mut self.tw2_rus_bone_age_months,
            "menarche" => &mut self.menarche,
            "height_reference" => &mut self.height_reference,
            _ => {
                return Err(AnalysisError::InvalidField {
                    field: "fields",
                    reason: format!(
                        "unknown field `{}`",
                        name.chars().take(64).collect::<String>()
                    ),
                })
            }
        };
        if value.len() > 256 {
            return Err(AnalysisError::invalid(
                "fields",
                format!("field `{name}` is longer than 256 bytes"),
            ));
        }
        *slot = Some(value);
        Ok(())
    }

    /// Validates the fields into a request (no DICOM header to fill gaps from).
    pub fn into_request(self) -> Result<AnalysisRequest, AnalysisError> {
        self.resolve(None).map(|(req, _)| req)
    }

    /// Checks every field that is present, without requiring any: the cheap
    /// validation a face runs before queueing, when a DICOM header may still
    /// supply what is missing.
    pub fn precheck(&self) -> Result<(), AnalysisError> {
        if let Some(t) = &self.sex {
            parse_sex(t)?;
        }
        if let Some(t) = &self.chronological_age_months {
            parse_age_months(t)?;
        }
        if let Some(t) = &self.birth_date {
            parse_date("birth_date", t)?;
        }
        if let Some(t) = &self.exam_date {
            parse_date("exam_date", t)?;
        }
        if self.chronological_age_months.is_some()
            && (self.birth_date.is_some() || self.exam_date.is_some())
        {
            return Err(both_ages());
        }
        self.measurements()?;
        self.reference()?;
        Ok(())
    }

    /// The fields as stored with an exam (`exams.inputs_json`): every field as
    /// received, so that a re-scoring can run the same request again
    /// ([`RawFields::from_json`]).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "sex": self.sex,
            "chronological_age_months": self.chronological_age_months,
            "birth_date": self.birth_date,
            "exam_date": self.exam_date,
            "exam_date_fallback": self.exam_date_fallback,
            "height_cm": self.height_cm,
            "weight_kg": self.weight_kg,
            "mother_height_cm": self.mother_height_cm,
            "father_height_cm": self.father_height_cm,
            "tw2_rus_bone_age_months": self.tw2_rus_bone_age_months,
            "menarche": self.menarche,
            "height_reference": self.height_reference,
            "from_patient": self.from_patient,
        })
    }

    /// The fields back from [`RawFields::to_json`]; keys it does not know (e.g.
    /// `store_image`, `source`) are ignored, missing ones are absent fields.
    pub fn from_json(v: &serde_json::Value) -> RawFields {
        let text = |k: &str| v.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let from_patient = v
            .get("from_patient")
            .and_then(|v| v.as_array())
            .map(|list| {
                list.iter()
                    .filter_map(|v| match v.as_str() {
                        Some("sex") => Some("sex"),
                        Some("birth_date") => Some("birth_date"),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        RawFields {
            sex: text("sex"),
            chronological_age_months: text("chronological_age_months"),
            birth_date: text("birth_date"),
            exam_date: text("exam_date"),
            height_cm: text("height_cm"),
            weight_kg: text("weight_kg"),
            mother_height_cm: text("mother_height_cm"),
            father_height_cm: text("father_height_cm"),
            tw2_rus_bone_age_months: text("tw2_rus_bone_age_months"),
            menarche: text("menarche"),
            height_reference: text("height_reference"),
            exam_date_fallback: text("exam_date_fallback"),
            from_patient,
        }
    }

    /// The measurements, validated (each optional; a present one must be a number
    /// in its plausible range).
    pub fn measurements(&self) -> Result<Measurements, AnalysisError> {
        let texts = [
            &self.height_cm,
            &self.weight_kg,
            &self.mother_height_cm,
            &self.father_height_cm,
            &self.tw2_rus_bone_age_months,
        ];
        let mut vals = [None; 5];
        for (i, ((name, unit, lo, hi), text)) in MEASURES.iter().zip(texts).enumerate() {
            if let Some(t) = text {
                let v: f64 = t
                    .trim()
                    .parse()
                    .map_err(|_| AnalysisError::invalid(name, format!("{t:?} is not a number")))?;
                if !v.is_finite() || v < *lo || v > *hi {
                    return Err(AnalysisError::invalid(
                        name,
                        format!("{v} is outside the plausible range {lo}–{hi} {unit}"),
                    ));
                }
                vals[i] = Some(v);
            }
        }
        let menarche = match self
            .menarche
            .as_deref()
            .map(|t| t.trim().to_ascii_lowercase())
        {
            None => None,
            Some(t) => match t.as_str() {
                "true" | "yes" | "1" | "post" | "postmenarcheal" => Some(true),
                "false" | "no" | "0" | "pre" | "premenarcheal" => Some(false),
                _ => {
                    return Err(AnalysisError::invalid(
                        "menarche",
                        format!("{t:?} is not `true` (postmenarcheal) or `false` (premenarcheal)"),
                    ))
                }
            },
        };
        let [height_cm, weight_kg, mother_height_cm, father_height_cm, tw2_rus_bone_age_months] =
            vals;
        Ok(Measurements {
            height_cm,
            weight_kg,
            mother_height_cm,
            father_height_cm,
            tw2_rus_bone_age_months,
            menarche,
        })
    }

    fn reference(&self) -> Result<HeightReference, AnalysisError> {
        match self.height_reference.as_deref().map(str::trim) {
            None | Some("who") => Ok(HeightReference::Who),
            Some("cdc") => Ok(HeightReference::Cdc),
            Some(t) => Err(AnalysisError::invalid(
                "height_reference",
                format!("{t:?} is not `who` (WHO 2006/2007) or `cdc` (CDC 2000)"),
            )),
        }
    }

    /// Validates the fields into a request, filling what the request left out from
    /// the DICOM header (PatientSex; PatientBirthDate; StudyDate, else
    /// AcquisitionDate). A request field always wins over the header; where the two
    /// disagree the returned [`FieldSource`] says so.
    pub fn resolve(
        self,
        header: Option<&DicomHeader>,
    ) -> Result<(AnalysisRequest, Vec<FieldSource>), AnalysisError> {
        let measurements = self.measurements()?;
        let height_reference = self.reference()?;
        let mut sources = Vec::new();
        let h_sex = header.and_then(|h| h.patient_sex.clone());
        let sex = match (self.sex, h_sex) {
            (Some(t), h) => {
                let s = parse_sex(&t)?;
                let conflict = h.as_deref().and_then(Sex::parse).is_some_and(|hs| hs != s);
                sources.push(FieldSource::request("sex", s.as_str(), h, conflict));
                s
            }
            (None, Some(h)) => {
                let s = Sex::parse(&h).ok_or_else(|| {
                    AnalysisError::MissingField(format!(
                        "field `sex` is required (male or female): the DICOM PatientSex is {:?}",
                        h.chars().take(16).collect::<String>()
                    ))
                })?;
                sources.push(FieldSource::dicom("sex", s.as_str()));
                s
            }
            (None, None) => {
                return Err(AnalysisError::MissingField(
                    "field `sex` is required (male or female)".into(),
                ))
            }
        };

        let h_birth = header.and_then(|h| h.patient_birth_date.clone());
        let h_exam = header.and_then(|h| h.study_date.clone().or(h.acquisition_date.clone()));
        // The header's own age, to compare with a request that states one.
        let header_age = match (&h_birth, &h_exam) {
            (Some(b), Some(e)) => age_from_dates(b, e).ok(),
            _ => None,
        };
        let mut dates: (Option<String>, Option<String>) = (None, None);
        let chronological_age_months = if let Some(t) = self.chronological_age_months {
            if self.birth_date.is_some() || self.exam_date.is_some() {
                return Err(both_ages());
            }
            let age = parse_age_months(&t)?;
            let conflict = header_age.is_some_and(|h| (h - age).abs() > 1.0);
            sources.push(FieldSource::request(
                "chronological_age_months",
                &format!("{age}"),
                header_age.map(|h| format!("{h}")),
                conflict,
            ));
            Some(age)
        } else {
            let mut pick = |field: &'static str,
                            given: Option<String>,
                            from_header: Option<String>| {
                match (given, from_header) {
                    (Some(g), h) => {
                        let g = g.trim().to_string();
                        let conflict = h.as_deref().is_some_and(|h| h != g);
                        sources.push(FieldSource::request(field, &g, h, conflict));
                        Some((g, false))
                    }
                    (None, Some(h)) => {
                        sources.push(FieldSource::dicom(field, &h));
                        Some((h, true))
                    }
                    (None, None) => None,
                }
            };
            let birth = pick("birth_date", self.birth_date, h_birth);
            let mut exam = pick("exam_date", self.exam_date, h_exam);
            if exam.is_none() && birth.is_some() {
                if let Some(d) = self.exam_date_fallback {
                    parse_date("exam_date", &d)?;
                    sources.push(FieldSource::server("exam_date", d.trim()));
                    exam = Some((d.trim().to_string(), false));
                }
            }
            dates = (
                birth.as_ref().map(|(b, _)| b.clone()),
                exam.as_ref().map(|(e, _)| e.clone()),
            );
            match (birth, exam) {
                // Dates that both come from the header and make no sense (exam
                // before birth, beyond the references) give no age rather than an error.
                (Some((b, true)), Some((e, true))) => age_from_dates(&b, &e).ok(),
                (Some((b, _)), Some((e, _))) => Some(age_from_dates(&b, &e)?),
                (Some((_, false)), None) => {
                    return Err(AnalysisError::invalid(
                        "exam_date",
                        "birth_date needs exam_date too",
                    ))
                }
                (None, Some((_, false))) => {
                    return Err(AnalysisError::invalid(
                        "birth_date",
                        "exam_date needs birth_date too",
                    ))
                }
                // Half a pair from the header alone gives no age, and no error.
                _ => None,
            }
        };
        // Fields a face filled from a stored patient record say so.
        for s in sources.iter_mut() {
            if self.from_patient.contains(&s.field) && s.from == Origin::Request {
                s.from = Origin::Patient;
            }
        }
        let (birth_date, exam_date) = dates;
        Ok((
            AnalysisRequest {
                sex,
                chronological_age_months,
                birth_date,
                exam_date,
                measurements,
                height_reference,
            },
            sources,
        ))
    }
}

fn both_ages() -> AnalysisError {
    AnalysisError::invalid(
        "chronological_age_months",
        "give either chronological_age_months or birth_date + exam_date, not both",
    )
}

fn parse_sex(t: &str) -> Result<Sex, AnalysisError> {
    Sex::parse(t)
        .ok_or_else(|| AnalysisError::invalid("sex", format!("{t:?} is not `male` or `female`")))
}

fn parse_age_months(t: &str) -> Result<f64, AnalysisError> {
    let v: f64 = t.trim().parse().map_err(|_| {
        AnalysisError::invalid("chronological_age_months", format!("{t:?} is not a number"))
    })?;
    if !v.is_finite() || !(0.0..=MAX_AGE_MONTHS).contains(&v) {
        return Err(AnalysisError::invalid(
            "chronological_age_months",
            format!("{v} is outside 0–{MAX_AGE_MONTHS} months"),
        ));
    }
    Ok(v)
}

/// An ISO calendar date (`YYYY-MM-DD`, surrounding spaces ignored).
pub fn parse_iso_date(t: &str) -> Option<Date> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(t.trim(), &fmt).ok()
}

/// `YYYY-MM-DD`.
pub fn iso_date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

fn parse_date(field: &'static str, t: &str) -> Result<Date, AnalysisError> {
    parse_iso_date(t).ok_or_else(|| {
        AnalysisError::invalid(field, format!("{t:?} is not an ISO date (YYYY-MM-DD)"))
    })
}

/// Age in months between two ISO dates (days / 30.4375, the mean Gregorian month).
pub fn age_from_dates(birth: &str, exam: &str) -> Result<f64, AnalysisError> {
    let b = parse_date("birth_date", birth)?;
    let e = parse_date("exam_date", exam)?;
    let days = (e - b).whole_days();
    if days < 0 {
        return Err(AnalysisError::invalid(
            "exam_date",
            "the exam date is before the birth date",
        ));
    }
    let months = days as f64 / 30.4375;
    if months > MAX_AGE_MONTHS {
        return Err(AnalysisError::invalid(
            "birth_date",
            format!("age {months:.1} months is beyond {MAX_AGE_MONTHS} months"),
        ));
    }
    Ok((months * 100.0).round() / 100.0)
}

/// Runs the whole pipeline with one shared model.
pub struct Analyzer {
    model: Arc<dyn Backend>,
    limits: DecodeLimits,
    quality_control: bool,
}

impl Analyzer {
    pub fn new(model: Arc<dyn Backend>, limits: DecodeLimits) -> Self {
        Analyzer {
            model,
            limits,
            quality_control: true,
        }
    }

    /// The model alone, one pass on the image as given: no shape check, no
    /// corrections, no `not_a_hand` (exposure is still checked). For measuring the
    /// model as the training script does (`boneage eval --no-quality-control`).
    pub fn without_quality_control(mut self) -> Self {
        self.quality_control = false;
        self
    }

    pub fn model(&self) -> &dyn Backend {
        self.model.as_ref()
    }

    pub fn limits(&self) -> &DecodeLimits {
        &self.limits
    }

    /// Analyses one radiograph file (PNG or JPEG bytes).
    pub fn analyze(
        &self,
        bytes: &[u8],
        req: &AnalysisRequest,
    ) -> Result<AnalysisReport, AnalysisError> {
        let t0 = Instant::now();
        let decoded = decode::decode_upload(bytes, &self.limits)?;
        let source = SourceInfo {
            fields: Vec::new(),
            dicom: decoded.dicom,
        };
        self.run(t0, bytes, decoded.image, req, source)
    }

    /// Analyses decoded pixels (for measurements that alter an image, such as
    /// `boneage eval --rotations`); the report's `input.sha256` is that of the
    /// pixel values, not of a file.
    pub fn analyze_image(
        &self,
        img: GreyImage,
        req: &AnalysisRequest,
    ) -> Result<AnalysisReport, AnalysisError> {
        let t0 = Instant::now();
        let bytes: &[u8] = bytemuck::cast_slice(&img.pixels);
        let bytes = bytes.to_vec();
        let source = SourceInfo {
            fields: Vec::new(),
            dicom: None,
        };
        self.run(t0, &bytes, img, req, source)
    }

    /// Analyses one upload with the caller's fields as received; a DICOM header
    /// fills what they leave out (see [`RawFields::resolve`]) and the report's
    /// `source` says where each field came from.
    pub fn analyze_upload(
        &self,
        bytes: &[u8],
        fields: RawFields,
    ) -> Result<AnalysisReport, AnalysisError> {
        let t0 = Instant::now();
        // Bad field values are reported before anything is decoded.
        fields.precheck()?;
        let decoded = decode::decode_upload(bytes, &self.limits)?;
        let (req, fields) = fields.resolve(decoded.dicom.as_ref())?;
        let source = SourceInfo {
            fields,
            dicom: decoded.dicom,
        };
        self.run(t0, bytes, decoded.image, &req, source)
    }

    fn run(
        &self,
        t0: Instant,
        bytes: &[u8],
        img: GreyImage,
        req: &AnalysisRequest,
        source: SourceInfo,
    ) -> Result<AnalysisReport, AnalysisError> {
        // Identifies the upload (history, re-scoring); counted with decoding.
        let sha256 = hex::encode(Sha256::digest(bytes));
        let t1 = Instant::now();
        let exposure = quality::exposure(&img);
        quality::check_exposure(&exposure)?;
        let input = InputInfo {
            format: img.format,
            width: img.width,
            height: img.height,
            bit_depth: img.bit_depth,
            sha256,
        };
        let mut t_pre = 0.0;
        let mut t_inf = 0.0;
        let mut timed = |im: &GreyImage| -> Result<ModelOutput, AnalysisError> {
            let a = Instant::now();
            let tensor = preprocess::preprocess(im, self.model.preprocess_spec())?;
            let b = Instant::now();
            let out = self.model.infer(tensor, req.sex)?;
            t_pre += (b - a).as_secs_f64() * 1000.0;
            t_inf += b.elapsed().as_secs_f64() * 1000.0;
            Ok(out)
        };
        let info = self.model.info();
        let mut views_turned_deg = 0.0;
        let mut views_zoom = None;
        let mut views_box = None;
        let mut view_passes = 0usize;
        let calibration = info.quality.as_ref().filter(|_| self.quality_control);
        let (mut out, qc, unturned) = match calibration {
            None => (timed(&img)?, None, img),
            Some(th) => {
                let (out, q, unturned) = quality_passes(img, th, &mut timed)?;
                (out, Some((q, th)), unturned)
            }
        };
        // The bone age is read from the model's views of the final image: the
        // declared test-time views (or the image alone), all turned to the template
        // hand's pose when quality control has measured the pose. The joints and
        // stages stay those of the final pass on the image as shown.
        // Only a left-hand fit says which way is upright; otherwise the views keep the
        // image's own correction (or none).
        let turn = qc.as_ref().and_then(|(q, _)| {
            let c = q.corrections.rotation_deg;
            if !q.fit.reflected {
                Some(c + q.fit.rotation_deg)
            } else {
                (c != 0.0).then_some(c)
            }
        });
        // The hand framed as the typical training film frames it, when the model says
        // how that is (a small hand on a wide canvas or a film scanned askew then reads
        // as a typical one): the box comes from the final pass's joints, and is found
        // again on the framed hand below.
        let typical = qc.as_ref().and_then(|(_, th)| th.hand_frame.as_ref());
        let (w, h) = (unturned.width as f64, unturned.height as f64);
        let first_box = qc.as_ref().zip(typical).and_then(|((q, _), typical)| {
            framing_from_joints(
                typical,
                &out,
                &preprocess::Affine::IDENTITY,
                (w, h),
                q.corrections.rotation_deg,
                turn.unwrap_or(0.0),
            )
        });
        let mut framing = None;
        if info.tta.is_some() || turn.is_some() || first_box.is_some() {
            let a = Instant::now();
            let declared = info
                .tta
                .as_ref()
                .map_or(vec![preprocess::View::IDENTITY], |t| t.views.clone());
            // Turned in the image's own geometry. An upload at least four times the
            // model's input is turned at that size, so that the resampling is lost in
            // the resize to the input (a turned film then reads as the original); a
            // smaller one is turned within each view, sampled once.
            let spec = self.model.preprocess_spec();
            let big = if unturned.width >= 4 * spec.width || unturned.height >= 4 * spec.height {
                let scaled = preprocess::scale_to(&unturned, spec, 4)?;
                Some(quality::shift_to_black(scaled))
            } else {
                None
            };
            let framed_views = |f: &quality::Framing, views: &[preprocess::View]| match &big {
                Some(b) => preprocess::preprocess_views(&quality::frame(b, f), spec, views),
                None => {
                    preprocess::preprocess_framed_views(&unturned, spec, views, &f.affine(w, h))
                }
            };
            // The box is found once more on the framed hand, where the model locates
            // the joints at the size it was trained on (on a small hand they stray).
            // One model pass; a second refinement was measured worse (model card).
            let mut refine_ms = 0.0;
            let mut refine_passes = 0;
            if let Some((typical, f)) = typical.zip(first_box) {
                let mut refined = None;
                if let Some(t) = framed_views(&f, &[preprocess::View::IDENTITY])?.pop() {
                    let r = Instant::now();
                    let o = self.model.infer(t, req.sex)?;
                    refine_ms = r.elapsed().as_secs_f64() * 1000.0;
                    refine_passes = 1;
                    refined =
                        framing_from_joints(typical, &o, &f.affine(w, h), (w, h), 0.0, f.turn_deg);
                }
                framing = Some(refined.unwrap_or(f));
            }
            let framed = framing.or(turn.map(|d| quality::Framing {
                turn_deg: d,
                ..quality::Framing::WHOLE
            }));
            let tensors = match framed {
                Some(f) => framed_views(&f, &declared)?,
                None => {
                    // The identity view of the untouched image is the pass already made.
                    let others: Vec<preprocess::View> = declared
                        .iter()
                        .copied()
                        .filter(|v| !v.is_identity())
                        .collect();
                    preprocess::preprocess_views(&unturned, spec, &others)?
                }
            };
            let reuse_identity = framed.is_none() && declared.iter().any(|v| v.is_identity());
            let views = declared;
            let b = Instant::now();
            let (mut sum_mean, mut sum_lv) = (0.0f64, 0.0f64);
            if reuse_identity {
                sum_mean += out.bone_age_months as f64;
                sum_lv += out.bone_age_log_var as f64;
            }
            for t in tensors {
                let o = self.model.infer(t, req.sex)?;
                sum_mean += o.bone_age_months as f64;
                sum_lv += o.bone_age_log_var as f64;
            }
            let n = views.len() as f64;
            out.bone_age_months = (sum_mean / n) as f32;
            out.bone_age_log_var =
                (sum_lv / n) as f32 + info.tta.as_ref().map_or(0.0, |t| t.log_var_shift);
            // The refinement's model pass is inference, though it ran between a and b.
            t_pre += (b - a).as_secs_f64() * 1000.0 - refine_ms;
            t_inf += b.elapsed().as_secs_f64() * 1000.0 + refine_ms;
            views_turned_deg = framed.map_or(0.0, |f| round2(f.turn_deg));
            let view_box = framing.map(|f| f.view_box());
            views_zoom = view_box.map(|b| round4(b.zoom()));
            views_box = view_box.map(|b| quality::ViewBox {
                center: b.center.map(round4),
                half: b.half.map(round4),
            });
            view_passes = views.len() - usize::from(reuse_identity) + refine_passes;
        }
        let t3 = Instant::now();
        let geometry = qc.as_ref().map(|(q, _)| quality::Geometry {
            width: input.width as f64,
            height: input.height as f64,
            corrections: q.corrections,
        });
        let mut report = build_report(&out, req, info, input, geometry.as_ref());
        report.source = source;
        report.quality = Quality {
            decision: "accepted",
            exposure,
            shape: qc.as_ref().map(|(q, th)| ShapeCheck {
                residual: round4(q.fit.residual),
                max_residual: th.max_shape_residual,
                sd_months: report.bone_age.sd_months,
                max_sd_months: th.max_sd_months,
            }),
            corrections: qc
                .as_ref()
                .map(|(q, _)| Corrections {
                    views_turned_deg,
                    views_zoom,
                    views_box,
                    ..q.corrections
                })
                .unwrap_or_default(),
            passes: qc.as_ref().map_or(1, |(q, _)| q.passes),
            view_passes,
            hands: qc.as_ref().map(|(q, _)| q.hands),
            laterality: qc.as_ref().map(|(q, _)| {
                if q.corrections.mirrored {
                    "right"
                } else {
                    "left"
                }
            }),
        };
        let t4 = Instant::now();
        let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1000.0;
        report.timings_ms = Timings {
            decode: ms(t0, t1),
            preprocess: t_pre,
            inference: t_inf,
            scoring: ms(t3, t4),
            total: ms(t0, Instant::now()),
        };
        Ok(report)
    }
}

/// The framing box of the hand whose joints `out` located in a view that reads the
/// `w`×`h` image through `view` (normalised coordinates, [`preprocess::Affine`]); the
/// image is the upload turned by `image_turn_deg`, the box is of it turned by
/// `turn_deg` ([`quality::Framing::restoring`]).
fn framing_from_joints(
    typical: &quality::HandFrame,
    out: &ModelOutput,
    view: &preprocess::Affine,
    (w, h): (f64, f64),
    image_turn_deg: f64,
    turn_deg: f64,
) -> Option<quality::Framing> {
    let pts = joints_in_pixels(out, view, (w, h));
    quality::Framing::restoring(typical, &pts, w, h, image_turn_deg, turn_deg)
}

/// The joints `out` located in a view that reads the `w`×`h` image through `view`
/// (normalised coordinates, [`preprocess::Affine`]), in that image's pixels.
fn joints_in_pixels(
    out: &ModelOutput,
    view: &preprocess::Affine,
    (w, h): (f64, f64),
) -> Vec<(f64, f64)> {
    out.joint_points
        .iter()
        .map(|p| {
            let (x, y) = view.apply((2.0 * p[0] as f64 - 1.0, 2.0 * p[1] as f64 - 1.0));
            ((x + 1.0) * w / 2.0, (y + 1.0) * h / 2.0)
        })
        .collect()
}

/// The outcome of quality control: the fit of the final pass and what was corrected.
struct QcOutcome {
    fit: ShapeFit,
    hands: quality::HandCount,
    corrections: Corrections,
    passes: u8,
}

/// Runs the model on the image, then as often as needed on its corrected versions:
/// inverted when that fits a hand better, turned upright beyond the rotation the
/// model tolerates, mirrored for a right hand. Refuses with `not_a_hand` when the
/// final pass does not show a hand, or shows one that reads as a right hand both as
/// sent and mirrored, and with `multiple_hands` when the model finds a second hand
/// in a wide strip beside the first.
fn quality_passes(
    img: GreyImage,
    th: &quality::Thresholds,
    infer: &mut dyn FnMut(&GreyImage) -> Result<ModelOutput, AnalysisError>,
) -> Result<(ModelOutput, QcOutcome, GreyImage), AnalysisError> {
    let points = |out: &ModelOutput, im: &GreyImage| {
        joints_in_pixels(
            out,
            &preprocess::Affine::IDENTITY,
            (im.width as f64, im.height as f64),
        )
    };
    let fit_of = |out: &ModelOutput, im: &GreyImage| -> ShapeFit {
        quality::fit_shape(&points(out, im), &th.template).unwrap_or(ShapeFit {
            residual: 1.0,
            reflected: false,
            rotation_deg: 0.0,
        })
    };
    let sd = |out: &ModelOutput| (0.5 * out.bone_age_log_var as f64).exp();
    let hand_shaped = |f: &ShapeFit| f.residual <= th.max_shape_residual;
    let clear =
        |f: &ShapeFit| f.residual <= quality::SEARCH_MAX_RESIDUAL_SHARE * th.max_shape_residual;
    let mut passes = 0u8;
    let mut infer = |im: &GreyImage| {
        passes += 1;
        infer(im)
    };
    // One hand only: counted before the model, on the image as sent (bright bone on a
    // dark background; a frame that looks inverted is counted inverted).
    let hands = if quality::looks_inverted(&img) {
        quality::check_single_hand(&quality::invert(&img))?
    } else {
        quality::check_single_hand(&img)?
    };
    let mut work = img;
    let mut out = infer(&work)?;
    let mut fit = fit_of(&out, &work);
    let mut corrections = Corrections::default();
    // Retried inverted only when the frame looks inverted (a bright border): a turned
    // film on a black canvas, or one with a white border, can otherwise score better
    // inverted with joints the model imagines there.
    if th.score(&fit, sd(&out)) > quality::RETRY_INVERTED_SCORE && quality::looks_inverted(&work) {
        let inv = quality::invert(&work);
        let out2 = infer(&inv)?;
        let fit2 = fit_of(&out2, &inv);
        // Kept only when it shows a hand with bright bones: a hand the model lost to
        // a large turn scores badly both ways and is searched for below, not
        // inverted, and a film on a bright canvas or with a white border can score
        // better inverted, with the joints then on dark bone.
        if fit2.residual <= th.max_shape_residual
            && th.score(&fit2, sd(&out2)) < th.score(&fit, sd(&out))
            && quality::joints_look_bright(&inv, &points(&out2, &inv))
        {
            (work, out, fit) = (inv, out2, fit2);
            corrections.inverted = true;
        }
    }
    // A small hand on a wide canvas, which the model sees at its input size and may
    // not find there (or finds, unsure), is looked for once more in the box of the
    // largest bright region; its joints are then kept in the frame's own coordinates.
    if !clear(&fit) || !th.accepts(&fit, sd(&out)) {
        if let Some(b) = hands.largest_box.and_then(quality::hand_crop) {
            let (w, h) = (work.width as f64, work.height as f64);
            let im = quality::frame(&work, &b);
            let mut o = infer(&im)?;
            o.joint_points = joints_in_pixels(&o, &b.affine(w, h), (w, h))
                .into_iter()
                .map(|(x, y)| [(x / w) as f32, (y / h) as f32])
                .collect();
            let f = fit_of(&o, &work);
            if clear(&f) && th.score(&f, sd(&o)) < th.score(&fit, sd(&out)) {
                (out, fit) = (o, f);
            }
        }
    }
    // Turned first: the model locates joints reliably only on a nearly upright hand,
    // so side (mirror) is read after, on the turned hand. A hand-shaped fit says how
    // far to turn (as the hand it shows: a reflected fit's turn is that of a right
    // hand); one that is not clearly a hand (the model lost it beyond its trained
    // rotations, or read a tilted left hand as a right one) is also tried an eighth
    // of a turn either way, and so is a first reading that ends refused.
    let first = (out.clone(), fit);
    let mut mirrored = false;
    let mut turned = 0.0;
    for round in 0..2 {
        if round == 1 {
            if th.accepts(&fit, sd(&out)) || !clear(&first.1) {
                break; // accepted, or the search below already ran in round 0
            }
            (out, fit) = first.clone();
            (mirrored, turned) = (false, 0.0);
        }
        // A fit that is not clearly a hand may have been misled by the tilt itself
        // (at an eighth of a turn the joints of a left hand can fit a right one).
        let searching = !clear(&fit) || round == 1;
        // Turns tried: blind ones when searching, then the fit's own, at most twice,
        // while the hand it shows is still beyond the tolerated tilt (a fit far from
        // upright says only roughly how far to turn).
        let blind: &[f64] = if searching {
            &[-quality::SEARCH_TURN_DEG, quality::SEARCH_TURN_DEG]
        } else {
            &[]
        };
        let mut corrective = 0;
        let mut k = 0;
        loop {
            let deg = if k < blind.len() {
                blind[k]
            } else if corrective < 2
                && hand_shaped(&fit)
                && fit.upright_turn_deg().abs()
                    > if clear(&fit) {
                        quality::ROTATION_CORRECTION_DEG
                    } else {
                        quality::UNCLEAR_CORRECTION_DEG
                    }
            {
                corrective += 1;
                turned + fit.upright_turn_deg()
            } else {
                break;
            };
            let is_blind = k < blind.len();
            k += 1;
            let im = quality::rotate(&work, deg);
            let out2 = infer(&im)?;
            let fit2 = fit_of(&out2, &im);
            // A blind turn is kept only for a clear hand shape, so that the search
            // does not find hands in what is not one; a turn the fit asked for, also
            // when it leaves an acceptable hand more upright.
            let better = th.score(&fit2, sd(&out2)) <= th.score(&fit, sd(&out))
                || (hand_shaped(&fit2) && fit2.residual <= fit.residual);
            let kept = if is_blind {
                clear(&fit2) && better
            } else {
                better
                    || (clear(&fit2)
                        && th.accepts(&fit2, sd(&out2))
                        && fit2.upright_turn_deg().abs() < fit.upright_turn_deg().abs())
            };
            if kept {
                (out, fit, turned) = (out2, fit2, deg);
            } else if !is_blind {
                break;
            }
        }
        if hand_shaped(&fit) && fit.reflected {
            // A right hand. Mirroring after a
            // turn by θ equals turning the mirrored image by −θ, which is how the
            // corrections are kept (mirror, then turn).
            let im = quality::mirror(&work);
            let im = if turned != 0.0 {
                quality::rotate(&im, -turned)
            } else {
                im
            };
            let out2 = infer(&im)?;
            let fit2 = fit_of(&out2, &im);
            // Kept when it then reads as a left hand: a hand whose joints read as a
            // right hand both ways is not made one (and is refused below).
            if !fit2.reflected {
                (out, fit) = (out2, fit2);
                (mirrored, turned) = (true, -turned);
            }
        }
    }
    if mirrored {
        work = quality::mirror(&work);
        corrections.mirrored = true;
    }
    corrections.rotation_deg = round2(turned);
    if hand_shaped(&fit) && fit.reflected && th.accepts(&fit, sd(&out)) {
        return Err(AnalysisError::NotAHand(format!(
            "the side of the hand could not be told: its located joints fit a right hand \
             both as sent and mirrored (shape residual {:.3}). Send a PA radiograph of one \
             hand, palm down, fingers up.",
            fit.residual
        )));
    }
    if !th.accepts(&fit, sd(&out)) {
        return Err(AnalysisError::NotAHand(format!(
            "no hand radiograph the model can read was found: the located joints do not form \
             a hand (shape residual {:.3}, limit {:.3}) or the model is too unsure (SD {:.1} \
             months, limit {:.1}). Send a PA radiograph of one hand, not another body part, \
             both hands or a photograph.",
            fit.residual,
            th.max_shape_residual,
            sd(&out),
            th.max_sd_months
        )));
    }
    // A second hand beside the first, which the count before the model missed (a
    // bright film frame joins them, or the films are faint): where the located hand
    // leaves a wide strip of the image, the model looks there for a clear hand.
    // The final pass read `work` turned by `turned` (`quality::rotate`, the whole
    // frame turned), so its joints map back to `work` through that framing.
    let (w, h) = (work.width as f64, work.height as f64);
    let final_view = quality::Framing {
        turn_deg: turned,
        ..quality::Framing::WHOLE
    };
    let located = joints_in_pixels(&out, &final_view.affine(w, h), (w, h));
    if let Some(strip) = quality::beside_hand(&located, w, h) {
        let im = quality::frame(&work, &strip);
        let o = infer(&im)?;
        let f = fit_of(&o, &im);
        if clear(&f) && sd(&o) <= th.max_sd_months {
            return Err(AnalysisError::MultipleHands(format!(
                "the image shows more than one hand: beside the hand analysed, the model \
                 located the joints of another (shape residual {:.3}). Send a radiograph of \
                 the left hand alone.",
                f.residual
            )));
        }
    }
    Ok((
        out,
        QcOutcome {
            fit,
            hands,
            corrections,
            passes,
        },
        work,
    ))
}

/// Scoring and report assembly from raw model outputs (pure; no I/O). Timings
/// are left at zero for the caller to fill.
pub fn build_report(
    out: &ModelOutput,
    req: &AnalysisRequest,
    model: &ModelInfo,
    input: InputInfo,
    geometry: Option<&quality::Geometry>,
) -> AnalysisReport {
    // Joint centres come as fractions of the model input; the input is the whole
    // working image squashed, so the same fractions of its width and height, then
    // back through the corrections (mirror, rotation) to the upload's pixels.
    let (w, h) = (input.width as f64, input.height as f64);
    let to_px = |p: [f32; 2]| {
        let (x, y) = (
            p[0].clamp(0.0, 1.0) as f64 * w,
            p[1].clamp(0.0, 1.0) as f64 * h,
        );
        let (x, y) = geometry.map_or((x, y), |g| g.to_upload(x, y));
        Point {
            x: round1(x.clamp(0.0, w)),
            y: round1(y.clamp(0.0, h)),
        }
    };
    let landmarks: Vec<Landmark> = model
        .joints
        .iter()
        .zip(&out.joint_points)
        .map(|(name, p)| Landmark {
            name: name.clone(),
            at: to_px(*p),
        })
        .collect();
    let months = out.bone_age_months as f64;
    let sd = (0.5 * out.bone_age_log_var as f64).exp();
    let bone_age = BoneAge {
        months: round2(months),
        sd_months: round2(sd),
        interval_90: [
            round2((months - Z90 * sd).max(0.0)),
            round2(months + Z90 * sd),
        ],
    };

    let mut joints = Vec::with_capacity(Bone::ALL.len());
    for (b, bone) in Bone::ALL.iter().copied().enumerate() {
        let probs = &out.stage_probs[b];
        let valid = scoring::stages_of(bone);
        let mass: f64 = valid.iter().map(|s| probs[s.index()].max(0.0) as f64).sum();
        let (stage, p) = valid
            .iter()
            .map(|s| (*s, probs[s.index()].max(0.0) as f64))
            .fold((valid[0], f64::MIN), |best, cur| {
                if cur.1 > best.1 {
                    cur
                } else {
                    best
                }
            });
        let prob = if mass > 0.0 { p / mass } else { 0.0 };
        let region = model.bone_joint[b].and_then(|k| landmarks.get(k));
        joints.push(Joint {
            bone,
            name: bone.name(),
            stage,
            stage_probability: round4(prob),
            tw3_score: scoring::stage_score(req.sex, bone, stage).unwrap_or(0),
            stage_basis: model
                .stage_basis
                .get(b)
                .copied()
                .unwrap_or(StageBasis::TypicalForBoneAge),
            region: region.map(|l| l.name.clone()),
            location: region.map(|l| l.at),
        });
    }
    let mut stage_bases: Vec<StageBasis> = Vec::new();
    for j in &joints {
        if !stage_bases.contains(&j.stage_basis) {
            stage_bases.push(j.stage_basis);
        }
    }
    let rus_score: u32 = joints.iter().map(|j| j.tw3_score).sum();
    let rus = scoring::rus_bone_age(req.sex, rus_score);

    let (bone_age_sds, bone_age_sds_detail) = match req.chronological_age_months {
        None => (
            None,
            SdsDetail {
                reference: None,
                reason: Some("no chronological age given".to_string()),
            },
        ),
        Some(ca) => match growth::bone_age_sds(req.sex, ca, months) {
            Ok(s) => (
                Some(round2(s.sds)),
                SdsDetail {
                    reference: Some(s),
                    reason: None,
                },
            ),
            Err(e) => (
                None,
                SdsDetail {
                    reference: None,
                    reason: Some(e.to_string()),
                },
            ),
        },
    };

    let m = req.measurements;
    let (height_for_age, height_for_age_reason) = match (m.height_cm, req.chronological_age_months)
    {
        (None, _) => (None, Some("no height given".to_string())),
        (Some(_), None) => (None, Some("no chronological age given".to_string())),
        (Some(h), Some(ca)) => {
            match growth::height::height_for_age(req.sex, ca, h, req.height_reference) {
                Ok(v) => (Some(v), None),
                Err(e) => (None, Some(e.to_string())),
            }
        }
    };
    let adult_height =
        growth::adult_height::predict_adult_height(&growth::adult_height::AdultHeightInput {
            sex: req.sex,
            chronological_age_months: req.chronological_age_months,
            bone_age_months: Some(months),
            height_cm: m.height_cm,
            weight_kg: m.weight_kg,
            mother_height_cm: m.mother_height_cm,
            father_height_cm: m.father_height_cm,
            tw2_rus_bone_age_months: m.tw2_rus_bone_age_months,
            menarche: m.menarche,
        });

    AnalysisReport {
        id: uuid::Uuid::new_v4().to_string(),
        model: ModelRef {
            name: model.name.clone(),
            version: model.version.clone(),
            sha256: model.sha256.clone(),
        },
        sex: req.sex,
        bone_age,
        chronological_age_months: req.chronological_age_months,
        bone_age_sds,
        bone_age_sds_detail,
        tw3: Tw3 {
            rus_score,
            rus_bone_age_months: rus.months,
            rus_bone_age_reason: rus.reason.map(|r| r.to_string()),
            stage_bases,
        },
        patient_id: None,
        exam_date: req.exam_date.clone(),
        measurements: m,
        growth: ExamGrowth {
            height_reference: req.height_reference,
            height_for_age,
            height_for_age_reason,
            adult_height,
        },
        joints,
        landmarks,
        input,
        source: SourceInfo::default(),
        quality: Quality::default(),
        timings_ms: Timings::default(),
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(sex: &str) -> RawFields {
        RawFields {
            sex: Some(sex.into()),
            ..Default::default()
        }
    }

    fn header() -> DicomHeader {
        DicomHeader {
            patient_sex: Some("F".into()),
            patient_birth_date: Some("2015-01-01".into()),
            study_date: Some("2025-01-01".into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_header_fills_gaps_and_the_request_wins() {
        let h = header();
        // Request gives the birth date, the header the exam date: an age from both.
        let f = RawFields {
            birth_date: Some("2016-01-01".into()),
            ..Default::default()
        };
        let (req, src) = f.resolve(Some(&h)).unwrap();
        assert_eq!(req.sex, Sex::Female);
        let months = req.chronological_age_months.unwrap();
        assert!((months - 108.0).abs() < 0.5, "{months}");
        let birth = src.iter().find(|s| s.field == "birth_date").unwrap();
        assert!(birth.conflict && birth.dicom_value.as_deref() == Some("2015-01-01"));
        let exam = src.iter().find(|s| s.field == "exam_date").unwrap();
        assert_eq!(exam.from, crate::report::Origin::Dicom);

        // A stated age far from the header's dates is used, and flagged.
        let f = RawFields {
            chronological_age_months: Some("60".into()),
            ..Default::default()
        };
        let (req, src) = f.resolve(Some(&h)).unwrap();
        assert_eq!(req.chronological_age_months, Some(60.0));
        let age = src
            .iter()
            .find(|s| s.field == "chronological_age_months")
            .unwrap();
        assert!(age.conflict);

        // Half a pair in the header alone: no age, no error.
        let h2 = DicomHeader {
            study_date: None,
            ..header()
        };
        let (req, _) = RawFields::default().resolve(Some(&h2)).unwrap();
        assert_eq!(req.chronological_age_months, None);
        // ...but half a pair in the request is still an error.
        let f = RawFields {
            sex: Some("male".into()),
            birth_date: Some("2016-01-01".into()),
            ..Default::default()
        };
        assert!(f.resolve(None).is_err());
    }

    #[test]
    fn precheck_validates_only_what_is_present() {
        assert!(RawFields::default().precheck().is_ok());
        let bad = RawFields {
            sex: Some("cat".into()),
            ..Default::default()
        };
        assert_eq!(bad.precheck().unwrap_err().code(), "invalid_field");
    }

    #[test]
    fn sex_is_required_and_validated() {
        assert!(matches!(
            RawFields::default().into_request(),
            Err(AnalysisError::MissingField(_))
        ));
        assert!(matches!(
            fields("x").into_request(),
            Err(AnalysisError::InvalidField { field: "sex", .. })
        ));
        assert_eq!(fields("Female").into_request().unwrap().sex, Sex::Female);
    }

    #[test]
    fn age_from_dates_in_months() {
        let m = age_from_dates("2016-01-15", "2026-01-15").unwrap();
        assert!((m - 120.0).abs() < 0.1, "{m}");
        assert!(age_from_dates("2026-01-15", "2016-01-15").is_err());
        assert!(age_from_dates("2016-13-01", "2026-01-15").is_err());
    }

    #[test]
    fn age_sources_are_exclusive_and_bounded() {
        let mut f = fields("male");
        f.chronological_age_months = Some("121.5".into());
        assert_eq!(
            f.clone().into_request().unwrap().chronological_age_months,
            Some(121.5)
        );
        f.birth_date = Some("2016-01-01".into());
        f.exam_date = Some("2026-01-01".into());
        assert!(f.into_request().is_err());
        for bad in ["-1", "abc", "NaN", "1e9"] {
            let mut f = fields("male");
            f.chronological_age_months = Some(bad.into());
            assert!(f.into_request().is_err(), "{bad}");
        }
        let mut f = fields("male");
        f.birth_date = Some("2016-01-01".into());
        assert!(f.into_request().is_err());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let mut f = RawFields::default();
        assert!(f.set("sexx", "male".into()).is_err());
        assert!(f.set("sex", "male".into()).is_ok());
    }

    #[test]
    fn report_sums_joint_scores_and_masks_missing_stages() {
        let mut probs = [[0f32; 9]; 13];
        for row in probs.iter_mut() {
            row[8] = 1.0; // stage I everywhere; the ulna has none
        }
        probs[1][7] = 0.3; // ulna H
        let out = ModelOutput {
            bone_age_months: 200.0,
            bone_age_log_var: 2.0 * 6f32.ln(),
            stage_probs: probs,
            joint_points: vec![[0.5, 0.25], [1.5, -0.1]],
        };
        let req = AnalysisRequest::new(Sex::Male, Some(120.0));
        let info = ModelInfo {
            name: "m".into(),
            version: "1".into(),
            sha256: "ab".into(),
            contract_version: "1".into(),
            input_height: 100,
            input_width: 100,
            input_resize: "squash".into(),
            normalization: "per_image_zscore".into(),
            outputs: vec![],
            stage_basis: {
                let mut b = vec![StageBasis::TypicalForBoneAge; 13];
                b[0] = StageBasis::JointRegion;
                b
            },
            joints: vec!["radius".into(), "mcp3".into()],
            bone_joint: {
                let mut j = [None; 13];
                j[0] = Some(0);
                j
            },
            joint_region_px: Some(15),
            quality: None,
            tta: None,
            source: "test".into(),
            metadata: Default::default(),
        };
        let input = InputInfo {
            format: crate::decode::SourceFormat::Png,
            width: 10,
            height: 10,
            bit_depth: 8,
            sha256: String::new(),
        };
        let r = build_report(&out, &req, &info, input, None);
        assert_eq!(r.model.name, "m");
        assert_eq!(r.joints[0].stage_basis, StageBasis::JointRegion);
        assert_eq!(r.joints[1].stage_basis, StageBasis::TypicalForBoneAge);
        assert_eq!(
            r.tw3.stage_bases,
            [StageBasis::JointRegion, StageBasis::TypicalForBoneAge]
        );
        // Fractions of the input land on the upload's pixels (10 x 10), clamped inside it.
        assert_eq!(r.landmarks.len(), 2);
        assert_eq!(r.joints[0].region.as_deref(), Some("radius"));
        assert_eq!(r.joints[0].location, Some(Point { x: 5.0, y: 2.5 }));
        assert_eq!(r.landmarks[1].at, Point { x: 10.0, y: 0.0 });
        assert_eq!(r.joints[1].location, None);
        assert_eq!(r.joints.len(), 13);
        assert_eq!(r.joints[1].stage, crate::scoring::Stage::H);
        assert_eq!(r.joints[1].stage_probability, 1.0);
        assert_eq!(
            r.tw3.rus_score,
            r.joints.iter().map(|j| j.tw3_score).sum::<u32>()
        );
        assert_eq!(r.tw3.rus_score, 1000, "all mature stages sum to 1000");
        assert!((r.bone_age.sd_months - 6.0).abs() < 1e-6);
        assert!((r.bone_age.interval_90[1] - (200.0 + Z90 * 6.0)).abs() < 0.01);
        assert!(r.bone_age_sds.is_some());
    }
}
