//! Compiles proto/wagelink/v1/*.proto with the pure-Rust `protox` compiler (no protoc needed),
//! generates prost messages and tonic clients/servers, and keeps the encoded descriptor set in
//! OUT_DIR so the gateway can serve gRPC reflection.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let dir = root.join("wagelink/v1");
    let mut files: Vec<String> = std::fs::read_dir(&dir)?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "proto"))
        .map(|path| {
            format!(
                "wagelink/v1/{}",
                path.file_name().unwrap_or_default().to_string_lossy()
            )
        })
        .collect();
    files.sort();
    println!("cargo:rerun-if-changed={}", dir.display());
    for file in &files {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }

    let fds = protox::compile(&files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("wagelink_descriptor.bin"), fds.encode_to_vec())?;
    // Type names let code ask a message for its full protobuf name (the envelope's payload_type).
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // RPCs not built yet answer UNIMPLEMENTED by default (the gateway's `unbuilt` layer
        // answers first, naming the capability).
        .generate_default_stubs(true)
        .compile_fds_with_config(fds, config)?;
    Ok(())
}
