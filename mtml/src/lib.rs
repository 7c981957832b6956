//! The mtml application: configuration, the composition of the services, their gRPC adapters,
//! and the commands. The work itself lives in the libraries (bridge, ingestion, feature-store,
//! inference, rollout, decision, pipeline, journal, registry); this crate builds them from
//! settings and wires them together.
//!
//! - [`config`]: typed settings from defaults, TOML and `MTML_*` variables, all problems at once.
//! - [`runtime`]: ONNX Runtime and the models a configuration serves.
//! - [`stores`]: the feature stores of `[features]` and their writers.
//! - [`app`]: starts bridge, tick transport, pipeline and gRPC API in one process, step by step
//!   (or the pipeline alone, `mtml pipeline`).
//! - [`bridge_app`]: a bridge on its own (`mtml bridge`), its pipeline in another process.
//! - [`services`]: the gRPC services and the one place errors become `tonic::Status`.
//! - [`remote`]: execution reaching a bridge over gRPC.
//! - [`client`]: naming a running instance on the command line (`--server URL`), with timeouts.
//! - [`convert`]: domain types to and from their protobuf messages.
//! - [`commands`]: replay, export, the journal, the trading state, models, the EA installer.

pub mod app;
pub mod bridge_app;
pub mod client;
pub mod tls;
pub mod commands;
pub mod config;
pub mod convert;
pub mod remote;
pub mod runtime;
pub mod services;
pub mod stores;

pub use app::{App, Listeners};
pub use commands::replay::{ReplayOptions, replay};
pub use commands::report::Report;
pub use config::{Config, ConfigError, Transport};
