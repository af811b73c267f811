//! Compiles the gRPC definitions in `proto/` (etcd's v3 API and conflux's peer service) with a
//! pure-Rust protobuf compiler, so building needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/etcd/kv.proto", "proto/etcd/rpc.proto", "proto/conflux/peer.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure().bytes(".").compile_fds(descriptors)?;
    Ok(())
}
