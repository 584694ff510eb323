//! Compiles proto/ztlab/entry/v1/entry.proto with protox (no system protoc) and tonic.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/ztlab/entry/v1/entry.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("entry_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure().build_server(true).build_client(true).compile_fds(fds)?;
    Ok(())
}
