//! `wulf image create --from-dir/--from-tar` and `wulf initramfs build` against a real head:
//! what they upload, and that bad input gets a clear error, exit 1 (2 for usage), and
//! changes nothing. (Booting what they make is crates/cli/tests/e2e_boot.rs.)

mod head;

use std::path::Path;
use std::process::Command;

use head::{write, Head};

fn tar_list(archive: &Path) -> Vec<String> {
    let out = Command::new("tar")
        .arg("-tvzf")
        .arg(archive)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn images_from_directories_and_tarballs() {
    let h = Head::start();
    let d = h.dir.path();
    let root = d.join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let prog = write(&root.join("bin"), "prog", b"#!/bin/sh\necho hi\n");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::os::unix::fs::symlink("prog", root.join("bin/sh")).unwrap();
    write(&root.join("etc"), "hostname", b"node\n");

    let out = h.ok(&[
        "image",
        "create",
        "name=small",
        "description=test root",
        "--from-dir",
        root.to_str().unwrap(),
    ]);
    assert_eq!(out.trim(), "Created image small");
    let img = h.json(&["image", "ls", "small"]);
    assert_eq!(img[0]["description"], "test root");
    let dl = d.join("small.tar.gz");
    h.ok(&[
        "image",
        "-i",
        "small",
        "download",
        "content",
        "-o",
        dl.to_str().unwrap(),
    ]);
    let list = tar_list(&dl);
    let line = |name: &str| {
        list.iter()
            .find(|l| l.split_whitespace().nth(5) == Some(name))
            .unwrap_or_else(|| panic!("{name} is not in the archive: {list:?}"))
            .clone()
    };
    assert!(line("bin/prog").starts_with("-rwsr-xr-x"), "{list:?}");
    assert!(line("bin/sh").starts_with('l') && line("bin/sh").ends_with("-> prog"));
    assert!(line("etc").starts_with("drwx"));
    assert!(line("etc/hostname").starts_with("-rw"));

    // The same name again replaces the content of the existing image.
    write(&root.join("etc"), "motd", b"hello\n");
    let out = h.ok(&[
        "image",
        "create",
        "name=small",
        "--from-dir",
        root.to_str().unwrap(),
    ]);
    assert_eq!(out.trim(), "Updated image small");
    assert_eq!(h.json(&["image", "ls"]).as_array().unwrap().len(), 1);

    // A plain tar is gzip'd on the way; a tar.gz goes as it is.
    let plain = d.join("root.tar");
    let st = Command::new("tar")
        .arg("-cf")
        .arg(&plain)
        .arg("-C")
        .arg(&root)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    h.ok(&[
        "image",
        "create",
        "name=fromtar",
        "--from-tar",
        plain.to_str().unwrap(),
    ]);
    let dl2 = d.join("fromtar.tar.gz");
    h.ok(&[
        "image",
        "-i",
        "fromtar",
        "download",
        "content",
        "-o",
        dl2.to_str().unwrap(),
    ]);
    assert!(tar_list(&dl2).iter().any(|l| l.ends_with("./etc/motd")));
    h.ok(&[
        "image",
        "create",
        "name=fromtgz",
        "--from-tar",
        dl.to_str().unwrap(),
    ]);
    let a = h.json(&["image", "ls", "small"])[0]["content"]["sha256"].clone();
    let b = h.json(&["image", "ls", "fromtgz"])[0]["content"]["sha256"].clone();
    assert_ne!(a, b, "small was updated since it was downloaded");
    let orig = Command::new("sha256sum").arg(&dl).output().unwrap();
    assert!(String::from_utf8_lossy(&orig.stdout).starts_with(b.as_str().unwrap()));
}

#[test]
fn bad_image_input_changes_nothing() {
    let h = Head::start();
    let d = h.dir.path();
    let before = h.snapshot();
    let missing = d.join("missing");
    let e = h.fails(
        1,
        &[
            "image",
            "create",
            "name=x",
            "--from-dir",
            missing.to_str().unwrap(),
        ],
    );
    assert!(e.contains("cannot read") && e.contains("missing"), "{e}");
    let file = write(d, "notes.txt", b"just text\n");
    let xz = write(d, "root.tar.xz", b"\xfd7zXZ\x00\x00rest");
    for (flag, path, want) in [
        ("--from-dir", &file, &["is not a directory"][..]),
        (
            "--from-tar",
            &file,
            &["not a tar archive", ".tar or .tar.gz"][..],
        ),
        ("--from-tar", &xz, &["xz-compressed"][..]),
    ] {
        let e = h.fails(
            1,
            &["image", "create", "name=x", flag, path.to_str().unwrap()],
        );
        assert!(
            want.iter().all(|w| e.contains(w)),
            "{flag} {}: {e}",
            path.display()
        );
    }
    let e = h.fails(
        2,
        &[
            "image",
            "create",
            "name=x",
            "--from-tar",
            xz.to_str().unwrap(),
            "--from-dir",
            d.to_str().unwrap(),
        ],
    );
    assert!(e.contains("cannot be used with"), "{e}");
    let e = h.fails(2, &["image", "create", "--from-dir", d.to_str().unwrap()]);
    assert!(e.contains("name=NAME"), "{e}");
    let e = h.fails(
        2,
        &[
            "node",
            "create",
            "name=x",
            "--from-dir",
            d.to_str().unwrap(),
        ],
    );
    assert!(e.contains("images only"), "{e}");
    assert_eq!(h.snapshot(), before);
}

#[test]
fn initramfs_build_refuses_bad_input() {
    let h = Head::start();
    let d = h.dir.path();
    let out = d.join("initrd.img");
    let o = out.to_str().unwrap();
    let empty = d.join("emptyroot");
    std::fs::create_dir_all(&empty).unwrap();
    let e = h.fails(
        1,
        &[
            "initramfs",
            "build",
            "--kernel-version",
            "9.9.9-test",
            "--root",
            empty.to_str().unwrap(),
            "-o",
            o,
        ],
    );
    assert!(
        e.contains("no kernel modules for 9.9.9-test") && e.contains("lib/modules/9.9.9-test"),
        "{e}"
    );

    // A modules tree (the modules are not read before the other checks pass).
    let kroot = d.join("kroot");
    let kdir = kroot.join("lib/modules/9.9.9-test/kernel/drivers/net");
    std::fs::create_dir_all(&kdir).unwrap();
    write(&kdir, "e1000.ko", b"not really a module");
    let base = [
        "initramfs",
        "build",
        "--kernel-version",
        "9.9.9-test",
        "--root",
        kroot.to_str().unwrap(),
        "-o",
        o,
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter()
            .chain(extra.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let args = with(&["--busybox", "/bin/sh"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let e = h.fails(1, &args);
    assert!(
        e.contains("dynamically linked") && e.contains("busybox-static"),
        "{e}"
    );
    let args = with(&["--busybox", d.join("nope").to_str().unwrap()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let e = h.fails(1, &args);
    assert!(e.contains("cannot read busybox"), "{e}");
    // The checks past busybox's need the static busybox and the agent.
    assert!(
        Path::new("/bin/busybox").is_file(),
        "/bin/busybox is missing: ./test.sh installs busybox-static"
    );
    let agent = head::wulf_bin().with_file_name("wulf-agent");
    assert!(
        agent.is_file(),
        "{} is missing: cargo build --release --workspace",
        agent.display()
    );
    {
        let args = with(&["--agent", d.join("no-agent").to_str().unwrap()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let e = h.fails(1, &args);
        assert!(e.contains("--agent") && e.contains("no such file"), "{e}");
    }
    {
        let args = with(&["--no-default-drivers", "--drivers", "nosuch"]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let e = h.fails(1, &args);
        assert!(
            e.contains("--drivers nosuch: kernel 9.9.9-test has no module nosuch"),
            "{e}"
        );
        let args = with(&["--no-default-drivers"]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let e = h.fails(1, &args);
        assert!(e.contains("no drivers"), "{e}");
    }
    let args = with(&["--boot", "NoSuchBoot"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let e = h.fails(1, &args);
    assert!(e.contains("NoSuchBoot"), "{e}");
    let e = h.fails(2, &["initramfs", "build", "-o", o]);
    assert!(e.contains("--kernel-version"), "{e}");
    assert!(!out.exists(), "nothing is written on bad input");
}
