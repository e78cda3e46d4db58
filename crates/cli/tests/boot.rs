//! HTTP boot: iPXE scripts from boot configs and attributes, boot files with Range, the
//! pxe+local stage change, fetched with curl from the real wulfd.

mod head;

use head::{write, Head};

fn script(h: &Head, mac: &str) -> String {
    let (code, body) = h.curl(&[&format!("{}/boot/ipxe?mac={mac}", h.http_url())]);
    assert_eq!(code, 200);
    String::from_utf8(body).unwrap()
}

#[test]
fn boot_scripts_and_files() {
    let h = Head::start();
    let kernel: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
    let k = write(h.dir.path(), "vmlinuz", &kernel);
    let i = write(h.dir.path(), "initrd", b"an initramfs");
    let img = write(h.dir.path(), "root.tar", b"a root filesystem");
    h.ok(&[
        "image",
        "create",
        "name=img",
        &format!("content=@{}", img.display()),
    ]);
    h.ok(&[
        "boot",
        "create",
        "name=b1",
        "image=img",
        "cmdline=console=ttyS0 quiet",
        &format!("kernel=@{}", k.display()),
        &format!("initramfs=@{}", i.display()),
    ]);
    h.ok(&["node", "create", "mac=52:54:00:00:01:01"]);
    h.ok(&[
        "node",
        "create",
        "mac=52:54:00:00:01:02",
        "boot_sequence=pxe+local",
    ]);

    // No boot config yet: the node is told why and asks again.
    let s = script(&h, "52:54:00:00:01:01");
    assert!(
        s.starts_with("#!ipxe\n") && s.contains("no _boot_config"),
        "{s}"
    );
    assert!(s.contains("chain --autofree"), "{s}");

    h.ok(&["attrib", "-i", "DefaultAttribs", "set", "_boot_config=b1"]);
    let s = script(&h, "52-54-00-00-01-01");
    let boot = h.json(&["boot", "ls"]);
    let ksha = boot[0]["kernel"]["sha256"].as_str().unwrap().to_string();
    let isha = boot[0]["initramfs"]["sha256"].as_str().unwrap();
    let node = h.json(&["node", "-i", "n0", "ls"]);
    let uid = node[0]["uid"].as_str().unwrap();
    // Firmware fetches over plain HTTP; the node reports over HTTPS on the same port and
    // checks the head against the cluster CA's fingerprint.
    let base = h.http_url();
    assert!(
        s.contains(&format!("wulf.head={} ", h.url()))
            && s.contains(&format!("wulf.ca={} ", h.ca_pin())),
        "{s}"
    );
    assert!(
        s.contains(&format!(
            "kernel --name vmlinuz {base}/boot/file/{ksha} initrd=initramfs console=ttyS0 quiet"
        )),
        "{s}"
    );
    assert!(
        s.contains(&format!("initrd --name initramfs {base}/boot/file/{isha}")),
        "{s}"
    );
    assert!(
        s.contains(&format!("wulf.node={uid}")) && s.contains("wulf.style=rwram"),
        "{s}"
    );
    assert!(
        s.contains("wulf.image_sha256=") && s.contains("wulf.enroll=") && !s.contains("wulf.cred="),
        "{s}"
    );
    assert!(h.log().contains(&format!(
        "Booting node (MAC=52:54:00:00:01:01) as rwram using boot config {}",
        boot[0]["uid"].as_str().unwrap()
    )));

    // The kernel the script names downloads with Range, without a token.
    let (code, body) = h.curl(&["-r", "100-199", &format!("{base}/boot/file/{ksha}")]);
    assert_eq!(code, 206);
    assert_eq!(body, &kernel[100..200]);
    let (code, body) = h.curl(&[&format!("{base}/boot/file/{ksha}")]);
    assert_eq!(code, 200);
    assert_eq!(body, kernel);
    // Boot files over HTTPS too (iPXE builds with TLS).
    let (code, body) = h.curl(&[&format!("{}/boot/file/{ksha}", h.url())]);
    assert_eq!((code, body.len()), (200, kernel.len()));
    // The image holds the cluster's secrets: only to the node, with its boot's token.
    let param = |k: &str| {
        s.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("wulf.{k}=")))
            .unwrap()
            .to_string()
    };
    let (img_sha, token) = (param("image_sha256"), param("enroll"));
    for url in [h.http_url(), h.url()] {
        let (code, _) = h.curl(&[&format!("{url}/boot/file/{img_sha}")]);
        assert_eq!(code, 403, "the image went to a stranger over {url}");
        let (code, body) = h.curl(&[
            "-H",
            &format!("Authorization: Bearer enroll:{uid}:{token}"),
            &format!("{url}/boot/file/{img_sha}"),
        ]);
        assert_eq!((code, body.as_slice()), (200, &b"a root filesystem"[..]));
    }
    let (code, body) = h.curl(&["-r", "-10", &format!("{base}/boot/file/{ksha}")]);
    assert_eq!((code, body.as_slice()), (206, &kernel[kernel.len() - 10..]));
    let (code, _) = h.curl(&["-r", "5000000-", &format!("{base}/boot/file/{ksha}")]);
    assert_eq!(code, 416);
    let (code, _) = h.curl(&[
        "-H",
        &format!("If-None-Match: \"{ksha}\""),
        &format!("{base}/boot/file/{ksha}"),
    ]);
    assert_eq!(code, 304);
    let (code, body) = h.curl(&["-I", &format!("{base}/boot/file/{ksha}")]);
    let head = String::from_utf8_lossy(&body).to_lowercase();
    assert_eq!(code, 200);
    assert!(
        head.contains("content-length: 1000000") && head.contains(&format!("etag: \"{ksha}\"")),
        "{head}"
    );
    // Only boot files are served there.
    let (code, _) = h.curl(&[&format!("{base}/boot/file/{}", "0".repeat(64))]);
    assert_eq!(code, 404);

    // _boot_style overrides, `next` boots the next device, _no_boot ignores the node.
    h.ok(&["node", "-i", "n0", "set", "_boot_style=roram"]);
    assert!(script(&h, "52:54:00:00:01:01").contains("wulf.style=roram"));
    h.ok(&["node", "-i", "n0", "set", "_boot_style=next"]);
    assert!(script(&h, "52:54:00:00:01:01").ends_with("exit\n"));
    h.ok(&["node", "-i", "n0", "clear", "_boot_style"]);
    h.ok(&["node", "-i", "n0", "set", "_no_boot=yes"]);
    assert!(script(&h, "52:54:00:00:01:01").contains("_no_boot"));

    // pxe+local: one PXE boot, then local — even when requests race.
    let url = format!("{base}/boot/ipxe?mac=52:54:00:00:01:02");
    let racers: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let o = std::process::Command::new("curl")
                    .args(["-sS", &url])
                    .output()
                    .unwrap();
                String::from_utf8(o.stdout).unwrap()
            })
        })
        .collect();
    let answers: Vec<String> = racers.into_iter().map(|t| t.join().unwrap()).collect();
    let booted = answers
        .iter()
        .filter(|s| s.contains("kernel --name"))
        .count();
    assert_eq!(booted, 1, "exactly one PXE boot: {answers:?}");
    assert_eq!(answers.iter().filter(|s| s.ends_with("exit\n")).count(), 5);
    assert_eq!(
        h.json(&["node", "-i", "n1", "ls"])[0]["boot_stage"],
        "local"
    );
    // Setting the stage back to pxe allows one more.
    h.ok(&["node", "-i", "n1", "update", "boot_stage=pxe"]);
    assert!(script(&h, "52:54:00:00:01:02").contains("kernel --name"));

    // Unknown MACs, bad MACs, no MAC at all.
    let s = script(&h, "52:54:00:99:99:99");
    assert!(
        s.contains("is not a node of this cluster") && s.contains("sleep"),
        "{s}"
    );
    let (code, _) = h.curl(&[&format!("{base}/boot/ipxe?mac=nonsense")]);
    assert_eq!(code, 400);
    let (code, body) = h.curl(&[&format!("{base}/boot/ipxe")]);
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&body).contains("${net0/mac}"));
}
