//! `boneage`: the service and its command-line tools.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use boneage::analysis::{Analyzer, RawFields};
use boneage::decode::DecodeLimits;
use boneage::http::{self, AppState, ServerOptions};
use boneage::model::{Backend, TractModel};
use boneage::store::Store;

#[derive(Parser)]
#[command(
    name = "boneage",
    version,
    about = "Bone-age assessment from hand radiographs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service.
    Serve(ServeArgs),
    /// Analyse one radiograph and print the API's JSON on stdout.
    Analyze(AnalyzeArgs),
    /// Evaluate the model on a labelled manifest (`id,image,boneage_months,male`).
    Eval(EvalArgs),
    /// Time the full analysis of one image in-process; prints per-stage medians as JSON.
    Bench(BenchArgs),
    /// Write a synthetic hand radiograph (PNG) for trying the service without real images.
    Synth(SynthArgs),
    /// Model commands.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Re-score many radiographs: image files (`--dir` or `--manifest`, to `--out`
    /// CSV/JSONL), the stored exams (`rescore exams`), or compare two model versions
    /// (`rescore compare`). Resumable: rerun the same command after an interruption.
    Rescore(RescoreArgs),
    /// Bearer tokens: each binds a caller to a tenant (a hospital or an integration).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token for a tenant (created if new); prints the token alone on stdout.
    /// It is stored only as a hash: keep it now, it cannot be shown again.
    Create {
        /// Tenant name, e.g. the hospital.
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revoke a token (give the token itself or its id from `token list`).
    Revoke {
        token_or_id: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List tokens (id, tenant, created, revoked); never the tokens themselves.
    List {
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
struct RescoreArgs {
    #[command(subcommand)]
    command: Option<RescoreCommand>,
    #[command(flatten)]
    files: RescoreFilesArgs,
}

#[derive(Subcommand)]
enum RescoreCommand {
    /// Re-score the stored exams whose image was kept: one new analysis per exam for
    /// this model, the earlier ones kept (all tenants unless --tenant).
    Exams(RescoreExamsArgs),
    /// Compare two model versions over the stored exams analysed by both (or two
    /// `rescore` output files): changes by age band and ±2 SD crossings.
    Compare(CompareArgs),
}

#[derive(Args)]
struct RescoreFilesArgs {
    /// Folder of radiographs (recursive: .png .jpg .jpeg .tif .tiff .dcm .dicom).
    #[arg(long, conflicts_with = "manifest")]
    dir: Option<PathBuf>,
    /// Manifest CSV in the `boneage eval` layout (`id,image,...,male`; `male` may be empty).
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Folder the manifest's image paths are relative to (default: the manifest's folder).
    #[arg(long, requires = "manifest")]
    images: Option<PathBuf>,
    /// Output: `.csv` or `.jsonl`, appended to and resumed if it exists.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Sex for images whose manifest row (or folder) gives none; DICOM PatientSex otherwise.
    #[arg(long)]
    sex: Option<String>,
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    model: ModelArgs,
}

#[derive(Args)]
struct RunArgs {
    /// Analysis workers (default: number of cores).
    #[arg(long)]
    workers: Option<usize>,
    /// Only this shard: K/N, zero-based (e.g. `--shard $JOB_COMPLETION_INDEX/8`).
    #[arg(long, env = "BONEAGE_SHARD")]
    shard: Option<String>,
}

impl RunArgs {
    fn workers(&self) -> usize {
        self.workers
            .unwrap_or_else(boneage::rescore::default_workers)
            .max(1)
    }

    fn shard(&self) -> Result<boneage::rescore::Shard> {
        Ok(match &self.shard {
            Some(s) => s.parse()?,
            None => Default::default(),
        })
    }
}

#[derive(Args)]
struct RescoreExamsArgs {
    /// Only this tenant's exams (default: every tenant).
    #[arg(long)]
    tenant: Option<String>,
    /// Exams on or after this date (YYYY-MM-DD).
    #[arg(long)]
    from: Option<String>,
    /// Exams on or before this date (YYYY-MM-DD).
    #[arg(long)]
    to: Option<String>,
    /// Only exams whose latest analysis is by this model version.
    #[arg(long)]
    only_model_version: Option<String>,
    /// Try again the exams this model failed on before (e.g. after restoring images).
    #[arg(long)]
    retry_failed: bool,
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Args)]
struct CompareArgs {
    /// The earlier model version.
    #[arg(long)]
    from_version: Option<String>,
    /// The later model version.
    #[arg(long)]
    to_version: Option<String>,
    /// Instead of the database: the earlier version's `rescore` output (.csv/.jsonl).
    #[arg(long, requires = "to_file")]
    from_file: Option<PathBuf>,
    /// Instead of the database: the later version's `rescore` output.
    #[arg(long, requires = "from_file")]
    to_file: Option<PathBuf>,
    /// Only this tenant's exams (database mode).
    #[arg(long)]
    tenant: Option<String>,
    /// Write one CSV row per compared exam here.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Args, Clone)]
struct DbArgs {
    /// The SQLite database (created with its folders if missing).
    #[arg(long = "db", env = "BONEAGE_DB", default_value = "./data/boneage.db")]
    path: PathBuf,
}

impl DbArgs {
    fn open(&self) -> Result<Store> {
        Store::open(&self.path).with_context(|| format!("opening {}", self.path.display()))
    }
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Print name, version, sha256 and input size of the model as JSON.
    Info(ModelArgs),
}

#[derive(Args, Clone)]
struct ModelArgs {
    /// ONNX model file; default: the model embedded from models/boneage-default.onnx.
    #[arg(long, env = "BONEAGE_MODEL")]
    model: Option<PathBuf>,
    /// Threads one inference uses (tract's multithreaded matrix products). Workers ×
    /// threads should not exceed the cores.
    #[arg(long, env = "BONEAGE_INFERENCE_THREADS", default_value_t = 1)]
    threads: usize,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "BONEAGE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    model: ModelArgs,
    /// Inference worker threads (default: number of cores).
    #[arg(long, env = "BONEAGE_WORKERS")]
    workers: Option<usize>,
    /// Analyses that may wait for a worker before the service answers 503.
    #[arg(long, env = "BONEAGE_QUEUE_DEPTH", default_value_t = 16)]
    queue_depth: usize,
    /// Milliseconds a refused (503) analysis is held before its answer, so that
    /// clients retrying at once cannot starve the workers.
    #[arg(long, env = "BONEAGE_SHED_DELAY_MS", default_value_t = 100)]
    shed_delay_ms: u64,
    /// Largest request body in bytes (larger → 413).
    #[arg(long, env = "BONEAGE_MAX_BODY_BYTES", default_value_t = 64 * 1024 * 1024)]
    max_body_bytes: usize,
    /// Workers of re-scoring jobs started with POST /v1/rescore-jobs.
    #[arg(long, env = "BONEAGE_RESCORE_WORKERS", default_value_t = 1)]
    rescore_workers: usize,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Args)]
struct AnalyzeArgs {
    /// DICOM, PNG, TIFF or JPEG radiograph.
    file: PathBuf,
    /// male or female (a DICOM file's PatientSex is used when not given).
    #[arg(long)]
    sex: Option<String>,
    /// Chronological age in months.
    #[arg(long = "age-months")]
    age_months: Option<String>,
    /// Birth date (ISO); with --exam-date gives the age. DICOM: PatientBirthDate.
    #[arg(long)]
    birth_date: Option<String>,
    /// Exam date (ISO). DICOM: StudyDate, else AcquisitionDate.
    #[arg(long)]
    exam_date: Option<String>,
    /// Height (cm): height-for-age and predicted adult height.
    #[arg(long)]
    height_cm: Option<String>,
    /// Weight (kg).
    #[arg(long)]
    weight_kg: Option<String>,
    /// Mother's height (cm).
    #[arg(long)]
    mother_height_cm: Option<String>,
    /// Father's height (cm).
    #[arg(long)]
    father_height_cm: Option<String>,
    /// Height reference: who (WHO 2006/2007, default) or cdc (CDC 2000).
    #[arg(long)]
    height_reference: Option<String>,
    #[command(flatten)]
    model: ModelArgs,
}

#[derive(Args)]
struct EvalArgs {
    /// CSV with columns id,image,boneage_months,male.
    #[arg(long)]
    manifest: PathBuf,
    /// Folder the image paths are relative to (default: the manifest's folder).
    #[arg(long)]
    images: Option<PathBuf>,
    /// Write one CSV row per image here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Only rows whose numeric id is divisible by 10 (the training script's validation split).
    #[arg(long)]
    validation_split: bool,
    /// Expert joint boxes (rois.csv layout, Koitka et al. 2018): also report the
    /// localisation error on the manifest's images that have boxes.
    #[arg(long)]
    rois: Option<PathBuf>,
    /// Only the boxes of this `split` of the rois file (e.g. `eval`, held out from training).
    #[arg(long, requires = "rois")]
    rois_split: Option<String>,
    /// The model alone, as the training script evaluates it: no quality control and
    /// no corrections (every image gets a number).
    #[arg(long)]
    no_quality_control: bool,
    /// Also turn every image by each of these angles (degrees, comma-separated, e.g.
    /// `-45,-20,10,30`; about the centre, same frame, black fill) and report how far
    /// the bone age moves from the image as given.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    rotations: Vec<f64>,
    /// The canvas of `--rotations`: `same` keeps the frame (corners that leave it are
    /// cut off, black comes in), `expand` grows it to hold the whole turned film.
    #[arg(long, value_enum, default_value = "same", requires = "rotations")]
    rotation_canvas: boneage::eval::RotationCanvas,
    /// Also paste every image in the middle of a black canvas each of these times its
    /// width and height (comma-separated, e.g. `1.5,2`; a small hand on a wide
    /// detector) and report how far the bone age moves from the image as given.
    #[arg(long, value_delimiter = ',')]
    canvas_scales: Vec<f64>,
    /// Write one CSV row per image and change of `--rotations` and `--canvas-scales`
    /// here (the bone age as given and changed, and the side and turn each was read with).
    #[arg(long)]
    changes_out: Option<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
}

#[derive(Args)]
struct BenchArgs {
    /// Radiograph: PNG, TIFF, JPEG or DICOM.
    #[arg(long)]
    image: PathBuf,
    /// Also write the model's input tensor for this image (raw little-endian f32,
    /// [1, 1, H, W]), for `scripts/ort_compare.py`.
    #[arg(long)]
    dump_input: Option<PathBuf>,
    /// Also time one pass over a batch of N copies of the image (per image), to
    /// see what batching would buy.
    #[arg(long)]
    batch: Option<usize>,
    #[arg(long, default_value_t = 30)]
    runs: usize,
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    #[arg(long, default_value = "male")]
    sex: String,
    #[command(flatten)]
    model: ModelArgs,
}

#[derive(Args)]
struct SynthArgs {
    /// Output file: PNG, or DICOM when it ends in `.dcm` (DX, 16 bits allocated,
    /// `--bits` stored, MONOCHROME2, explicit VR little endian).
    out: PathBuf,
    #[arg(long, default_value_t = 1000)]
    width: u32,
    #[arg(long, default_value_t = 1300)]
    height: u32,
    /// 0 (infant) .. 1 (adult).
    #[arg(long, default_value_t = 0.5)]
    maturity: f32,
    #[arg(long, default_value_t = 0.0)]
    rotation: f32,
    /// 8 or 16 bits per pixel.
    #[arg(long, default_value_t = 8)]
    bits: u8,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// DICOM only: PatientSex (M or F).
    #[arg(long)]
    dicom_sex: Option<String>,
    /// DICOM only: PatientBirthDate (YYYYMMDD).
    #[arg(long)]
    dicom_birth_date: Option<String>,
    /// DICOM only: StudyDate (YYYYMMDD).
    #[arg(long)]
    dicom_study_date: Option<String>,
}

fn load_model(args: &ModelArgs) -> Result<TractModel> {
    Ok(match &args.model {
        Some(p) => TractModel::load(p)?,
        None => TractModel::embedded()?,
    }
    .with_threads(args.threads))
}

/// The analyzer over the chosen model, and the bytes of one image file.
fn analyzer_and_image(model: &ModelArgs, file: &std::path::Path) -> Result<(Analyzer, Vec<u8>)> {
    let analyzer = Analyzer::new(Arc::new(load_model(model)?), DecodeLimits::default());
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    Ok((analyzer, bytes))
}

/// Validates command-line fields exactly as the API validates form fields.
fn request(sex: String) -> Result<boneage::analysis::AnalysisRequest> {
    let fields = RawFields {
        sex: Some(sex),
        ..Default::default()
    };
    fields
        .into_request()
        .map_err(|e| anyhow::anyhow!("{}: {}", e.code(), e))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Analyze(args) => {
            let (analyzer, bytes) = analyzer_and_image(&args.model, &args.file)?;
            let fields = RawFields {
                sex: args.sex,
                chronological_age_months: args.age_months,
                birth_date: args.birth_date,
                exam_date: args.exam_date,
                height_cm: args.height_cm,
                weight_kg: args.weight_kg,
                mother_height_cm: args.mother_height_cm,
                father_height_cm: args.father_height_cm,
                height_reference: args.height_reference,
                ..Default::default()
            };
            match analyzer.analyze_upload(&bytes, fields) {
                Ok(report) => {
                    print_json(&report)?;
                    Ok(())
                }
                Err(e) => bail!("{}: {}", e.code(), e),
            }
        }
        Command::Eval(args) => eval(args),
        Command::Bench(args) => {
            let (analyzer, bytes) = analyzer_and_image(&args.model, &args.image)?;
            let req = request(args.sex)?;
            let fail = |e: boneage::error::AnalysisError| anyhow::anyhow!("{}: {}", e.code(), e);
            if let Some(path) = &args.dump_input {
                let x = boneage::bench::model_input(&analyzer, &bytes).map_err(fail)?;
                let raw: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
                std::fs::write(path, raw).with_context(|| format!("writing {}", path.display()))?;
            }
            let threads = args.model.threads.max(1);
            let mut r =
                boneage::bench::run(&analyzer, &bytes, &req, args.runs, args.warmup, threads)
                    .map_err(fail)?;
            if let Some(size) = args.batch {
                let onnx = match &args.model.model {
                    Some(p) => {
                        std::fs::read(p).with_context(|| format!("reading {}", p.display()))?
                    }
                    None => boneage::model::EMBEDDED_MODEL.to_vec(),
                };
                let x = boneage::bench::model_input(&analyzer, &bytes).map_err(fail)?;
                r.batched = Some(
                    boneage::bench::batched_pass(
                        &onnx,
                        size,
                        &x,
                        req.sex,
                        args.runs,
                        args.warmup,
                        threads,
                    )
                    .map_err(fail)?,
                );
            }
            print_json(&r)?;
            Ok(())
        }
        Command::Synth(args) => {
            let p = boneage::synth::HandParams {
                width: args.width,
                height: args.height,
                maturity: args.maturity,
                rotation_deg: args.rotation,
                seed: args.seed,
                ..Default::default()
            };
            let dicom = args.out.extension().is_some_and(|e| e == "dcm");
            let bytes = match args.bits {
                _ if dicom => {
                    if !(8..=16).contains(&args.bits) {
                        bail!("--bits must be 8..=16 for DICOM, not {}", args.bits);
                    }
                    let img = boneage::synth::hand_radiograph_16(&p);
                    let shift = 16 - args.bits as u32;
                    let px: Vec<u16> = img.as_raw().iter().map(|&v| v >> shift).collect();
                    let tags = boneage::dicom::DicomTags {
                        bits_stored: args.bits as u16,
                        patient_sex: args.dicom_sex,
                        patient_birth_date: args.dicom_birth_date,
                        study_date: args.dicom_study_date,
                        ..Default::default()
                    };
                    boneage::dicom::encode_dicom(&px, img.width(), img.height(), &tags)
                        .map_err(|e| anyhow::anyhow!("writing DICOM: {e}"))?
                }
                8 => boneage::synth::png_bytes(boneage::synth::hand_radiograph_8(&p)),
                16 => boneage::synth::png_bytes(boneage::synth::hand_radiograph_16(&p)),
                b => bail!("--bits must be 8 or 16, not {b}"),
            };
            std::fs::write(&args.out, bytes)
                .with_context(|| format!("writing {}", args.out.display()))?;
            Ok(())
        }
        Command::Rescore(args) => rescore(args),
        Command::Token { command } => token(command),
        Command::Model {
            command: ModelCommand::Info(args),
        } => {
            let model = load_model(&args)?;
            print_json(model.info())?;
            Ok(())
        }
    }
}

fn serve(args: ServeArgs) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let model = load_model(&args.model).context("loading the model")?;
    let info = model.info().clone();
    tracing::info!(name = %info.name, version = %info.version, sha256 = %info.sha256, source = %info.source, "model loaded");
    let analyzer = Arc::new(Analyzer::new(Arc::new(model), DecodeLimits::default()));
    let mut options = ServerOptions {
        queue_depth: args.queue_depth,
        shed_delay: std::time::Duration::from_millis(args.shed_delay_ms),
        max_body_bytes: args.max_body_bytes,
        rescore_workers: args.rescore_workers.max(1),
        ..Default::default()
    };
    if let Some(w) = args.workers {
        options.workers = w;
    }
    let workers = options.workers;
    let store = args.db.open()?;
    let auth = http::AuthMode::from_store(&store).context("reading the tokens")?;
    if auth.is_local() {
        if !args.listen.ip().is_loopback() {
            bail!(
                "no bearer token is configured, so the service runs in single-tenant local mode, \
                 which only listens on loopback; {} is not. Create a token first: \
                 `boneage token create --tenant NAME --db {}`",
                args.listen,
                args.db.path.display()
            );
        }
        tracing::warn!(
            "local mode: no bearer tokens configured; one tenant, no authentication, loopback only"
        );
        eprintln!("boneage: local mode (no tokens configured): single tenant, no authentication, listening on loopback only");
    } else {
        tracing::info!("bearer tokens required");
    }
    tracing::info!(db = %args.db.path.display(), "database open");
    let state = AppState::new(analyzer, Arc::new(store), auth, options)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, workers, "listening");
        eprintln!("boneage listening on http://{addr}");
        http::serve(listener, state, http::shutdown_signal()).await?;
        anyhow::Ok(())
    })
}

/// Writes one line to stdout. A reader that closed the pipe early (`| head`) is not
/// an error: the output is simply not wanted any more.
fn print_line(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Prints a value as pretty JSON on stdout (see [`print_line`]).
fn print_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<()> {
    print_line(&serde_json::to_string_pretty(value)?)
}

fn token(command: TokenCommand) -> Result<()> {
    match command {
        TokenCommand::Create { tenant, db } => {
            let t = db.open()?.create_token(&tenant)?;
            eprintln!(
                "token {} for tenant {:?} created; it is shown once",
                t.id, t.tenant
            );
            print_line(&t.token)?;
        }
        TokenCommand::Revoke { token_or_id, db } => {
            if !db.open()?.revoke_token(&token_or_id)? {
                bail!("no active token matches");
            }
            eprintln!("revoked");
        }
        TokenCommand::List { db } => {
            let list = db.open()?.list_tokens()?;
            print_json(&list)?;
        }
    }
    Ok(())
}

fn eval(args: EvalArgs) -> Result<()> {
    use boneage::eval;
    if let Some(bad) = args.rotations.iter().find(|d| !d.is_finite()) {
        bail!("--rotations: {bad} is not an angle");
    }
    if let Some(bad) = args
        .canvas_scales
        .iter()
        .find(|k| !(k.is_finite() && (1.0..=4.0).contains(*k)))
    {
        bail!("--canvas-scales: {bad} is not a scale from 1 to 4");
    }
    if args.changes_out.is_some() && args.rotations.is_empty() && args.canvas_scales.is_empty() {
        bail!("--changes-out needs --rotations or --canvas-scales");
    }
    let model = load_model(&args.model)?;
    let mut analyzer = Analyzer::new(Arc::new(model), DecodeLimits::default());
    if args.no_quality_control {
        analyzer = analyzer.without_quality_control();
    }
    let mut rows = eval::read_manifest(&args.manifest, args.images.as_deref())?;
    if args.validation_split {
        rows.retain(|r| eval::is_validation_id(&r.id));
    }
    let rois = match &args.rois {
        Some(path) => {
            let mut t = eval::read_rois(path)?;
            if let Some(split) = &args.rois_split {
                t.retain(|_, j| &j.split == split);
            }
            if t.is_empty() {
                bail!(
                    "{} has no complete expert annotations (in that split)",
                    path.display()
                );
            }
            Some(t)
        }
        None => None,
    };
    if rows.is_empty() {
        bail!("the manifest has no rows to evaluate");
    }
    let bar = indicatif::ProgressBar::new(rows.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut preds = Vec::with_capacity(rows.len());
    for row in &rows {
        preds.push(eval::predict(&analyzer, row));
        bar.inc(1);
    }
    bar.finish_and_clear();
    if let Some(out) = &args.out {
        eval::write_predictions(out, &preds)?;
    }
    let mut summary = eval::summarize(&preds);
    if let Some(t) = &rois {
        summary.localisation = Some(eval::localisation(&preds, t));
    }
    let mut changes = Vec::new();
    if !args.rotations.is_empty() {
        let bar = indicatif::ProgressBar::new(rows.len() as u64);
        let tick = || bar.inc(1);
        let (stats, per_film) = eval::rotation_robustness(
            &analyzer,
            &rows,
            &args.rotations,
            args.rotation_canvas,
            &tick,
        );
        bar.finish_and_clear();
        changes.extend(per_film);
        summary.rotation = Some(stats);
    }
    if !args.canvas_scales.is_empty() {
        let bar = indicatif::ProgressBar::new(rows.len() as u64);
        let tick = || bar.inc(1);
        let (stats, per_film) =
            eval::canvas_robustness(&analyzer, &rows, &args.canvas_scales, &tick);
        bar.finish_and_clear();
        changes.extend(per_film);
        summary.canvas = Some(stats);
    }
    if let Some(out) = &args.changes_out {
        eval::write_predictions(out, &changes)?;
    }
    print_json(&summary)?;
    Ok(())
}

fn rescore(args: RescoreArgs) -> Result<()> {
    use boneage::rescore::{self, exams, files};
    let summary = match args.command {
        Some(RescoreCommand::Compare(c)) => return rescore_compare(c),
        Some(RescoreCommand::Exams(a)) => {
            let analyzer = Analyzer::new(Arc::new(load_model(&a.model)?), DecodeLimits::default());
            let store = a.db.open()?;
            let mut filter = rescore::tenant_filter(&store, a.tenant.as_deref())?;
            filter.from = a.from.as_deref().map(iso_date).transpose()?;
            filter.to = a.to.as_deref().map(iso_date).transpose()?;
            filter.only_model_version = a.only_model_version;
            let opts = exams::ExamOptions {
                workers: a.run.workers(),
                shard: a.run.shard()?,
                retry_failed: a.retry_failed,
                ..Default::default()
            };
            let bar = rescore::progress_bar(0);
            let s = exams::run_exams(&analyzer, &store, &filter, &opts, &bar)?;
            bar.finish_and_clear();
            s
        }
        None => {
            let a = args.files;
            let out = a
                .out
                .context("give --out FILE (.csv or .jsonl) for --dir or --manifest")?;
            let items = match (&a.dir, &a.manifest) {
                (Some(d), None) => files::items_from_dir(d)?,
                (None, Some(m)) => files::items_from_manifest(m, a.images.as_deref())?,
                _ => bail!(
                    "give --dir DIR or --manifest FILE (or `rescore exams`, `rescore compare`)"
                ),
            };
            let analyzer = Analyzer::new(Arc::new(load_model(&a.model)?), DecodeLimits::default());
            let opts = files::FileOptions {
                workers: a.run.workers(),
                shard: a.run.shard()?,
                sex: a.sex,
                ..Default::default()
            };
            let bar = rescore::progress_bar(items.len() as u64);
            let s = files::run_files(&analyzer, items, &out, &opts, &bar)?;
            bar.finish_and_clear();
            s
        }
    };
    eprintln!("{}", summary.text());
    print_json(&summary)?;
    Ok(())
}

fn iso_date(s: &str) -> Result<time::Date> {
    boneage::analysis::parse_iso_date(s)
        .with_context(|| format!("{s:?} is not a date (YYYY-MM-DD)"))
}

fn rescore_compare(c: CompareArgs) -> Result<()> {
    use boneage::rescore::compare;
    let comparison = match (&c.from_file, &c.to_file) {
        (Some(a), Some(b)) => {
            let (fv, tv, pairs) = compare::pairs_from_files(
                a,
                b,
                c.from_version.as_deref(),
                c.to_version.as_deref(),
            )?;
            compare::compare(&fv, &tv, pairs)
        }
        _ => {
            let (Some(fv), Some(tv)) = (&c.from_version, &c.to_version) else {
                bail!("give --from-version and --to-version (or --from-file and --to-file)");
            };
            let store = c.db.open()?;
            let filter = boneage::rescore::tenant_filter(&store, c.tenant.as_deref())?;
            let pairs = compare::pairs_from_store(&store, &filter, fv, tv)?;
            compare::compare(fv, tv, pairs)
        }
    };
    if let Some(out) = &c.out {
        compare::write_csv(out, &comparison)?;
    }
    print!("{}", compare::summary_text(&comparison));
    Ok(())
}
