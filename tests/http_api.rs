//! The real server on an ephemeral port, spoken to over HTTP.

mod common;

use std::sync::Arc;
use std::time::Duration;

use boneage::error::AnalysisError;
use boneage::http::ServerOptions;
use boneage::model::{Backend, ModelInfo, ModelOutput};
use boneage::preprocess::PreprocessSpec;
use boneage::Sex;
use common::*;
use serde_json::Value;

const BONES: [&str; 13] = [
    "radius", "ulna", "mc1", "mc3", "mc5", "pp1", "pp3", "pp5", "mp3", "mp5", "dp1", "dp3", "dp5",
];

async fn analyse_ok(resp: reqwest::Response) -> Value {
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

async fn problem(resp: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(resp.status().as_u16(), status, "expected {status} {code}");
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["code"], code, "{v}");
    assert_eq!(v["status"], status);
    assert!(
        v["title"].is_string() && v["detail"].is_string() && v["type"].is_string(),
        "{v}"
    );
    v
}

fn check_schema(v: &Value) {
    assert!(v["id"].as_str().is_some_and(|s| s.len() == 36));
    for k in ["name", "version", "sha256"] {
        assert!(
            v["model"][k].as_str().is_some_and(|s| !s.is_empty()),
            "model.{k}"
        );
    }
    let months = v["bone_age"]["months"].as_f64().unwrap();
    let sd = v["bone_age"]["sd_months"].as_f64().unwrap();
    let iv = v["bone_age"]["interval_90"].as_array().unwrap();
    let (lo, hi) = (iv[0].as_f64().unwrap(), iv[1].as_f64().unwrap());
    assert!(
        sd > 0.0 && lo <= months && months <= hi,
        "{}",
        v["bone_age"]
    );
    let (w, h) = (
        v["input"]["width"].as_f64().unwrap(),
        v["input"]["height"].as_f64().unwrap(),
    );
    let landmarks = v["landmarks"].as_array().unwrap();
    for l in landmarks {
        let (x, y) = (l["x"].as_f64().unwrap(), l["y"].as_f64().unwrap());
        assert!(
            (0.0..=w).contains(&x) && (0.0..=h).contains(&y),
            "{l} inside {w}x{h}"
        );
    }
    let joints = v["joints"].as_array().unwrap();
    assert_eq!(joints.len(), 13);
    let mut sum = 0;
    for (j, want) in joints.iter().zip(BONES) {
        assert_eq!(j["bone"], want);
        let stage = j["stage"].as_str().unwrap();
        assert!(stage.len() == 1 && ("A"..="I").contains(&stage), "{stage}");
        let p = j["stage_probability"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p));
        let basis = j["stage_basis"].as_str().unwrap();
        assert!(
            [
                "typical_for_bone_age",
                "joint_region",
                "joint_region_supervised"
            ]
            .contains(&basis),
            "{basis}"
        );
        // A regional stage always says which region it was read from, and where.
        if basis != "typical_for_bone_age" {
            let region = j["region"]
                .as_str()
                .expect("regional stage names its region");
            assert!(
                landmarks.iter().any(|l| l["name"] == region),
                "{region} is a landmark"
            );
            assert!(j["location"]["x"].is_f64(), "{j}");
        }
        sum += j["tw3_score"].as_u64().unwrap();
    }
    let bases: Vec<&str> = v["tw3"]["stage_bases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap())
        .collect();
    for j in joints {
        assert!(bases.contains(&j["stage_basis"].as_str().unwrap()));
    }
    assert_eq!(
        v["tw3"]["rus_score"].as_u64().unwrap(),
        sum,
        "rus_score is the sum of the joint scores"
    );
    assert!(
        v["tw3"]["rus_bone_age_months"].is_f64() || v["tw3"]["rus_bone_age_reason"].is_string()
    );
    for k in ["decode", "preprocess", "inference", "total"] {
        assert!(
            v["timings_ms"][k].as_f64().is_some_and(|t| t >= 0.0),
            "timings_ms.{k}"
        );
    }
}

#[tokio::test]
async fn multipart_analysis_has_the_full_schema() {
    let srv = TestServer::default().await;
    let c = client();
    let img = png8(&synthetic_hand(0.5, 3));
    let v = analyse_ok(
        post_multipart(
            &c,
            &srv.url("/v1/analyses"),
            Some((img, "image/png")),
            &[("sex", "female"), ("chronological_age_months", "110")],
        )
        .await,
    )
    .await;
    check_schema(&v);
    assert_eq!(v["sex"], "female");
    assert_eq!(v["chronological_age_months"], 110.0);
    assert!(v["bone_age_sds"].is_f64(), "{}", v["bone_age_sds_detail"]);
    assert_eq!(v["input"]["width"], 1000);
    assert_eq!(v["input"]["height"], 1300);
    let model: Value = c
        .get(srv.url("/v1/model"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(model["sha256"], v["model"]["sha256"]);
    assert!(model["input_height"].as_u64().unwrap() > 0);
    srv.stop().await;
}

#[tokio::test]
async fn same_image_twice_gives_the_same_answer_and_bit_depth_does_not_matter() {
    let srv = TestServer::default().await;
    let c = client();
    let img8 = synthetic_hand(0.7, 11);
    let a = analyse_ok(
        post_multipart(
            &c,
            &srv.url("/v1/analyses"),
            Some((png8(&img8), "image/png")),
            &[("sex", "male")],
        )
        .await,
    )
    .await;
    let b = analyse_ok(
        post_multipart(
            &c,
            &srv.url("/v1/analyses"),
            Some((png8(&img8), "image/png")),
            &[("sex", "male")],
        )
        .await,
    )
    .await;
    assert_ne!(a["id"], b["id"]);
    assert_eq!(a["bone_age"], b["bone_age"]);
    assert_eq!(a["joints"], b["joints"]);
    assert_eq!(a["tw3"], b["tw3"]);

    let img16 = boneage::synth::widen_to_16(&img8);
    let w = analyse_ok(
        post_multipart(
            &c,
            &srv.url("/v1/analyses"),
            Some((png16(&img16), "image/png")),
            &[("sex", "male")],
        )
        .await,
    )
    .await;
    assert_eq!(w["input"]["bit_depth"], 16);
    assert_eq!(a["input"]["bit_depth"], 8);
    let d = (a["bone_age"]["months"].as_f64().unwrap() - w["bone_age"]["months"].as_f64().unwrap())
        .abs();
    assert!(d < 0.05, "8-bit and 16-bit PNG differ by {d} months");
    assert_eq!(a["tw3"]["rus_score"], w["tw3"]["rus_score"]);
    srv.stop().await;
}

#[tokio::test]
async fn raw_body_with_query_fields_and_jpeg() {
    let srv = TestServer::default().await;
    let c = client();
    let img = synthetic_hand(0.3, 5);
    for (bytes, mime) in [(png8(&img), "image/png"), (jpeg(&img), "image/jpeg")] {
        let resp = c
            .post(srv.url("/v1/analyses?sex=male&birth_date=2018-03-01&exam_date=2026-09-01"))
            .header("content-type", mime)
            .body(bytes)
            .send()
            .await
            .unwrap();
        let v = analyse_ok(resp).await;
        check_schema(&v);
        let ca = v["chronological_age_months"].as_f64().unwrap();
        assert!((ca - 102.0).abs() < 0.2, "{ca}");
        assert_eq!(
            v["input"]["format"],
            if mime == "image/png" { "png" } else { "jpeg" }
        );
    }
    srv.stop().await;
}

/// A PNG header claiming 100000×100000 pixels, with no real data behind it.
fn png_bomb_header() -> Vec<u8> {
    let img = synthetic_hand(0.5, 1);
    let mut bytes = png8(&img);
    // IHDR width/height live at bytes 16..24; fix the CRC so only the size is wrong.
    bytes[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    bytes[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[tokio::test]
async fn every_bad_input_gets_its_code_and_the_server_keeps_answering() {
    let srv = TestServer::start(
        default_model(),
        ServerOptions {
            workers: 2,
            queue_depth: 4,
            max_body_bytes: 4 * 1024 * 1024,
            ..Default::default()
        },
    )
    .await;
    let c = client();
    let url = srv.url("/v1/analyses");
    let good = png8(&synthetic_hand(0.5, 9));

    let png = |b: Vec<u8>| Some((b, "image/png"));
    let male: &[(&str, &str)] = &[("sex", "male")];
    let big = vec![0u8; 5 * 1024 * 1024];
    // (image part, form fields, expected status, expected code)
    type Case<'a> = (
        Option<(Vec<u8>, &'a str)>,
        &'a [(&'a str, &'a str)],
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (None, male, 400, "missing_image"),
        (png(good.clone()), &[], 400, "missing_field"),
        (png(good.clone()), &[("sex", "dog")], 400, "invalid_field"),
        (
            png(good.clone()),
            &[("sex", "male"), ("colour", "x")],
            400,
            "invalid_field",
        ),
        (
            png(good.clone()),
            &[
                ("sex", "male"),
                ("birth_date", "2020-02-30"),
                ("exam_date", "2026-01-01"),
            ],
            400,
            "invalid_field",
        ),
        (
            png(good.clone()),
            &[("sex", "male"), ("chronological_age_months", "-4")],
            400,
            "invalid_field",
        ),
        (
            Some((b"GIF89a not really".to_vec(), "image/gif")),
            male,
            415,
            "unsupported_format",
        ),
        (
            png(b"hello, this is text".to_vec()),
            male,
            415,
            "unsupported_format",
        ),
        (
            png(good[..good.len() / 3].to_vec()),
            male,
            422,
            "corrupt_image",
        ),
        (png(png_bomb_header()), male, 413, "image_too_large"),
        (
            png(png8(&image::GrayImage::from_pixel(
                20,
                30,
                image::Luma([128]),
            ))),
            male,
            422,
            "resolution_too_low",
        ),
        (png(big.clone()), male, 413, "image_too_large"),
    ];
    for (image, fields, status, code) in cases {
        problem(post_multipart(&c, &url, image, fields).await, status, code).await;
    }
    let resp = c
        .post(format!("{url}?sex=male"))
        .header("content-type", "image/png")
        .body(big)
        .send()
        .await
        .unwrap();
    problem(resp, 413, "image_too_large").await;
    let resp = c
        .post(format!("{url}?sex=male"))
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .await
        .unwrap();
    problem(resp, 415, "unsupported_format").await;
    let resp = c
        .post(format!("{url}?sex=male"))
        .header("content-type", "image/png")
        .body(Vec::new())
        .send()
        .await
        .unwrap();
    problem(resp, 400, "missing_image").await;
    let resp = c.get(srv.url("/v1/nothing-here")).send().await.unwrap();
    problem(resp, 404, "not_found").await;

    // Still healthy, and still analysing.
    assert_eq!(
        c.get(srv.url("/healthz")).send().await.unwrap().status(),
        200
    );
    let v =
        analyse_ok(post_multipart(&c, &url, Some((good, "image/png")), &[("sex", "male")]).await)
            .await;
    check_schema(&v);
    srv.stop().await;
}

/// A backend that takes a fixed time per image, to fill the queue deterministically.
struct SlowBackend {
    info: ModelInfo,
    spec: PreprocessSpec,
    delay: Duration,
}

impl Backend for SlowBackend {
    fn info(&self) -> &ModelInfo {
        &self.info
    }
    fn preprocess_spec(&self) -> &PreprocessSpec {
        &self.spec
    }
    fn infer(&self, _: boneage::model::Array4<f32>, _: Sex) -> Result<ModelOutput, AnalysisError> {
        std::thread::sleep(self.delay);
        let mut stage_probs = [[0f32; 9]; 13];
        for row in stage_probs.iter_mut() {
            row[4] = 1.0;
        }
        Ok(ModelOutput {
            bone_age_months: 100.0,
            bone_age_log_var: 3.0,
            stage_probs,
            joint_points: vec![],
        })
    }
}

fn slow_backend(ms: u64) -> Arc<dyn Backend> {
    let real = default_model();
    // A backend that locates no joints, so it has no shape-based quality control.
    let mut info = real.info().clone();
    info.quality = None;
    info.joints.clear();
    info.bone_joint = [None; 13];
    info.stage_basis = vec![boneage::model::StageBasis::TypicalForBoneAge; 13];
    Arc::new(SlowBackend {
        info,
        spec: real.preprocess_spec().clone(),
        delay: Duration::from_millis(ms),
    })
}

fn small_png() -> Vec<u8> {
    png8(&image::GrayImage::from_fn(200, 260, |x, y| {
        image::Luma([((x * 7 + y * 3) % 255) as u8])
    }))
}

#[tokio::test]
async fn shutdown_finishes_the_requests_in_flight() {
    let srv = TestServer::start(
        slow_backend(800),
        ServerOptions {
            workers: 1,
            queue_depth: 1,
            ..Default::default()
        },
    )
    .await;
    let url = srv.url("/v1/analyses?sex=male");
    let req = tokio::spawn(async move {
        let r = client()
            .post(url)
            .header("content-type", "image/png")
            .body(small_png())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    });
    // Let the request reach its worker, then shut down while it runs.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped = tokio::spawn(srv.stop());
    let (status, body) = tokio::time::timeout(Duration::from_secs(20), req)
        .await
        .expect("request finished")
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["joints"].as_array().unwrap().len(), 13);
    tokio::time::timeout(Duration::from_secs(20), stopped)
        .await
        .expect("server stopped")
        .unwrap();
}

#[tokio::test]
async fn requests_beyond_the_queue_get_503_not_a_hang() {
    let srv = TestServer::start(
        slow_backend(700),
        ServerOptions {
            workers: 1,
            queue_depth: 1,
            ..Default::default()
        },
    )
    .await;
    let c = client();
    let img = small_png();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let c = c.clone();
        let url = srv.url("/v1/analyses?sex=female");
        let img = img.clone();
        tasks.push(tokio::spawn(async move {
            let r = c
                .post(url)
                .header("content-type", "image/png")
                .body(img)
                .send()
                .await
                .unwrap();
            let retry = r.headers().get("retry-after").is_some();
            (r.status().as_u16(), retry)
        }));
    }
    let mut ok = 0;
    let mut shed = 0;
    for t in tasks {
        let (status, retry) = tokio::time::timeout(Duration::from_secs(20), t)
            .await
            .expect("no hang")
            .unwrap();
        match status {
            200 => ok += 1,
            503 => {
                assert!(retry, "503 carries Retry-After");
                shed += 1
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(ok + shed, 6);
    assert!(
        (1..=2).contains(&ok),
        "one worker + one queue slot: {ok} accepted"
    );
    assert!(shed >= 4, "{shed} shed");
    srv.stop().await;
}

#[tokio::test]
async fn health_metrics_and_openapi() {
    let srv = TestServer::default().await;
    let c = client();
    assert_eq!(
        c.get(srv.url("/healthz")).send().await.unwrap().status(),
        200
    );
    let ready: Value = c
        .get(srv.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");
    let _ = analyse_ok(
        post_multipart(
            &c,
            &srv.url("/v1/analyses"),
            Some((png8(&synthetic_hand(0.4, 2)), "image/png")),
            &[("sex", "male")],
        )
        .await,
    )
    .await;
    let m = c
        .get(srv.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("boneage_http_requests_total{route=\"/v1/analyses\",status=\"200\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("boneage_stage_duration_seconds_bucket{stage=\"inference\""),
        "{m}"
    );
    assert!(m.contains("boneage_analyses_in_flight"));
    let doc: Value = c
        .get(srv.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for p in [
        "/v1/analyses",
        "/v1/model",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(doc["paths"][p].is_object(), "openapi lacks {p}");
    }
    assert!(doc["components"]["schemas"]["AnalysisReport"].is_object());
    let resp = c.get(srv.url("/healthz")).send().await.unwrap();
    assert!(
        resp.headers().get("x-request-id").is_some(),
        "request id is propagated"
    );
    srv.stop().await;
}
