//! Stage 1 for DICOM: a Part 10 file → grey image + the header fields the analysis
//! uses (dicom-rs: `dicom-object`, `dicom-pixeldata`).
//!
//! What is read: DX, CR, secondary capture or any other single-channel image;
//! MONOCHROME1 (inverted so that bone is bright) and MONOCHROME2, or RGB reduced to
//! luma; 8–16 bits stored; the modality LUT (rescale slope/intercept) and the first
//! VOI LUT or window centre/width, else a min–max normalisation. Multi-frame
//! objects: the first frame only (said in [`DicomHeader::frames`]).
//!
//! Limits: the header is parsed first, up to the pixel data, and `Rows` × `Columns`
//! are checked against [`DecodeLimits`] before any pixel buffer exists. A panic in
//! the decoder libraries on a hostile file becomes `corrupt_image`, never a crash.
//! Peak memory of one decode: the file bytes (the object keeps its pixel data) +
//! the decoded frame (2 bytes × samples × pixels) + the f32 values (4 bytes × pixels),
//! i.e. about body + 6 bytes × pixels for a grey image.

use std::borrow::Cow;
use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};

use dicom_dictionary_std::tags;
use dicom_object::file::ReadPreamble;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_pixeldata::{
    ConvertOptions, DecodedPixelData, ModalityLutOption, PixelDecoder, VoiLutFunction, VoiLutOption,
};
use serde::Serialize;

use crate::decode::{check_dimensions, DecodeLimits, GreyImage, SourceFormat};
use crate::error::AnalysisError;

/// Header fields of a DICOM upload that the analysis reports or uses. Values are
/// as in the file, trimmed; dates are converted to ISO `YYYY-MM-DD`. The patient's
/// name is never read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DicomHeader {
    pub transfer_syntax_uid: String,
    /// Human name of the transfer syntax, when this build knows it.
    pub transfer_syntax: Option<&'static str>,
    pub sop_class_uid: Option<String>,
    pub modality: Option<String>,
    pub body_part_examined: Option<String>,
    pub photometric_interpretation: String,
    /// MONOCHROME1 was inverted so that bone is bright.
    pub inverted: bool,
    pub bits_stored: u16,
    /// Frames in the object; only the first is analysed.
    pub frames: u32,
    /// How intensities were mapped for display: `voi_lut`, `window` or `min_max`.
    pub intensity_mapping: &'static str,
    pub patient_sex: Option<String>,
    pub patient_birth_date: Option<String>,
    pub study_date: Option<String>,
    pub acquisition_date: Option<String>,
    pub patient_id: Option<String>,
    /// ImageLaterality, else Laterality: `L`, `R`, `U` or `B`.
    pub laterality: Option<String>,
    /// PixelSpacing, else ImagerPixelSpacing: (row spacing, column spacing) in mm.
    pub pixel_spacing_mm: Option<[f64; 2]>,
}

/// Whether the bytes are a DICOM Part 10 file (128-byte preamble, then `DICM`).
pub fn is_dicom(bytes: &[u8]) -> bool {
    bytes.len() >= 132 && &bytes[128..132] == b"DICM"
}

/// Known transfer syntaxes, by UID.
pub fn transfer_syntax_name(uid: &str) -> Option<&'static str> {
    Some(match uid.trim_end_matches('\0').trim() {
        "1.2.840.10008.1.2" => "Implicit VR Little Endian",
        "1.2.840.10008.1.2.1" => "Explicit VR Little Endian",
        "1.2.840.10008.1.2.1.99" => "Deflated Explicit VR Little Endian",
        "1.2.840.10008.1.2.2" => "Explicit VR Big Endian",
        "1.2.840.10008.1.2.4.50" => "JPEG Baseline (Process 1)",
        "1.2.840.10008.1.2.4.51" => "JPEG Extended (Process 2 & 4)",
        "1.2.840.10008.1.2.4.57" => "JPEG Lossless (Process 14)",
        "1.2.840.10008.1.2.4.70" => "JPEG Lossless, First-Order Prediction (Process 14 SV1)",
        "1.2.840.10008.1.2.4.80" => "JPEG-LS Lossless",
        "1.2.840.10008.1.2.4.81" => "JPEG-LS Near-Lossless",
        "1.2.840.10008.1.2.4.90" => "JPEG 2000 (Lossless Only)",
        "1.2.840.10008.1.2.4.91" => "JPEG 2000",
        "1.2.840.10008.1.2.5" => "RLE Lossless",
        _ => return None,
    })
}

/// Decodes the first frame of a DICOM Part 10 file.
pub fn decode_dicom(
    bytes: &[u8],
    limits: &DecodeLimits,
) -> Result<(GreyImage, DicomHeader), AnalysisError> {
    match catch_unwind(AssertUnwindSafe(|| decode_inner(bytes, limits))) {
        Ok(r) => r,
        Err(_) => Err(AnalysisError::CorruptImage(
            "the DICOM file could not be decoded (malformed data)".into(),
        )),
    }
}

/// Reads the header of a DICOM Part 10 file up to the pixel data, without decoding
/// any pixels (the fields a form can be pre-filled from). The same length checks as
/// [`decode_dicom`]; the fields that need the pixels (`inverted`,
/// `intensity_mapping`) keep their defaults.
pub fn read_dicom_header(bytes: &[u8]) -> Result<DicomHeader, AnalysisError> {
    match catch_unwind(AssertUnwindSafe(|| {
        check_lengths(bytes)?;
        let head = open(bytes, true)?;
        let ts_uid = head
            .meta()
            .transfer_syntax()
            .trim_end_matches('\0')
            .to_string();
        Ok(read_header(&head, &ts_uid))
    })) {
        Ok(r) => r,
        Err(_) => Err(AnalysisError::CorruptImage(
            "the DICOM header could not be read (malformed data)".into(),
        )),
    }
}

fn open(bytes: &[u8], until_pixels: bool) -> Result<DefaultDicomObject, AnalysisError> {
    let mut opts = OpenFileOptions::new().read_preamble(ReadPreamble::Always);
    if until_pixels {
        opts = opts.read_until(tags::PIXEL_DATA);
    }
    opts.from_reader(Cursor::new(bytes)).map_err(|e| {
        AnalysisError::CorruptImage(format!("cannot read the DICOM file: {}", first_line(&e)))
    })
}

/// An error and its causes on one line, bounded.
fn first_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = c.source();
    }
    let s = parts.join(": ");
    s.lines().next().unwrap_or("").chars().take(300).collect()
}

const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";

/// The RLE Lossless header of a frame (DICOM PS3.5 Annex G.5): 64 bytes, the number
/// of segments (1 to 15) then 15 segment offsets, each within the fragment and none
/// before the header's end. dicom-rs reads the header by trusting the segment count
/// (a count of 0x3400_0000 reserved 3.5 GB), so it is checked here first.
fn check_rle_header(fragment: &[u8]) -> Result<(), AnalysisError> {
    let corrupt = |why: String| {
        AnalysisError::CorruptImage(format!("the RLE-compressed DICOM frame is damaged: {why}"))
    };
    if fragment.len() < 64 {
        return Err(corrupt(format!(
            "its {}-byte fragment is shorter than the 64-byte RLE header",
            fragment.len()
        )));
    }
    let word = |i: usize| {
        u32::from_le_bytes([
            fragment[4 * i],
            fragment[4 * i + 1],
            fragment[4 * i + 2],
            fragment[4 * i + 3],
        ])
    };
    let segments = word(0);
    if !(1..=15).contains(&segments) {
        return Err(corrupt(format!(
            "the header declares {segments} segments (1 to 15 allowed)"
        )));
    }
    for i in 1..=segments as usize {
        let offset = word(i) as usize;
        if offset < 64 || offset > fragment.len() {
            return Err(corrupt(format!(
                "segment {i} starts at byte {offset}, outside the {}-byte fragment",
                fragment.len()
            )));
        }
    }
    Ok(())
}

fn decode_inner(
    bytes: &[u8],
    limits: &DecodeLimits,
) -> Result<(GreyImage, DicomHeader), AnalysisError> {
    // 0. Every declared length fits in the file: the parser allocates by them.
    check_lengths(bytes)?;
    // 1. Header only: size checks before any pixel buffer is allocated.
    let head = open(bytes, true)?;
    let int = |tag| -> Option<u32> { head.element_opt(tag).ok()??.to_int::<u32>().ok() };
    let (Some(rows), Some(cols)) = (int(tags::ROWS), int(tags::COLUMNS)) else {
        return Err(AnalysisError::UnsupportedFormat(
            "the DICOM file holds no image (no Rows/Columns)".into(),
        ));
    };
    check_dimensions(cols, rows, limits)?;
    let samples = int(tags::SAMPLES_PER_PIXEL).unwrap_or(1);
    let bits_allocated = int(tags::BITS_ALLOCATED).unwrap_or(0);
    if !matches!(samples, 1 | 3) || !matches!(bits_allocated, 8 | 16) {
        return Err(AnalysisError::UnsupportedFormat(format!(
            "DICOM images with {samples} samples of {bits_allocated} bits are not supported \
             (grey or RGB, 8 or 16 bits allocated)"
        )));
    }
    let ts_uid = head
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_string();
    let mut header = read_header(&head, &ts_uid);
    drop(head);

    // 2. The whole object, then only the first frame's pixels.
    let obj = open(bytes, false)?;
    if ts_uid == RLE_LOSSLESS {
        if let Some(first) = obj
            .element_opt(tags::PIXEL_DATA)
            .ok()
            .flatten()
            .and_then(|e| e.value().fragments())
            .and_then(|f| f.first())
        {
            check_rle_header(first)?;
        }
    }
    let frame = obj.decode_pixel_data_frame(0).map_err(|e| {
        let msg = first_line(&e);
        if msg.to_ascii_lowercase().contains("unsupported") || header.transfer_syntax.is_none() {
            AnalysisError::UnsupportedFormat(format!(
                "DICOM transfer syntax {} ({ts_uid}) cannot be decoded: {msg}",
                header.transfer_syntax.unwrap_or("unknown")
            ))
        } else {
            AnalysisError::CorruptImage(format!("cannot decode the DICOM pixel data: {msg}"))
        }
    })?;
    if frame.rows() != rows || frame.columns() != cols {
        return Err(AnalysisError::CorruptImage(
            "decoded DICOM frame size differs from the header".into(),
        ));
    }
    let (pixels, mapping) = to_display(&frame)?;
    header.intensity_mapping = mapping;
    header.inverted = frame.photometric_interpretation().as_str() == "MONOCHROME1";
    let pixels = if header.inverted {
        pixels.into_iter().map(|v| 1.0 - v).collect()
    } else {
        pixels
    };
    drop(frame);
    drop(obj);
    let grey = GreyImage {
        width: cols,
        height: rows,
        bit_depth: header.bits_stored.clamp(1, 16) as u8,
        format: SourceFormat::Dicom,
        pixels,
    };
    Ok((grey, header))
}

fn truncated(what: &str) -> AnalysisError {
    AnalysisError::CorruptImage(format!("the DICOM file is truncated or malformed ({what})"))
}

/// Walks every element header of the file (meta group, data set, sequences, items
/// and pixel data fragments) and refuses a declared length larger than the bytes
/// left. The DICOM parser reserves memory by declared lengths before reading, so a
/// few hostile bytes could otherwise ask for gigabytes (found by fuzzing,
/// `fuzz/fuzz_targets/decode.rs`). Deflated data sets are inflated first, bounded.
pub fn check_lengths(bytes: &[u8]) -> Result<(), AnalysisError> {
    if !is_dicom(bytes) {
        return Err(truncated("no DICM preamble"));
    }
    let mut pos = 132;
    let mut ts = String::new();
    // Where the group length (0002,0000) says the meta group ends.
    let mut declared_end = None;
    // File meta group: explicit VR little endian, group 0002.
    while pos + 8 <= bytes.len() && u16::from_le_bytes([bytes[pos], bytes[pos + 1]]) == 0x0002 {
        let elem = u16::from_le_bytes([bytes[pos + 2], bytes[pos + 3]]);
        let (len, header) =
            explicit_len(bytes, pos, false).ok_or_else(|| truncated("meta group"))?;
        let start = pos + header;
        let end = start.checked_add(len).filter(|&e| e <= bytes.len());
        let end = end.ok_or_else(|| truncated("meta group element length"))?;
        if elem == 0x0000 && len == 4 {
            let gl = u32::from_le_bytes([
                bytes[start],
                bytes[start + 1],
                bytes[start + 2],
                bytes[start + 3],
            ]);
            declared_end = Some(end as u64 + gl as u64);
        }
        if elem == 0x0010 {
            ts = String::from_utf8_lossy(&bytes[start..end])
                .trim_end_matches(['\0', ' '])
                .to_string();
        }
        pos = end;
    }
    // The DICOM parser ends the meta group where its group length says; this walk
    // must check the same data set it will read (a fuzzer finding: a group length
    // past the last 0002 element made the parser inflate other bytes than this walk
    // did, and reserve 3.8 GB for an element this walk never saw).
    if declared_end.is_some_and(|e| e != pos as u64) {
        return Err(truncated(
            "the file meta group length does not match its elements",
        ));
    }
    let rest = &bytes[pos..];
    match ts.as_str() {
        "1.2.840.10008.1.2" => walk(rest, Encoding::ImplicitLe),
        "1.2.840.10008.1.2.2" => walk(rest, Encoding::ExplicitBe),
        "1.2.840.10008.1.2.1.99" => {
            // Inflate at most 8 bytes per byte of a 64 MP 16-bit image.
            let cap: u64 = 1 << 30;
            let mut out = Vec::new();
            let mut dec = flate2::read::DeflateDecoder::new(rest).take(cap + 1);
            std::io::Read::read_to_end(&mut dec, &mut out)
                .map_err(|_| truncated("deflated data set"))?;
            if out.len() as u64 > cap {
                return Err(AnalysisError::ImageTooLarge(
                    "the deflated DICOM data set inflates beyond 1 GiB".into(),
                ));
            }
            walk(&out, Encoding::ExplicitLe)
        }
        _ => walk(rest, Encoding::ExplicitLe),
    }
}

use std::io::Read as _;

#[derive(Clone, Copy, PartialEq)]
enum Encoding {
    ExplicitLe,
    ExplicitBe,
    ImplicitLe,
}

/// The value representations of PS3.5 table 6.2-1.
const KNOWN_VRS: [&[u8; 2]; 34] = [
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"OB",
    b"OD", b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM",
    b"UC", b"UI", b"UL", b"UN", b"UR", b"US", b"UT", b"UV",
];

/// Explicit VR element at `pos`: (value length, header size). None for a VR that is
/// not one of the standard ones: parsers disagree on how long its length field is,
/// so such a file is refused rather than guessed at (a fuzzer finding).
fn explicit_len(b: &[u8], pos: usize, be: bool) -> Option<(usize, usize)> {
    let vr = b.get(pos + 4..pos + 6)?;
    if !KNOWN_VRS.iter().any(|k| &k[..] == vr) {
        return None;
    }
    // Binary VRs hold whole values: a length that is not a multiple of the value
    // size makes the parser read past the element (a fuzzer finding: FL of length 2).
    let unit = match vr {
        b"SS" | b"US" | b"OW" => 2,
        b"FL" | b"SL" | b"UL" | b"AT" | b"OF" | b"OL" => 4,
        b"FD" | b"SV" | b"UV" | b"OD" | b"OV" => 8,
        _ => 1,
    };
    let long = matches!(
        vr,
        b"OB"
            | b"OD"
            | b"OF"
            | b"OL"
            | b"OV"
            | b"OW"
            | b"SQ"
            | b"UC"
            | b"UN"
            | b"UR"
            | b"UT"
            | b"SV"
            | b"UV"
    );
    if long {
        let l = b.get(pos + 8..pos + 12)?;
        let v = if be {
            u32::from_be_bytes([l[0], l[1], l[2], l[3]])
        } else {
            u32::from_le_bytes([l[0], l[1], l[2], l[3]])
        };
        (v == u32::MAX || (v as usize).is_multiple_of(unit)).then_some((v as usize, 12))
    } else {
        let l = b.get(pos + 6..pos + 8)?;
        let v = if be {
            u16::from_be_bytes([l[0], l[1]])
        } else {
            u16::from_le_bytes([l[0], l[1]])
        };
        (v as usize).is_multiple_of(unit).then_some((v as usize, 8))
    }
}

/// Linear walk over a data set: element values are skipped after their length is
/// checked; sequences and items are entered (their contents are elements too);
/// encapsulated pixel data fragments are skipped.
fn walk(b: &[u8], enc: Encoding) -> Result<(), AnalysisError> {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
    let dict = dicom_dictionary_std::StandardDataDictionary;
    let be = enc == Encoding::ExplicitBe;
    let u16_at = |p: usize| {
        let v = [b[p], b[p + 1]];
        if be {
            u16::from_be_bytes(v)
        } else {
            u16::from_le_bytes(v)
        }
    };
    let u32_at = |p: usize| {
        let v = [b[p], b[p + 1], b[p + 2], b[p + 3]];
        if be {
            u32::from_be_bytes(v)
        } else {
            u32::from_le_bytes(v)
        }
    };
    let mut pos = 0usize;
    let mut in_fragments = false;
    while pos < b.len() {
        if pos + 8 > b.len() {
            return Err(truncated("element header"));
        }
        let (group, elem) = (u16_at(pos), u16_at(pos + 2));
        if group == 0xFFFE {
            // Item, item delimiter or sequence delimiter: tag + 4-byte length, no VR.
            let len = u32_at(pos + 4);
            pos += 8;
            match elem {
                0xE0DD => in_fragments = false,
                0xE000 if len != u32::MAX && in_fragments => {
                    pos = pos
                        .checked_add(len as usize)
                        .filter(|&e| e <= b.len())
                        .ok_or_else(|| truncated("pixel data fragment length"))?;
                }
                // An item of a sequence: its contents are elements, walked next.
                0xE000 if len != u32::MAX && pos + len as usize > b.len() => {
                    return Err(truncated("item length"));
                }
                _ => {}
            }
            continue;
        }
        let (len, header, is_sq) = match enc {
            Encoding::ImplicitLe => {
                let tag = dicom_core::Tag(group, elem);
                let sq = dict
                    .by_tag(tag)
                    .is_some_and(|e| matches!(e.vr(), VirtualVr::Exact(dicom_core::VR::SQ)));
                (u32_at(pos + 4) as usize, 8, sq)
            }
            _ => {
                let (len, header) =
                    explicit_len(b, pos, be).ok_or_else(|| truncated("element header"))?;
                (len, header, &b[pos + 4..pos + 6] == b"SQ")
            }
        };
        pos += header;
        if len == u32::MAX as usize {
            // Undefined length: a sequence, or encapsulated pixel data.
            if (group, elem) == (0x7FE0, 0x0010) {
                in_fragments = true;
            }
            continue;
        }
        if pos + len > b.len() {
            return Err(truncated("element length beyond the end of the file"));
        }
        if !is_sq {
            pos += len;
        }
    }
    Ok(())
}

/// The first frame as display intensities in [0, 1] (before any MONOCHROME1
/// inversion): modality LUT (rescale), then the first VOI LUT of the object, else
/// its first window (with its VOI LUT function), else min–max over the frame.
/// RGB is reduced to luma (Rec. 601 weights).
fn to_display(frame: &DecodedPixelData) -> Result<(Vec<f32>, &'static str), AnalysisError> {
    let convert = |e: dicom_pixeldata::Error| {
        AnalysisError::CorruptImage(format!(
            "cannot convert the DICOM pixels: {}",
            first_line(&e)
        ))
    };
    let n = frame.rows() as usize * frame.columns() as usize;
    if frame.samples_per_pixel() == 3 {
        let rgb: Vec<f32> = frame
            .to_vec_frame_with_options(
                0,
                &ConvertOptions::new().with_modality_lut(ModalityLutOption::None),
            )
            .map_err(convert)?;
        if rgb.len() != 3 * n {
            return Err(AnalysisError::CorruptImage(
                "DICOM pixel data too short".into(),
            ));
        }
        let max = ((1u32 << frame.bits_stored().clamp(1, 16)) - 1) as f32;
        let luma = rgb
            .chunks_exact(3)
            .map(|p| ((0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]) / max).clamp(0.0, 1.0))
            .collect();
        return Ok((luma, "min_max"));
    }
    // Rescaled values (modality LUT applied, no VOI).
    let values: Vec<f32> = frame
        .to_vec_frame_with_options(
            0,
            &ConvertOptions::new()
                .with_modality_lut(ModalityLutOption::Default)
                .with_voi_lut(VoiLutOption::Identity),
        )
        .map_err(convert)?;
    if values.len() != n {
        return Err(AnalysisError::CorruptImage(
            "DICOM pixel data too short".into(),
        ));
    }
    if let Some(lut) = frame
        .voi_lut_sequence()
        .ok()
        .flatten()
        .and_then(|l| l.first())
        .filter(|l| !l.data.is_empty())
    {
        let top = ((1u32 << lut.bits_stored.clamp(1, 16)) - 1) as f32;
        let last = lut.data.len() as i64 - 1;
        let out = values
            .iter()
            .map(|&v| {
                let i = (v.round() as i64 - lut.min_pixel_value as i64).clamp(0, last) as usize;
                (lut.data[i] as f32 / top).clamp(0.0, 1.0)
            })
            .collect();
        return Ok((out, "voi_lut"));
    }
    if let Some(w) = frame
        .window()
        .ok()
        .flatten()
        .and_then(|w| w.first().copied())
        .filter(|w| w.width.is_finite() && w.center.is_finite() && w.width >= 1.0)
    {
        let function = frame
            .voi_lut_function()
            .ok()
            .flatten()
            .and_then(|f| f.first().copied())
            .unwrap_or_default();
        let (c, width) = (w.center, w.width);
        let out = values
            .iter()
            .map(|&v| window(v as f64, c, width, function) as f32)
            .collect();
        return Ok((out, "window"));
    }
    let (lo, hi) = values
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let span = (hi - lo).max(f32::MIN_POSITIVE);
    Ok((values.iter().map(|&v| (v - lo) / span).collect(), "min_max"))
}

/// The VOI LUT functions of DICOM PS3.3 C.11.2.1.2, to [0, 1].
fn window(x: f64, c: f64, w: f64, function: VoiLutFunction) -> f64 {
    match function {
        VoiLutFunction::Linear => {
            let (lo, hi) = (c - 0.5 - (w - 1.0) / 2.0, c - 0.5 + (w - 1.0) / 2.0);
            if x <= lo {
                0.0
            } else if x > hi {
                1.0
            } else {
                ((x - (c - 0.5)) / (w - 1.0).max(1e-9) + 0.5).clamp(0.0, 1.0)
            }
        }
        VoiLutFunction::LinearExact => ((x - c) / w + 0.5).clamp(0.0, 1.0),
        VoiLutFunction::Sigmoid => 1.0 / (1.0 + (-4.0 * (x - c) / w).exp()),
    }
}

fn read_header(obj: &DefaultDicomObject, ts_uid: &str) -> DicomHeader {
    let text = |tag| -> Option<String> {
        let e = obj.element_opt(tag).ok()??;
        let s: Cow<str> = e.to_str().ok()?;
        let t = s.trim_matches(|c: char| c.is_whitespace() || c == '\0');
        (!t.is_empty()).then(|| t.chars().take(64).collect())
    };
    let int = |tag| -> Option<u32> { obj.element_opt(tag).ok()??.to_int::<u32>().ok() };
    let spacing = |tag| -> Option<[f64; 2]> {
        let v = obj.element_opt(tag).ok()??.to_multi_float64().ok()?;
        match v.as_slice() {
            [r, c, ..] if r.is_finite() && c.is_finite() && *r > 0.0 && *c > 0.0 => Some([*r, *c]),
            _ => None,
        }
    };
    DicomHeader {
        transfer_syntax_uid: ts_uid.to_string(),
        transfer_syntax: transfer_syntax_name(ts_uid),
        sop_class_uid: text(tags::SOP_CLASS_UID),
        modality: text(tags::MODALITY),
        body_part_examined: text(tags::BODY_PART_EXAMINED),
        photometric_interpretation: text(tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_default(),
        inverted: false,
        bits_stored: int(tags::BITS_STORED).unwrap_or(8).min(16) as u16,
        frames: int(tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1),
        intensity_mapping: "min_max",
        patient_sex: text(tags::PATIENT_SEX),
        patient_birth_date: text(tags::PATIENT_BIRTH_DATE).and_then(|d| iso_date(&d)),
        study_date: text(tags::STUDY_DATE).and_then(|d| iso_date(&d)),
        acquisition_date: text(tags::ACQUISITION_DATE).and_then(|d| iso_date(&d)),
        patient_id: text(tags::PATIENT_ID),
        laterality: text(tags::IMAGE_LATERALITY).or_else(|| text(tags::LATERALITY)),
        pixel_spacing_mm: spacing(tags::PIXEL_SPACING)
            .or_else(|| spacing(tags::IMAGER_PIXEL_SPACING)),
    }
}

/// What [`encode_dicom`] writes besides the pixels.
#[derive(Debug, Clone)]
pub struct DicomTags {
    /// `MONOCHROME1` (bright = air, as many DR systems store) or `MONOCHROME2`.
    pub monochrome1: bool,
    /// Bits stored (≤ 16; pixel values must fit).
    pub bits_stored: u16,
    pub rescale: Option<(f64, f64)>,
    /// Window centre and width.
    pub window: Option<(f64, f64)>,
    pub patient_sex: Option<String>,
    pub patient_birth_date: Option<String>,
    pub study_date: Option<String>,
    pub patient_id: Option<String>,
    pub laterality: Option<String>,
    pub pixel_spacing_mm: Option<[f64; 2]>,
    pub modality: String,
    pub body_part_examined: Option<String>,
    /// Frames (each frame a copy of the pixels).
    pub frames: u32,
}

impl Default for DicomTags {
    fn default() -> Self {
        DicomTags {
            monochrome1: false,
            bits_stored: 16,
            rescale: None,
            window: None,
            patient_sex: None,
            patient_birth_date: None,
            study_date: None,
            patient_id: None,
            laterality: None,
            pixel_spacing_mm: None,
            modality: "DX".into(),
            body_part_examined: Some("HAND".into()),
            frames: 1,
        }
    }
}

/// Writes a DX image as a DICOM Part 10 file, explicit VR little endian,
/// 16 bits allocated (for `boneage synth --dicom` and the tests; dcmtk can then
/// transcode it to any compressed transfer syntax).
pub fn encode_dicom(
    pixels: &[u16],
    width: u32,
    height: u32,
    t: &DicomTags,
) -> Result<Vec<u8>, String> {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

    let n = width as usize * height as usize;
    if pixels.len() != n || width > u16::MAX as u32 || height > u16::MAX as u32 {
        return Err(format!("{} pixels for {width}x{height}", pixels.len()));
    }
    let bits = t.bits_stored.clamp(1, 16);
    let mut obj = InMemDicomObject::new_empty();
    let mut put = |tag, vr, v: PrimitiveValue| {
        obj.put(DataElement::new(tag, vr, v));
    };
    // Digital X-Ray Image Storage - For Presentation.
    let sop_class = "1.2.840.10008.5.1.4.1.1.1.1";
    let instance = format!("2.25.{}", uuid::Uuid::new_v4().as_u128());
    put(tags::SOP_CLASS_UID, VR::UI, sop_class.into());
    put(tags::SOP_INSTANCE_UID, VR::UI, instance.as_str().into());
    put(tags::MODALITY, VR::CS, t.modality.as_str().into());
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    put(tags::PATIENT_ID, VR::LO, opt(&t.patient_id).into());
    put(
        tags::PATIENT_BIRTH_DATE,
        VR::DA,
        opt(&t.patient_birth_date).into(),
    );
    put(tags::PATIENT_SEX, VR::CS, opt(&t.patient_sex).into());
    put(tags::STUDY_DATE, VR::DA, opt(&t.study_date).into());
    if let Some(b) = &t.body_part_examined {
        put(tags::BODY_PART_EXAMINED, VR::CS, b.as_str().into());
    }
    if let Some(l) = &t.laterality {
        put(tags::IMAGE_LATERALITY, VR::CS, l.as_str().into());
    }
    put(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16));
    let photometric = if t.monochrome1 {
        "MONOCHROME1"
    } else {
        "MONOCHROME2"
    };
    put(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, photometric.into());
    if t.frames > 1 {
        put(
            tags::NUMBER_OF_FRAMES,
            VR::IS,
            t.frames.to_string().as_str().into(),
        );
    }
    put(tags::ROWS, VR::US, PrimitiveValue::from(height as u16));
    put(tags::COLUMNS, VR::US, PrimitiveValue::from(width as u16));
    if let Some([r, c]) = t.pixel_spacing_mm {
        put(
            tags::PIXEL_SPACING,
            VR::DS,
            format!("{r}\\{c}").as_str().into(),
        );
    }
    put(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(16u16));
    put(tags::BITS_STORED, VR::US, PrimitiveValue::from(bits));
    put(tags::HIGH_BIT, VR::US, PrimitiveValue::from(bits - 1));
    put(
        tags::PIXEL_REPRESENTATION,
        VR::US,
        PrimitiveValue::from(0u16),
    );
    if let Some((c, w)) = t.window {
        put(tags::WINDOW_CENTER, VR::DS, format!("{c}").as_str().into());
        put(tags::WINDOW_WIDTH, VR::DS, format!("{w}").as_str().into());
    }
    if let Some((slope, intercept)) = t.rescale {
        put(
            tags::RESCALE_INTERCEPT,
            VR::DS,
            format!("{intercept}").as_str().into(),
        );
        put(
            tags::RESCALE_SLOPE,
            VR::DS,
            format!("{slope}").as_str().into(),
        );
    }
    let mut data = Vec::with_capacity(n * t.frames.max(1) as usize);
    for _ in 0..t.frames.max(1) {
        data.extend_from_slice(pixels);
    }
    put(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U16(data.into()));
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax("1.2.840.10008.1.2.1")
                .implementation_class_uid("2.25.302398134011196224711553396924183963648"),
        )
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    file.write_all(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// DICOM DA (`YYYYMMDD`, or the old `YYYY.MM.DD`) → ISO `YYYY-MM-DD`; None if malformed.
pub fn iso_date(da: &str) -> Option<String> {
    let digits: String = da.chars().filter(|c| c.is_ascii_digit()).collect();
    if digits.len() != 8 || da.len() > 10 {
        return None;
    }
    let (y, m, d) = (&digits[0..4], &digits[4..6], &digits[6..8]);
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let iso = format!("{y}-{m}-{d}");
    time::Date::parse(&iso, &fmt).ok().map(|_| iso)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rle_headers_are_checked_before_dicom_rs_reads_them() {
        let header = |count: u32, offsets: &[u32], len: usize| {
            let mut f = vec![0u8; len];
            f[..4].copy_from_slice(&count.to_le_bytes());
            for (i, o) in offsets.iter().enumerate() {
                f[4 + 4 * i..8 + 4 * i].copy_from_slice(&o.to_le_bytes());
            }
            f
        };
        // One segment right after the header; two 16-bit segments.
        assert!(check_rle_header(&header(1, &[64], 100)).is_ok());
        assert!(check_rle_header(&header(2, &[64, 80], 100)).is_ok());
        for (f, want) in [
            (header(0x3400_0000, &[64], 100), "segments"),
            (header(0, &[], 100), "segments"),
            (header(16, &[64], 100), "segments"),
            (header(2, &[64, 4000], 100), "outside"),
            (header(1, &[12], 100), "outside"),
            (vec![1, 0, 0, 0], "shorter"),
        ] {
            let e = check_rle_header(&f).unwrap_err();
            assert_eq!(e.code(), "corrupt_image");
            assert!(e.to_string().contains(want), "{e}");
        }
    }

    use super::*;

    fn gradient(w: u32, h: u32) -> Vec<u16> {
        (0..w * h).map(|i| ((i % w) * 4000 / w) as u16).collect()
    }

    #[test]
    fn written_files_read_back_with_their_header() {
        let (w, h) = (80, 96);
        let px = gradient(w, h);
        let tags = DicomTags {
            bits_stored: 12,
            patient_sex: Some("F".into()),
            patient_birth_date: Some("20150301".into()),
            study_date: Some("20250415".into()),
            patient_id: Some("P-7".into()),
            laterality: Some("L".into()),
            pixel_spacing_mm: Some([0.15, 0.15]),
            frames: 2,
            ..Default::default()
        };
        let bytes = encode_dicom(&px, w, h, &tags).unwrap();
        assert!(is_dicom(&bytes));
        let (img, hd) = decode_dicom(&bytes, &DecodeLimits::default()).unwrap();
        assert_eq!((img.width, img.height, img.bit_depth), (w, h, 12));
        assert_eq!(img.format, SourceFormat::Dicom);
        assert_eq!(hd.transfer_syntax, Some("Explicit VR Little Endian"));
        assert_eq!(hd.patient_sex.as_deref(), Some("F"));
        assert_eq!(hd.patient_birth_date.as_deref(), Some("2015-03-01"));
        assert_eq!(hd.study_date.as_deref(), Some("2025-04-15"));
        assert_eq!(hd.patient_id.as_deref(), Some("P-7"));
        assert_eq!(hd.laterality.as_deref(), Some("L"));
        assert_eq!(hd.pixel_spacing_mm, Some([0.15, 0.15]));
        assert_eq!(hd.frames, 2);
        assert!(!hd.inverted);
        assert_eq!(hd.intensity_mapping, "min_max");
        // Min-max mapped: a left-to-right ramp from 0 to 1.
        let row = &img.pixels[..w as usize];
        assert!(row[0] < 0.01 && row[w as usize - 1] > 0.97, "{row:?}");
        assert!(row.windows(2).all(|p| p[1] >= p[0]));
    }

    #[test]
    fn monochrome1_is_inverted() {
        let (w, h) = (80, 80);
        let px = gradient(w, h);
        let m2 = encode_dicom(&px, w, h, &DicomTags::default()).unwrap();
        let m1 = encode_dicom(
            &px,
            w,
            h,
            &DicomTags {
                monochrome1: true,
                ..Default::default()
            },
        )
        .unwrap();
        let (a, _) = decode_dicom(&m2, &DecodeLimits::default()).unwrap();
        let (b, hb) = decode_dicom(&m1, &DecodeLimits::default()).unwrap();
        assert!(hb.inverted);
        for (x, y) in a.pixels.iter().zip(&b.pixels) {
            assert!((x + y - 1.0).abs() < 1e-3, "{x} + {y}");
        }
    }

    #[test]
    fn the_window_is_applied() {
        let (w, h) = (100, 80);
        let px = gradient(w, h); // 0..4000 across
        let t = DicomTags {
            window: Some((2000.0, 2000.0)), // 1000..3000 maps to black..white
            ..Default::default()
        };
        let (img, hd) = decode_dicom(
            &encode_dicom(&px, w, h, &t).unwrap(),
            &DecodeLimits::default(),
        )
        .unwrap();
        assert_eq!(hd.intensity_mapping, "window");
        let row = &img.pixels[..w as usize];
        assert!(row[10] < 0.01, "below the window is black: {}", row[10]);
        assert!(row[90] > 0.99, "above the window is white: {}", row[90]);
        assert!(
            (row[50] - 0.5).abs() < 0.05,
            "centre is mid-grey: {}",
            row[50]
        );
    }

    #[test]
    fn declared_lengths_beyond_the_file_are_refused_before_parsing() {
        let px = gradient(80, 80);
        let mut bytes = encode_dicom(&px, 80, 80, &DicomTags::default()).unwrap();
        assert!(check_lengths(&bytes).is_ok());
        // Pixel Data (7FE0,0010) OW: claim 2 GB of pixels in a 13 kB file.
        let at = bytes
            .windows(6)
            .rposition(|w| w == [0xE0, 0x7F, 0x10, 0x00, b'O', b'W'])
            .unwrap();
        bytes[at + 8..at + 12].copy_from_slice(&0x7FFF_FFF0u32.to_le_bytes());
        let e = decode_dicom(&bytes, &DecodeLimits::default()).unwrap_err();
        assert!(matches!(e, AnalysisError::CorruptImage(_)), "{e:?}");
        assert!(e.to_string().contains("beyond the end"), "{e}");
    }

    #[test]
    fn oversized_headers_are_refused_before_decoding() {
        let px = gradient(80, 80);
        let bytes = encode_dicom(&px, 80, 80, &DicomTags::default()).unwrap();
        let tight = DecodeLimits {
            max_width: 50,
            ..Default::default()
        };
        assert!(matches!(
            decode_dicom(&bytes, &tight),
            Err(AnalysisError::ImageTooLarge(_))
        ));
        // Truncated pixel data: an error, not a panic.
        let cut = &bytes[..bytes.len() - 3000];
        assert!(decode_dicom(cut, &DecodeLimits::default()).is_err());
    }

    #[test]
    fn dates() {
        assert_eq!(iso_date("20161231").as_deref(), Some("2016-12-31"));
        assert_eq!(iso_date("2016.12.31").as_deref(), Some("2016-12-31"));
        assert_eq!(iso_date("20161331"), None);
        assert_eq!(iso_date("2016"), None);
        assert_eq!(iso_date(""), None);
    }

    #[test]
    fn detection_needs_the_preamble_and_magic() {
        let mut b = vec![0u8; 132];
        assert!(!is_dicom(&b));
        b[128..132].copy_from_slice(b"DICM");
        assert!(is_dicom(&b));
        assert!(!is_dicom(b"DICM"));
    }

    #[test]
    fn garbage_after_the_magic_is_a_clean_error() {
        let mut b = vec![0u8; 400];
        b[128..132].copy_from_slice(b"DICM");
        for (i, v) in b.iter_mut().enumerate().skip(132) {
            *v = (i * 37 % 251) as u8;
        }
        let e = decode_dicom(&b, &DecodeLimits::default()).unwrap_err();
        assert!(
            matches!(
                e,
                AnalysisError::CorruptImage(_) | AnalysisError::UnsupportedFormat(_)
            ),
            "{e:?}"
        );
    }
}
