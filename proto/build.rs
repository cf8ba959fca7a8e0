//! Generates the Shim gRPC API (`berth.shim.v1`) from `shim.proto`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=shim.proto");
    tonic_prost_build::configure().compile_protos(&["shim.proto"], &["."])?;
    Ok(())
}
