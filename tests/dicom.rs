//! DICOM input, tested against a real toolkit: radiographs are written as DICOM
//! (explicit VR little endian, by `boneage::dicom::encode_dicom`), transcoded by dcmtk
//! to every transfer syntax it writes, and each must give the PNG's bone age.
//!
//! The radiographs are real RSNA ones when `../shared/data/rsna` exists, else
//! synthetic hands. dcmtk (`apt install dcmtk`) is required on CI (`CI` set) and
//! installed by `.ci/run`; elsewhere the dcmtk tests say SKIPPED without it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use boneage::analysis::{Analyzer, RawFields};
use boneage::dicom::{encode_dicom, DicomTags};
use boneage::report::{AnalysisReport, Origin};
use common::*;
use serde_json::Value;

fn analyzer() -> Analyzer {
    Analyzer::new(default_model(), Default::default())
}

fn fields(sex: Option<&str>) -> RawFields {
    RawFields {
        sex: sex.map(str::to_string),
        ..Default::default()
    }
}

fn analyse(bytes: &[u8], sex: Option<&str>) -> AnalysisReport {
    analyzer()
        .analyze_upload(bytes, fields(sex))
        .unwrap_or_else(|e| panic!("{}: {e}", e.code()))
}

fn tool_available(tool: &str, package: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is required on CI (.ci/run installs {package})"
        );
        eprintln!("SKIPPED: {tool} not installed (apt install {package}); its transcoding tests did not run");
    }
    ok
}

fn dcmtk_available() -> bool {
    tool_available("dcmconv", "dcmtk")
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("boneage-dicom-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs a dcmtk tool `tool [args] in out` and returns the output file's bytes.
fn dcmtk(tool: &str, args: &[&str], input: &Path, out: &Path) -> Vec<u8> {
    let o = Command::new(tool)
        .args(args)
        .arg(input)
        .arg(out)
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    assert!(
        o.status.success(),
        "{tool} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::read(out).unwrap()
}

/// Grey radiographs as (name, 8-bit pixels, width, height, sex): up to three real
/// validation radiographs, else two synthetic hands.
fn radiographs() -> Vec<(String, image::GrayImage, &'static str)> {
    if let Some(dir) = rsna_dir() {
        let mut rows = boneage::eval::read_manifest(&dir.join("half512/labels.csv"), None).unwrap();
        rows.retain(|r| boneage::eval::is_validation_id(&r.id));
        return rows
            .iter()
            .take(3)
            .map(|r| {
                let img = image::open(&r.image).unwrap().into_luma8();
                let sex = if r.sex == boneage::Sex::Male {
                    "male"
                } else {
                    "female"
                };
                (format!("rsna-{}", r.id), img, sex)
            })
            .collect();
    }
    vec![
        ("synthetic-a".into(), synthetic_hand(0.4, 11), "female"),
        ("synthetic-b".into(), synthetic_hand(0.7, 12), "male"),
    ]
}

/// 8-bit pixels as a 12-bit DR detector would store them (v × 16).
fn twelve_bit(img: &image::GrayImage) -> Vec<u16> {
    img.as_raw().iter().map(|&v| v as u16 * 16).collect()
}

#[test]
fn every_transfer_syntax_gives_the_png_bone_age() {
    if !dcmtk_available() {
        return;
    }
    let dir = tmpdir("ts");
    for (name, img, sex) in radiographs() {
        let png = png8(&img);
        let want = analyse(&png, Some(sex)).bone_age.months;
        let (w, h) = img.dimensions();
        let tags = DicomTags {
            bits_stored: 12,
            ..Default::default()
        };
        let base = dir.join(format!("{name}.dcm"));
        std::fs::write(&base, encode_dicom(&twelve_bit(&img), w, h, &tags).unwrap()).unwrap();
        let mut cases: Vec<(&str, Vec<u8>, &str)> = vec![(
            "explicit VR LE",
            std::fs::read(&base).unwrap(),
            "Explicit VR Little Endian",
        )];
        for (tool, args, label, ts) in [
            (
                "dcmconv",
                &["+ti"][..],
                "implicit",
                "Implicit VR Little Endian",
            ),
            (
                "dcmconv",
                &["+td"][..],
                "deflated",
                "Deflated Explicit VR Little Endian",
            ),
            (
                "dcmcjpeg",
                &["+e1"][..],
                "jpeg-lossless-sv1",
                "JPEG Lossless, First-Order Prediction (Process 14 SV1)",
            ),
            (
                "dcmcjpeg",
                &["+el"][..],
                "jpeg-lossless",
                "JPEG Lossless (Process 14)",
            ),
            ("dcmcjpls", &["+el"][..], "jpeg-ls", "JPEG-LS Lossless"),
            (
                "dcmcjpls",
                &["+en"][..],
                "jpeg-ls-near",
                "JPEG-LS Near-Lossless",
            ),
            ("dcmcrle", &[][..], "rle", "RLE Lossless"),
        ] {
            let out = dir.join(format!("{name}-{label}.dcm"));
            cases.push((label, dcmtk(tool, args, &base, &out), ts));
        }
        // dcmtk writes no JPEG 2000; GDCM does (Debian libgdcm-tools).
        if tool_available("gdcmconv", "libgdcm-tools") {
            for (args, label, ts) in [
                (
                    &["--j2k"][..],
                    "jpeg2000-lossless",
                    "JPEG 2000 (Lossless Only)",
                ),
                (
                    &["--j2k", "--lossy", "-q", "95"][..],
                    "jpeg2000",
                    "JPEG 2000",
                ),
            ] {
                let out = dir.join(format!("{name}-{label}.dcm"));
                cases.push((label, dcmtk("gdcmconv", args, &base, &out), ts));
            }
        }
        for (label, bytes, ts) in cases {
            let r = analyse(&bytes, Some(sex));
            let d = r.source.dicom.as_ref().expect("DICOM header in the report");
            assert_eq!(d.transfer_syntax, Some(ts), "{name} {label}");
            let got = r.bone_age.months;
            eprintln!("{name} {label}: {got:.2} months (PNG {want:.2})");
            assert!(
                (got - want).abs() < 1.0,
                "{name} {label}: {got:.2} vs PNG {want:.2} months"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Lossy 12-bit JPEG (extended, process 4) has no pure-Rust decoder in dicom-rs:
/// it is refused as an unsupported format that names the transfer syntax.
#[test]
fn twelve_bit_lossy_jpeg_is_refused_clearly() {
    if !dcmtk_available() {
        return;
    }
    let dir = tmpdir("ext");
    let (_, img, sex) = radiographs().remove(0);
    let (w, h) = img.dimensions();
    let tags = DicomTags {
        bits_stored: 12,
        ..Default::default()
    };
    let base = dir.join("in.dcm");
    std::fs::write(&base, encode_dicom(&twelve_bit(&img), w, h, &tags).unwrap()).unwrap();
    let bytes = dcmtk("dcmcjpeg", &["+ee"], &base, &dir.join("ext.dcm"));
    let e = analyzer()
        .analyze_upload(&bytes, fields(Some(sex)))
        .unwrap_err();
    eprintln!("{}: {e}", e.code());
    assert_eq!(e.code(), "unsupported_format", "{e}");
    assert!(e.to_string().contains("JPEG Extended"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// JPEG baseline needs 8-bit samples: a JPEG file wrapped by img2dcm, as a
/// secondary-capture DICOM, gives the JPEG's own bone age exactly.
#[test]
fn jpeg_baseline_from_img2dcm() {
    if !dcmtk_available() {
        return;
    }
    let dir = tmpdir("img2dcm");
    let (_, img, sex) = radiographs().remove(0);
    let jpg = jpeg(&img);
    let jpg_path = dir.join("in.jpg");
    std::fs::write(&jpg_path, &jpg).unwrap();
    let out = dir.join("out.dcm");
    let bytes = dcmtk("img2dcm", &["-i", "JPEG"], &jpg_path, &out);
    let want = analyse(&jpg, Some(sex)).bone_age.months;
    let r = analyse(&bytes, Some(sex));
    assert_eq!(
        r.source.dicom.as_ref().unwrap().transfer_syntax,
        Some("JPEG Baseline (Process 1)")
    );
    assert!(
        (r.bone_age.months - want).abs() < 1.0,
        "{} vs {want}",
        r.bone_age.months
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A DR-style file: 16-bit container, 14 bits stored, MONOCHROME1 (bright air),
/// rescale slope/intercept and a window, JPEG lossless — the PNG's bone age.
#[test]
fn dr_style_monochrome1_with_rescale_and_window() {
    let (_, img, sex) = radiographs().remove(0);
    let want = analyse(&png8(&img), Some(sex)).bone_age.months;
    let (w, h) = img.dimensions();
    // Stored = 16383 - 64 v (inverted); rescale v' = 0.5 stored + 100; a window
    // over the whole rescaled range keeps the mapping linear.
    let stored = dr_monochrome1_14bit(&img);
    let lo = 0.5 * (16383.0 - 255.0 * 64.0) + 100.0;
    let hi = 0.5 * 16383.0 + 100.0;
    let tags = DicomTags {
        monochrome1: true,
        bits_stored: 14,
        rescale: Some((0.5, 100.0)),
        window: Some(((lo + hi) / 2.0, hi - lo + 1.0)),
        ..Default::default()
    };
    let mut bytes = encode_dicom(&stored, w, h, &tags).unwrap();
    if dcmtk_available() {
        let dir = tmpdir("dr");
        let base = dir.join("dr.dcm");
        std::fs::write(&base, &bytes).unwrap();
        bytes = dcmtk("dcmcjpeg", &["+e1"], &base, &dir.join("dr-jpegll.dcm"));
        let _ = std::fs::remove_dir_all(&dir);
    }
    let r = analyse(&bytes, Some(sex));
    let d = r.source.dicom.as_ref().unwrap();
    assert!(d.inverted);
    assert_eq!(d.intensity_mapping, "window");
    assert_eq!(r.input.bit_depth, 14);
    assert!(
        (r.bone_age.months - want).abs() < 1.0,
        "{} vs {want}",
        r.bone_age.months
    );
}

#[test]
fn the_header_fills_what_the_request_leaves_out() {
    let (_, img, _) = radiographs().remove(0);
    let (w, h) = img.dimensions();
    let tags = DicomTags {
        patient_sex: Some("F".into()),
        patient_birth_date: Some("20150301".into()),
        study_date: Some("20250301".into()),
        patient_id: Some("H-123".into()),
        laterality: Some("L".into()),
        pixel_spacing_mm: Some([0.143, 0.143]),
        frames: 2,
        ..Default::default()
    };
    let bytes = encode_dicom(&twelve_bit(&img), w, h, &tags).unwrap();

    // Nothing in the request: sex and age come from the header.
    let r = analyse(&bytes, None);
    assert_eq!(r.sex, boneage::Sex::Female);
    let age = r.chronological_age_months.unwrap();
    assert!((age - 120.0).abs() < 0.5, "{age}");
    let from = |r: &AnalysisReport, f: &str| {
        r.source
            .fields
            .iter()
            .find(|s| s.field == f)
            .cloned()
            .unwrap_or_else(|| panic!("no source for {f}"))
    };
    assert_eq!(from(&r, "sex").from, Origin::Dicom);
    assert_eq!(from(&r, "birth_date").value, "2015-03-01");
    assert_eq!(from(&r, "exam_date").from, Origin::Dicom);
    let d = r.source.dicom.as_ref().unwrap();
    assert_eq!(d.patient_id.as_deref(), Some("H-123"));
    assert_eq!(d.laterality.as_deref(), Some("L"));
    assert_eq!(d.pixel_spacing_mm, Some([0.143, 0.143]));
    assert_eq!(
        d.frames, 2,
        "multi-frame: the first frame is analysed, and said so"
    );

    // A contradicting request field wins, and the report says so.
    let r2 = analyse(&bytes, Some("male"));
    assert_eq!(r2.sex, boneage::Sex::Male);
    let s = from(&r2, "sex");
    assert_eq!((s.from, s.conflict), (Origin::Request, true));
    assert_eq!(s.dicom_value.as_deref(), Some("F"));
    assert_ne!(
        r.bone_age.months, r2.bone_age.months,
        "sex is a model input"
    );
}

#[test]
fn a_header_without_sex_still_needs_the_field() {
    let (_, img, _) = radiographs().remove(0);
    let (w, h) = img.dimensions();
    let tags = DicomTags {
        patient_sex: Some("O".into()),
        ..Default::default()
    };
    let bytes = encode_dicom(&twelve_bit(&img), w, h, &tags).unwrap();
    let e = analyzer().analyze_upload(&bytes, fields(None)).unwrap_err();
    assert_eq!(e.code(), "missing_field");
    assert!(e.to_string().contains("\"O\""), "{e}");
}

#[tokio::test]
async fn dicom_over_http_raw_and_multipart() {
    let (_, img, _) = radiographs().remove(0);
    let (w, h) = img.dimensions();
    let tags = DicomTags {
        patient_sex: Some("M".into()),
        ..Default::default()
    };
    let bytes = encode_dicom(&twelve_bit(&img), w, h, &tags).unwrap();
    let srv = TestServer::default().await;
    let c = client();
    let raw = c
        .post(srv.url("/v1/analyses"))
        .header("content-type", "application/dicom")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 200);
    let v: Value = raw.json().await.unwrap();
    assert_eq!(v["input"]["format"], "dicom");
    assert_eq!(v["sex"], "male");
    assert_eq!(v["source"]["fields"][0]["from"], "dicom");

    let mp = post_multipart(
        &c,
        &srv.url("/v1/analyses"),
        Some((bytes.clone(), "application/dicom")),
        &[],
    )
    .await;
    assert_eq!(mp.status(), 200);
    let v2: Value = mp.json().await.unwrap();
    assert_eq!(v2["bone_age"], v["bone_age"]);

    // Hostile files: truncated, and a header claiming a huge image.
    let cut = bytes[..bytes.len() / 2].to_vec();
    let r = c
        .post(srv.url("/v1/analyses"))
        .header("content-type", "application/dicom")
        .body(cut)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let huge = encode_dicom(&vec![0u16; 64 * 13_000], 64, 13_000, &DicomTags::default()).unwrap();
    let r = c
        .post(srv.url("/v1/analyses"))
        .header("content-type", "application/dicom")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    srv.stop().await;
}

/// The DICOM test corpus of pydicom (PyPI `pydicom`, MIT licence; `.ci/run` unpacks
/// its wheel into `target/pydicom-test-files`): CT, MR, RT dose, colour secondary
/// captures, truncated and malformed files. Not one may crash the decoder or come
/// back as a server error; each gets a result or a 4xx code.
#[test]
fn pydicom_corpus_never_crashes() {
    let dir = std::env::var_os("BONEAGE_PYDICOM_FILES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pydicom-test-files")
        });
    let Ok(entries) = std::fs::read_dir(&dir) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "{} is required on CI (.ci/run unpacks it)",
            dir.display()
        );
        eprintln!("SKIPPED: no pydicom test files at {}", dir.display());
        return;
    };
    let a = analyzer();
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "dcm"))
        .collect();
    files.sort();
    assert!(files.len() >= 50, "{} files", files.len());
    let mut outcomes: std::collections::BTreeMap<String, usize> = Default::default();
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let outcome = match a.analyze_upload(&bytes, fields(Some("female"))) {
            Ok(_) => "analysed".to_string(),
            Err(e) => {
                assert!(
                    (400..500).contains(&e.status()),
                    "{}: {} {e}",
                    f.display(),
                    e.code()
                );
                e.code().to_string()
            }
        };
        *outcomes.entry(outcome).or_default() += 1;
    }
    eprintln!("pydicom corpus ({} files): {outcomes:?}", files.len());
}

/// Inputs the fuzzer found (`scripts/fuzz.sh`), kept as regressions: each is refused
/// with a 4xx code, never a crash. `rle-index-panic.dcm` makes dicom-rs's RLE decoder
/// index out of bounds; the panic is contained in `boneage::dicom` and answered as
/// `corrupt_image`.
#[test]
fn fuzzer_findings_stay_fixed() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let e = analyzer()
            .analyze_upload(&bytes, fields(Some("female")))
            .expect_err("a fuzzer finding is refused");
        assert!((400..500).contains(&e.status()), "{}: {e}", path.display());
        n += 1;
    }
    assert!(n >= 1);
}
