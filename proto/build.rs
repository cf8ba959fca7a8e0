//! Generates the Shim gRPC API (`berth.shim.v1`) from `shim.proto` and berth's own API
//! (`berth.v1`, served by berthd beside CRI) from `berth.proto`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=shim.proto");
    println!("cargo:rerun-if-changed=berth.proto");
    tonic_prost_build::configure().compile_protos(&["shim.proto", "berth.proto"], &["."])?;
    Ok(())
}
