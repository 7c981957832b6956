//! The gRPC contracts between mtml services.
//!
//! Protobuf types stay in this crate and at the service edges: the libraries work on the domain
//! types of `mtml-core` and convert at the boundary (see `convert`).
//!
//! - [`v1`]: package `mtml.v1`, the tick stream (bridge to ingestion), the order stream (execution
//!   to bridge), predictions and model administration.

/// Package `mtml.v1`, generated from `proto/mtml/v1/*.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("mtml.v1");
}

/// Package `inference`: the Open Inference Protocol (KServe v2) as Triton and KServe clients
/// speak it, generated from `proto/inference/grpc_service.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod inference {
    tonic::include_proto!("inference");
}

pub mod convert;
