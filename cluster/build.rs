//! Compiles the fabric protocol (pure Rust: protox, no system `protoc`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = "../proto/proto";
    println!("cargo:rerun-if-changed={dir}/fabric.proto");
    let fds = protox::compile(["fabric.proto"], [dir])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
