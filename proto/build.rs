//! Compiles the mtml.v1 contracts and the Open Inference Protocol (`inference`) with the protoc shipped by `protoc-bin-vendored`, so a fresh
//! machine needs no protoc installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    let protos = [
        "proto/mtml/v1/common.proto",
        "proto/mtml/v1/ingestion.proto",
        "proto/mtml/v1/execution.proto",
        "proto/mtml/v1/prediction.proto",
        "proto/mtml/v1/features.proto",
        "proto/mtml/v1/models.proto",
        "proto/mtml/v1/admin.proto",
        "proto/mtml/v1/chains.proto",
        "proto/inference/grpc_service.proto",
    ];
    tonic_prost_build::configure().compile_with_config(config, &protos, &["proto"])?;
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
