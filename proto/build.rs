//! Generates the Rust code of every `.proto` under `mediator/` with tonic-prost-build, from
//! descriptors compiled by protox (pure Rust: no `protoc` binary is needed or used).
use std::path::PathBuf;

use anyhow::Context;
use prost::Message;

const PROTOS: &[&str] = &[
    "mediator/dataplane/v1/dataplane.proto",
    "mediator/control/v1/control.proto",
    "mediator/control/v1/calls.proto",
];

fn main() -> anyhow::Result<()> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(PROTOS, ["."]).context("compiling the .proto files with protox")?;
    let out = PathBuf::from(std::env::var("OUT_DIR").context("OUT_DIR")?);
    // Kept for gRPC server reflection.
    std::fs::write(out.join("mediator_descriptor.bin"), fds.encode_to_vec())
        .context("writing the descriptor set")?;
    // Clients and servers only with the `grpc` feature: without it the code needs prost alone.
    let grpc = std::env::var_os("CARGO_FEATURE_GRPC").is_some();
    tonic_prost_build::configure()
        // SRTP keys: a Debug of their own that never prints the bytes (src/lib.rs).
        .skip_debug(["mediator.dataplane.v1.SrtpSpec"])
        .build_client(grpc)
        .build_server(grpc)
        .compile_fds(fds)
        .context("generating Rust code from the descriptors")?;
    Ok(())
}
