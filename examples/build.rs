//! Compiles `proto/prices.proto` for the gRPC example: messages, client and server by
//! tonic's codegen, and the file descriptor set that server reflection answers from.
//!
//! The parser is protox, a protobuf compiler written in Rust, so building needs no
//! `protoc` on the machine.

use std::path::PathBuf;

use protox::prost::Message;

const PROTO: &str = "proto/prices.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO}");
    let descriptors = protox::compile([PROTO], ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("prices_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
