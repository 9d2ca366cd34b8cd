//! Shared helpers: start the real server on an ephemeral port, make fixtures.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use boneage::analysis::Analyzer;
use boneage::decode::DecodeLimits;
use boneage::http::{AppState, AuthMode, ServerOptions};
use boneage::model::{Backend, TractModel};
use boneage::store::Store;
use boneage::synth::{self, HandParams};

/// The embedded default model, loaded once per test binary (`BONEAGE_TEST_MODEL`
/// names another ONNX file to run the suite against a candidate).
pub fn default_model() -> Arc<dyn Backend> {
    static M: OnceLock<Arc<TractModel>> = OnceLock::new();
    let m = M.get_or_init(|| {
        Arc::new(match std::env::var_os("BONEAGE_TEST_MODEL") {
            Some(p) => TractModel::load(std::path::Path::new(&p)).expect("candidate model loads"),
            None => TractModel::embedded().expect("embedded model loads"),
        })
    });
    Arc::clone(m) as Arc<dyn Backend>
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub base: String,
    /// The server's database (in a temporary folder unless the test gave one).
    pub store: Arc<Store>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// A server in local mode over a fresh database in a temporary folder.
    pub async fn start(model: Arc<dyn Backend>, options: ServerOptions) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(&dir.path().join("boneage.db")).expect("store"));
        let mut srv = Self::start_with(model, options, store).await;
        srv._dir = Some(dir);
        srv
    }

    /// A server over `store`, in the mode its tokens imply (as `boneage serve`).
    pub async fn start_with(
        model: Arc<dyn Backend>,
        options: ServerOptions,
        store: Arc<Store>,
    ) -> TestServer {
        let analyzer = Arc::new(Analyzer::new(model, DecodeLimits::default()));
        let auth = AuthMode::from_store(&store).expect("auth mode");
        let state = AppState::new(analyzer, Arc::clone(&store), auth, options).expect("state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(boneage::http::serve(listener, state, async move {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            base: format!("http://{addr}"),
            store,
            shutdown: Some(tx),
            handle: Some(handle),
            _dir: None,
        }
    }

    pub async fn default() -> TestServer {
        Self::start(
            default_model(),
            ServerOptions {
                workers: 2,
                queue_depth: 8,
                ..Default::default()
            },
        )
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.expect("server task").expect("server result");
        }
    }
}

/// The `boneage` binary under test.
pub fn bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_boneage"))
}

/// Runs the binary and asserts success.
pub fn run_ok(cmd: &mut std::process::Command) -> std::process::Output {
    let out = cmd.output().expect("run boneage");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Starts `boneage serve` with `args` (stderr piped, RUST_LOG=warn) and waits for
/// its "listening on" line; returns the child and the address it printed. Its
/// stderr keeps being drained so the server never blocks on a full pipe.
pub fn spawn_server(args: &[&std::ffi::OsStr]) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_boneage"))
        .arg("serve")
        .args(args)
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn boneage serve");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("server printed its address")
            .expect("stderr line");
        if let Some(rest) = line.strip_prefix("boneage listening on http://") {
            break rest.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines.by_ref() {});
    (child, addr)
}

pub fn png8(img: &image::GrayImage) -> Vec<u8> {
    synth::png_bytes(img.clone())
}

pub fn png16(img: &image::ImageBuffer<image::Luma<u16>, Vec<u16>>) -> Vec<u8> {
    synth::png_bytes(img.clone())
}

pub fn jpeg(img: &image::GrayImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 92)
        .encode_image(img)
        .expect("jpeg");
    out
}

/// 8-bit pixels as a DR detector with 14 bits stored writes them in MONOCHROME1
/// (bright = air): stored = 16383 − 64 v.
pub fn dr_monochrome1_14bit(img: &image::GrayImage) -> Vec<u16> {
    img.as_raw()
        .iter()
        .map(|&v| 16383 - v as u16 * 64)
        .collect()
}

/// A synthetic ~1000×1300 left-hand radiograph, 8-bit.
pub fn synthetic_hand(maturity: f32, seed: u64) -> image::GrayImage {
    synth::hand_radiograph_8(&HandParams {
        maturity,
        seed,
        ..Default::default()
    })
}

/// `../shared/data/rsna` if it exists (CI has it; a fresh clone does not).
pub fn rsna_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("BONEAGE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"))
        .join("data/rsna");
    if dir.join("half512/labels.csv").exists() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: {} not found; real-radiograph tests did not run",
            dir.display()
        );
        None
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().build().expect("client")
}

pub async fn post_multipart(
    client: &reqwest::Client,
    url: &str,
    image: Option<(Vec<u8>, &str)>,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let mut form = reqwest::multipart::Form::new();
    for (k, v) in fields {
        form = form.text(k.to_string(), v.to_string());
    }
    if let Some((bytes, mime)) = image {
        let part = reqwest::multipart::Part::bytes(bytes)
            .file_name("xray")
            .mime_str(mime)
            .expect("mime");
        form = form.part("image", part);
    }
    client.post(url).multipart(form).send().await.expect("send")
}
