//! kill -9 while exams are being filed: no acknowledged exam is lost, none is
//! half-written. The real binary, killed with SIGKILL at several moments while
//! clients keep uploading, then restarted over the same database.

mod common;

use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn start(db: &std::path::Path) -> (Child, String) {
    let (child, addr) = spawn_server(&[
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--workers".as_ref(),
        "2".as_ref(),
        "--db".as_ref(),
        db.as_os_str(),
    ]);
    (child, format!("http://{addr}"))
}

#[test]
fn kill_9_loses_no_acknowledged_exam() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("boneage.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let small = |seed: u64| {
        png8(&boneage::synth::hand_radiograph_8(
            &boneage::synth::HandParams {
                width: 400,
                height: 520,
                maturity: 0.5,
                seed,
                ..Default::default()
            },
        ))
    };

    // one patient, created before the first crash
    let (mut child, base) = start(&db);
    let pid = rt.block_on(async {
        let r = client()
            .post(format!("{base}/v1/patients"))
            .json(&serde_json::json!({"external_id": "K9", "sex": "female", "birth_date": "2016-05-01"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        v["id"].as_str().unwrap().to_string()
    });

    // the acknowledged patient survives a kill -9 too
    child.kill().expect("SIGKILL");
    child.wait().ok();

    let acked: Arc<Mutex<Vec<Value>>> = Arc::default();
    // kill after these many milliseconds of uploading, each time a fresh server
    for (round, after_ms) in [700u64, 1300, 400, 2100].into_iter().enumerate() {
        let (mut child, base) = start(&db);
        let before = acked.lock().unwrap().len();
        let failures = rt.block_on(async {
            let mut tasks = Vec::new();
            for t in 0..6u64 {
                let base = base.clone();
                let pid = pid.clone();
                let acked = Arc::clone(&acked);
                let png = small(round as u64 * 10 + t);
                tasks.push(tokio::spawn(async move {
                    let c = client();
                    let mut failed = 0u32;
                    for i in 0..1000u32 {
                        let store = if (t + i as u64).is_multiple_of(2) {
                            "true"
                        } else {
                            "false"
                        };
                        let day = format!("2025-{:02}-{:02}", 1 + (i % 12), 1 + t);
                        let form = reqwest::multipart::Form::new()
                            .text("patient_id", pid.clone())
                            .text("exam_date", day)
                            .text("height_cm", "120")
                            .text("store_image", store)
                            .part(
                                "image",
                                reqwest::multipart::Part::bytes(png.clone())
                                    .file_name("xray.png")
                                    .mime_str("image/png")
                                    .unwrap(),
                            );
                        // a kill cuts uploads off: an error here is expected, not a failure
                        let r = tokio::time::timeout(
                            Duration::from_secs(20),
                            c.post(format!("{base}/v1/analyses")).multipart(form).send(),
                        )
                        .await;
                        match r {
                            Ok(Ok(resp)) if resp.status() == 200 => {
                                if let Ok(v) = resp.json::<Value>().await {
                                    acked.lock().unwrap().push(v);
                                }
                            }
                            _ => {
                                failed += 1;
                                break;
                            }
                        }
                    }
                    failed
                }));
            }
            tokio::time::sleep(Duration::from_millis(after_ms)).await;
            child.kill().expect("SIGKILL");
            child.wait().ok();
            let mut failed = 0;
            for t in tasks {
                failed += t.await.unwrap_or(0);
            }
            failed
        });
        let now = acked.lock().unwrap().len();
        eprintln!(
            "kill -9 round {round}: killed after {after_ms} ms, {} exams acknowledged, {failures} uploads cut off",
            now - before
        );
        assert!(
            now > before,
            "round {round}: nothing was acknowledged before the kill"
        );
    }

    // restart: every acknowledged exam reads back exactly as answered
    let (mut child, base) = start(&db);
    let acked = acked.lock().unwrap().clone();
    rt.block_on(async {
        let c = client();
        for a in &acked {
            let id = a["id"].as_str().unwrap();
            let r = c
                .get(format!("{base}/v1/analyses/{id}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "acknowledged exam {id} lost");
            let v: Value = r.json().await.unwrap();
            assert_eq!(&v, a, "exam {id} changed");
        }
        let ex: Value = c
            .get(format!("{base}/v1/patients/{pid}/exams"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let n = ex["exams"].as_array().unwrap().len();
        // requests cut off by the kill may have committed without their answer
        // arriving: never fewer rows than acknowledgements, never more than were sent
        assert!(n >= acked.len(), "{n} rows < {} acknowledged", acked.len());
    });
    child.kill().ok();
    child.wait().ok();

    // no half-written row: the database is intact, every row complete, every kept
    // image present with the bytes its sha256 names
    let conn = rusqlite::Connection::open(&db).unwrap();
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let store = boneage::store::Store::open(&db).unwrap();
    let tenant = store.local_tenant().unwrap();
    let rows = store.patient_analyses(&tenant, &pid).unwrap();
    for r in &rows {
        assert_eq!(r.result_json["id"].as_str(), Some(r.id.as_str()));
        assert!(r.result_json["bone_age"]["months"].is_number());
        if let Some(p) = &r.image_path {
            let bytes = std::fs::read(p).expect("kept image exists");
            assert_eq!(hex::encode(Sha256::digest(&bytes)), r.image_sha256);
        }
    }
    eprintln!(
        "kill -9: {} exams acknowledged over 4 kills, {} rows after restart, integrity ok",
        acked.len(),
        rows.len()
    );
}
