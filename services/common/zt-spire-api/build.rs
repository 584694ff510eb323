//! Compiles ztlab's SPIRE Entry API protos with `protox` (pure Rust, no system `protoc`) and
//! generates prost messages plus tonic client and server code. An include file ties the two
//! proto packages (`spire.api.types`, `spire.api.server.entry.v1`) into one module tree so
//! that cross-package references (`super::super::...`) resolve.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "proto/spire/api/types/spiffeid.proto",
    "proto/spire/api/types/selector.proto",
    "proto/spire/api/types/federateswith.proto",
    "proto/spire/api/types/status.proto",
    "proto/spire/api/types/entry.proto",
    "proto/spire/api/server/entry/v1/entry.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let include = root.join("proto");
    for p in PROTOS {
        println!("cargo:rerun-if-changed={p}");
    }
    let files: Vec<PathBuf> = PROTOS.iter().map(|p| root.join(p)).collect();
    let fds = protox::compile(&files, [&include])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .include_file("spire_api.rs")
        .emit_rerun_if_changed(false)
        .compile_fds(fds)?;
    Ok(())
}
