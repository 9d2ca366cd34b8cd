//! Patient history over HTTP: patients, exams filed under them, the growth JSON,
//! the SVG chart, the printable report, tenant isolation and restarts.

mod common;

use std::sync::Arc;

use boneage::growth::adult_height::{predict_adult_height, AdultHeightInput};
use boneage::growth::height::{height_for_age, HeightReference};
use boneage::http::ServerOptions;
use boneage::store::Store;
use boneage::Sex;
use common::*;
use serde_json::{json, Value};

fn options() -> ServerOptions {
    ServerOptions {
        workers: 2,
        queue_depth: 8,
        ..Default::default()
    }
}

async fn ok_json(resp: reqwest::Response, status: u16) -> Value {
    let s = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert_eq!(s, status, "{text}");
    serde_json::from_str(&text).unwrap()
}

async fn get_json(c: &reqwest::Client, url: impl reqwest::IntoUrl) -> Value {
    ok_json(c.get(url).send().await.unwrap(), 200).await
}

async fn code_of(resp: reqwest::Response) -> (u16, String) {
    let s = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    (s, v["code"].as_str().unwrap_or("").to_string())
}

/// A client that sends `Authorization: Bearer <token>` on every request.
fn client_with(token: Option<&str>) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    if let Some(t) = token {
        h.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {t}").parse().unwrap(),
        );
    }
    reqwest::Client::builder()
        .default_headers(h)
        .build()
        .unwrap()
}

async fn create_patient(c: &reqwest::Client, base: &str, ext: &str, name: &str) -> Value {
    let r = c
        .post(format!("{base}/v1/patients"))
        .json(&json!({"external_id": ext, "sex": "male", "birth_date": "2015-03-01", "name": name}))
        .send()
        .await
        .unwrap();
    ok_json(r, 201).await
}

/// Files a synthetic radiograph under the patient.
async fn exam(
    c: &reqwest::Client,
    base: &str,
    patient_id: &str,
    exam_date: &str,
    height: &str,
    maturity: f32,
) -> reqwest::Response {
    let png = png8(&synthetic_hand(maturity, 7));
    post_multipart(
        c,
        &format!("{base}/v1/analyses"),
        Some((png, "image/png")),
        &[
            ("patient_id", patient_id),
            ("exam_date", exam_date),
            ("height_cm", height),
            ("weight_kg", "32"),
            ("mother_height_cm", "163"),
            ("father_height_cm", "176"),
            ("store_image", "true"),
        ],
    )
    .await
}

#[tokio::test]
async fn two_exams_a_year_apart_give_growth_chart_and_report() {
    let srv = TestServer::start(default_model(), options()).await;
    let c = client();
    let base = srv.base.clone();
    let p = create_patient(&c, &base, "MRN-0001", "Zhang <b>Wei</b>").await;
    let pid = p["id"].as_str().unwrap().to_string();
    assert_eq!(p["sex"], "male");
    assert_eq!(p["birth_date"], "2015-03-01");

    // the same external id again is a conflict, not a second patient
    let r = c
        .post(format!("{base}/v1/patients"))
        .json(&json!({"external_id": "MRN-0001", "sex": "female", "birth_date": "2015-03-01"}))
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await, (409, "conflict".to_string()));

    let a1 = ok_json(
        exam(&c, &base, &pid, "2025-03-01", "138.5", 0.45).await,
        200,
    )
    .await;
    let a2 = ok_json(
        exam(&c, &base, &pid, "2026-03-01", "144.2", 0.55).await,
        200,
    )
    .await;
    for (a, days) in [(&a1, 3653.0), (&a2, 4018.0)] {
        assert_eq!(a["patient_id"], pid.as_str());
        // age from the patient's birth date and the exam date
        let ca = a["chronological_age_months"].as_f64().unwrap();
        assert!(
            (ca - (days / 30.4375f64 * 100.0).round() / 100.0).abs() < 1e-9,
            "{ca}"
        );
        let srcs = a["source"]["fields"].as_array().unwrap();
        let from = |f: &str| {
            srcs.iter()
                .find(|s| s["field"] == f)
                .map(|s| s["from"].as_str().unwrap().to_string())
        };
        assert_eq!(from("sex").as_deref(), Some("patient"));
        assert_eq!(from("birth_date").as_deref(), Some("patient"));
        assert_eq!(from("exam_date").as_deref(), Some("request"));
        assert!(a["measurements"]["height_cm"].as_f64().is_some());
        // the exam's own growth figures equal the library's
        let hfa = height_for_age(
            Sex::Male,
            ca,
            a["measurements"]["height_cm"].as_f64().unwrap(),
            HeightReference::Who,
        )
        .unwrap();
        let z = a["growth"]["height_for_age"]["z"].as_f64().unwrap();
        assert!((z - hfa.z).abs() < 1e-9, "{z} vs {}", hfa.z);
    }
    let (ba1, ba2) = (
        a1["bone_age"]["months"].as_f64().unwrap(),
        a2["bone_age"]["months"].as_f64().unwrap(),
    );
    let (ca1, ca2) = (
        a1["chronological_age_months"].as_f64().unwrap(),
        a2["chronological_age_months"].as_f64().unwrap(),
    );

    // a stored analysis reads back exactly as it was answered
    let id1 = a1["id"].as_str().unwrap();
    let back = get_json(&c, format!("{base}/v1/analyses/{id1}")).await;
    assert_eq!(back, a1);

    // the exam list, oldest first
    let ex = get_json(&c, format!("{base}/v1/patients/{pid}/exams")).await;
    let list = ex["exams"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["analysis_id"], a1["id"]);
    assert_eq!(list[1]["analysis_id"], a2["id"]);
    assert_eq!(list[0]["exam_date"], "2025-03-01");
    assert_eq!(list[0]["image_stored"], true);
    assert_eq!(list[1]["bone_age_months"].as_f64().unwrap(), ba2);

    // the growth JSON
    let g = get_json(&c, format!("{base}/v1/patients/{pid}/growth")).await;
    let pts = g["points"].as_array().unwrap();
    assert_eq!(pts.len(), 2);
    assert_eq!(pts[0]["analysis_id"], a1["id"]);
    assert_eq!(pts[0]["bone_age_months"].as_f64().unwrap(), ba1);
    let d = pts[1]["bone_age_minus_age_months"].as_f64().unwrap();
    assert!((d - (ba2 - ca2)).abs() < 1e-6, "{d}");
    assert_eq!(pts[0]["height_cm"].as_f64().unwrap(), 138.5);
    let z0 = pts[0]["height_for_age"]["z"].as_f64().unwrap();
    let want = height_for_age(Sex::Male, ca1, 138.5, HeightReference::Who)
        .unwrap()
        .z;
    assert!((z0 - want).abs() < 1e-9);
    let curves = g["height_percentiles"].as_array().unwrap();
    let pcts: Vec<f64> = curves
        .iter()
        .map(|c| c["percentile"].as_f64().unwrap())
        .collect();
    assert_eq!(pcts, vec![3.0, 10.0, 25.0, 50.0, 75.0, 90.0, 97.0]);
    assert!(curves
        .iter()
        .all(|c| c["points"].as_array().unwrap().len() > 100));
    assert!(!g["bone_age_band"].as_array().unwrap().is_empty());
    let vel = g["bone_age_velocity"].as_array().unwrap();
    assert_eq!(vel.len(), 1);
    let v = vel[0]["value"].as_f64().unwrap();
    assert!(
        (v - (ba2 - ba1) / (ca2 - ca1)).abs() < 1e-6,
        "bone-age velocity {v}"
    );
    // predicted adult height at the latest exam, by the methods whose inputs exist
    let ah = &g["adult_height"];
    let preds = ah["predictions"].as_array().unwrap();
    let bp = preds
        .iter()
        .find(|p| p["method"] == "bayley_pinneau")
        .unwrap_or_else(|| panic!("Bayley–Pinneau missing: {ah}"));
    let lib = predict_adult_height(&AdultHeightInput {
        sex: Sex::Male,
        chronological_age_months: Some(ca2),
        bone_age_months: Some(ba2),
        height_cm: Some(144.2),
        weight_kg: Some(32.0),
        mother_height_cm: Some(163.0),
        father_height_cm: Some(176.0),
        tw2_rus_bone_age_months: None,
        menarche: None,
    });
    let lib_bp = lib
        .predictions
        .iter()
        .find(|p| p.method == "bayley_pinneau")
        .unwrap();
    assert!((bp["predicted_cm"].as_f64().unwrap() - lib_bp.predicted_cm).abs() < 1e-9);
    assert!(ah["unavailable"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["method"] == "tanner_1975"));

    // CDC selectable
    let gc = get_json(&c, format!("{base}/v1/patients/{pid}/growth?reference=cdc")).await;
    assert_eq!(gc["height_reference"], "cdc");
    let zc = gc["points"][0]["height_for_age"]["z"].as_f64().unwrap();
    let want = height_for_age(Sex::Male, ca1, 138.5, HeightReference::Cdc)
        .unwrap()
        .z;
    assert!((zc - want).abs() < 1e-9);
    let r = c
        .get(format!("{base}/v1/patients/{pid}/growth?reference=uk90"))
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await, (400, "invalid_field".to_string()));

    // the chart: valid SVG
    let r = c
        .get(format!("{base}/v1/patients/{pid}/growth.svg"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("image/svg+xml"));
    let svg = r.text().await.unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
    assert_eq!(doc.root_element().tag_name().name(), "svg");

    // the printable report, in English and (by Accept-Language) Chinese
    let r = c
        .get(format!(
            "{base}/v1/analyses/{}/report.html",
            a2["id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("MRN-0001"));
    assert!(html.contains("<svg"), "the chart is inline");
    assert!(!html.contains("<b>Wei</b>"), "the name is escaped");
    assert!(
        html.contains(&format!("{:.1}", ba2)),
        "bone age {ba2} shown"
    );
    assert!(html.contains(a2["model"]["version"].as_str().unwrap()));
    let r = c
        .get(format!(
            "{base}/v1/analyses/{}/report.html",
            a2["id"].as_str().unwrap()
        ))
        .header("accept-language", "zh-CN,zh;q=0.9,en;q=0.8")
        .send()
        .await
        .unwrap();
    let zh = r.text().await.unwrap();
    assert!(zh.contains("骨龄"), "Chinese report");

    // by external id
    let f = get_json(&c, format!("{base}/v1/patients?external_id=MRN-0001")).await;
    assert_eq!(f["patients"][0]["id"], pid.as_str());
    let f = get_json(&c, format!("{base}/v1/patients?external_id=nobody")).await;
    assert_eq!(f["patients"].as_array().unwrap().len(), 0);
    srv.stop().await;
}

#[tokio::test]
async fn filing_rules_and_bad_input() {
    let srv = TestServer::start(default_model(), options()).await;
    let c = client();
    let base = srv.base.clone();
    let p = create_patient(&c, &base, "MRN-7", "A").await;
    let pid = p["id"].as_str().unwrap();
    let png = || Some((png8(&synthetic_hand(0.5, 3)), "image/png"));
    let url = format!("{base}/v1/analyses");
    // a sex that contradicts the record is refused, not filed
    let r = post_multipart(&c, &url, png(), &[("patient_id", pid), ("sex", "female")]).await;
    assert_eq!(code_of(r).await, (400, "invalid_field".to_string()));
    let r = post_multipart(
        &c,
        &url,
        png(),
        &[("patient_id", pid), ("chronological_age_months", "100")],
    )
    .await;
    assert_eq!(code_of(r).await, (400, "invalid_field".to_string()));
    // an unknown patient is a 404
    let r = post_multipart(&c, &url, png(), &[("patient_id", "no-such-patient")]).await;
    assert_eq!(code_of(r).await, (404, "not_found".to_string()));
    let r = post_multipart(&c, &url, png(), &[("external_id", "MRN-404")]).await;
    assert_eq!(code_of(r).await, (404, "not_found".to_string()));
    // implausible measurements
    for (k, v) in [
        ("height_cm", "2000"),
        ("height_cm", "tall"),
        ("weight_kg", "-3"),
        ("store_image", "maybe"),
        ("height_reference", "uk90"),
    ] {
        let r = post_multipart(&c, &url, png(), &[("patient_id", pid), (k, v)]).await;
        assert_eq!(
            code_of(r).await,
            (400, "invalid_field".to_string()),
            "{k}={v}"
        );
    }
    // bad patient records
    for body in [
        json!({"external_id": "x", "sex": "cat", "birth_date": "2015-03-01"}),
        json!({"external_id": "x", "sex": "male", "birth_date": "01/03/2015"}),
        json!({"external_id": "x", "sex": "male", "birth_date": "2099-01-01"}),
        json!({"external_id": "", "sex": "male", "birth_date": "2015-03-01"}),
        json!({"external_id": "x".repeat(500), "sex": "male", "birth_date": "2015-03-01"}),
        json!({"external_id": "x", "sex": "male", "birth_date": "2015-03-01", "colour": "red"}),
    ] {
        let r = c
            .post(format!("{base}/v1/patients"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let (s, code) = code_of(r).await;
        assert_eq!(s, 400, "{body}: {code}");
    }
    let r = c
        .post(format!("{base}/v1/patients"))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await, (400, "invalid_body".to_string()));
    // without an exam date, an exam filed under a patient is dated today
    let a = ok_json(
        post_multipart(&c, &url, png(), &[("patient_id", pid)]).await,
        200,
    )
    .await;
    let today = time::OffsetDateTime::now_utc().date();
    let iso = format!(
        "{:04}-{:02}-{:02}",
        today.year(),
        u8::from(today.month()),
        today.day()
    );
    assert_eq!(a["exam_date"], iso.as_str());
    let srcs = a["source"]["fields"].as_array().unwrap();
    assert!(srcs
        .iter()
        .any(|s| s["field"] == "exam_date" && s["from"] == "server"));
    // an anonymous analysis is stored too, and readable by id
    let anon = ok_json(
        post_multipart(&c, &url, png(), &[("sex", "female")]).await,
        200,
    )
    .await;
    assert!(anon["patient_id"].is_null());
    let back = get_json(
        &c,
        format!("{base}/v1/analyses/{}", anon["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(back, anon);
    // its report has no patient and no chart, but renders
    let r = c
        .get(format!(
            "{base}/v1/analyses/{}/report.html",
            anon["id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    srv.stop().await;
}

#[tokio::test]
async fn tenants_see_only_their_own_patients_and_tokens_are_required() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("boneage.db");
    let store = Arc::new(Store::open(&db).unwrap());
    let ta = store.create_token("hospital-a").unwrap().token;
    let tb = store.create_token("hospital-b").unwrap().token;
    let srv = TestServer::start_with(default_model(), options(), Arc::clone(&store)).await;
    let base = srv.base.clone();
    let (ca, cb, anon) = (
        client_with(Some(&ta)),
        client_with(Some(&tb)),
        client_with(None),
    );

    // no token, a wrong token: 401 with a Bearer challenge
    for c in [&anon, &client_with(Some("bat_not-a-token"))] {
        let r = c
            .get(format!("{base}/v1/patients?external_id=x"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer realm=\"boneage\"")
        );
        assert_eq!(code_of(r).await, (401, "unauthorized".to_string()));
    }
    let r = post_multipart(
        &anon,
        &format!("{base}/v1/analyses"),
        Some((png8(&synthetic_hand(0.5, 1)), "image/png")),
        &[("sex", "male")],
    )
    .await;
    assert_eq!(code_of(r).await, (401, "unauthorized".to_string()));
    // health and the model stay public
    assert_eq!(
        anon.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let p = create_patient(&ca, &base, "MRN-A1", "Li").await;
    let pid = p["id"].as_str().unwrap().to_string();
    let a = ok_json(exam(&ca, &base, &pid, "2025-03-01", "138", 0.5).await, 200).await;
    let aid = a["id"].as_str().unwrap().to_string();

    // B sees nothing of A's: 404 exactly as for an id that does not exist
    for path in [
        format!("/v1/patients/{pid}"),
        format!("/v1/patients/{pid}/exams"),
        format!("/v1/patients/{pid}/growth"),
        format!("/v1/patients/{pid}/growth.svg"),
        format!("/v1/analyses/{aid}"),
        format!("/v1/analyses/{aid}/report.html"),
    ] {
        let r = cb.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(code_of(r).await, (404, "not_found".to_string()), "{path}");
        let r = ca.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let f = get_json(&cb, format!("{base}/v1/patients?external_id=MRN-A1")).await;
    assert_eq!(f["patients"].as_array().unwrap().len(), 0);
    // B cannot file an exam under A's patient
    let r = exam(&cb, &base, &pid, "2025-06-01", "139", 0.5).await;
    assert_eq!(code_of(r).await, (404, "not_found".to_string()));
    let r = post_multipart(
        &cb,
        &format!("{base}/v1/analyses"),
        Some((png8(&synthetic_hand(0.5, 1)), "image/png")),
        &[("external_id", "MRN-A1")],
    )
    .await;
    assert_eq!(code_of(r).await, (404, "not_found".to_string()));
    // B may use the same external id for its own, different patient
    let pb = create_patient(&cb, &base, "MRN-A1", "Wang").await;
    assert_ne!(pb["id"], p["id"]);
    let exams = get_json(&ca, format!("{base}/v1/patients/{pid}/exams")).await;
    assert_eq!(
        exams["exams"].as_array().unwrap().len(),
        1,
        "B's attempt filed nothing"
    );

    // a revoked token stops working at once
    assert!(store.revoke_token(&ta).unwrap());
    let r = ca
        .get(format!("{base}/v1/patients/{pid}"))
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await, (401, "unauthorized".to_string()));
    srv.stop().await;
}

#[tokio::test]
async fn a_restart_keeps_every_exam() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("boneage.db");
    let store = Arc::new(Store::open(&db).unwrap());
    let srv = TestServer::start_with(default_model(), options(), store).await;
    let c = client();
    let p = create_patient(&c, &srv.base, "MRN-R", "R").await;
    let pid = p["id"].as_str().unwrap().to_string();
    let a = ok_json(
        exam(&c, &srv.base, &pid, "2025-01-10", "130", 0.4).await,
        200,
    )
    .await;
    srv.stop().await;

    let store = Arc::new(Store::open(&db).unwrap());
    let srv = TestServer::start_with(default_model(), options(), store).await;
    let back = get_json(
        &c,
        format!("{}/v1/analyses/{}", srv.base, a["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(back, a);
    let g = get_json(&c, format!("{}/v1/patients/{pid}/growth", srv.base)).await;
    assert_eq!(g["points"].as_array().unwrap().len(), 1);
    srv.stop().await;
}
