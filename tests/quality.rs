//! Quality control and geometry on real and hostile images: hands pass (≤ 1% false
//! rejections on the RSNA validation radiographs), right hands are mirrored,
//! rotated and inverted hands are corrected, and what is not a hand radiograph is
//! refused (≥ 95% of a negative set built here plus pydicom's CT/MR/RT corpus).

mod common;

use std::path::PathBuf;

use boneage::analysis::{Analyzer, RawFields};
use boneage::eval;
use boneage::report::AnalysisReport;
use boneage::Sex;
use common::*;
use image::{GrayImage, Luma};

fn analyzer() -> Analyzer {
    Analyzer::new(default_model(), Default::default())
}

fn fields(sex: &str) -> RawFields {
    RawFields {
        sex: Some(sex.into()),
        ..Default::default()
    }
}

fn run(bytes: &[u8], sex: &str) -> Result<AnalysisReport, boneage::error::AnalysisError> {
    analyzer().analyze_upload(bytes, fields(sex))
}

fn calibrated() -> bool {
    default_model().info().quality.is_some()
}

/// Deterministic pseudo-random numbers (no dev-dependency needed).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32) / (1u64 << 24) as f32
    }
}

fn gen(w: u32, h: u32, f: impl Fn(f32, f32) -> f32) -> Vec<u8> {
    let img = GrayImage::from_fn(w, h, |x, y| {
        Luma([(f(x as f32 / w as f32, y as f32 / h as f32).clamp(0.0, 1.0) * 255.0) as u8])
    });
    png8(&img)
}

/// Images that are not hand radiographs, with a name each.
fn synthetic_negatives() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for seed in 1..=8u64 {
        let mut r = Lcg(seed);
        let px: Vec<u8> = (0..400 * 500).map(|_| (r.next() * 255.0) as u8).collect();
        out.push((
            format!("noise-{seed}"),
            png8(&GrayImage::from_raw(400, 500, px).unwrap()),
        ));
    }
    out.push(("black".into(), gen(400, 500, |_, _| 0.0)));
    out.push(("white".into(), gen(400, 500, |_, _| 1.0)));
    out.push(("ramp".into(), gen(400, 500, |x, _| x)));
    out.push((
        "radial".into(),
        gen(400, 500, |x, y| 1.0 - ((x - 0.5).hypot(y - 0.5) * 2.0)),
    ));
    out.push((
        "checkerboard".into(),
        gen(400, 500, |x, y| {
            (((x * 8.0) as i32 + (y * 8.0) as i32) % 2) as f32
        }),
    ));
    out.push((
        "stripes".into(),
        gen(400, 500, |x, _| 0.5 + 0.5 * (x * 40.0).sin()),
    ));
    // A chest radiograph, schematically: bright trunk, two dark lungs, a spine.
    out.push((
        "chest".into(),
        gen(500, 500, |x, y| {
            let trunk = ((x - 0.5) / 0.45).powi(2) + ((y - 0.55) / 0.5).powi(2) < 1.0;
            let lung = |cx: f32| ((x - cx) / 0.16).powi(2) + ((y - 0.45) / 0.3).powi(2) < 1.0;
            let spine = (x - 0.5).abs() < 0.04;
            match (trunk, lung(0.3) || lung(0.7), spine) {
                (_, _, true) => 0.95,
                (true, true, _) => 0.25,
                (true, false, _) => 0.7,
                _ => 0.05,
            }
        }),
    ));
    // A skull-like ring and a long bone (a femur) alone.
    out.push((
        "skull".into(),
        gen(500, 500, |x, y| {
            let d = (x - 0.5).hypot(y - 0.5);
            if (0.35..0.42).contains(&d) {
                0.9
            } else if d < 0.35 {
                0.4
            } else {
                0.05
            }
        }),
    ));
    out.push((
        "long-bone".into(),
        gen(300, 600, |x, y| {
            if (x - 0.5).abs() < 0.08 + 0.1 * ((y - 0.5) * 2.0).powi(8) {
                0.85
            } else {
                0.1
            }
        }),
    ));
    // Blobs.
    for seed in 1..=4u64 {
        let mut r = Lcg(100 + seed);
        let blobs: Vec<(f32, f32, f32)> = (0..12)
            .map(|_| (r.next(), r.next(), 0.03 + 0.1 * r.next()))
            .collect();
        out.push((
            format!("blobs-{seed}"),
            gen(400, 500, move |x, y| {
                if blobs.iter().any(|b| (x - b.0).hypot(y - b.1) < b.2) {
                    0.85
                } else {
                    0.1
                }
            }),
        ));
    }
    out
}

/// pydicom's test DICOM files that decode to an image (CT, MR, RT dose, colour captures).
fn pydicom_images() -> Vec<(String, Vec<u8>)> {
    let dir = std::env::var_os("BONEAGE_PYDICOM_FILES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pydicom-test-files")
        });
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("SKIPPED: no pydicom test files at {}", dir.display());
        return Vec::new();
    };
    let limits = boneage::decode::DecodeLimits::default();
    let mut out: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "dcm"))
        .filter_map(|p| {
            let bytes = std::fs::read(&p).ok()?;
            boneage::decode::decode_upload(&bytes, &limits).ok()?;
            Some((p.file_name()?.to_string_lossy().into_owned(), bytes))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn images_that_are_not_hands_are_refused() {
    assert!(
        calibrated(),
        "the default model carries its quality calibration"
    );
    let mut negatives = synthetic_negatives();
    let n_synth = negatives.len();
    negatives.extend(pydicom_images());
    let mut refused = 0;
    let mut passed = Vec::new();
    for (name, bytes) in &negatives {
        match run(bytes, "female") {
            Ok(r) => passed.push(format!(
                "{name} (residual {:?}, sd {})",
                r.quality.shape.as_ref().map(|s| s.residual),
                r.bone_age.sd_months
            )),
            Err(e) => {
                assert!(
                    [
                        "not_a_hand",
                        "multiple_hands",
                        "poor_exposure",
                        "resolution_too_low"
                    ]
                    .contains(&e.code()),
                    "{name}: {} {e}",
                    e.code()
                );
                refused += 1;
            }
        }
    }
    let share = refused as f64 / negatives.len() as f64;
    eprintln!(
        "negative set: {refused}/{} refused ({:.1}%; {n_synth} synthetic, {} pydicom); analysed: {passed:?}",
        negatives.len(),
        100.0 * share,
        negatives.len() - n_synth
    );
    assert!(share >= 0.95, "{:.1}% refused", 100.0 * share);
}

#[test]
fn blank_frames_are_poor_exposure() {
    let e = run(&gen(400, 500, |_, _| 0.3), "male").unwrap_err();
    assert_eq!(e.code(), "poor_exposure");
    assert!(e.to_string().contains("blank"), "{e}");
}

/// The RSNA validation radiographs (never trained on) pass quality control.
#[test]
fn real_hands_are_accepted() {
    let Some(dir) = rsna_dir() else { return };
    let a = analyzer();
    let (mut n, mut refused_all) = (0, 0);
    for manifest in ["half512/labels.csv", "sq100/labels.csv"] {
        let mut rows = eval::read_manifest(&dir.join(manifest), None).unwrap();
        rows.retain(|r| eval::is_validation_id(&r.id));
        let preds: Vec<_> = rows.iter().map(|r| eval::predict(&a, r)).collect();
        let refused: Vec<_> = preds.iter().filter(|p| !p.error.is_empty()).collect();
        eprintln!(
            "{manifest} validation: {} of {} refused ({:.2}%): {:?}",
            refused.len(),
            preds.len(),
            100.0 * refused.len() as f64 / preds.len() as f64,
            refused
                .iter()
                .map(|p| (&p.id, &p.error))
                .collect::<Vec<_>>()
        );
        n += preds.len();
        refused_all += refused.len();
    }
    let share = refused_all as f64 / n as f64;
    eprintln!(
        "false rejections: {refused_all} of {n} validation radiographs ({:.2}%)",
        100.0 * share
    );
    assert!(share <= 0.01, "{:.2}% refused", 100.0 * share);
}

/// Right hands, rotated hands and inverted grey scales, made from real validation
/// radiographs (or synthetic hands without ../shared): each is corrected and gives
/// nearly the bone age of the original. The figures are printed for the README.
#[test]
fn right_rotated_and_inverted_hands_are_corrected() {
    let images: Vec<(String, GrayImage, &str)> = match rsna_dir() {
        Some(dir) => {
            let mut rows = eval::read_manifest(&dir.join("half512/labels.csv"), None).unwrap();
            rows.retain(|r| eval::is_validation_id(&r.id));
            rows.iter()
                .take(20)
                .map(|r| {
                    let sex = if r.sex == Sex::Male { "male" } else { "female" };
                    (
                        r.id.clone(),
                        image::open(&r.image).unwrap().into_luma8(),
                        sex,
                    )
                })
                .collect()
        }
        None => vec![("synthetic".into(), synthetic_hand(0.5, 4), "female")],
    };
    let mut diffs: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    let mut failures = Vec::new();
    for (id, img, sex) in &images {
        let Ok(base) = run(&png8(img), sex) else {
            continue; // refused as is: not a test of the corrections
        };
        let variants: Vec<(&str, GrayImage)> = vec![
            ("mirrored", image::imageops::flip_horizontal(img)),
            ("inverted", {
                let mut i = img.clone();
                image::imageops::invert(&mut i);
                i
            }),
            ("rotated+30", rotate(img, 30.0)),
            ("rotated-45", rotate(img, -45.0)),
            ("rotated+10", rotate(img, 10.0)),
            ("askew+20", rotate_whole(img, 20.0)),
            ("askew-45", rotate_whole(img, -45.0)),
            ("askew+45", rotate_whole(img, 45.0)),
            ("wide canvas", on_canvas(img, 1.5)),
        ];
        for (what, v) in variants {
            match run(&png8(&v), sex) {
                Ok(r) => {
                    let q = &r.quality;
                    let ok = match what {
                        "mirrored" => q.corrections.mirrored && q.laterality == Some("right"),
                        "inverted" => q.corrections.inverted,
                        // Turned upright, and read as the same side as the film.
                        "rotated+30" | "rotated-45" | "askew-45" | "askew+45" => {
                            q.corrections.rotation_deg.abs() > 15.0
                                && q.corrections.mirrored == base.quality.corrections.mirrored
                        }
                        // Framed as the typical film: the hand is enlarged, the box
                        // the views show is smaller than the frame.
                        "wide canvas" => {
                            q.corrections.views_zoom.is_some_and(|z| z > 1.2)
                                && q.corrections
                                    .views_box
                                    .is_some_and(|b| (b.half[0] * b.half[1]).sqrt() < 0.5 / 1.2)
                        }
                        _ => true,
                    };
                    if !ok {
                        failures.push(format!("{id} {what}: not corrected {:?}", q.corrections));
                    }
                    diffs
                        .entry(what)
                        .or_default()
                        .push((r.bone_age.months - base.bone_age.months).abs());
                }
                Err(e) => failures.push(format!("{id} {what}: {}", e.code())),
            }
        }
    }
    for (what, d) in &diffs {
        let mean = d.iter().sum::<f64>() / d.len() as f64;
        let mut s = d.clone();
        s.sort_by(f64::total_cmp);
        eprintln!(
            "{what}: n={} bone age change mean {mean:.2} median {:.2} max {:.2} months",
            d.len(),
            s[s.len() / 2],
            s[s.len() - 1]
        );
    }
    eprintln!("not corrected or refused: {failures:?}");
    if rsna_dir().is_some() {
        // A whole film turned on a larger canvas reads nearly as the film, framed like
        // the typical training film: measured 1.8 months on average here with 0.6.0
        // (before the framing, `boneage eval --rotation-canvas expand` measured 9.0 at
        // +20°). The film on a 1.5× canvas is framed (zoom checked above) and moves
        // 1.8 months on average (5.3 with 0.4.2 before the box was found again on the
        // framed hand).
        for what in ["askew+20", "wide canvas", "askew-45", "askew+45"] {
            let d = &diffs[what];
            let mean = d.iter().sum::<f64>() / d.len() as f64;
            assert!(mean < 5.0, "{what}: mean change {mean:.2} months");
        }
    }
    let total: usize = diffs.values().map(Vec::len).sum::<usize>() + failures.len();
    assert!(
        failures.len() * 10 <= total,
        "{} of {total} variants failed: {failures:?}",
        failures.len()
    );
}

/// Rotates about the centre, same size, black fill (a film turned on the detector).
/// Nearest-neighbour and written here on purpose: the variants are made apart from
/// the library's own sampler (`quality::frame`), which they test.
fn rotate(img: &GrayImage, deg: f32) -> GrayImage {
    let (w, h) = img.dimensions();
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    let (s, c) = deg.to_radians().sin_cos();
    GrayImage::from_fn(w, h, |x, y| {
        let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
        let (sx, sy) = (cx + dx * c + dy * s, cy - dx * s + dy * c);
        if sx < 0.0 || sy < 0.0 || sx >= w as f32 || sy >= h as f32 {
            Luma([0])
        } else {
            *img.get_pixel(sx as u32, sy as u32)
        }
    })
}

/// Rotates about the centre onto a canvas that holds the whole turned film (black
/// fill): a film scanned askew.
fn rotate_whole(img: &GrayImage, deg: f32) -> GrayImage {
    let (w, h) = img.dimensions();
    let (s, c) = deg.to_radians().sin_cos();
    let ow = (w as f32 * c.abs() + h as f32 * s.abs()).ceil() as u32;
    let oh = (w as f32 * s.abs() + h as f32 * c.abs()).ceil() as u32;
    let grown = on_size(img, ow.max(w), oh.max(h));
    let turned = rotate(&grown, deg);
    image::imageops::crop_imm(
        &turned,
        (turned.width() - ow) / 2,
        (turned.height() - oh) / 2,
        ow,
        oh,
    )
    .to_image()
}

/// The film in the middle of a black canvas `k` times its size each way.
fn on_canvas(img: &GrayImage, k: f32) -> GrayImage {
    let (w, h) = img.dimensions();
    on_size(img, (w as f32 * k) as u32, (h as f32 * k) as u32)
}

fn on_size(img: &GrayImage, ow: u32, oh: u32) -> GrayImage {
    let mut out = GrayImage::new(ow, oh);
    image::imageops::replace(
        &mut out,
        img,
        ((ow - img.width()) / 2) as i64,
        ((oh - img.height()) / 2) as i64,
    );
    out
}

/// The cases the service must get right over HTTP: a DR-style DICOM (16-bit
/// container, 14 bits stored, MONOCHROME1, JPEG lossless when dcmtk is there), a
/// right hand, a rotated hand (45°) and a chest radiograph.
#[tokio::test]
async fn the_hospital_cases_over_http() {
    let (img, sex) = match rsna_dir() {
        Some(dir) => {
            let mut rows = eval::read_manifest(&dir.join("half512/labels.csv"), None).unwrap();
            rows.retain(|r| eval::is_validation_id(&r.id));
            let r = &rows[0];
            let sex = if r.sex == Sex::Male { "male" } else { "female" };
            (image::open(&r.image).unwrap().into_luma8(), sex)
        }
        None => (synthetic_hand(0.5, 4), "female"),
    };
    let srv = TestServer::default().await;
    let c = client();
    let post = |bytes: Vec<u8>, ctype: &'static str| {
        let c = c.clone();
        let url = srv.url(&format!("/v1/analyses?sex={sex}"));
        async move {
            let r = c
                .post(url)
                .header("content-type", ctype)
                .body(bytes)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (s, base) = post(png8(&img), "image/png").await;
    assert_eq!(s, 200, "{base}");
    let months = base["bone_age"]["months"].as_f64().unwrap();

    // DR-style DICOM.
    let (w, h) = img.dimensions();
    let stored = dr_monochrome1_14bit(&img);
    let tags = boneage::dicom::DicomTags {
        monochrome1: true,
        bits_stored: 14,
        ..Default::default()
    };
    let mut dcm = boneage::dicom::encode_dicom(&stored, w, h, &tags).unwrap();
    let lossless = std::process::Command::new("dcmcjpeg")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if lossless {
        let dir = std::env::temp_dir().join(format!("boneage-dr-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("in.dcm"), &dcm).unwrap();
        let ok = std::process::Command::new("dcmcjpeg")
            .args(["+e1"])
            .arg(dir.join("in.dcm"))
            .arg(dir.join("out.dcm"))
            .status()
            .unwrap()
            .success();
        assert!(ok, "dcmcjpeg");
        dcm = std::fs::read(dir.join("out.dcm")).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
    let (s, v) = post(dcm, "application/dicom").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["source"]["dicom"]["inverted"], true);
    if lossless {
        assert_eq!(
            v["source"]["dicom"]["transfer_syntax"],
            "JPEG Lossless, First-Order Prediction (Process 14 SV1)"
        );
    }
    let d = (v["bone_age"]["months"].as_f64().unwrap() - months).abs();
    assert!(
        d < 1.0,
        "DR DICOM {d:.2} months from the PNG ({} vs {})",
        v["quality"]["corrections"],
        base["quality"]["corrections"]
    );

    // A right hand.
    let (s, v) = post(png8(&image::imageops::flip_horizontal(&img)), "image/png").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["quality"]["laterality"], "right");
    assert_eq!(v["quality"]["corrections"]["mirrored"], true);

    // A hand rotated by 45 degrees: turned upright (or refused, never a wrong number
    // without saying so).
    let (s, v) = post(png8(&rotate(&img, 45.0)), "image/png").await;
    assert_eq!(s, 200, "{v}");
    let turned = v["quality"]["corrections"]["rotation_deg"]
        .as_f64()
        .unwrap();
    assert!(turned.abs() > 25.0, "rotation corrected: {turned}");
    assert_eq!(
        v["quality"]["laterality"], base["quality"]["laterality"],
        "{v}"
    );
    eprintln!(
        "rotated 45°: turned {turned:.1}°, bone age {:.1} vs {months:.1} months",
        v["bone_age"]["months"].as_f64().unwrap()
    );

    // A chest radiograph (schematic).
    let chest = synthetic_negatives()
        .into_iter()
        .find(|(n, _)| n == "chest")
        .unwrap()
        .1;
    let (s, v) = post(chest, "image/png").await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["code"], "not_a_hand");

    // Both hands on one film.
    let (s, v) = post(png8(&both_hands(&img)), "image/png").await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["code"], "multiple_hands", "{v}");
    srv.stop().await;
}

/// Both hands on one film: the image mirrored (a right hand) beside itself.
fn both_hands(img: &GrayImage) -> GrayImage {
    let (w, h) = img.dimensions();
    let mirrored = image::imageops::flip_horizontal(img);
    GrayImage::from_fn(2 * w, h, |x, y| {
        if x < w {
            *mirrored.get_pixel(x, y)
        } else {
            *img.get_pixel(x - w, y)
        }
    })
}

/// Two hands side by side, made from real validation radiographs (or synthetic hands
/// without ../shared): at least 85% refused as `multiple_hands`, at most 1 in 20
/// given a number (measured: 82 and 1 of 92). Figures printed for the README.
#[test]
fn both_hands_on_one_film_are_refused() {
    let images: Vec<(GrayImage, &str)> = match rsna_dir() {
        Some(dir) => {
            let mut rows = eval::read_manifest(&dir.join("half512/labels.csv"), None).unwrap();
            rows.retain(|r| eval::is_validation_id(&r.id));
            rows.iter()
                .map(|r| {
                    let sex = if r.sex == Sex::Male { "male" } else { "female" };
                    (image::open(&r.image).unwrap().into_luma8(), sex)
                })
                .collect()
        }
        None => (0..4)
            .map(|k| (synthetic_hand(0.3 + 0.15 * k as f32, k as u64), "female"))
            .collect(),
    };
    let mut codes: std::collections::BTreeMap<String, usize> = Default::default();
    for (img, sex) in &images {
        let code = match run(&png8(&both_hands(img)), sex) {
            Ok(_) => "analysed".to_string(),
            Err(e) => e.code().to_string(),
        };
        *codes.entry(code).or_default() += 1;
    }
    let n = images.len();
    let multiple = codes.get("multiple_hands").copied().unwrap_or(0);
    let analysed = codes.get("analysed").copied().unwrap_or(0);
    eprintln!("both hands on one film: {n} images, outcomes {codes:?}");
    assert!(multiple * 100 >= n * 85, "{codes:?}");
    assert!(analysed * 20 <= n, "{codes:?}");
}
