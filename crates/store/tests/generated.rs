//! The etcd API code checked in under vendor/etcd-client/generated/ is what etcd-client's
//! own build script would generate: this regenerates it from vendor/etcd-client/proto/ with
//! tonic-prost-build and protoc, exactly as upstream's build.rs does, into a temporary
//! directory, and compares file by file.
//!
//! Needs `protoc` (Debian's protobuf-compiler and libprotobuf-dev; `./test.sh` installs
//! them) or `PROTOC` naming one; a missing protoc fails the test. Building wulf needs
//! neither. With `WULF_REGENERATE=1` the test writes the fresh code into generated/ instead
//! (for a new etcd-client release: see vendor/etcd-client/README.md).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The protos upstream's build.rs compiles, relative to the crate.
const PROTOS: &[&str] = &[
    "proto/etcd/api/authpb/auth.proto",
    "proto/etcd/api/etcdserverpb/rpc.proto",
    "proto/etcd/api/mvccpb/kv.proto",
    "proto/etcd/server/etcdserver/api/v3election/v3electionpb/v3election.proto",
    "proto/etcd/server/etcdserver/api/v3lock/v3lockpb/v3lock.proto",
];

/// The generated files src/rpc/pb.rs includes.
const GENERATED: &[&str] = &[
    "authpb.rs",
    "etcdserverpb.rs",
    "mvccpb.rs",
    "v3electionpb.rs",
    "v3lockpb.rs",
];

fn vendored() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../vendor/etcd-client")
}

fn protoc() -> String {
    let protoc = std::env::var("PROTOC").unwrap_or_else(|_| "protoc".to_string());
    match Command::new(&protoc).arg("--version").output() {
        Ok(out) if out.status.success() => protoc,
        Ok(out) => panic!(
            "`{protoc} --version` failed ({}): this test needs a working protoc",
            out.status
        ),
        Err(e) => panic!(
            "cannot run `{protoc}` ({e}): this test needs protoc (Debian: protobuf-compiler \
             and libprotobuf-dev; ./test.sh installs them)"
        ),
    }
}

#[test]
fn checked_in_etcd_api_code_is_what_protoc_generates() {
    let crate_dir = vendored()
        .canonicalize()
        .expect("vendor/etcd-client exists");
    let protoc = protoc();
    let out = tempfile::tempdir().expect("temp dir");
    let protos: Vec<PathBuf> = PROTOS.iter().map(|p| crate_dir.join(p)).collect();
    let include = crate_dir.join("proto");
    // prost-build takes protoc from PROTOC (this binary has one test: no other thread reads
    // the environment).
    std::env::set_var("PROTOC", &protoc);
    // upstream's build.rs, without the `build-server` feature (vendor/etcd-client has none)
    tonic_prost_build::configure()
        .build_server(false)
        .emit_rerun_if_changed(false)
        .out_dir(out.path())
        .compile_protos(&protos, &[include])
        .expect("protoc and tonic-prost-build compile etcd's protos");

    let generated = crate_dir.join("generated");
    if std::env::var_os("WULF_REGENERATE").is_some() {
        for name in GENERATED {
            std::fs::copy(out.path().join(name), generated.join(name))
                .unwrap_or_else(|e| panic!("cannot write generated/{name}: {e}"));
        }
        return;
    }
    let mut differ = Vec::new();
    for name in GENERATED {
        let fresh = std::fs::read_to_string(out.path().join(name))
            .unwrap_or_else(|e| panic!("protoc wrote no {name}: {e}"));
        let checked_in = std::fs::read_to_string(generated.join(name))
            .unwrap_or_else(|e| panic!("vendor/etcd-client/generated/{name}: {e}"));
        if fresh != checked_in {
            differ.push(*name);
        }
    }
    assert!(
        differ.is_empty(),
        "vendor/etcd-client/generated/ differs from what protoc generates from proto/ in {differ:?}: \
         regenerate with `WULF_REGENERATE=1 cargo test --release -p wulf-store --test generated` \
         and review the diff"
    );
}
