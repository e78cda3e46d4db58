//! `wulf image build NAME --rpm RELEASEVER`: dnf installs into the image's root from the
//! repositories given, none of the build host's. No RHEL-like repository is reachable from
//! the test machines, so the test makes one: rpmbuild builds a package holding a static
//! busybox and an init, createrepo_c indexes it, and the package is signed with a throwaway
//! GnuPG key (rpmsign). Then, against a real head:
//!
//! - with the key: dnf checks the signature and installs; the image holds busybox, the init
//!   and the rpm database in /var/lib/rpm (where RHEL-like systems keep it), and none of
//!   the build's own files;
//! - without `--gpgkey` (and without `--no-gpgcheck`): refused before dnf runs, exit 2;
//! - an unsigned package with the key: dnf refuses it, the command exits 1 with dnf's reason,
//!   no image is created;
//! - `--no-gpgcheck` installs the unsigned one.
//!
//! Needs root, dnf, createrepo_c, rpmbuild and gpg (./test.sh installs them:
//! test.d/images.sh). About 30 s.

mod head;

use std::path::Path;
use std::process::Command;

use head::{need_program, run_ok, Head};

/// Build package `name` (busybox as /bin/busybox, /bin/sh, an init saying `text`) into
/// `top`/RPMS.
fn build_rpm(top: &Path, name: &str, text: &str) {
    std::fs::create_dir_all(top).unwrap();
    let spec = top.join(format!("{name}.spec"));
    std::fs::write(
        &spec,
        format!(
            "Name: {name}\nVersion: 1\nRelease: 1\nSummary: a busybox root for wulf's tests\n\
             License: GPL-2.0-only\nAutoReqProv: no\n\n%description\nA static busybox and an init.\n\n\
             %install\nmkdir -p %{{buildroot}}/bin %{{buildroot}}/sbin\n\
             cp /bin/busybox %{{buildroot}}/bin/busybox\nln -s busybox %{{buildroot}}/bin/sh\n\
             printf '#!/bin/sh\\necho {text}\\n' > %{{buildroot}}/sbin/init\n\
             chmod 755 %{{buildroot}}/sbin/init\n\n\
             %files\n/bin/busybox\n/bin/sh\n/sbin/init\n"
        ),
    )
    .unwrap();
    run_ok(
        Command::new("rpmbuild")
            .arg("-bb")
            .arg("--define")
            .arg(format!("_topdir {}", top.display()))
            .arg("--define")
            .arg("__strip /bin/true")
            .arg("--define")
            .arg("debug_package %{nil}")
            .arg(&spec),
    );
}

fn rpms(top: &Path) -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    for arch in std::fs::read_dir(top.join("RPMS")).unwrap() {
        for f in std::fs::read_dir(arch.unwrap().path()).unwrap() {
            v.push(f.unwrap().path());
        }
    }
    v
}

#[test]
fn rpm_images_from_a_repository_with_signatures_checked() {
    for p in ["dnf", "createrepo_c", "rpmbuild", "rpmsign", "gpg", "tar"] {
        need_program(p, "test.d/images.sh");
    }
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test builds images as root"
    );
    let h = Head::start();
    let d = h.dir.path().to_path_buf();

    // A throwaway signing key, its public half for --gpgkey.
    let gnupg = d.join("gnupg");
    std::fs::create_dir_all(&gnupg).unwrap();
    let gpg = |args: &[&str]| {
        run_ok(
            Command::new("gpg")
                .env("GNUPGHOME", &gnupg)
                .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
                .args(args),
        )
    };
    gpg(&[
        "--quick-gen-key",
        "wulf test <test@wulf>",
        "rsa2048",
        "sign",
        "never",
    ]);
    let key = d.join("RPM-GPG-KEY-wulf-test");
    std::fs::write(&key, gpg(&["--armor", "--export", "test@wulf"])).unwrap();

    // Repository "signed": one signed package; "unsigned": one unsigned.
    let (signed, unsigned) = (d.join("signed"), d.join("unsigned"));
    build_rpm(&signed, "wulf-rpm-root", "rpm image: signed");
    build_rpm(&unsigned, "wulf-rpm-root", "rpm image: unsigned");
    for f in rpms(&signed) {
        run_ok(Command::new("rpmsign")
            .env("GNUPGHOME", &gnupg)
            .arg("--define")
            .arg("_gpg_name test@wulf")
            .arg("--define")
            .arg("__gpg /usr/bin/gpg")
            .arg("--define")
            .arg("__gpg_sign_cmd %{__gpg} --batch --pinentry-mode loopback --passphrase '' --no-armor -u %{_gpg_name} -sbo %{__signature_filename} %{__plaintext_filename}")
            .arg("--addsign")
            .arg(&f));
    }
    for repo in [&signed, &unsigned] {
        run_ok(Command::new("createrepo_c").arg(repo.join("RPMS")));
    }
    let url = |p: &Path| format!("file://{}", p.join("RPMS").display());
    let key_url = format!("file://{}", key.display());

    // Refused before anything runs: no packages, a bad release, a bad URL, no key.
    let rev = h.revision();
    let signed_url = url(&signed);
    let refused: [(&[&str], &str); 5] = [
        (&["--rpm", "9"], "--rpm installs exactly --packages"),
        (
            &["--rpm", "9 x", "--packages", "bash"],
            "is not a release version",
        ),
        (
            &["--rpm", "9", "--packages", "bash", "--repo", "ftp://x"],
            "'ftp://x' is not an http://, https:// or file:/ URL",
        ),
        (
            &["--rpm", "9", "--packages", "bash", "--repo", &signed_url],
            "--gpgkey",
        ),
        (
            &["--rpm", "9", "--debian", "bookworm", "--packages", "bash"],
            "cannot be used with",
        ),
    ];
    for (args, want) in refused {
        let mut all = vec!["image", "build", "r"];
        all.extend_from_slice(args);
        let e = h.fails(2, &all);
        assert!(e.contains(want), "{args:?}: {e}");
    }
    assert_eq!(h.revision(), rev, "a refused build changed something");

    // The signed package with its key: installed, signature checked.
    let out = h.ok(&[
        "image",
        "build",
        "rpmimg",
        "--rpm",
        "9",
        "--packages",
        "wulf-rpm-root",
        "--repo",
        &url(&signed),
        "--gpgkey",
        &key_url,
    ]);
    eprintln!("{out}");
    let list = h.image_listing("rpmimg");
    for want in ["bin/busybox", "bin/sh", "sbin/init"] {
        assert!(
            list.iter().any(|l| l == want),
            "the image lacks {want}: {list:?}"
        );
    }
    // The rpm database where the image's own rpm looks, and nothing of the build's.
    assert!(
        list.iter()
            .any(|l| l == "var/lib/rpm/rpmdb.sqlite" || l == "var/lib/rpm/Packages"),
        "the image has no rpm database in /var/lib/rpm: {list:?}"
    );
    assert!(
        !list
            .iter()
            .any(|l| l.starts_with("tmp/") || l.starts_with("var/cache/dnf/")),
        "the image holds the build's files: {list:?}"
    );

    // The unsigned package with the key: dnf refuses it; no image is created.
    let rev = h.revision();
    let e = h.fails(
        1,
        &[
            "image",
            "build",
            "rpmbad",
            "--rpm",
            "9",
            "--packages",
            "wulf-rpm-root",
            "--repo",
            &url(&unsigned),
            "--gpgkey",
            &key_url,
        ],
    );
    assert!(e.contains("dnf failed"), "{e}");
    assert!(
        e.to_lowercase().contains("gpg") || e.contains("signature") || e.contains("not signed"),
        "{e}"
    );
    assert_eq!(h.revision(), rev, "a failed build changed something");
    assert!(h
        .json(&["image", "ls"])
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["name"] != "rpmbad"));

    // --no-gpgcheck: installed.
    h.ok(&[
        "image",
        "build",
        "rpmbad",
        "--rpm",
        "9",
        "--packages",
        "wulf-rpm-root",
        "--repo",
        &url(&unsigned),
        "--no-gpgcheck",
    ]);
    assert!(h.image_listing("rpmbad").iter().any(|l| l == "sbin/init"));
}
