//! `wulf image build` (Debian with mmdebstrap, and OCI images made by umoci), `wulf image
//! exec` (a new version with its parent, or nothing on failure), `wulf image ls -l` and
//! `wulf boot create NAME --from-image IMAGE`, against a real head; bad input exits 1 or 2
//! and changes nothing.
//!
//! Needs root, network access to deb.debian.org and mmdebstrap and umoci (./test.sh installs
//! them: test.d/images.sh). The two tests run side by side: one bookworm minbase bootstrap
//! (about a minute; the test about 100 s) and one with linux-image-amd64 (three to four
//! minutes, most of it the bootstrap and the kernel package's own initramfs; the test about
//! four to five minutes).

mod head;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use head::{need_program, run_ok, write, wulf_bin, Head};
use serde_json::Value;

fn content_sha(h: &Head, name: &str) -> String {
    let img = h.json(&["image", "ls", name]);
    img[0]["content"]["sha256"].as_str().unwrap().to_string()
}

fn umoci(args: &[&str]) {
    run_ok(Command::new("umoci").args(args));
}

/// An OCI layout made by umoci: layer 1 (umoci repack) holds a/keep, a/gone, d/x, d/y;
/// layer 2 (a tar added as it is with umoci raw add-layer) removes a/gone (`.wh.gone`),
/// empties d (`.wh..wh..opq`) and adds d/z.
fn oci_layout(dir: &Path) -> std::path::PathBuf {
    let layout = dir.join("oci");
    let l = layout.to_str().unwrap();
    let tagged = format!("{l}:t");
    umoci(&["init", "--layout", l]);
    umoci(&["new", "--image", &tagged]);
    let bundle = dir.join("bundle");
    umoci(&["unpack", "--image", &tagged, bundle.to_str().unwrap()]);
    let rootfs = bundle.join("rootfs");
    for d in ["a", "d", "etc"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    write(&rootfs.join("a"), "keep", b"kept\n");
    write(&rootfs.join("a"), "gone", b"removed by layer 2\n");
    write(&rootfs.join("d"), "x", b"hidden by the opaque whiteout\n");
    write(&rootfs.join("d"), "y", b"hidden too\n");
    write(&rootfs.join("etc"), "os-release", b"ID=test\n");
    umoci(&["repack", "--image", &tagged, bundle.to_str().unwrap()]);
    let layer2 = dir.join("layer2");
    std::fs::create_dir_all(layer2.join("a")).unwrap();
    std::fs::create_dir_all(layer2.join("d")).unwrap();
    write(&layer2.join("a"), ".wh.gone", b"");
    write(&layer2.join("d"), ".wh..wh..opq", b"");
    write(&layer2.join("d"), "z", b"layer 2\n");
    let tar2 = dir.join("layer2.tar");
    run_ok(
        Command::new("tar")
            .arg("-cf")
            .arg(&tar2)
            .arg("-C")
            .arg(&layer2)
            .args(["a", "d"]),
    );
    umoci(&[
        "raw",
        "add-layer",
        "--image",
        &tagged,
        tar2.to_str().unwrap(),
    ]);
    layout
}

#[test]
fn build_import_exec_and_list_images() {
    for p in ["mmdebstrap", "umoci", "unshare", "tar"] {
        need_program(p, "test.d/images.sh");
    }
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test builds images as root: run it as root"
    );
    let started = Instant::now();
    let h = Head::start();
    let d = h.dir.path();

    // Bad input: exit 2, a clear message, nothing changed.
    let rev = h.revision();
    let e = h.fails(2, &["image", "build", "x", "--debian", "buster"]);
    assert!(e.contains("unknown Debian suite 'buster'"), "{e}");
    assert!(e.contains("bookworm or trixie"), "{e}");
    let e = h.fails(
        2,
        &["image", "build", "x", "--from-container", "/no/such/oci"],
    );
    assert!(e.contains("/no/such/oci: no such file or directory"), "{e}");
    let e = h.fails(
        2,
        &[
            "image",
            "build",
            "x",
            "--debian",
            "bookworm",
            "--packages",
            "Bad Name",
        ],
    );
    assert!(e.contains("'Bad Name' is not a Debian package name"), "{e}");
    let e = h.fails(2, &["image", "build", "x"]);
    assert!(e.contains("--debian"), "{e}");
    let e = h.fails(2, &["image", "exec", "ghost", "--", "true"]);
    assert!(e.contains("no image 'ghost'"), "{e}");
    let e = h.fails(2, &["image", "shell", "ghost"]);
    assert!(e.contains("no image 'ghost'"), "{e}");
    let e = h.fails(2, &["image", "exec", "ghost"]);
    assert!(e.contains("exec needs a command"), "{e}");
    let e = h.fails(2, &["node", "build", "x", "--debian", "bookworm"]);
    assert!(e.contains("build"), "{e}");
    assert_eq!(h.revision(), rev, "refused requests changed something");
    assert_eq!(h.json(&["image", "ls"]), serde_json::json!([]));

    // Debian bookworm, minbase, with the agent beside wulf.
    let t = Instant::now();
    let out = h.ok(&[
        "image",
        "build",
        "deb",
        "--debian",
        "bookworm",
        "--include-agent",
    ]);
    assert_eq!(out.trim(), "Created image deb");
    let build_secs = t.elapsed().as_secs();
    let files = h.image_listing("deb");
    for f in [
        "etc/debian_version",
        "usr/sbin/wulf-agent",
        "usr/bin/sh",
        "dev/null",
    ] {
        assert!(files.iter().any(|p| p == f), "{f} is not in the image");
    }
    let agent = wulf_bin().with_file_name("wulf-agent");
    assert!(agent.is_file());

    // The OCI layout, as a directory and as a tarball.
    let layout = oci_layout(d);
    let out = h.ok(&[
        "image",
        "build",
        "oci",
        "--from-container",
        layout.to_str().unwrap(),
    ]);
    assert_eq!(out.trim(), "Created image oci");
    let files = h.image_listing("oci");
    for f in ["a/keep", "d/z", "etc/os-release"] {
        assert!(
            files.iter().any(|p| p == f),
            "{f} is not in the image: {files:?}"
        );
    }
    for f in ["a/gone", "d/x", "d/y"] {
        assert!(
            !files.iter().any(|p| p == f),
            "{f} was whited out: {files:?}"
        );
    }
    assert!(!files.iter().any(|p| p.contains(".wh.")), "{files:?}");
    let tarball = d.join("oci.tar");
    run_ok(
        Command::new("tar")
            .arg("-cf")
            .arg(&tarball)
            .arg("-C")
            .arg(&layout)
            .arg("."),
    );
    h.ok(&[
        "image",
        "build",
        "oci2",
        "--from-container",
        tarball.to_str().unwrap(),
    ]);
    assert_eq!(h.image_listing("oci2"), files);
    // A layout whose blob was damaged is refused and changes nothing.
    let blobs = layout.join("blobs/sha256");
    let biggest = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| p.metadata().unwrap().len())
        .unwrap();
    std::fs::write(&biggest, b"not a layer").unwrap();
    let rev = h.revision();
    let e = h.fails(
        1,
        &[
            "image",
            "build",
            "oci",
            "--from-container",
            layout.to_str().unwrap(),
        ],
    );
    assert!(e.contains("is damaged"), "{e}");
    assert_eq!(h.revision(), rev);

    // exec: exit 0 makes a new version whose parent is the old content.
    let v1 = content_sha(&h, "deb");
    let t = Instant::now();
    let out = h.ok(&[
        "image",
        "exec",
        "deb",
        "--",
        "sh",
        "-c",
        "echo made >/root/made && cat /proc/1/cmdline | tr '\\0' ' ' && echo && cat /etc/resolv.conf",
    ]);
    let exec_secs = t.elapsed().as_secs();
    assert!(
        out.contains("wulf-image"),
        "PID 1 is not the namespace's: {out}"
    );
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    assert!(out.contains(host_resolv.trim()), "{out}");
    assert!(out.contains("Saved image deb: content"), "{out}");
    let img = h.json(&["image", "ls", "deb"]);
    let v2 = img[0]["content"]["sha256"].as_str().unwrap().to_string();
    assert_ne!(v1, v2);
    assert_eq!(img[0]["parent_sha256"], Value::String(v1.clone()));
    assert!(h.image_listing("deb").iter().any(|p| p == "root/made"));
    // The parent's file is kept in the store while the image names it.
    assert!(h.data().join("blobs/sha256").join(&v1).is_file());

    // exec: exit 1 changes nothing.
    let rev = h.revision();
    let e = h.fails(
        1,
        &[
            "image",
            "exec",
            "deb",
            "--",
            "sh",
            "-c",
            "touch /root/junk; exit 1",
        ],
    );
    assert!(
        e.contains("sh exited with 1: image 'deb' is unchanged"),
        "{e}"
    );
    assert_eq!(h.revision(), rev);
    assert_eq!(content_sha(&h, "deb"), v2);
    // -i NAME works as well (shell-style commands through sh -c).
    h.ok(&[
        "image",
        "-i",
        "deb",
        "exec",
        "--",
        "test",
        "-s",
        "/root/made",
    ]);
    let v3 = content_sha(&h, "deb");
    assert_eq!(
        h.json(&["image", "ls", "deb"])[0]["parent_sha256"],
        Value::String(v2.clone())
    );

    // ls -l: size, parent and the boot configs that use it.
    h.ok(&["boot", "create", "name=b1", "image=deb"]);
    h.ok(&["boot", "create", "name=b2", "image=deb"]);
    let out = h.ok(&["image", "ls", "-l", "deb"]);
    assert!(out.contains(&format!("content: {}", &v3[..12])), "{out}");
    assert!(out.contains("size: "), "{out}");
    assert!(
        out.contains(&format!("parent_sha256: {}", &v2[..12])),
        "{out}"
    );
    assert!(out.contains("used_by: b1,b2"), "{out}");
    let out = h.ok(&["image", "ls", "-l", "oci"]);
    assert!(
        out.contains("used_by: \n") || out.contains("used_by:\n"),
        "{out}"
    );
    assert!(!out.contains("parent_sha256"), "{out}");
    let out = h.ok(&["image", "ls", "-t"]);
    assert!(out.contains("USED_BY"), "{out}");

    eprintln!(
        "image_build: {} s in all (bootstrap and pack {build_secs} s, one exec {exec_secs} s)",
        started.elapsed().as_secs()
    );
}

/// The paths under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let list = run_ok(
        Command::new("find")
            .arg(".")
            .arg("-type")
            .arg("f")
            .current_dir(dir),
    );
    let mut v: Vec<String> = list
        .lines()
        .map(|l| l.trim_start_matches("./").to_string())
        .collect();
    v.sort();
    v
}

/// Image `name`'s content unpacked under `dir`.
fn unpack_image(h: &Head, name: &str, dir: &Path) {
    let dl = h.dir.path().join(format!("{name}.tar.gz"));
    h.ok(&[
        "image",
        "-i",
        name,
        "download",
        "content",
        "-o",
        dl.to_str().unwrap(),
    ]);
    std::fs::create_dir_all(dir).unwrap();
    run_ok(Command::new("tar").arg("-xzf").arg(&dl).arg("-C").arg(dir));
    std::fs::remove_file(&dl).unwrap();
}

/// `wulf boot create NAME --from-image IMAGE`: the kernel is the image's own file, the
/// initramfs holds the image's modules for that kernel; an image without a kernel, with
/// several, or unknown is refused and nothing is created.
#[test]
fn boot_config_from_an_image() {
    for p in ["mmdebstrap", "unshare", "tar", "cpio", "busybox"] {
        need_program(p, "test.d/images.sh");
    }
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test builds images as root: run it as root"
    );
    let started = Instant::now();
    let h = Head::start();
    let d = h.dir.path();

    // Images that cannot give a boot config: none, one without a kernel, one with two.
    let plain = d.join("plain");
    std::fs::create_dir_all(plain.join("etc")).unwrap();
    write(&plain.join("etc"), "os-release", b"ID=test\n");
    h.ok(&[
        "image",
        "create",
        "name=nokernel",
        "--from-dir",
        plain.to_str().unwrap(),
    ]);
    let two = d.join("two");
    std::fs::create_dir_all(two.join("boot")).unwrap();
    write(&two.join("boot"), "vmlinuz-1.0-test", b"not a kernel\n");
    write(
        &two.join("boot"),
        "vmlinuz-2.0-test",
        b"not a kernel either\n",
    );
    h.ok(&[
        "image",
        "create",
        "name=two",
        "--from-dir",
        two.to_str().unwrap(),
    ]);
    let rev = h.revision();
    // Each refused `boot create`: (exit code, arguments, what the error says).
    let refusals: &[(i32, &[&str], &[&str])] = &[
        (2, &["b", "--from-image", "ghost"], &["no image 'ghost'"]),
        (
            1,
            &["b", "--from-image", "nokernel"],
            &["image 'nokernel' has no kernel"],
        ),
        (
            2,
            &["b", "--from-image", "two"],
            &["several kernels (1.0-test, 2.0-test)", "--kernel-version"],
        ),
        (
            2,
            &["b", "--from-image", "two", "--kernel-version", "3.0"],
            &["no /boot/vmlinuz-3.0"],
        ),
        (
            1,
            &["b", "--from-image", "two", "--kernel-version", "1.0-test"],
            &["no kernel modules for 1.0-test"],
        ),
        (
            2,
            &["b", "--from-image", "two", "kernel=@/etc/hostname"],
            &["set by --from-image"],
        ),
        (2, &["--from-image", "two"], &["name the boot config"]),
    ];
    for (code, args, says) in refusals {
        let mut all = vec!["boot", "create"];
        all.extend_from_slice(args);
        let e = h.fails(*code, &all);
        for want in *says {
            assert!(e.contains(want), "{args:?}: {e}");
        }
    }
    let e = h.fails(2, &["image", "create", "x", "--from-image", "two"]);
    assert!(e.contains("boot configs only"), "{e}");
    assert_eq!(h.revision(), rev, "refused requests changed something");
    assert_eq!(h.json(&["boot", "ls"]), serde_json::json!([]));

    // Debian with its kernel package.
    let t = Instant::now();
    h.ok(&[
        "image",
        "build",
        "kern",
        "--debian",
        "bookworm",
        "--packages",
        "linux-image-amd64",
    ]);
    let build_secs = t.elapsed().as_secs();
    let img = d.join("kern-root");
    unpack_image(&h, "kern", &img);
    let vmlinuz: Vec<String> = std::fs::read_dir(img.join("boot"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("vmlinuz-"))
        .collect();
    assert_eq!(vmlinuz.len(), 1, "{vmlinuz:?}");
    let ver = vmlinuz[0].trim_start_matches("vmlinuz-").to_string();

    // A driver this kernel does not have: refused, nothing created.
    let rev = h.revision();
    let e = h.fails(
        1,
        &[
            "boot",
            "create",
            "kb",
            "--from-image",
            "kern",
            "--drivers",
            "nosuchmod",
        ],
    );
    assert!(
        e.contains(&format!("kernel {ver} has no module nosuchmod")),
        "{e}"
    );
    assert_eq!(h.revision(), rev);

    let t = Instant::now();
    let out = h.ok(&[
        "boot",
        "create",
        "kb",
        "--from-image",
        "kern",
        "--drivers",
        "ext4",
        "cmdline=console=ttyS0",
    ]);
    let create_secs = t.elapsed().as_secs();
    assert!(
        out.contains(&format!(
            "Created boot config kb: image kern, kernel vmlinuz-{ver}"
        )),
        "{out}"
    );
    let boot = h.json(&["boot", "ls", "kb"]);
    assert_eq!(boot[0]["image"], "kern");
    assert_eq!(boot[0]["cmdline"], "console=ttyS0");
    let e = h.fails(1, &["boot", "create", "kb", "--from-image", "kern"]);
    assert!(e.contains("boot config 'kb' exists already"), "{e}");

    // The kernel is the image's, byte for byte.
    let k = d.join("kb-kernel");
    h.ok(&[
        "boot",
        "-i",
        "kb",
        "download",
        "kernel",
        "-o",
        k.to_str().unwrap(),
    ]);
    assert!(
        std::fs::read(&k).unwrap() == std::fs::read(img.join("boot").join(&vmlinuz[0])).unwrap(),
        "the boot config's kernel is not the image's {}",
        vmlinuz[0]
    );
    // The initramfs holds the image's modules of that kernel: each one is the image's file.
    let i = d.join("kb-initramfs");
    h.ok(&[
        "boot",
        "-i",
        "kb",
        "download",
        "initramfs",
        "-o",
        i.to_str().unwrap(),
    ]);
    let ird = d.join("kb-initramfs.d");
    std::fs::create_dir_all(&ird).unwrap();
    run_ok(
        Command::new("sh")
            .arg("-c")
            .arg(format!("gzip -dc {} | cpio -idm --quiet", i.display()))
            .current_dir(&ird),
    );
    assert_eq!(
        std::fs::read_to_string(ird.join("etc/wulf/kernel-version"))
            .unwrap()
            .trim(),
        ver
    );
    let kmods = ird.join("lib/modules").join(&ver);
    let mods: Vec<String> = tree(&kmods)
        .into_iter()
        .filter(|m| m.ends_with(".ko"))
        .collect();
    for want in ["e1000.ko", "virtio_net.ko", "ext4.ko"] {
        assert!(
            mods.iter().any(|m| m.ends_with(&format!("/{want}"))),
            "no {want} in {mods:?}"
        );
    }
    let image_mods = img.join("usr/lib/modules").join(&ver);
    for m in &mods {
        let theirs = ["", ".xz", ".zst"]
            .iter()
            .map(|x| image_mods.join(format!("{m}{x}")))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{m} is not among the image's modules for {ver}"));
        let theirs = if theirs.extension().is_some_and(|x| x == "ko") {
            std::fs::read(&theirs).unwrap()
        } else {
            let tool = if theirs.extension().is_some_and(|x| x == "xz") {
                "xz"
            } else {
                "zstd"
            };
            Command::new(tool)
                .arg("-dc")
                .arg(&theirs)
                .output()
                .unwrap()
                .stdout
        };
        assert!(
            std::fs::read(kmods.join(m)).unwrap() == theirs,
            "{m} differs from the image's"
        );
    }
    let drivers = std::fs::read_to_string(ird.join("etc/wulf/drivers")).unwrap();
    assert!(drivers.lines().any(|l| l == "ext4"), "{drivers}");
    // ls -l names the boot config as the image's user.
    let out = h.ok(&["image", "ls", "-l", "kern"]);
    assert!(out.contains("used_by: kb"), "{out}");

    let packed = h.json(&["image", "ls", "kern"])[0]["content"]["size"]
        .as_u64()
        .unwrap_or(0);
    eprintln!(
        "boot_config_from_an_image: {} s in all (bootstrap with the kernel {build_secs} s, {} MiB packed; boot create {create_secs} s)",
        started.elapsed().as_secs(),
        packed >> 20
    );
}
