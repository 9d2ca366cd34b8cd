//! Unit tests of the store, each on its own database in a fresh temporary folder.

use std::path::{Path, PathBuf};

use rusqlite::Connection;
use serde_json::json;
use time::macros::date;

use super::images::sha256_hex;
use super::*;
use crate::Sex;

/// A temporary folder removed on drop.
struct TestDir(PathBuf);

impl TestDir {
    fn new() -> TestDir {
        let dir = std::env::temp_dir().join(format!("boneage-store-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        TestDir(dir)
    }

    fn db(&self) -> PathBuf {
        self.0.join("data").join("boneage.db")
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn open(dir: &TestDir) -> Store {
    Store::open(&dir.db()).unwrap()
}

/// A second, plain connection to the same file: what is really on disk.
fn raw(dir: &TestDir) -> Connection {
    Connection::open(dir.db()).unwrap()
}

fn count(conn: &Connection, table: &str) -> i64 {
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn patient(external_id: &str) -> NewPatient {
    NewPatient {
        external_id: external_id.to_string(),
        sex: Sex::Female,
        birth_date: date!(2015 - 03 - 07),
        name: Some("Ada Example".to_string()),
    }
}

const MODEL_SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn analysis<'a>(
    id: &str,
    patient_id: Option<&str>,
    image: &'a [u8],
    keep: bool,
) -> NewAnalysis<'a> {
    NewAnalysis {
        id: id.to_string(),
        patient_id: patient_id.map(str::to_string),
        exam_date: Some(date!(2025 - 09 - 01)),
        chronological_age_months: Some(125.8),
        sex: Sex::Female,
        bone_age_months: 131.25,
        bone_age_sd_months: 7.5,
        height_cm: Some(141.2),
        weight_kg: Some(33.0),
        mother_height_cm: Some(165.0),
        father_height_cm: None,
        image_sha256: sha256_hex(image),
        image: keep.then_some(image),
        inputs_json: json!({"sex": "female", "source": {"fields": {"sex": "request"}}}),
        result_json: json!({"id": id, "bone_age": {"months": 131.25}}),
        model_name: "boneage-default".to_string(),
        model_version: "1.0.0".to_string(),
        model_sha256: MODEL_SHA.to_string(),
    }
}

#[test]
fn store_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
}

#[test]
fn open_creates_folders_schema_and_durable_settings() {
    let dir = TestDir::new();
    let store = open(&dir);
    assert!(dir.db().is_file());
    assert_eq!(store.images_dir(), dir.0.join("data").join("images"));
    assert!(store.images_dir().is_dir());

    let w = store.writer();
    let mode: String = w
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let fk: i64 = w
        .pragma_query_value(None, "foreign_keys", |r| r.get(0))
        .unwrap();
    assert_eq!(fk, 1);
    let sync: i64 = w
        .pragma_query_value(None, "synchronous", |r| r.get(0))
        .unwrap();
    assert_eq!(sync, 2, "synchronous must be FULL (2)");
    drop(w);
    let r = store.reader();
    let fk: i64 = r
        .pragma_query_value(None, "foreign_keys", |r| r.get(0))
        .unwrap();
    assert_eq!(fk, 1);
    drop(r);

    // WAL is a property of the file: a fresh connection sees it too.
    let conn = raw(&dir);
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(schema::version(&conn).unwrap(), SCHEMA_VERSION);
    assert_eq!(SCHEMA_VERSION, 2);
    for table in ["tenants", "tokens", "patients", "exams", "analyses"] {
        assert_eq!(count(&conn, table), 0, "{table}");
    }
}

#[test]
fn reopening_runs_no_migration_twice_and_keeps_data() {
    let dir = TestDir::new();
    let (tenant_name, patient_id, token) = {
        let store = open(&dir);
        let t = store.create_token("St Elsewhere").unwrap();
        let tenant = store.authenticate(&t.token).unwrap().unwrap();
        let p = store.create_patient(&tenant, &patient("P-1")).unwrap();
        (tenant.name().to_string(), p.id, t.token)
    };
    let objects = |conn: &Connection| -> i64 {
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .unwrap()
    };
    let before = objects(&raw(&dir));
    for _ in 0..3 {
        let store = open(&dir);
        let tenant = store.authenticate(&token).unwrap().unwrap();
        assert_eq!(tenant.name(), tenant_name);
        assert!(store.get_patient(&tenant, &patient_id).unwrap().is_some());
    }
    let conn = raw(&dir);
    assert_eq!(objects(&conn), before);
    assert_eq!(schema::version(&conn).unwrap(), SCHEMA_VERSION);
    assert_eq!(count(&conn, "patients"), 1);
}

#[test]
fn a_database_from_a_newer_version_is_refused() {
    let dir = TestDir::new();
    drop(open(&dir));
    raw(&dir)
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    match Store::open(&dir.db()) {
        Err(StoreError::TooNew { found, supported }) => {
            assert_eq!(found, SCHEMA_VERSION + 1);
            assert_eq!(supported, SCHEMA_VERSION);
        }
        other => panic!("expected TooNew, got {other:?}"),
    }
}

#[test]
fn explicit_image_folder_is_used() {
    let dir = TestDir::new();
    let images = dir.0.join("elsewhere").join("img");
    let store = Store::open_with_images(&dir.db(), &images).unwrap();
    let tenant = store.local_tenant().unwrap();
    let bytes = b"a radiograph".to_vec();
    let a = store
        .insert_analysis(&tenant, &analysis("a1", None, &bytes, true))
        .unwrap();
    let sha = sha256_hex(&bytes);
    assert_eq!(a.image_path, Some(images.join(&sha[..2]).join(&sha)));
}

#[cfg(unix)]
#[test]
fn database_and_images_are_private_to_the_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TestDir::new();
    let store = open(&dir);
    let tenant = store.local_tenant().unwrap();
    let bytes = b"private pixels".to_vec();
    let a = store
        .insert_analysis(&tenant, &analysis("a1", None, &bytes, true))
        .unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.db()), 0o600);
    assert_eq!(mode(store.images_dir()), 0o700);
    let image = a.image_path.unwrap();
    assert_eq!(mode(&image), 0o600);
    assert_eq!(mode(image.parent().unwrap()), 0o700);
}

#[test]
fn token_lifecycle_create_authenticate_revoke() {
    let dir = TestDir::new();
    let store = open(&dir);
    assert!(!store.has_tokens().unwrap(), "fresh database: local mode");

    let t = store.create_token("St Elsewhere").unwrap();
    assert_eq!(t.tenant, "St Elsewhere");
    assert!(t.token.starts_with(TOKEN_PREFIX));
    assert_eq!(t.token.len(), TOKEN_PREFIX.len() + 64);
    assert!(t.token[TOKEN_PREFIX.len()..]
        .bytes()
        .all(|b| b.is_ascii_hexdigit()));
    assert!(t.id.starts_with("tok_"));
    assert!(
        !format!("{t:?}").contains(&t.token),
        "Debug hides the token"
    );
    assert!(store.has_tokens().unwrap());

    let tenant = store.authenticate(&t.token).unwrap().unwrap();
    assert_eq!(tenant.name(), "St Elsewhere");

    // Near misses fail.
    assert!(store.authenticate("").unwrap().is_none());
    assert!(store
        .authenticate(&t.token[..t.token.len() - 1])
        .unwrap()
        .is_none());
    assert!(store
        .authenticate(&t.token.to_uppercase())
        .unwrap()
        .is_none());
    assert!(store
        .authenticate(&format!("Bearer {}", t.token))
        .unwrap()
        .is_none());

    assert!(store.revoke_token(&t.id).unwrap());
    assert!(store.authenticate(&t.token).unwrap().is_none());
    assert!(!store.revoke_token(&t.id).unwrap(), "already revoked");
    assert!(!store.revoke_token("tok_doesnotexist").unwrap());
    assert!(
        store.has_tokens().unwrap(),
        "revoking every token must not reopen the service in local mode"
    );

    // Revoking by the token itself.
    let t2 = store.create_token("St Elsewhere").unwrap();
    assert_eq!(store.authenticate(&t2.token).unwrap(), Some(tenant.clone()));
    assert!(store.revoke_token(&t2.token).unwrap());
    assert!(store.authenticate(&t2.token).unwrap().is_none());
}

#[test]
fn only_the_token_hash_is_stored_and_listing_never_shows_tokens() {
    let dir = TestDir::new();
    let store = open(&dir);
    let a = store.create_token("Hospital A").unwrap();
    let b = store.create_token("Integration B").unwrap();
    store.revoke_token(&b.id).unwrap();

    let conn = raw(&dir);
    let mut stmt = conn
        .prepare(
            "SELECT id, tenant_id, token_sha256, created_at, coalesce(revoked_at, '') FROM tokens",
        )
        .unwrap();
    let rows: Vec<String> = stmt
        .query_map([], |r| {
            Ok(format!(
                "{}|{}|{}|{}|{}",
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 2);
    let all = rows.join("\n");
    for t in [&a, &b] {
        assert!(!all.contains(&t.token));
        assert!(!all.contains(&t.token[TOKEN_PREFIX.len()..]));
        assert!(all.contains(&sha256_hex(t.token.as_bytes())));
    }

    let list = store.list_tokens().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].id, a.id);
    assert_eq!(list[0].tenant, "Hospital A");
    assert!(list[0].revoked_at.is_none());
    assert_eq!(list[1].id, b.id);
    assert!(list[1].revoked_at.is_some());
    let listed = format!("{} {list:?}", serde_json::to_string(&list).unwrap());
    assert!(!listed.contains(&a.token) && !listed.contains(&b.token));
    assert!(!listed.contains(&sha256_hex(a.token.as_bytes())));
}

#[test]
fn tokens_of_one_tenant_share_it_and_tenants_differ() {
    let dir = TestDir::new();
    let store = open(&dir);
    let a1 = store.create_token("A").unwrap();
    let a2 = store.create_token("A").unwrap();
    let b = store.create_token("B").unwrap();
    assert_ne!(a1.token, a2.token);
    assert_ne!(a1.id, a2.id);
    let ta1 = store.authenticate(&a1.token).unwrap().unwrap();
    let ta2 = store.authenticate(&a2.token).unwrap().unwrap();
    let tb = store.authenticate(&b.token).unwrap().unwrap();
    assert_eq!(ta1, ta2);
    assert_ne!(ta1, tb);
    assert_eq!(count(&raw(&dir), "tenants"), 2);
}

#[test]
fn tenant_names_are_validated() {
    let dir = TestDir::new();
    let store = open(&dir);
    let long = "x".repeat(65);
    for bad in [
        "",
        " padded",
        "padded ",
        "line\nbreak",
        "tab\there",
        long.as_str(),
    ] {
        assert!(
            matches!(store.create_token(bad), Err(StoreError::Invalid(_))),
            "{bad:?} accepted"
        );
    }
    assert_eq!(count(&raw(&dir), "tenants"), 0);
    assert!(
        store.create_token(&"é".repeat(64)).is_ok(),
        "64 characters, not bytes"
    );
    assert!(store
        .create_token("Hôpital Saint-Jean (radiologie)")
        .is_ok());
}

#[test]
fn a_token_created_by_another_process_is_accepted_at_once() {
    let dir = TestDir::new();
    let server = open(&dir);
    assert!(!server.has_tokens().unwrap());
    let cli = open(&dir);
    let t = cli.create_token("A").unwrap();
    drop(cli);
    assert!(server.has_tokens().unwrap());
    assert_eq!(server.authenticate(&t.token).unwrap().unwrap().name(), "A");
    let cli = open(&dir);
    assert!(cli.revoke_token(&t.id).unwrap());
    assert!(server.authenticate(&t.token).unwrap().is_none());
}

#[test]
fn local_tenant_is_created_once_and_reachable_by_a_local_token() {
    let dir = TestDir::new();
    let store = open(&dir);
    let l1 = store.local_tenant().unwrap();
    let l2 = store.local_tenant().unwrap();
    assert_eq!(l1, l2);
    assert_eq!(l1.name(), LOCAL_TENANT);
    assert!(
        !store.has_tokens().unwrap(),
        "the local tenant needs no token"
    );
    let t = store.create_token(LOCAL_TENANT).unwrap();
    assert_eq!(store.authenticate(&t.token).unwrap(), Some(l1));
    assert_eq!(count(&raw(&dir), "tenants"), 1);
}

#[test]
fn patients_round_trip() {
    let dir = TestDir::new();
    let store = open(&dir);
    let tenant = store.local_tenant().unwrap();
    let p = store.create_patient(&tenant, &patient("P-0042")).unwrap();
    assert!(uuid::Uuid::parse_str(&p.id).is_ok());
    assert_eq!(p.external_id, "P-0042");
    assert_eq!(p.sex, Sex::Female);
    assert_eq!(p.birth_date, date!(2015 - 03 - 07));
    assert_eq!(p.name.as_deref(), Some("Ada Example"));
    assert_eq!(store.get_patient(&tenant, &p.id).unwrap(), Some(p.clone()));
    assert_eq!(
        store
            .find_patient_by_external_id(&tenant, "P-0042")
            .unwrap(),
        Some(p.clone())
    );
    assert_eq!(
        store
            .find_patient_by_external_id(&tenant, "P-0043")
            .unwrap(),
        None
    );

    let j = serde_json::to_value(&p).unwrap();
    assert_eq!(j["birth_date"], "2015-03-07");
    assert_eq!(j["sex"], "female");
    assert_eq!(j["id"], p.id.as_str());
    assert!(j["created_at"].as_str().unwrap().ends_with('Z'));

    let anonymous = NewPatient {
        external_id: "P-7".into(),
        sex: Sex::Male,
        birth_date: date!(2012 - 12 - 31),
        name: None,
    };
    let q = store.create_patient(&tenant, &anonymous).unwrap();
    assert_eq!(
        store.get_patient(&tenant, &q.id).unwrap().unwrap().name,
        None
    );
}

#[test]
fn external_id_is_unique_per_tenant_only() {
    let dir = TestDir::new();
    let store = open(&dir);
    let a = store
        .authenticate(&store.create_token("A").unwrap().token)
        .unwrap()
        .unwrap();
    let b = store
        .authenticate(&store.create_token("B").unwrap().token)
        .unwrap()
        .unwrap();
    store.create_patient(&a, &patient("P-1")).unwrap();
    match store.create_patient(&a, &patient("P-1")) {
        Err(e @ StoreError::Conflict(_)) => {
            assert_eq!(e.status(), 409);
            assert!(
                !e.to_string().contains("P-1"),
                "messages carry no patient ids"
            );
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    store.create_patient(&b, &patient("P-1")).unwrap();
    assert_eq!(count(&raw(&dir), "patients"), 2);
}

#[test]
fn patient_limits() {
    let dir = TestDir::new();
    let store = open(&dir);
    let t = store.local_tenant().unwrap();
    let with = |f: &dyn Fn(&mut NewPatient)| {
        let mut p = patient("P-1");
        f(&mut p);
        store.create_patient(&t, &p)
    };
    let invalid = |r: Result<Patient, StoreError>| matches!(r, Err(StoreError::Invalid(_)));
    assert!(invalid(with(&|p| p.external_id = "x".repeat(129))));
    assert!(invalid(with(&|p| p.external_id = String::new())));
    assert!(invalid(with(&|p| p.external_id = "P\u{0}1".into())));
    assert!(invalid(with(&|p| p.name = Some("n".repeat(257)))));
    assert!(invalid(with(&|p| p.name = Some(String::new()))));
    assert!(invalid(with(&|p| p.birth_date = date!(1899 - 12 - 31))));
    let far_future = time::OffsetDateTime::now_utc().date() + time::Duration::days(3);
    assert!(invalid(with(&|p| p.birth_date = far_future)));
    assert_eq!(count(&raw(&dir), "patients"), 0);

    assert!(with(&|p| p.external_id = "x".repeat(128)).is_ok());
    assert!(with(&|p| {
        p.external_id = "P-2".into();
        p.name = Some("n".repeat(256));
    })
    .is_ok());
    assert!(with(&|p| {
        p.external_id = "P-3".into();
        p.birth_date = date!(1900 - 01 - 01);
    })
    .is_ok());
    assert!(with(&|p| {
        p.external_id = "P-4".into();
        p.birth_date = time::OffsetDateTime::now_utc().date();
    })
    .is_ok());
}

#[test]
fn analyses_round_trip_with_a_kept_image() {
    let dir = TestDir::new();
    let store = open(&dir);
    let tenant = store.local_tenant().unwrap();
    let p = store.create_patient(&tenant, &patient("P-1")).unwrap();
    let bytes = b"\x89PNG pretend radiograph".to_vec();
    let rec = analysis("rep-1", Some(&p.id), &bytes, true);
    let stored = store.insert_analysis(&tenant, &rec).unwrap();

    assert_eq!(stored.id, "rep-1");
    assert!(uuid::Uuid::parse_str(&stored.exam_id).is_ok());
    assert_eq!(stored.patient_id.as_deref(), Some(p.id.as_str()));
    assert_eq!(stored.exam_date, Some(date!(2025 - 09 - 01)));
    assert_eq!(stored.chronological_age_months, Some(125.8));
    assert_eq!(stored.bone_age_months, 131.25);
    assert_eq!(stored.bone_age_sd_months, 7.5);
    assert_eq!(stored.height_cm, Some(141.2));
    assert_eq!(stored.weight_kg, Some(33.0));
    assert_eq!(stored.mother_height_cm, Some(165.0));
    assert_eq!(stored.father_height_cm, None);
    assert!(stored.image_stored);
    assert_eq!(stored.inputs_json, rec.inputs_json);
    assert_eq!(stored.result_json, rec.result_json);
    assert_eq!(stored.model_sha256, MODEL_SHA);

    let sha = sha256_hex(&bytes);
    let path = store.images_dir().join(&sha[..2]).join(&sha);
    assert_eq!(stored.image_path.as_deref(), Some(path.as_path()));
    assert_eq!(std::fs::read(&path).unwrap(), bytes);

    let read = store.get_analysis(&tenant, "rep-1").unwrap().unwrap();
    assert_eq!(read, stored);
    assert_eq!(
        store.patient_analyses(&tenant, &p.id).unwrap(),
        vec![stored.clone()]
    );

    let j = serde_json::to_value(&read).unwrap();
    assert_eq!(j["exam_date"], "2025-09-01");
    assert!(
        j.get("image_path").is_none(),
        "server paths are not serialised"
    );

    // Without keeping the image: the sha is recorded, no file, no path.
    let other = b"another radiograph".to_vec();
    let s2 = store
        .insert_analysis(&tenant, &analysis("rep-2", None, &other, false))
        .unwrap();
    assert!(!s2.image_stored);
    assert_eq!(s2.image_path, None);
    assert_eq!(s2.image_sha256, sha256_hex(&other));
    assert!(!store.images_dir().join(&s2.image_sha256[..2]).exists());
    assert_eq!(store.get_analysis(&tenant, "rep-2").unwrap().unwrap(), s2);
}

#[test]
fn patient_analyses_are_ordered_by_exam_date_then_creation() {
    let dir = TestDir::new();
    let store = open(&dir);
    let t = store.local_tenant().unwrap();
    let p = store.create_patient(&t, &patient("P-1")).unwrap();
    let img = b"img".to_vec();
    let dates = [
        ("late", Some(date!(2024 - 06 - 01))),
        ("undated", None),
        ("early-1", Some(date!(2019 - 01 - 01))),
        ("early-2", Some(date!(2019 - 01 - 01))),
    ];
    for (id, d) in dates {
        let mut rec = analysis(id, Some(&p.id), &img, false);
        rec.exam_date = d;
        store.insert_analysis(&t, &rec).unwrap();
    }
    let ids: Vec<String> = store
        .patient_analyses(&t, &p.id)
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(ids, ["early-1", "early-2", "late", "undated"]);

    let q = store.create_patient(&t, &patient("P-2")).unwrap();
    assert!(store.patient_analyses(&t, &q.id).unwrap().is_empty());
}

#[test]
fn tenants_cannot_see_or_touch_each_others_patients() {
    let dir = TestDir::new();
    let store = open(&dir);
    let a = store
        .authenticate(&store.create_token("A").unwrap().token)
        .unwrap()
        .unwrap();
    let b = store
        .authenticate(&store.create_token("B").unwrap().token)
        .unwrap()
        .unwrap();
    let pa = store.create_patient(&a, &patient("P-1")).unwrap();
    let img = b"A's radiograph".to_vec();
    store
        .insert_analysis(&a, &analysis("rep-a", Some(&pa.id), &img, true))
        .unwrap();
    let unknown = uuid::Uuid::new_v4().to_string();

    // Read: exactly as for an id that does not exist.
    assert_eq!(store.get_patient(&b, &pa.id).unwrap(), None);
    assert_eq!(store.get_patient(&b, &unknown).unwrap(), None);
    assert_eq!(store.find_patient_by_external_id(&b, "P-1").unwrap(), None);
    assert_eq!(store.get_analysis(&b, "rep-a").unwrap(), None);
    assert_eq!(store.get_analysis(&b, "rep-unknown").unwrap(), None);
    assert!(matches!(
        store.patient_analyses(&b, &pa.id),
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.patient_analyses(&b, &unknown),
        Err(StoreError::NotFound)
    ));

    // Write: B cannot attach an analysis to A's patient.
    let other_img = b"B's radiograph".to_vec();
    for pid in [pa.id.as_str(), unknown.as_str()] {
        match store.insert_analysis(&b, &analysis("rep-b", Some(pid), &other_img, true)) {
            Err(e @ StoreError::NotFound) => assert_eq!(e.status(), 404),
            other => panic!("expected NotFound, got {other:?}"),
        }
    }
    assert!(!store
        .images_dir()
        .join(&sha256_hex(&other_img)[..2])
        .join(sha256_hex(&other_img))
        .exists());

    // A still sees everything of its own.
    assert_eq!(store.patient_analyses(&a, &pa.id).unwrap().len(), 1);

    // And the database itself refuses a cross-tenant link.
    let conn = raw(&dir);
    conn.pragma_update(None, "foreign_keys", true).unwrap();
    let err = conn.execute(
        "INSERT INTO exams (id, tenant_id, patient_id, sex, image_sha256, image_stored, inputs_json, created_at)
         VALUES ('x', ?1, ?2, 'female', ?3, 0, '{}', 'now')",
        rusqlite::params![b.id(), pa.id, MODEL_SHA],
    );
    assert!(
        err.is_err(),
        "composite foreign key must refuse tenant B → A's patient"
    );
    assert_eq!(count(&conn, "exams"), 1);
}

#[test]
fn images_are_content_addressed_and_verified() {
    let dir = TestDir::new();
    let store = open(&dir);
    let t = store.local_tenant().unwrap();
    let bytes = vec![7u8; 10_000];
    let s1 = store
        .insert_analysis(&t, &analysis("r1", None, &bytes, true))
        .unwrap();
    let s2 = store
        .insert_analysis(&t, &analysis("r2", None, &bytes, true))
        .unwrap();
    assert_ne!(s1.exam_id, s2.exam_id);
    assert_eq!(s1.image_path, s2.image_path);
    let files = files_under(store.images_dir());
    assert_eq!(
        files.len(),
        1,
        "same bytes twice → one file, no temp files: {files:?}"
    );
    assert_eq!(std::fs::read(&files[0]).unwrap(), bytes);

    // Bytes that do not match the given sha256 are refused, and nothing is written.
    let mut wrong = analysis("r3", None, &bytes, true);
    let other = vec![8u8; 10];
    wrong.image = Some(&other);
    assert!(matches!(
        store.insert_analysis(&t, &wrong),
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(files_under(store.images_dir()).len(), 1);
    let mut bad_sha = analysis("r4", None, &bytes, false);
    bad_sha.image_sha256 = bad_sha.image_sha256.to_uppercase();
    assert!(matches!(
        store.insert_analysis(&t, &bad_sha),
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(count(&raw(&dir), "exams"), 2);
    assert_eq!(count(&raw(&dir), "analyses"), 2);
}

#[test]
fn a_failing_insert_leaves_nothing_behind() {
    let dir = TestDir::new();
    let store = open(&dir);
    let t = store.local_tenant().unwrap();
    let p = store.create_patient(&t, &patient("P-1")).unwrap();
    let first = b"first".to_vec();
    store
        .insert_analysis(&t, &analysis("dup", Some(&p.id), &first, true))
        .unwrap();

    // Same report id again, with a new image to keep: the exam row was inserted
    // before the analysis row failed, so only a rollback removes it.
    let second = b"second".to_vec();
    match store.insert_analysis(&t, &analysis("dup", Some(&p.id), &second, true)) {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("expected Conflict, got {other:?}"),
    }
    let conn = raw(&dir);
    assert_eq!(count(&conn, "exams"), 1);
    assert_eq!(count(&conn, "analyses"), 1);
    let files = files_under(store.images_dir());
    assert_eq!(
        files.len(),
        1,
        "the second image was removed again: {files:?}"
    );
    assert_eq!(std::fs::read(&files[0]).unwrap(), first);

    // The first image stays when a later failed insert had the same bytes.
    assert!(store
        .insert_analysis(&t, &analysis("dup", None, &first, true))
        .is_err());
    assert_eq!(files_under(store.images_dir()).len(), 1);
    assert_eq!(store.patient_analyses(&t, &p.id).unwrap().len(), 1);
}

#[test]
fn analyses_must_agree_with_their_patient_and_be_finite() {
    let dir = TestDir::new();
    let store = open(&dir);
    let t = store.local_tenant().unwrap();
    let p = store.create_patient(&t, &patient("P-1")).unwrap();
    let img = b"img".to_vec();

    let mut male = analysis("r1", Some(&p.id), &img, false);
    male.sex = Sex::Male;
    assert!(matches!(
        store.insert_analysis(&t, &male),
        Err(StoreError::Conflict(_))
    ));

    let mut before_birth = analysis("r2", Some(&p.id), &img, false);
    before_birth.exam_date = Some(date!(2015 - 03 - 06));
    assert!(matches!(
        store.insert_analysis(&t, &before_birth),
        Err(StoreError::Invalid(_))
    ));
    before_birth.exam_date = Some(date!(2015 - 03 - 07));
    assert!(
        store.insert_analysis(&t, &before_birth).is_ok(),
        "the birth day itself is fine"
    );

    let cases: [fn(&mut NewAnalysis<'_>); 7] = [
        |a| a.bone_age_months = f64::NAN,
        |a| a.bone_age_sd_months = f64::INFINITY,
        |a| a.chronological_age_months = Some(-1.0),
        |a| a.height_cm = Some(0.0),
        |a| a.father_height_cm = Some(f64::NAN),
        |a| a.model_sha256 = "abc".into(),
        |a| a.id = String::new(),
    ];
    for (i, f) in cases.iter().enumerate() {
        let mut rec = analysis(&format!("bad-{i}"), None, &img, false);
        f(&mut rec);
        assert!(
            matches!(store.insert_analysis(&t, &rec), Err(StoreError::Invalid(_))),
            "case {i}"
        );
    }
    assert_eq!(count(&raw(&dir), "analyses"), 1);
}

#[test]
fn unreadable_stored_values_are_reported_as_corrupt() {
    let dir = TestDir::new();
    let store = open(&dir);
    let t = store.local_tenant().unwrap();
    let img = b"img".to_vec();
    store
        .insert_analysis(&t, &analysis("r1", None, &img, false))
        .unwrap();
    raw(&dir)
        .execute(
            "UPDATE analyses SET result_json = '{not json' WHERE id = 'r1'",
            [],
        )
        .unwrap();
    match store.get_analysis(&t, "r1") {
        Err(e @ StoreError::Corrupt(_)) => assert_eq!(e.status(), 500),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn error_codes_and_statuses() {
    assert_eq!(StoreError::NotFound.code(), "not_found");
    assert_eq!(StoreError::NotFound.status(), 404);
    assert_eq!(StoreError::Conflict(String::new()).status(), 409);
    assert_eq!(StoreError::Invalid(String::new()).status(), 400);
    let too_new = StoreError::TooNew {
        found: 9,
        supported: 1,
    };
    assert_eq!(too_new.status(), 500);
    assert_eq!(too_new.code(), "storage_failed");
}

/// Set in the child process of the kill -9 test: the database to write to.
const CRASH_CHILD_ENV: &str = "BONEAGE_STORE_CRASH_CHILD_DB";

/// The child of the kill -9 test: inserts analyses with kept images as fast as it
/// can and prints `ack <id>` after each insert returned, until killed.
fn crash_child(db: &Path) {
    use std::io::Write;
    let store = Store::open(db).unwrap();
    let t = store.local_tenant().unwrap();
    let p = store.create_patient(&t, &patient("P-crash")).unwrap();
    let started = std::time::Instant::now();
    let mut stdout = std::io::stdout();
    for i in 0..100_000u32 {
        if started.elapsed() > std::time::Duration::from_secs(60) {
            break; // the parent is gone; never run forever
        }
        let bytes: Vec<u8> = (0..20_000u32)
            .map(|k| (k.wrapping_mul(31) ^ i) as u8)
            .collect();
        let id = format!("crash-{i}");
        store
            .insert_analysis(&t, &analysis(&id, Some(&p.id), &bytes, true))
            .unwrap();
        writeln!(stdout, "ack {id}").unwrap();
        stdout.flush().unwrap();
    }
}

#[test]
fn kill_9_loses_no_acknowledged_analysis_and_leaves_no_half_written_one() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    if let Some(db) = std::env::var_os(CRASH_CHILD_ENV) {
        crash_child(Path::new(&db));
        return;
    }
    let dir = TestDir::new();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "store::tests::kill_9_loses_no_acknowledged_analysis_and_leaves_no_half_written_one",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_CHILD_ENV, dir.db())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = Vec::new();
    while acked.len() < 25 {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(id) = line.strip_prefix("ack ") {
                    acked.push(id.to_string());
                }
            }
            _ => panic!("the child stopped before 25 inserts"),
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    // Acknowledgements already in the pipe count too.
    for line in lines.map_while(Result::ok) {
        if let Some(id) = line.strip_prefix("ack ") {
            acked.push(id.to_string());
        }
    }

    let store = open(&dir);
    let t = store.local_tenant().unwrap();
    for id in &acked {
        let a = store.get_analysis(&t, id).unwrap();
        let a = a.unwrap_or_else(|| panic!("acknowledged {id} was lost"));
        let path = a.image_path.unwrap();
        assert_eq!(sha256_hex(&std::fs::read(path).unwrap()), a.image_sha256);
    }
    let conn = raw(&dir);
    let exams = count(&conn, "exams");
    println!(
        "kill -9 after {} acknowledged inserts; {exams} exams committed",
        acked.len()
    );
    assert_eq!(
        exams,
        count(&conn, "analyses"),
        "an exam without its analysis"
    );
    assert!(exams as usize >= acked.len());
    assert!(
        exams as usize <= acked.len() + 1,
        "at most the one in flight"
    );
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    // Every committed exam's kept image is complete on disk.
    for a in store
        .patient_analyses(
            &t,
            &store
                .find_patient_by_external_id(&t, "P-crash")
                .unwrap()
                .unwrap()
                .id,
        )
        .unwrap()
    {
        let bytes = std::fs::read(a.image_path.unwrap()).unwrap();
        assert_eq!(sha256_hex(&bytes), a.image_sha256);
    }
}
