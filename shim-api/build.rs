fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../proto/shim.proto");
    tonic_prost_build::configure().compile_protos(&["../proto/shim.proto"], &["../proto"])?;
    Ok(())
}
