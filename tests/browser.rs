//! The doctor's page in a real browser: starts the real server (local mode), writes
//! fixture radiographs and runs `tests/browser/e2e.mjs` (playwright-core driving
//! Debian's headless Chromium). Needs node, chromium and `npm ci --prefix
//! tests/browser`; without them it prints `SKIPPED` and passes, except under CI
//! (`CI` set), where it fails. Screenshots go to `target/browser-artifacts/`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

    let srv = TestServer::default().await;
    let mut cmd = Command::new("node");
    cmd.arg(repo().join("tests/browser/e2e.mjs"))
        .arg(&srv.base)
        .arg(&out)
        .env("CHROMIUM", chromium())
        .current_dir(repo());
    let (ok, log) =
        tokio::task::spawn_blocking(move || run_with_limit(cmd, Duration::from_secs(300)))
            .await
            .expect("runner");
    println!("{log}");
    println!("browser artifacts: {}", out.display());
    srv.stop().await;
    assert!(ok, "the browser test failed:\n{log}");
    assert!(log.contains("e2e: all checks passed"), "{log}");
    for shot in ["doctor-page-en.png", "doctor-page-zh.png"] {
        let p = out.join(shot);
        let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        assert!(len > 10_000, "{} is missing or empty", p.display());
    }
}
