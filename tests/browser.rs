//! The doctor's page in a real browser: starts the real server (local mode), writes
//! fixture radiographs and runs `tests/browser/e2e.mjs` (playwright-core driving
//! Debian's headless Chromium). Needs node, chromium and `npm ci --prefix
//! tests/browser`; without them it prints `SKIPPED` and passes, except under CI
//! (`CI` set), where it fails. Screenshots go to `target/browser-artifacts/`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use boneage::http::ServerOptions;
use boneage::store::Store;
use common::*;
use image::{GrayImage, Luma};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// What is missing to run the browser tests, if anything.
fn missing() -> Vec<String> {
    let mut out = Vec::new();
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !node.map(|s| s.success()).unwrap_or(false) {
        out.push("node (apt-get install nodejs npm)".to_string());
    }
    if !chromium().exists() {
        out.push(format!(
            "{} (apt-get install chromium)",
            chromium().display()
        ));
    }
    if !repo()
        .join("tests/browser/node_modules/playwright-core/package.json")
        .exists()
    {
        out.push("playwright-core (npm ci --prefix tests/browser)".to_string());
    }
    out
}

fn under_ci() -> bool {
    std::env::var("CI")
        .map(|v| !v.is_empty() && v != "false" && v != "0")
        .unwrap_or(false)
}

/// `target/browser-artifacts` (beside the test binaries' temporary folder).
fn artifacts() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.parent().unwrap_or(tmp).join("browser-artifacts");
    std::fs::create_dir_all(&dir).expect("artifact folder");
    dir
}

/// A schematic chest radiograph: bright trunk, two dark lungs, a spine (refused as
/// `not_a_hand`, as in tests/quality.rs).
fn chest() -> GrayImage {
    GrayImage::from_fn(500, 500, |px, py| {
        let (x, y) = (px as f32 / 500.0, py as f32 / 500.0);
        let trunk = ((x - 0.5) / 0.45).powi(2) + ((y - 0.55) / 0.5).powi(2) < 1.0;
        let lung = |cx: f32| ((x - cx) / 0.16).powi(2) + ((y - 0.45) / 0.3).powi(2) < 1.0;
        let spine = (x - 0.5).abs() < 0.04;
        let v = match (trunk, lung(0.3) || lung(0.7), spine) {
            (_, _, true) => 0.95,
            (true, true, _) => 0.25,
            (true, false, _) => 0.7,
            _ => 0.05,
        };
        Luma([(v * 255.0) as u8])
    })
}

/// A synthetic hand as a DR detector writes it: MONOCHROME1, 14 bits stored, with
/// the patient's sex, birth date and the study date in the header.
fn dicom_hand() -> Vec<u8> {
    use boneage::dicom::{encode_dicom, DicomTags};
    let img = synthetic_hand(0.5, 9);
    let (w, h) = img.dimensions();
    let tags = DicomTags {
        monochrome1: true,
        bits_stored: 14,
        patient_sex: Some("F".into()),
        patient_birth_date: Some("20160501".into()),
        study_date: Some("20261120".into()),
        patient_id: Some("MRN-77".into()),
        laterality: Some("L".into()),
        ..Default::default()
    };
    encode_dicom(&dr_monochrome1_14bit(&img), w, h, &tags).expect("DICOM")
}

/// Runs `cmd`, killing it after `limit`; returns (success, stdout + stderr).
fn run_with_limit(mut cmd: Command, limit: Duration) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("e2e.log");
    let file = std::fs::File::create(&log).expect("log file");
    let mut child = cmd
        .stdout(file.try_clone().expect("log"))
        .stderr(file)
        .spawn()
        .expect("node starts");
    let start = Instant::now();
    let ok = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.success();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    (ok, std::fs::read_to_string(&log).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctors_page_in_a_real_browser() {
    let missing = missing();
    if !missing.is_empty() {
        let what = missing.join(", ");
        if under_ci() {
            panic!("browser tests cannot run under CI: missing {what}");
        }
        eprintln!("SKIPPED: browser tests need {what}");
        return;
    }
    let out = artifacts();
    std::fs::write(out.join("hand1.png"), png8(&synthetic_hand(0.45, 3))).expect("fixture");
    std::fs::write(out.join("hand2.png"), png8(&synthetic_hand(0.55, 4))).expect("fixture");
    std::fs::write(out.join("not-a-hand.png"), png8(&chest())).expect("fixture");
    std::fs::write(out.join("hand.dcm"), dicom_hand()).expect("fixture");

    let srv = TestServer::default().await;
    // A second server with a token, for the sign-in form.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(&dir.path().join("boneage.db")).expect("store"));
    let token = store.create_token("hospital").expect("token").token;
    let with_tokens = TestServer::start_with(
        default_model(),
        ServerOptions {
            workers: 1,
            queue_depth: 2,
            ..Default::default()
        },
        store,
    )
    .await;
    let mut cmd = Command::new("node");
    cmd.arg(repo().join("tests/browser/e2e.mjs"))
        .arg(&srv.base)
        .arg(&out)
        .env("CHROMIUM", chromium())
        .env("TOKEN_BASE", &with_tokens.base)
        .env("TOKEN", &token)
        .current_dir(repo());
    let (ok, log) =
        tokio::task::spawn_blocking(move || run_with_limit(cmd, Duration::from_secs(300)))
            .await
            .expect("runner");
    println!("{log}");
    println!("browser artifacts: {}", out.display());
    srv.stop().await;
    with_tokens.stop().await;
    assert!(ok, "the browser test failed:\n{log}");
    assert!(log.contains("e2e: all checks passed"), "{log}");
    for shot in ["doctor-page-en.png", "doctor-page-zh.png"] {
        let p = out.join(shot);
        let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        assert!(len > 10_000, "{} is missing or empty", p.display());
    }
}

/// The page and its assets: served with their types, a CSP without inline scripts,
/// revalidated by ETag.
#[tokio::test]
async fn the_page_is_served_from_the_binary() {
    let srv = TestServer::default().await;
    let c = client();
    let r = c.get(srv.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'") && csp.contains("script-src 'self';"));
    assert!(!csp.contains("script-src 'self' 'unsafe-inline'"));
    let html = r.text().await.unwrap();
    assert!(html.contains("/assets/app.js") && !html.contains("<script>"));
    for (file, ctype) in [
        ("app.js", "text/javascript"),
        ("i18n.js", "text/javascript"),
        ("app.css", "text/css"),
    ] {
        let r = c
            .get(srv.url(&format!("/assets/{file}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{file}");
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(ctype));
        let etag = r.headers()["etag"].clone();
        let again = c
            .get(srv.url(&format!("/assets/{file}")))
            .header("If-None-Match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{file}");
    }
    let r = c.get(srv.url("/assets/nope.js")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // The page's helpers are part of the API description.
    let doc: serde_json::Value = c
        .get(srv.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for p in ["/v1/preview", "/v1/dicom/header"] {
        assert!(doc["paths"][p]["post"].is_object(), "openapi lacks {p}");
    }
    assert!(doc["components"]["schemas"]["DicomFields"].is_object());
    srv.stop().await;
}

/// `POST /v1/dicom/header` and `POST /v1/preview`: thin, stateless, same limits
/// and tokens as analyses.
#[tokio::test]
async fn preview_and_dicom_header() {
    let img = synthetic_hand(0.5, 9);
    let (w, h) = img.dimensions();
    let dcm = dicom_hand();

    let srv = TestServer::default().await;
    let c = client();
    let r = c
        .post(srv.url("/v1/dicom/header"))
        .header("Content-Type", "application/dicom")
        .body(dcm.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["sex"], "female");
    assert_eq!(v["birth_date"], "2016-05-01");
    assert_eq!(v["exam_date"], "2026-11-20");
    assert_eq!(v["patient_id"], "MRN-77");
    assert_eq!(v["laterality"], "L");

    // A PNG is not a DICOM file.
    let png = png8(&img);
    let r = c
        .post(srv.url("/v1/dicom/header"))
        .body(png.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);

    // The DICOM preview: MONOCHROME1 inverted (bone bright, background dark), 1000 ×
    // 1300 → 788 × 1024, and the same pixels as the PNG of the same hand.
    let r = c
        .post(srv.url("/v1/preview"))
        .body(dcm)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.headers()["x-image-width"], w.to_string().as_str());
    assert_eq!(r.headers()["x-image-height"], h.to_string().as_str());
    let from_dicom = image::load_from_memory(&r.bytes().await.unwrap())
        .unwrap()
        .to_luma8();
    assert_eq!(from_dicom.dimensions(), (788, 1024));
    let r = c
        .post(srv.url("/v1/preview"))
        .body(png)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let from_png = image::load_from_memory(&r.bytes().await.unwrap())
        .unwrap()
        .to_luma8();
    assert_eq!(from_png.dimensions(), (788, 1024));
    // Same picture up to the display mapping (min–max for a DICOM without a
    // window): strongly positively correlated (an un-inverted MONOCHROME1 would be
    // strongly negative).
    let a: Vec<f64> = from_dicom.pixels().map(|p| p.0[0] as f64).collect();
    let b: Vec<f64> = from_png.pixels().map(|p| p.0[0] as f64).collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (ma, mb) = (mean(&a), mean(&b));
    let cov: f64 = a.iter().zip(&b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    let corr = cov / (va * vb).sqrt();
    assert!(corr > 0.98, "DICOM and PNG previews correlate by {corr}");
    let corner = from_dicom.get_pixel(5, 5).0[0];
    assert!(
        corner < 40,
        "background dark after MONOCHROME1 inversion: {corner}"
    );

    // Refusals use the analysis codes.
    let r = c
        .post(srv.url("/v1/preview"))
        .body(b"not an image".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = c.post(srv.url("/v1/preview")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    srv.stop().await;

    // With tokens configured, both need one.
    let dir = tempfile::tempdir().unwrap();
    let store =
        std::sync::Arc::new(boneage::store::Store::open(&dir.path().join("boneage.db")).unwrap());
    let token = store.create_token("hospital").unwrap().token;
    let srv = TestServer::start_with(
        default_model(),
        ServerOptions {
            workers: 1,
            queue_depth: 2,
            ..Default::default()
        },
        store,
    )
    .await;
    for path in ["/v1/preview", "/v1/dicom/header"] {
        let r = c
            .post(srv.url(path))
            .body(vec![0u8; 200])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert!(r.headers().contains_key("www-authenticate"));
    }
    let r = c
        .post(srv.url("/v1/preview"))
        .bearer_auth(&token)
        .body(png8(&img))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The page itself is public (it holds no data); it asks for the token.
    assert_eq!(c.get(srv.url("/")).send().await.unwrap().status(), 200);
    srv.stop().await;
}
