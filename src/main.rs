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
    /// Model commands.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
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
    /// Largest request body in bytes (larger → 413).
    #[arg(long, env = "BONEAGE_MAX_BODY_BYTES", default_value_t = 64 * 1024 * 1024)]
    max_body_bytes: usize,
}

#[derive(Args)]
struct AnalyzeArgs {
    /// PNG or JPEG radiograph.
    file: PathBuf,
    /// male or female.
    #[arg(long)]
    sex: String,
    /// Chronological age in months.
    #[arg(long = "age-months")]
    age_months: Option<String>,
    #[command(flatten)]
    model: ModelArgs,
}

fn load_model(args: &ModelArgs) -> Result<TractModel> {
    Ok(match &args.model {
        Some(p) => TractModel::load(p)?,
        None => TractModel::embedded()?,
    })
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Analyze(args) => {
            let model = load_model(&args.model)?;
            let analyzer = Analyzer::new(Arc::new(model), DecodeLimits::default());
            let bytes = std::fs::read(&args.file)
                .with_context(|| format!("reading {}", args.file.display()))?;
            let fields = RawFields {
                sex: Some(args.sex),
                chronological_age_months: args.age_months,
                ..Default::default()
            };
            let req = fields
                .into_request()
                .map_err(|e| anyhow::anyhow!("{} ({})", e, e.code()))?;
            match analyzer.analyze(&bytes, &req) {
                Ok(report) => {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                    Ok(())
                }
                Err(e) => bail!("{}: {}", e.code(), e),
            }
        }
        Command::Model {
            command: ModelCommand::Info(args),
        } => {
            let model = load_model(&args)?;
            println!("{}", serde_json::to_string_pretty(model.info())?);
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
        .init();
    let model = load_model(&args.model).context("loading the model")?;
    let info = model.info().clone();
    tracing::info!(name = %info.name, version = %info.version, sha256 = %info.sha256, source = %info.source, "model loaded");
    let analyzer = Arc::new(Analyzer::new(Arc::new(model), DecodeLimits::default()));
    let mut options = ServerOptions {
        queue_depth: args.queue_depth,
        max_body_bytes: args.max_body_bytes,
        ..Default::default()
    };
    if let Some(w) = args.workers {
        options.workers = w;
    }
    let workers = options.workers;
    let state = AppState::new(analyzer, options)?;
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
