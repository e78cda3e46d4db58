//! Durability through power loss, not just SIGKILL. A SIGKILL of wulfd leaves the kernel's
//! page cache alone, so a head that never fsynced would pass a kill -9 test. Here wulfd (the
//! embedded redb store) runs inside a QEMU VM whose data directory is an ext4 virtio disk
//! opened with `cache=none` (support/vm_head.rs). From outside, over QEMU's user network
//! (the API forwarded to 127.0.0.1), the real `wulf` CLI creates nodes and uploads images
//! (raw files with `content=@FILE`, and root trees with `--from-dir`) as fast as the VM
//! answers, recording each write whose answer was a success. At a random moment QEMU is
//! SIGKILLed: the guest's RAM, its page cache with it, is gone, as in a power cut. A new VM
//! boots on the same disk, and every write acknowledged in any round so far must be there:
//! each node, each image with the sha256 it had, its file downloadable and hashing to that
//! sha256 (and, for raw files, to the file the test uploaded). Three rounds, each cut at its
//! own random moment (the seed is logged; POWER_LOSS_SEED repeats a run).

#[path = "support/bmc/mod.rs"]
mod bmc;
mod head;
#[path = "support/vm_head.rs"]
mod vm_head;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::{Rng, RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use vm_head::VmHead;

const ROUNDS: usize = 3;
/// Longest a round's writers run before the cut (they stop at the cut).
const WRITE_LIMIT: Duration = Duration::from_secs(90);
/// Most writes of each kind in a round.
const MAX_WRITES: usize = 2000;

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// An image whose upload was acknowledged.
#[derive(Debug, Clone)]
struct Blob {
    name: String,
    /// The sha256 of the file uploaded (raw files), or the one the head listed right after
    /// the upload (`--from-dir`, whose tar the CLI makes), when that answer came.
    sha256: Option<String>,
    size: Option<u64>,
    from_dir: bool,
}

/// What one round acknowledged.
#[derive(Default)]
struct Acked {
    nodes: Vec<String>,
    blobs: Vec<Blob>,
    /// Writes that failed (in flight at the cut, or refused): not acknowledged.
    failed: usize,
}

/// Create nodes one after the other until `stop`; each answered success is acknowledged.
fn node_writer(vm: &VmHead, round: usize, stop: &AtomicBool, out: &Mutex<Acked>) {
    let t = Instant::now();
    for i in 0..MAX_WRITES {
        if stop.load(Ordering::SeqCst) || t.elapsed() > WRITE_LIMIT {
            break;
        }
        let name = format!("pl{round}x{i}");
        let mac = format!("02:5c:{round:02x}:00:{:02x}:{:02x}", i >> 8, i & 0xff);
        let o = vm.wulf(&[
            "node",
            "create",
            &format!("name={name}"),
            &format!("mac={mac}"),
        ]);
        let mut a = out.lock().unwrap();
        if o.status.success() {
            a.nodes.push(name);
        } else {
            a.failed += 1;
        }
    }
}

/// Upload images one after the other until `stop`: raw random files (`content=@FILE`) and,
/// every third, a directory of random files (`--from-dir`).
fn image_writer(
    vm: &VmHead,
    round: usize,
    seed: u64,
    dir: &Path,
    stop: &AtomicBool,
    out: &Mutex<Acked>,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let t = Instant::now();
    for j in 0..MAX_WRITES {
        if stop.load(Ordering::SeqCst) || t.elapsed() > WRITE_LIMIT {
            break;
        }
        let name = format!("plimg{round}x{j}");
        let mut data = vec![0u8; rng.gen_range(32 << 10..384 << 10)];
        rng.fill_bytes(&mut data);
        let from_dir = j % 3 == 2;
        let o = if from_dir {
            let root = dir.join(&name);
            std::fs::create_dir_all(root.join("etc")).unwrap();
            std::fs::write(root.join("etc/payload"), &data).unwrap();
            std::fs::write(root.join("etc/hostname"), format!("{name}\n")).unwrap();
            vm.wulf(&[
                "image",
                "create",
                &format!("name={name}"),
                "--from-dir",
                root.to_str().unwrap(),
            ])
        } else {
            let f = dir.join(format!("{name}.bin"));
            std::fs::write(&f, &data).unwrap();
            vm.wulf(&[
                "image",
                "create",
                &format!("name={name}"),
                &format!("content=@{}", f.display()),
            ])
        };
        if !o.status.success() {
            out.lock().unwrap().failed += 1;
            continue;
        }
        let (sha256, size) = if from_dir {
            // The head's word on what it stored, if it answers before the cut.
            match listed(vm, &name) {
                Some((s, n)) => (Some(s), Some(n)),
                None => (None, None),
            }
        } else {
            (Some(sha256_hex(&data)), Some(data.len() as u64))
        };
        out.lock().unwrap().blobs.push(Blob {
            name,
            sha256,
            size,
            from_dir,
        });
    }
}

/// The sha256 and size the head lists for image `name`'s content.
fn listed(vm: &VmHead, name: &str) -> Option<(String, u64)> {
    let o = vm.wulf(&["image", "-i", name, "ls", "--json"]);
    if !o.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
    let c = &v.as_array()?.first()?["content"];
    Some((c["sha256"].as_str()?.to_string(), c["size"].as_u64()?))
}

/// Every acknowledged write is on the head: each node, each image with its sha256; and every
/// image's file is downloadable and hashes to its sha256 (a test failure otherwise).
fn check(
    vm: &VmHead,
    nodes: &[String],
    blobs: &[Blob],
    dir: &Path,
    downloaded: &mut BTreeSet<String>,
    all: bool,
) {
    let have: std::collections::BTreeSet<String> = vm
        .json(&["node", "ls"])
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["name"].as_str().map(str::to_string))
        .collect();
    let lost: Vec<&String> = nodes.iter().filter(|n| !have.contains(*n)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged nodes are gone after the power cut: {lost:?}\nconsole:\n{}",
        lost.len(),
        nodes.len(),
        vm.console()
    );
    let images: BTreeMap<String, serde_json::Value> = vm
        .json(&["image", "ls"])
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["name"].as_str().unwrap().to_string(), i.clone()))
        .collect();
    for b in blobs {
        let img = images.get(&b.name).unwrap_or_else(|| {
            panic!(
                "acknowledged image {} is gone after the power cut\nconsole:\n{}",
                b.name,
                vm.console()
            )
        });
        let c = &img["content"];
        let sha = c["sha256"]
            .as_str()
            .unwrap_or_else(|| panic!("image {} has no content after the cut: {img}", b.name));
        if let Some(want) = &b.sha256 {
            assert_eq!(sha, want, "image {}: {img}", b.name);
        }
        if let Some(size) = b.size {
            assert_eq!(c["size"].as_u64(), Some(size), "image {}: {img}", b.name);
        }
    }
    // Every image with content, acknowledged or not (an upload in flight at the cut may have
    // been stored without its answer): its file is there and hashes to its sha256. Each new
    // one after its round's cut, every one after the last.
    let dl = dir.join("download");
    for (name, img) in &images {
        let Some(sha) = img["content"]["sha256"].as_str() else {
            continue;
        };
        if !all && !downloaded.insert(name.clone()) {
            continue;
        }
        let code = vm.curl_to(&format!("/image/{name}/files/content"), &dl);
        assert_eq!(code, 200, "downloading image {name}'s file: {img}");
        let got = sha256_hex(&std::fs::read(&dl).unwrap());
        assert_eq!(
            got,
            sha,
            "image {name}'s file is damaged after the power cut (acknowledged: {})",
            blobs.iter().any(|b| b.name == *name)
        );
    }
}

#[test]
fn acknowledged_writes_survive_power_cuts() {
    let started = Instant::now();
    let seed: u64 = std::env::var("POWER_LOSS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("power_loss: seed {seed} (POWER_LOSS_SEED={seed} repeats this run)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let tmp = tempfile::Builder::new()
        .prefix("power-loss")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let dir = tmp.path();
    let files = dir.join("files");
    std::fs::create_dir_all(&files).unwrap();

    let mut vm = VmHead::create(&dir.join("vm"), 256);
    eprintln!(
        "power_loss: first boot, wulfd answering after {:?}",
        started.elapsed()
    );
    let console = vm.console();
    assert!(
        console.contains("/dev/vda /data ext4 rw"),
        "the data disk is not mounted read-write:\n{console}"
    );

    let mut nodes: Vec<String> = Vec::new();
    let mut blobs: Vec<Blob> = Vec::new();
    let mut downloaded = BTreeSet::new();
    for round in 0..ROUNDS {
        let stop = AtomicBool::new(false);
        let acked = Mutex::new(Acked::default());
        let image_seed = rng.next_u64();
        // Cut between 0.5 s and 6 s after the first image and the first node are in.
        let delay = Duration::from_millis(rng.gen_range(500..6000));
        let t_round = Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| node_writer(&vm, round, &stop, &acked));
            s.spawn(|| image_writer(&vm, round, image_seed, &files, &stop, &acked));
            let t = Instant::now();
            loop {
                {
                    let a = acked.lock().unwrap();
                    if !a.nodes.is_empty() && !a.blobs.is_empty() {
                        break;
                    }
                }
                assert!(
                    t.elapsed() < WRITE_LIMIT,
                    "round {round}: no node and image acknowledged within {WRITE_LIMIT:?}\nconsole:\n{}",
                    vm.console()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            std::thread::sleep(delay);
            vm.power_cut();
            stop.store(true, Ordering::SeqCst);
        });
        let a = acked.into_inner().unwrap();
        eprintln!(
            "power_loss: round {round}: cut {:?} into the writes; acknowledged {} nodes and {} \
             images ({} from directories), {} writes unanswered or failed",
            t_round.elapsed(),
            a.nodes.len(),
            a.blobs.len(),
            a.blobs.iter().filter(|b| b.from_dir).count(),
            a.failed
        );
        nodes.extend(a.nodes);
        blobs.extend(a.blobs);

        let took = vm.boot();
        check(
            &vm,
            &nodes,
            &blobs,
            dir,
            &mut downloaded,
            round + 1 == ROUNDS,
        );
        eprintln!(
            "power_loss: round {round}: booted again in {took:?}; all {} acknowledged nodes and \
             all {} acknowledged images found intact",
            nodes.len(),
            blobs.len()
        );
    }
    eprintln!("power_loss: whole test {:?}", started.elapsed());
}
