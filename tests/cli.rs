//! The `boneage` binary: analyze, model info, serve.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Runs the binary, asserts success, parses stdout as JSON.
fn run_json(cmd: &mut Command) -> Value {
    serde_json::from_slice(&run_ok(cmd).stdout).unwrap()
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("boneage-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn analyze_prints_the_same_json_as_the_library() {
    let path = tmp("hand.png");
    let bytes = png8(&synthetic_hand(0.6, 21));
    std::fs::write(&path, &bytes).unwrap();
    let v = run_json(bin().args(["analyze"]).arg(&path).args([
        "--sex",
        "female",
        "--age-months",
        "130",
    ]));
    assert_eq!(v["joints"].as_array().unwrap().len(), 13);
    assert_eq!(v["chronological_age_months"], 130.0);

    let analyzer = boneage::analysis::Analyzer::new(default_model(), Default::default());
    let req = boneage::analysis::AnalysisRequest::new(boneage::Sex::Female, Some(130.0));
    let lib = serde_json::to_value(analyzer.analyze(&bytes, &req).unwrap()).unwrap();
    for k in [
        "bone_age",
        "tw3",
        "joints",
        "bone_age_sds",
        "model",
        "input",
    ] {
        assert_eq!(v[k], lib[k], "{k}");
    }
}

#[test]
fn analyze_refuses_bad_input_with_its_code() {
    let path = tmp("not-an-image.png");
    std::fs::write(&path, b"plain text").unwrap();
    let out = bin()
        .args(["analyze"])
        .arg(&path)
        .args(["--sex", "male"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unsupported_format"));
    let out = bin()
        .args(["analyze"])
        .arg(&path)
        .args(["--sex", "cat"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid_field"));
}

#[test]
fn model_info_reports_the_default_model() {
    let v = run_json(bin().args(["model", "info"]));
    let file = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/boneage-default.onnx"
    ))
    .unwrap();
    assert_eq!(v["sha256"], hex::encode(Sha256::digest(&file)));
    assert!(v["name"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(v["version"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(v["input_height"].as_u64().unwrap() >= 16);
    assert!(v["input_width"].as_u64().unwrap() >= 16);
}

#[test]
fn a_model_without_the_contract_is_refused_with_a_clear_message() {
    let path = tmp("bad.onnx");
    std::fs::write(&path, b"\x08\x07garbage").unwrap();
    let out = bin()
        .args(["model", "info", "--model"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.onnx"), "{err}");
    let out = bin()
        .args(["serve", "--listen", "127.0.0.1:0", "--model"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success(), "serve must refuse to start");
}

#[test]
fn serve_listens_answers_and_shuts_down_gracefully() {
    let db = tmp("serve.db");
    let (mut child, addr) = spawn_server(&[
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--workers".as_ref(),
        "1".as_ref(),
        "--db".as_ref(),
        db.as_os_str(),
    ]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = client();
        let r = c
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let img = png8(&synthetic_hand(0.5, 4));
        let r = c
            .post(format!("http://{addr}/v1/analyses?sex=male"))
            .header("content-type", "image/png")
            .body(img)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    });
    // SIGTERM → graceful shutdown, exit 0.
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "server did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn synth_bench_and_eval() {
    let img = tmp("synth16.png");
    run_ok(
        bin()
            .args(["synth"])
            .arg(&img)
            .args(["--bits", "16", "--maturity", "0.8"]),
    );
    let decoded = image::open(&img).unwrap();
    assert_eq!(decoded.color(), image::ColorType::L16);
    assert_eq!((decoded.width(), decoded.height()), (1000, 1300));

    let v = run_json(
        bin()
            .args(["bench", "--runs", "3", "--warmup", "1", "--image"])
            .arg(&img),
    );
    assert_eq!(v["runs"], 3);
    for k in ["decode", "preprocess", "inference", "scoring", "total"] {
        assert!(v["median_ms"][k].as_f64().is_some_and(|t| t >= 0.0), "{k}");
    }
    assert!(
        v["median_ms"]["total"].as_f64().unwrap() >= v["median_ms"]["inference"].as_f64().unwrap()
    );
    assert_eq!(v["threads"], 1);
    assert!(v["passes"].as_u64().is_some_and(|p| (1..=4).contains(&p)));
    assert!(v["model_pass_ms"]["median"]
        .as_f64()
        .is_some_and(|t| t > 0.0));
    assert!(v.get("batched").is_none());

    // Two inference threads, a batch of 3, and the model's input written out: the
    // z-scored 100x100 tensor, as raw little-endian f32.
    let dump = tmp("input.f32");
    let v = run_json(
        bin()
            .args(["bench", "--runs", "2", "--warmup", "1", "--threads", "2"])
            .args(["--batch", "3", "--image"])
            .arg(&img)
            .arg("--dump-input")
            .arg(&dump),
    );
    assert_eq!(v["threads"], 2);
    assert_eq!(v["batched"]["size"], 3);
    let per = v["batched"]["per_image_ms"]["median"].as_f64().unwrap();
    let pass = v["batched"]["pass_ms"]["median"].as_f64().unwrap();
    assert!(per > 0.0 && (pass / per - 3.0).abs() < 1e-2, "{per} {pass}");
    let raw = std::fs::read(&dump).unwrap();
    assert_eq!(raw.len(), 100 * 100 * 4);
    let x: Vec<f64> = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
        .collect();
    let mean = x.iter().sum::<f64>() / x.len() as f64;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / x.len() as f64;
    assert!(
        mean.abs() < 1e-3 && (var - 1.0).abs() < 1e-3,
        "{mean} {var}"
    );

    // A manifest of three synthetic images and one broken file.
    let dir = tmp("manifest");
    std::fs::create_dir_all(&dir).unwrap();
    let mut csv = String::from("id,image,boneage_months,male\n");
    for (i, m) in [0.2f32, 0.5, 0.8].iter().enumerate() {
        let name = format!("{i}.png");
        std::fs::write(dir.join(&name), png8(&synthetic_hand(*m, i as u64))).unwrap();
        csv.push_str(&format!("{i},{name},{},{}\n", 40 + 60 * i, i % 2));
    }
    std::fs::write(dir.join("broken.png"), b"\x89PNG\r\n\x1a\nbroken").unwrap();
    csv.push_str("9,broken.png,100,1\n");
    std::fs::write(dir.join("labels.csv"), csv).unwrap();
    let preds = dir.join("preds.csv");
    let v = run_json(
        bin()
            .args(["eval", "--manifest"])
            .arg(dir.join("labels.csv"))
            .arg("--out")
            .arg(&preds),
    );
    assert_eq!(v["images"], 4);
    assert_eq!(v["analysed"], 3);
    assert_eq!(v["rejected"], 1);
    assert_eq!(v["overall"]["n"], 3);
    assert!(v["overall"]["mae"].as_f64().is_some());
    let text = std::fs::read_to_string(&preds).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    for col in [
        "id",
        "boneage_months",
        "male",
        "predicted_months",
        "interval_lo",
        "interval_hi",
        "views_turned_deg",
        "box_cx",
        "box_hy",
        "error",
    ] {
        assert!(header.split(',').any(|h| h == col), "{header}");
    }
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 4);
    assert!(rows[3].ends_with("corrupt_image"), "{}", rows[3]);

    // Turned films and wider canvases: one summary per change, one row per film
    // analysed as given and change.
    let changed = dir.join("changed.csv");
    let v = run_json(
        bin()
            .args(["eval", "--manifest"])
            .arg(dir.join("labels.csv"))
            .args(["--rotations=-30,15", "--rotation-canvas", "expand"])
            .args(["--canvas-scales", "1.5"])
            .arg("--changes-out")
            .arg(&changed),
    );
    let turns = v["rotation"].as_array().unwrap();
    assert_eq!(turns.len(), 2, "{v}");
    assert_eq!(
        (turns[0]["degrees"].as_f64(), turns[1]["degrees"].as_f64()),
        (Some(-30.0), Some(15.0))
    );
    assert_eq!(turns[0]["canvas"], "expand");
    let canvas = v["canvas"].as_array().unwrap();
    assert_eq!(
        (canvas.len(), canvas[0]["scale"].as_f64()),
        (1, Some(1.5)),
        "{v}"
    );
    let text = std::fs::read_to_string(&changed).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    for col in [
        "id",
        "degrees",
        "scale",
        "base_months",
        "months",
        "mirrored",
        "views_turned_deg",
        "error",
    ] {
        assert!(header.contains(&col), "{header:?}");
    }
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let analysed = v["analysed"].as_u64().unwrap() as usize;
    assert_eq!(rows.len(), 3 * analysed, "{text}");
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let summaries = [
        ("degrees", "-30.0", &turns[0]),
        ("degrees", "15.0", &turns[1]),
        ("scale", "1.5", &canvas[0]),
    ];
    for (what, value, st) in summaries {
        let at: Vec<&Vec<&str>> = rows.iter().filter(|r| r[col(what)] == value).collect();
        let refused = at.iter().filter(|r| r[col("months")].is_empty()).count();
        assert_eq!(st["refused"].as_u64(), Some(refused as u64), "{text}");
        assert_eq!(
            st["n"].as_u64(),
            Some((at.len() - refused) as u64),
            "{text}"
        );
    }
    // A scale that is not one is refused before any work.
    let out = bin()
        .args(["eval", "--manifest"])
        .arg(dir.join("labels.csv"))
        .args(["--canvas-scales", "0.5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--canvas-scales"));
}

#[test]
fn tokens_and_local_mode() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    // without a token: local mode, loopback only
    let out = bin()
        .args(["serve", "--listen", "0.0.0.0:0", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(!out.status.success(), "no tokens: must refuse 0.0.0.0");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("token create"), "{err}");

    // `token create` prints the token alone on stdout
    let out = run_ok(
        bin()
            .args(["token", "create", "--tenant", "Ward 3"])
            .env("BONEAGE_DB", &db),
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let token = token.trim_end_matches('\n');
    assert!(
        !token.is_empty() && !token.contains(char::is_whitespace),
        "{token:?}"
    );
    assert_eq!(
        String::from_utf8_lossy(
            &run_ok(
                bin()
                    .args(["token", "create", "--tenant", "Ward 4", "--db"])
                    .arg(&db)
            )
            .stdout
        )
        .lines()
        .count(),
        1
    );

    // stored hashed: the token's text is nowhere in the database
    let raw = std::fs::read(&db).unwrap();
    let wal = std::fs::read(db.with_extension("db-wal")).unwrap_or_default();
    for bytes in [&raw, &wal] {
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "the token is stored in clear"
        );
    }
    // listed without the token itself
    let list = run_ok(bin().args(["token", "list", "--db"]).arg(&db));
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(text.contains("Ward 3") && !text.contains(token), "{text}");

    // with tokens, other interfaces are allowed and requests need one
    let (mut child, addr) = spawn_server(&[
        "--listen".as_ref(),
        "0.0.0.0:0".as_ref(),
        "--workers".as_ref(),
        "1".as_ref(),
        "--db".as_ref(),
        db.as_os_str(),
    ]);
    let port = addr.rsplit(':').next().unwrap().to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = client();
        let url = format!("http://127.0.0.1:{port}/v1/patients?external_id=x");
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 401);
        let r = c.get(&url).bearer_auth(token).send().await.unwrap();
        assert_eq!(r.status(), 200);
        // revoked from the CLI while the server runs: refused at once
        run_ok(bin().args(["token", "revoke", token, "--db"]).arg(&db));
        let r = c.get(&url).bearer_auth(token).send().await.unwrap();
        assert_eq!(r.status(), 401);
    });
    child.kill().ok();
    child.wait().ok();
    let out = bin()
        .args(["token", "revoke", token, "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(!out.status.success(), "revoking twice fails");
}

#[test]
fn a_reader_that_closes_the_pipe_early_is_not_a_crash() {
    // stdout's read end is closed before the binary writes (it loads the model first)
    let mut child = bin()
        .args(["model", "info"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.status.success(), "{err}");
}
