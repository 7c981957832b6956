//! The mtml application: configuration, the composition of the services, and the commands.
//!
//! - [`config`]: typed settings from defaults, TOML and `MTML_*` variables, all problems at once.
//! - [`admin`]: the `mtml.v1.Admin` service (trading state of a running instance).
//! - [`app`]: starts bridge, tick transport, pipeline and gRPC API in one process.
//! - [`pipeline`]: the tick-to-order path on its dedicated thread.
//! - [`featurize`]: ingestion plus features, shared by the pipeline and the export.
//! - [`prediction`]: the `mtml.v1.Prediction` gRPC service.
//! - [`stores`], [`features_api`]: the feature stores and the `mtml.v1.Features` gRPC service.
//! - [`oip`]: the Open Inference Protocol (`inference.GRPCInferenceService`, KServe v2).
//! - [`remote`]: execution reaching a bridge over gRPC.
//! - [`replay`], [`export`], [`report`]: `mtml replay` and `mtml features export`.
//! - [`journal_view`]: `mtml positions | orders | pnl`, reading the journal.
//! - [`models_cmd`]: `mtml models ...`, the model registry from the command line.
//! - [`model_admin`]: the `mtml.v1.ModelAdmin` service (streamed upload, rollout, compare).
//! - [`rollout`]: champion and challenger on the tick path, their comparison, and the
//!   follower that applies the registry's rollout changes.
//! - [`ea_install`]: `mtml ea install`, the expert advisor into MetaTrader data folders.

pub mod admin;
pub mod app;
pub mod config;
pub mod ea_install;
pub mod export;
pub mod features_api;
pub mod featurize;
pub mod journal_view;
pub mod model_admin;
pub mod models_cmd;
pub mod oip;
pub mod pipeline;
pub mod prediction;
pub mod remote;
pub mod replay;
pub mod rollout;
pub mod report;
pub mod stores;

pub use app::{App, Listeners};
pub use config::{Config, ConfigError, Transport};
pub use replay::{ReplayOptions, replay};
pub use report::Report;
