//! `mtml models upload | list | show | rollout | promote | rollback | compare`: the model
//! registry from the command line, on the registry database directly or, with `--server`,
//! through a running instance's `ModelAdmin` service.
//!
//! An upload is validated before anything is stored: the file must load in ONNX Runtime (so a
//! truncated file or something that is not ONNX is refused with the loader's reason), its input
//! must take the features of the feature set it declares, and that must be the set this build
//! computes; a mismatch is refused with the difference spelled out. With `--sha256` the file's
//! checksum must match the one given (a copy damaged on the way is refused).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use mtml_inference::OnnxRuntime;
use mtml_proto::v1::model_admin_client::ModelAdminClient;
use mtml_registry::{Registry, VersionRow, sha256_hex, split_spec};
use mtml_rollout::{Serving, UploadRequest};

use crate::Config;
use crate::app::{Access, open_registry};
use crate::client::{ServerUrl, status_error};
use crate::convert::{rollout_status, row_from_proto};

/// What to upload.
#[derive(Debug, Clone)]
pub struct Upload<'a> {
    /// The ONNX file.
    pub file: &'a Path,
    /// Name to register it under.
    pub name: &'a str,
    /// Training metrics, a JSON object.
    pub metadata: Option<&'a Path>,
    /// The checksum the file must have.
    pub sha256: Option<&'a str>,
}

/// Reads an upload's file and metadata, checking `--sha256` if given.
pub fn read_upload(upload: &Upload<'_>) -> anyhow::Result<UploadRequest> {
    let bytes = std::fs::read(upload.file).with_context(|| format!("reading {}", upload.file.display()))?;
    let sha256 = sha256_hex(&bytes);
    if let Some(expected) = upload.sha256
        && !expected.eq_ignore_ascii_case(&sha256)
    {
        anyhow::bail!("{}: sha256 is {sha256}, not the {expected} given; refusing a damaged copy", upload.file.display());
    }
    let metrics_json = match upload.metadata {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            mtml_rollout::validate::parse_metrics(&text).map_err(|reason| anyhow::anyhow!("{}: {reason}", path.display()))?;
            text
        }
        None => String::new(),
    };
    Ok(UploadRequest {
        name: upload.name.to_owned(),
        bytes,
        metrics_json,
        uploaded_by: std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
        label: upload.file.display().to_string(),
    })
}

/// Validates and registers a model file in the registry directly; returns what was registered.
pub async fn upload(runtime: &OnnxRuntime, registry: &Registry, upload: Upload<'_>) -> anyhow::Result<VersionRow> {
    Ok(mtml_rollout::register(runtime, registry, read_upload(&upload)?).await?)
}

/// Chunk size of a streamed upload from the command line.
pub const UPLOAD_CHUNK: usize = 256 * 1024;

/// Streams an upload to a running instance's `ModelAdmin.UploadModel` in chunks of `chunk`
/// bytes, with its size and sha256 in the header; the server checks both, validates and
/// registers.
pub async fn upload_remote(server: &ServerUrl, upload: Upload<'_>, chunk: usize) -> anyhow::Result<mtml_proto::v1::ModelVersion> {
    use mtml_proto::v1::{UploadHeader, UploadModelChunk, upload_model_chunk::Part};
    let request = read_upload(&upload)?;
    let header = UploadHeader {
        name: request.name.clone(),
        metrics_json: request.metrics_json.clone(),
        sha256: upload.sha256.map_or_else(|| sha256_hex(&request.bytes), str::to_owned),
        size_bytes: request.bytes.len() as u64,
        uploaded_by: request.uploaded_by.clone(),
    };
    let mut chunks = vec![UploadModelChunk { part: Some(Part::Header(header)) }];
    chunks.extend(request.bytes.chunks(chunk.max(1)).map(|c| UploadModelChunk { part: Some(Part::Data(c.to_vec())) }));
    let mut client = admin_client(server).await?;
    Ok(client.upload_model(tokio_stream::iter(chunks)).await.map_err(status_error)?.into_inner())
}

/// A `ModelAdmin` client of a running instance.
pub async fn admin_client(server: &ServerUrl) -> anyhow::Result<ModelAdminClient<mtml_auth::AuthChannel>> {
    Ok(ModelAdminClient::new(server.connect().await?).max_decoding_message_size(8 << 20))
}

/// The registry as a table.
pub fn list_table(rows: &[VersionRow]) -> String {
    let mut out = String::from("name                 version  state        feature set  size      sha256\n");
    for row in rows {
        let _ = writeln!(
            out,
            "{:<20} {:>7}  {:<12} {:<12} {:>8}  {}",
            row.name,
            row.version,
            row.state,
            row.feature_set,
            row.size_bytes,
            &row.sha256[..16.min(row.sha256.len())]
        );
    }
    let _ = writeln!(out, "{} versions", rows.len());
    out
}

/// One version in full.
pub fn show_text(row: &VersionRow) -> String {
    format!(
        "{}:{}\n  state        {}\n  sha256       {}\n  size         {} bytes\n  input        {} (FP32 [batch, {}])\n  output       {} (FP32 [batch, 2])\n  feature set  {}\n  metrics      {}\n  uploaded     by {} at {}\n",
        row.name,
        row.version,
        row.state,
        row.sha256,
        row.size_bytes,
        row.input_name,
        row.features,
        row.output_name,
        row.feature_set,
        row.metrics,
        row.uploaded_by,
        mtml_core::text::utc(row.uploaded_ms)
    )
}

/// Parses `NAME:VERSION` where the version must be a number (rollout and promote).
pub fn parse_version_spec(spec: &str) -> anyhow::Result<(&str, i64)> {
    match split_spec(spec) {
        (name, Some(version)) => {
            let version = version.parse().with_context(|| format!("{spec:?}: the version after ':' must be a number"))?;
            Ok((name, version))
        }
        (_, None) => anyhow::bail!("{spec:?}: give NAME:VERSION, for example fx-direction:2"),
    }
}

/// A rollout status in words.
pub fn rollout_text(status: &mtml_proto::v1::RolloutStatus) -> String {
    let mut out = String::new();
    if !status.message.is_empty() {
        let _ = writeln!(out, "{}", status.message);
    }
    let champion = if status.champion == 0 { "none (the configured model serves)".to_owned() } else { status.champion.to_string() };
    let _ = writeln!(out, "{}: champion {champion}", status.name);
    if status.challenger != 0 {
        let on = if status.route == "canary" {
            let symbols = if status.symbols.is_empty() { "all symbols".to_owned() } else { status.symbols.join(",") };
            format!("canary {}% of chains on {symbols}", status.percent)
        } else {
            "shadow (recorded, never acted on)".to_owned()
        };
        let _ = writeln!(out, "  challenger {} on {on}", status.challenger);
    }
    let _ = writeln!(out, "  registry revision {}", status.revision);
    if status.serving_revision != 0 || !status.serving_error.is_empty() {
        let _ = writeln!(out, "  this instance serves revision {}", status.serving_revision);
    }
    if !status.serving_error.is_empty() {
        let _ = writeln!(out, "  NOT APPLIED here: {}", status.serving_error);
    }
    out
}

/// Where a models command acts: on a running instance (`--server`) or on the registry
/// database of the configuration.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// A running instance's URL (http://host:port): act through its ModelAdmin service,
    /// which applies rollout changes there at once.
    #[arg(long)]
    pub server: Option<ServerUrl>,
    /// TOML configuration (for `registry.url`), when acting on the registry directly.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// `mtml models ...`.
#[derive(Debug, clap::Subcommand)]
pub enum ModelsCommand {
    /// Validate an ONNX model against the feature set and register it as a new version.
    Upload {
        /// The ONNX file.
        file: PathBuf,
        /// Name to register it under.
        #[arg(long)]
        name: String,
        /// Training metrics, a JSON object (models/*.metrics.json).
        #[arg(long)]
        metadata: Option<PathBuf>,
        /// The sha256 the file must have.
        #[arg(long)]
        sha256: Option<String>,
        /// Where it acts.
        #[command(flatten)]
        target: Target,
    },
    /// Every registered version.
    List {
        /// Where it acts.
        #[command(flatten)]
        target: Target,
    },
    /// One version in full, and the model's rollout: NAME (latest), NAME:VERSION,
    /// NAME:champion or NAME:challenger.
    Show {
        /// NAME[:VERSION | :champion | :challenger].
        spec: String,
        /// Where it acts.
        #[command(flatten)]
        target: Target,
    },
    /// Put NAME:VERSION on trial beside the champion: as a shadow (recorded, never acted on) or
    /// a canary (acted on for a share of chains, split by chain id).
    Rollout {
        /// NAME:VERSION.
        spec: String,
        /// Run beside the champion on the same inputs; never acted on.
        #[arg(long, conflicts_with = "canary")]
        shadow: bool,
        /// Act on this percentage of chains (1 to 100).
        #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(1..=100))]
        canary: Option<u8>,
        /// With --canary: only these symbols (comma separated).
        #[arg(long, value_delimiter = ',', requires = "canary")]
        symbols: Vec<String>,
        /// Where it acts.
        #[command(flatten)]
        target: Target,
    },
    /// Make NAME:VERSION the champion.
    Promote {
        /// NAME:VERSION.
        spec: String,
        /// Where it acts.
        #[command(flatten)]
        target: Target,
    },
    /// Undo the latest step of NAME: withdraw its challenger, or without one restore the
    /// champion before the last promote.
    Rollback {
        /// NAME.
        name: String,
        /// Where it acts.
        #[command(flatten)]
        target: Target,
    },
    /// Champion against challenger on a running instance's traffic: agreement, probability
    /// shift, latency, hit rate and signal PnL.
    Compare {
        /// NAME.
        name: String,
        /// The running instance's URL (http://host:port).
        #[arg(long)]
        server: ServerUrl,
        /// The report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Who runs the command, for the registry.
fn actor() -> String {
    std::env::var("USER").unwrap_or_else(|_| "unknown".into())
}

/// Now, UTC epoch ms.
fn now_ms() -> i64 {
    mtml_core::clock::Clock::now_ms(&mtml_core::clock::SystemClock)
}

/// Runs a models command: through a running instance with `--server`, else on the registry.
pub async fn run(command: ModelsCommand) -> anyhow::Result<()> {
    use mtml_proto::v1;
    let local_status = |state: &mtml_registry::RolloutState, message: String| {
        rollout_status(state, message, &Serving::default())
    };
    match command {
        ModelsCommand::Upload { file, name, metadata, sha256, target } => {
            let request = Upload { file: &file, name: &name, metadata: metadata.as_deref(), sha256: sha256.as_deref() };
            let (version, sha, size) = match &target.server {
                Some(server) => {
                    let v = upload_remote(server, request, UPLOAD_CHUNK).await?;
                    (v.version, v.sha256, v.size_bytes)
                }
                None => {
                    let config = Config::load(target.config.as_deref())?;
                    let runtime = crate::runtime::load_runtime(&config)?;
                    let row = upload(&runtime, &open_registry(&config, Access::ReadWrite).await?, request).await?;
                    (row.version.to_string(), row.sha256, u64::try_from(row.size_bytes).unwrap_or(0))
                }
            };
            crate::outln!("registered {name}:{version} (sha256 {sha}, {size} bytes)");
        }
        ModelsCommand::List { target } => {
            let rows = match &target.server {
                Some(server) => {
                    let list = admin_client(server).await?.list_models(v1::ListModelsRequest {}).await.map_err(status_error)?;
                    list.into_inner().models.iter().map(row_from_proto).collect()
                }
                None => open_registry(&Config::load(target.config.as_deref())?, Access::ReadOnly).await?.list().await?,
            };
            crate::out!("{}", list_table(&rows));
        }
        ModelsCommand::Show { spec, target } => {
            let (row, status) = match &target.server {
                Some(server) => {
                    let shown = admin_client(server).await?.show_model(v1::ShowModelRequest { spec }).await.map_err(status_error)?.into_inner();
                    (row_from_proto(&shown.version.unwrap_or_default()), shown.rollout.unwrap_or_default())
                }
                None => {
                    let registry = open_registry(&Config::load(target.config.as_deref())?, Access::ReadOnly).await?;
                    let (name, version) = split_spec(&spec);
                    let version = registry.resolve(name, version).await?;
                    (registry.show(name, Some(version)).await?, local_status(&registry.rollout_state(name).await?, String::new()))
                }
            };
            crate::out!("{}{}", show_text(&row), rollout_text(&status));
        }
        ModelsCommand::Rollout { spec, shadow, canary, symbols, target } => {
            let (name, version) = parse_version_spec(&spec)?;
            let route = match (shadow, canary) {
                (true, None) => mtml_registry::Route::Shadow,
                (false, Some(percent)) => mtml_registry::Route::Canary { percent, symbols },
                _ => anyhow::bail!("say how {spec} takes traffic: --shadow, or --canary PERCENT [--symbols A,B]"),
            };
            let status = match &target.server {
                Some(server) => {
                    let route = match route {
                        mtml_registry::Route::Shadow => v1::rollout_request::Route::Shadow(v1::Shadow {}),
                        mtml_registry::Route::Canary { percent, symbols } => v1::rollout_request::Route::Canary(v1::Canary { percent: u32::from(percent), symbols }),
                    };
                    let request = v1::RolloutRequest { name: name.to_owned(), version, route: Some(route), actor: actor() };
                    admin_client(server).await?.rollout(request).await.map_err(status_error)?.into_inner()
                }
                None => {
                    let config = Config::load(target.config.as_deref())?;
                    let route = match route {
                        mtml_registry::Route::Canary { percent, symbols } => mtml_registry::Route::Canary {
                            percent,
                            symbols: mtml_rollout::canary_symbols(&symbols, &config.pipeline.symbols).map_err(anyhow::Error::msg)?,
                        },
                        shadow => shadow,
                    };
                    let registry = open_registry(&config, Access::ReadOnly).await?;
                    let described = route.to_string();
                    let state = registry.start_rollout(name, version, route, &actor(), now_ms()).await?;
                    local_status(&state, format!("{spec} on {described}"))
                }
            };
            crate::out!("{}", rollout_text(&status));
        }
        ModelsCommand::Promote { spec, target } => {
            let (name, version) = parse_version_spec(&spec)?;
            let status = match &target.server {
                Some(server) => {
                    let request = v1::PromoteRequest { name: name.to_owned(), version, actor: actor() };
                    admin_client(server).await?.promote(request).await.map_err(status_error)?.into_inner()
                }
                None => {
                    let registry = open_registry(&Config::load(target.config.as_deref())?, Access::ReadOnly).await?;
                    local_status(&registry.promote(name, version, &actor(), now_ms()).await?, format!("{spec} is the champion"))
                }
            };
            crate::out!("{}", rollout_text(&status));
        }
        ModelsCommand::Rollback { name, target } => {
            let status = match &target.server {
                Some(server) => {
                    let request = v1::RollbackRequest { name: name.clone(), actor: actor() };
                    admin_client(server).await?.rollback(request).await.map_err(status_error)?.into_inner()
                }
                None => {
                    let registry = open_registry(&Config::load(target.config.as_deref())?, Access::ReadOnly).await?;
                    let (outcome, state) = registry.rollback(&name, &actor(), now_ms()).await?;
                    local_status(&state, outcome.to_string())
                }
            };
            crate::out!("{}", rollout_text(&status));
        }
        ModelsCommand::Compare { name, server, json } => {
            let report = admin_client(&server).await?.compare_models(v1::CompareModelsRequest { name }).await.map_err(status_error)?.into_inner();
            if json {
                crate::outln!("{}", if report.active { report.report_json } else { "null".to_owned() });
            } else {
                crate::out!("{}", report.report_text);
            }
        }
    }
    Ok(())
}
