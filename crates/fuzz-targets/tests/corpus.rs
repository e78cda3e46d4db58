//! Replays the saved fuzz corpus (fuzz/corpus/TARGET/) and every crash reproducer kept in
//! fuzz/artifacts/TARGET/ through the target bodies, so a regression fails `cargo test`
//! without nightly or cargo-fuzz.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use wulf_fuzz_targets::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of a directory, sorted; none if it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

fn replay(name: &str) {
    let (_, target) = TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no target {name}"));
    let corpus = files(&fuzz_dir().join("corpus").join(name));
    assert!(
        corpus.len() >= 5,
        "fuzz/corpus/{name} has {} files; the saved corpus is missing",
        corpus.len()
    );
    let artifacts = files(&fuzz_dir().join("artifacts").join(name));
    let mut failed = Vec::new();
    for path in corpus.iter().chain(&artifacts) {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if catch_unwind(AssertUnwindSafe(|| target(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{name}: {} of {} inputs fail:\n{}",
        failed.len(),
        corpus.len() + artifacts.len(),
        failed.join("\n")
    );
}

macro_rules! replays {
    ($($name:ident),*) => {
        $(#[test]
        fn $name() {
            replay(stringify!($name));
        })*

        /// Every target has a cargo-fuzz entry and a test here, and nothing else does.
        #[test]
        fn every_target_is_fuzzed_and_replayed() {
            let mut here = vec![$(stringify!($name)),*];
            here.sort();
            let mut listed: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
            listed.sort();
            assert_eq!(here, listed);
            let mut fuzzed: Vec<String> = files(&fuzz_dir().join("fuzz_targets"))
                .iter()
                .filter_map(|p| Some(p.file_stem()?.to_str()?.to_string()))
                .collect();
            fuzzed.sort();
            assert_eq!(fuzzed, listed);
        }
    };
}

replays!(dhcp, tftp, dns, http_head, hostlist, config, status, objects, update);
