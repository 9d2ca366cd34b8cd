//! Batch re-scoring end to end: the real binary over files (killed with SIGKILL
//! midway, then rerun: exactly one row per image, CSV and JSON Lines), shards
//! that partition a run, the stored exams of a database re-scored with a second
//! model (one new analysis per exam, the old one kept, a rerun adds nothing), the
//! comparison of the two versions, and the API's jobs (resumed after a restart,
//! counted, invisible to another tenant).

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use boneage::http::ServerOptions;
use boneage::model::{Backend, TractModel};
use boneage::store::{RescoreFilter, Store};
use common::*;
use serde_json::Value;

/// The default model's bytes with `boneage.model_version` set to `version` (a
/// later `metadata_props` entry wins), written to `dir`: the same network under a
/// different version and sha256, as a new release would be.
fn model_with_version(dir: &Path, version: &str) -> PathBuf {
    let mut bytes = boneage::model::EMBEDDED_MODEL.to_vec();
    let key = b"boneage.model_version";
    let mut entry = vec![0x0a, key.len() as u8];
    entry.extend_from_slice(key);
    entry.extend_from_slice(&[0x12, version.len() as u8]);
    entry.extend_from_slice(version.as_bytes());
    // ModelProto field 14 (metadata_props), length-delimited.
    bytes.extend_from_slice(&[0x72, entry.len() as u8]);
    bytes.extend_from_slice(&entry);
    let path = dir.join(format!("model-{version}.onnx"));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// `n` synthetic radiographs under `dir/images`, and a manifest in the
/// `boneage eval` layout naming them, plus: two rows without sex, a row naming a
/// missing file, and a row naming the first image a second time.
fn manifest(dir: &Path, n: usize) -> PathBuf {
    std::fs::create_dir_all(dir.join("images")).unwrap();
    let mut text = String::from("id,image,boneage_months,male\n");
    for i in 0..n {
        let img = synthetic_hand(0.2 + 0.6 * (i as f32 / n as f32), 100 + i as u64);
        std::fs::write(dir.join(format!("images/{i}.png")), png8(&img)).unwrap();
        let male = match i {
            3 | 7 => String::new(),
            _ => (i % 2).to_string(),
        };
        text += &format!("{i},images/{i}.png,120,{male}\n");
    }
    text += "missing,images/missing.png,100,1\n";
    text += "again,images/0.png,120,0\n";
    let path = dir.join("labels.csv");
    std::fs::write(&path, text).unwrap();
    path
}

/// Rows of an output file, as JSON objects.
fn rows(out: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(out).unwrap();
    if out.extension().is_some_and(|e| e == "jsonl") {
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    } else {
        let mut rdr = csv::Reader::from_reader(text.as_bytes());
        let headers = rdr.headers().unwrap().clone();
        rdr.records()
            .map(|r| {
                let r = r.unwrap();
                let m: serde_json::Map<String, Value> = headers
                    .iter()
                    .zip(r.iter())
                    .map(|(h, v)| (h.to_string(), Value::String(v.to_string())))
                    .collect();
                Value::Object(m)
            })
            .collect()
    }
}

fn lines_in(path: &Path) -> usize {
    std::fs::read(path)
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

/// Starts a file re-scoring, SIGKILLs it once `kill_after` lines are in the
/// output, appends half a line (a write torn by the kill), reruns it to the end,
/// and checks exactly one row per image; a third run adds nothing.
fn killed_and_resumed(out: &Path, manifest: &Path, images: usize) {
    let args = |cmd: &mut Command| {
        cmd.args(["rescore", "--workers", "1", "--manifest"])
            .arg(manifest)
            .arg("--out")
            .arg(out);
    };
    let mut cmd = bin();
    args(&mut cmd);
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let header = usize::from(out.extension().is_some_and(|e| e == "csv"));
    let t0 = Instant::now();
    while lines_in(out) < header + 4 {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no rows after 2 minutes"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let written = lines_in(out) - header;
    assert!(
        written < images,
        "killed after {written} of {images} rows: not midway"
    );
    // A torn last line, as a kill during a write leaves it.
    let text = std::fs::read_to_string(out).unwrap();
    let last = text.lines().last().unwrap().to_string();
    let mut f = std::fs::OpenOptions::new().append(true).open(out).unwrap();
    std::io::Write::write_all(&mut f, &last.as_bytes()[..last.len() / 2]).unwrap();
    drop(f);

    let mut cmd = bin();
    args(&mut cmd);
    let second = run_ok(&mut cmd);
    let summary: Value = serde_json::from_slice(&second.stdout).unwrap();
    assert!(
        summary["skipped"].as_u64().unwrap() >= written as u64,
        "{summary}"
    );

    let all = rows(out);
    let mut keys = HashSet::new();
    for r in &all {
        let key = (
            r["path"].as_str().unwrap().to_string(),
            r["image_sha256"].as_str().unwrap().to_string(),
        );
        assert!(keys.insert(key.clone()), "duplicate row for {key:?}");
    }
    // Every image once, plus the one missing file.
    assert_eq!(all.len(), images + 1, "{}", out.display());
    let by_id: HashMap<&str, &Value> = all.iter().map(|r| (r["id"].as_str().unwrap(), r)).collect();
    let code = |id: &str| {
        by_id[id]["error_code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(code("3"), "missing_field");
    assert_eq!(code("7"), "missing_field");
    assert_eq!(code("missing"), "file_not_readable");
    assert_eq!(by_id["missing"]["outcome"], "failed");
    let accepted = all.iter().filter(|r| r["outcome"] == "accepted").count();
    assert!(accepted >= images - 4, "{accepted} of {images} accepted");
    for r in all.iter().filter(|r| r["outcome"] == "accepted") {
        let ba: f64 = match &r["bone_age_months"] {
            Value::String(s) => s.parse().unwrap(),
            v => v.as_f64().unwrap(),
        };
        assert!((0.0..=240.0).contains(&ba));
        assert!(!r["tw3_rus_score"].is_null());
    }

    // Done: a third run analyses nothing and leaves the file as it is.
    let before = std::fs::read(out).unwrap();
    let mut cmd = bin();
    args(&mut cmd);
    let third: Value = serde_json::from_slice(&run_ok(&mut cmd).stdout).unwrap();
    assert_eq!(third["analysed"], 0, "{third}");
    assert_eq!(third["failed"], 0, "{third}");
    assert_eq!(std::fs::read(out).unwrap(), before);
}

#[test]
fn a_killed_file_run_resumes_to_exactly_one_row_per_image() {
    let dir = tempfile::tempdir().unwrap();
    let n = 40;
    let m = manifest(dir.path(), n);
    killed_and_resumed(&dir.path().join("r.csv"), &m, n);
    killed_and_resumed(&dir.path().join("r.jsonl"), &m, n);
}

#[test]
fn shards_partition_a_folder_run_and_their_union_is_the_whole() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("in");
    std::fs::create_dir_all(images.join("sub")).unwrap();
    let n = 12;
    for i in 0..n {
        let img = synthetic_hand(0.5, 300 + i as u64);
        let sub = if i % 3 == 0 { "sub/" } else { "" };
        std::fs::write(images.join(format!("{sub}{i}.png")), png8(&img)).unwrap();
    }
    let mut seen = HashSet::new();
    for k in 0..3 {
        let out = dir.path().join(format!("shard-{k}.jsonl"));
        run_ok(
            bin()
                .args(["rescore", "--sex", "female", "--workers", "2", "--dir"])
                .arg(&images)
                .arg("--out")
                .arg(&out)
                .args(["--shard", &format!("{k}/3")]),
        );
        for r in rows(&out) {
            assert!(
                seen.insert(r["path"].as_str().unwrap().to_string()),
                "{r} in two shards"
            );
            assert_eq!(r["sex"], "female");
        }
    }
    assert_eq!(seen.len(), n);
    assert!(seen.contains("sub/0.png"));
}

fn client_with(token: &str) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(h)
        .build()
        .unwrap()
}

fn options() -> ServerOptions {
    ServerOptions {
        workers: 2,
        queue_depth: 8,
        rescore_workers: 2,
        ..Default::default()
    }
}

/// Polls a job until it has ended.
async fn wait_for_job(c: &reqwest::Client, base: &str, id: &str) -> Value {
    let t0 = Instant::now();
    loop {
        let r = c
            .get(format!("{base}/v1/rescore-jobs/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let job: Value = r.json().await.unwrap();
        if job["state"] == "finished" || job["state"] == "failed" {
            return job;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "{job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_exams_are_rescored_once_per_model_from_the_cli_and_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("boneage.db");
    let store = Arc::new(Store::open(&db).unwrap());
    let ta = store.create_token("hospital-a").unwrap().token;
    let tb = store.create_token("hospital-b").unwrap().token;
    let (ca, cb) = (client_with(&ta), client_with(&tb));
    let v1 = default_model().info().version.clone();

    // Exams through the API: A keeps four images (one filed under a patient), and
    // one without; B keeps one.
    let srv = TestServer::start_with(default_model(), options(), Arc::clone(&store)).await;
    let base = srv.base.clone();
    let r = ca
        .post(format!("{base}/v1/patients"))
        .json(
            &serde_json::json!({"external_id": "MRN-1", "sex": "male", "birth_date": "2016-02-01"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let url = format!("{base}/v1/analyses");
    for i in 0..4u64 {
        let img = png8(&synthetic_hand(0.3 + 0.1 * i as f32, 500 + i));
        let fields: Vec<(&str, &str)> = if i == 0 {
            vec![
                ("external_id", "MRN-1"),
                ("exam_date", "2025-06-01"),
                ("height_cm", "131"),
                ("store_image", "true"),
            ]
        } else {
            vec![
                ("sex", "female"),
                ("chronological_age_months", "110"),
                ("store_image", "true"),
            ]
        };
        let r = post_multipart(&ca, &url, Some((img, "image/png")), &fields).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    let r = post_multipart(
        &ca,
        &url,
        Some((png8(&synthetic_hand(0.5, 600)), "image/png")),
        &[("sex", "male")],
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = post_multipart(
        &cb,
        &url,
        Some((png8(&synthetic_hand(0.5, 700)), "image/png")),
        &[("sex", "male"), ("store_image", "true")],
    )
    .await;
    assert_eq!(r.status(), 200);
    // B's second kept image goes missing from the image folder before re-scoring.
    let lost = png8(&synthetic_hand(0.6, 701));
    let r = post_multipart(
        &cb,
        &url,
        Some((lost.clone(), "image/png")),
        &[("sex", "male"), ("store_image", "true")],
    )
    .await;
    assert_eq!(r.status(), 200);
    let lost_sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&lost));
    std::fs::remove_file(store.images_dir().join(&lost_sha[..2]).join(&lost_sha)).unwrap();
    srv.stop().await;

    // The CLI, as an administrator, with a second model, for tenant A only.
    let m2 = model_with_version(dir.path(), "rescore-test-2");
    let cli = |extra: &[&str]| -> Value {
        let out = run_ok(
            bin()
                .args([
                    "rescore",
                    "exams",
                    "--workers",
                    "2",
                    "--tenant",
                    "hospital-a",
                    "--db",
                ])
                .arg(&db)
                .arg("--model")
                .arg(&m2)
                .args(extra),
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let first = cli(&[]);
    assert_eq!(
        (&first["total"], &first["analysed"], &first["skipped"]),
        (&4.into(), &4.into(), &0.into()),
        "{first}"
    );
    let again = cli(&[]);
    assert_eq!(
        (&again["analysed"], &again["skipped"]),
        (&0.into(), &4.into()),
        "{again}"
    );
    // One new analysis per kept exam of A, the first one kept beside it.
    let all = RescoreFilter::all_tenants();
    let pairs = store.version_pairs(&all, &v1, "rescore-test-2").unwrap();
    assert_eq!(pairs.len(), 4);
    for p in &pairs {
        // Same network, same inputs: the same bone age.
        assert!(
            (p.from_bone_age_months - p.to_bone_age_months).abs() < 0.011,
            "{p:?}"
        );
    }
    let m2_sha = TractModel::load(&m2).unwrap().info().sha256.clone();
    // B's kept exams are the only ones model 2 has not seen; A's unkept one is never a candidate.
    assert_eq!(store.count_rescore(&all, &m2_sha).unwrap(), (6, 2));

    // The comparison report.
    let report = dir.path().join("compare.csv");
    let out = run_ok(
        bin()
            .args([
                "rescore",
                "compare",
                "--from-version",
                &v1,
                "--to-version",
                "rescore-test-2",
                "--db",
            ])
            .arg(&db)
            .arg("--out")
            .arg(&report),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("4 exams in both, 0 changed"), "{text}");
    assert_eq!(rows(&report).len(), 4);

    // The API: a job left queued by a server that stopped is resumed by the next
    // one; the server runs a third model.
    let m3 = Arc::new(model_with_version_loaded(dir.path(), "rescore-test-3"));
    let tenant_a = store.authenticate(&ta).unwrap().unwrap();
    let info3 = m3.info().clone();
    let left = store
        .create_rescore_job(
            &tenant_a,
            &RescoreFilter::tenant(&tenant_a),
            &info3.name,
            &info3.version,
            &info3.sha256,
        )
        .unwrap();
    let srv = TestServer::start_with(m3.clone(), options(), Arc::clone(&store)).await;
    let base = srv.base.clone();
    let job = wait_for_job(&ca, &base, &left.id).await;
    assert_eq!(job["state"], "finished", "{job}");
    assert_eq!(
        (&job["total"], &job["done"], &job["skipped"], &job["failed"]),
        (&4.into(), &4.into(), &0.into(), &0.into()),
        "{job}"
    );
    assert!(job["started_at"].is_string() && job["finished_at"].is_string());
    // Another tenant's job is a 404, like one that does not exist.
    for c in [&cb] {
        let r = c
            .get(format!("{base}/v1/rescore-jobs/{}", left.id))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
    let r = ca
        .get(format!("{base}/v1/rescore-jobs/no-such-job"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // A new job over the same exams: everything is already done by this model.
    let r = ca
        .post(format!("{base}/v1/rescore-jobs"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r
        .headers()
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let created: Value = r.json().await.unwrap();
    assert_eq!(
        location,
        format!("/v1/rescore-jobs/{}", created["id"].as_str().unwrap())
    );
    let job = wait_for_job(&ca, &base, created["id"].as_str().unwrap()).await;
    assert_eq!(
        (&job["state"], &job["total"], &job["done"], &job["skipped"]),
        (&"finished".into(), &4.into(), &0.into(), &4.into()),
        "{job}"
    );
    // B's job covers only B's exams.
    let r = cb
        .post(format!("{base}/v1/rescore-jobs"))
        .json(&serde_json::json!({"only_model_version": v1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let created: Value = r.json().await.unwrap();
    let job = wait_for_job(&cb, &base, created["id"].as_str().unwrap()).await;
    // The lost image is recorded as a failure with its code; the job goes on.
    assert_eq!(job["state"], "finished", "{job}");
    assert_eq!(
        (&job["total"], &job["done"], &job["failed"]),
        (&2.into(), &1.into(), &1.into()),
        "{job}"
    );
    assert_eq!(job["failed_by_code"]["file_not_readable"], 1, "{job}");
    // Again: both are finished for this model (the failure is not retried).
    let r = cb
        .post(format!("{base}/v1/rescore-jobs"))
        .send()
        .await
        .unwrap();
    let created: Value = r.json().await.unwrap();
    let job = wait_for_job(&cb, &base, created["id"].as_str().unwrap()).await;
    assert_eq!(
        (&job["total"], &job["done"], &job["skipped"], &job["failed"]),
        (&2.into(), &0.into(), &2.into(), &0.into()),
        "{job}"
    );
    let r = ca
        .post(format!("{base}/v1/rescore-jobs"))
        .json(&serde_json::json!({"from": "yesterday"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Every kept exam has one analysis per model: A's four by v1, 2 and 3.
    assert_eq!(
        store
            .version_pairs(&all, "rescore-test-2", "rescore-test-3")
            .unwrap()
            .len(),
        4
    );
    assert_eq!(store.count_rescore(&all, &info3.sha256).unwrap(), (6, 0));
    srv.stop().await;
}

fn model_with_version_loaded(dir: &Path, version: &str) -> TractModel {
    TractModel::load(&model_with_version(dir, version)).unwrap()
}
