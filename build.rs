//! Compiles `proto/externaljwt.proto` (kube-apiserver's external JWT signer
//! contract) into the tonic server and client the `signer` subcommand uses.
//! `protoc` comes from the `protoc-bin-vendored` crate, so a clean machine
//! needs no system package.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/externaljwt.proto";
    println!("cargo:rerun-if-changed={proto}");
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let well_known = protoc_bin_vendored::include_path()?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_with_config(
            config,
            &[std::path::PathBuf::from(proto)],
            &[std::path::PathBuf::from("proto"), well_known],
        )?;
    Ok(())
}
