//! The hardware inventory sent in the first report: CPU, RAM, DMI strings, NICs and disks.
//!
//! Gathered once per agent start, so it may read a few more files than a report does.

use std::fs;
use std::path::Path;

use wulf_api::status::{Disk, Hardware, Nic};

use crate::gather::{read_trimmed, Paths};

/// Gather the inventory. `ram_total` comes from the same `/proc/meminfo` read as reports.
pub fn gather(paths: &Paths, ram_total: u64) -> Hardware {
    let (cpu_model, mut cpus) = fs::read_to_string(paths.proc_dir.join("cpuinfo"))
        .map(|t| parse_cpuinfo(&t))
        .unwrap_or_default();
    if cpus == 0 {
        cpus = crate::gather::online_cpus();
    }
    let dmi = paths.sys_dir.join("class/dmi/id");
    let dmi_field = |name: &str| read_trimmed(&dmi.join(name)).unwrap_or_default();
    Hardware {
        cpu_model,
        cpus,
        ram_total,
        system_vendor: dmi_field("sys_vendor"),
        product_name: dmi_field("product_name"),
        board_vendor: dmi_field("board_vendor"),
        board_name: dmi_field("board_name"),
        bios_vendor: dmi_field("bios_vendor"),
        bios_version: dmi_field("bios_version"),
        nics: nics(&paths.sys_dir.join("class/net")),
        disks: disks(&paths.sys_dir.join("block")),
    }
}

/// (CPU model, number of `processor` entries) from `/proc/cpuinfo`. The model is the first
/// `model name` (x86), else `Model`, `cpu model` or `cpu` (other architectures).
pub fn parse_cpuinfo(text: &str) -> (String, u32) {
    let mut cpus = 0u32;
    let mut model: Option<(usize, String)> = None;
    const KEYS: [&str; 4] = ["model name", "Model", "cpu model", "cpu"];
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let key = key.trim();
        if key == "processor" {
            cpus += 1;
        } else if let Some(rank) = KEYS.iter().position(|k| *k == key) {
            let value = value.trim();
            let better = match &model {
                None => true,
                Some((r, _)) => rank < *r,
            };
            if !value.is_empty() && better {
                model = Some((rank, value.to_string()));
            }
        }
    }
    (model.map(|(_, m)| m).unwrap_or_default(), cpus)
}

fn sorted_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Network interfaces from `/sys/class/net`, except `lo`.
pub fn nics(dir: &Path) -> Vec<Nic> {
    sorted_entries(dir)
        .into_iter()
        .filter(|n| n != "lo")
        .map(|name| {
            let d = dir.join(&name);
            Nic {
                mac: read_trimmed(&d.join("address")).unwrap_or_default(),
                // Unreadable (EINVAL) when the link is down; -1 when the driver does not know.
                speed_mbps: read_trimmed(&d.join("speed"))
                    .and_then(|s| s.parse::<u32>().ok())
                    .filter(|&s| s > 0),
                mtu: read_trimmed(&d.join("mtu"))
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
                name,
            }
        })
        .collect()
}

/// True for block devices that are not disks: loop, ram and zram devices.
pub fn is_pseudo_disk(name: &str) -> bool {
    ["loop", "ram", "zram"].iter().any(|p| {
        name.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// Disks from `/sys/block`, except loop, ram and zram devices.
pub fn disks(dir: &Path) -> Vec<Disk> {
    sorted_entries(dir)
        .into_iter()
        .filter(|n| !is_pseudo_disk(n))
        .map(|name| {
            let d = dir.join(&name);
            Disk {
                // `size` is in 512-byte sectors whatever the device's block size.
                bytes: read_trimmed(&d.join("size"))
                    .and_then(|s| s.parse::<u64>().ok())
                    .map_or(0, |s| s.saturating_mul(512)),
                model: read_trimmed(&d.join("device/model")).unwrap_or_default(),
                rotational: read_trimmed(&d.join("queue/rotational")).as_deref() == Some("1"),
                name,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, s: &str) {
        if let Some(d) = p.parent() {
            fs::create_dir_all(d).expect("mkdir");
        }
        fs::write(p, s).expect("write");
    }

    #[test]
    fn cpuinfo_parsing() {
        let x86 = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel\t\t: 167\n\
                   model name\t: Intel(R) Xeon(R) Gold\n\nprocessor\t: 1\n\
                   model name\t: Intel(R) Xeon(R) Gold\n";
        assert_eq!(parse_cpuinfo(x86), ("Intel(R) Xeon(R) Gold".into(), 2));
        let power = "processor\t: 0\ncpu\t\t: POWER9, altivec supported\n";
        assert_eq!(
            parse_cpuinfo(power),
            ("POWER9, altivec supported".into(), 1)
        );
        let arm = "processor\t: 0\nBogoMIPS\t: 108\n\nModel\t\t: Raspberry Pi 4\n";
        assert_eq!(parse_cpuinfo(arm), ("Raspberry Pi 4".into(), 1));
        assert_eq!(parse_cpuinfo(""), (String::new(), 0));
    }

    #[test]
    fn pseudo_disks() {
        for n in ["loop0", "loop12", "ram0", "zram0", "zram"] {
            assert!(is_pseudo_disk(n), "{n}");
        }
        for n in ["sda", "vda", "nvme0n1", "md0", "dm-0", "ramdisk_x", "loopy"] {
            assert!(!is_pseudo_disk(n), "{n}");
        }
    }

    #[test]
    fn fake_sys_tree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let sys = root.join("sys");
        write(
            &root.join("proc/cpuinfo"),
            "processor : 0\nmodel name : Test CPU\nprocessor : 1\nmodel name : Test CPU\n\
             processor : 2\nmodel name : Test CPU\n",
        );
        write(&sys.join("class/dmi/id/sys_vendor"), "Acme\n");
        write(&sys.join("class/dmi/id/product_name"), "Node 9000\n");
        write(&sys.join("class/dmi/id/bios_version"), "1.2.3\n");
        // board_vendor, board_name, bios_vendor missing.
        write(&sys.join("class/net/lo/address"), "00:00:00:00:00:00\n");
        write(&sys.join("class/net/lo/mtu"), "65536\n");
        write(&sys.join("class/net/eth0/address"), "52:54:00:00:00:01\n");
        write(&sys.join("class/net/eth0/mtu"), "9000\n");
        write(&sys.join("class/net/eth0/speed"), "10000\n");
        write(&sys.join("class/net/eth1/address"), "52:54:00:00:00:02\n");
        write(&sys.join("class/net/eth1/mtu"), "1500\n");
        write(&sys.join("class/net/eth1/speed"), "-1\n");
        write(&sys.join("class/net/ib0/address"), "80:00:00:00\n");
        write(&sys.join("class/net/ib0/mtu"), "2044\n");
        write(&sys.join("block/sda/size"), "1000\n");
        write(&sys.join("block/sda/device/model"), "SuperDisk  \n");
        write(&sys.join("block/sda/queue/rotational"), "1\n");
        write(&sys.join("block/nvme0n1/size"), "2048\n");
        write(&sys.join("block/nvme0n1/queue/rotational"), "0\n");
        write(&sys.join("block/loop0/size"), "8\n");
        write(&sys.join("block/zram0/size"), "8\n");
        write(&sys.join("block/ram1/size"), "8\n");
        let hw = gather(
            &Paths {
                proc_dir: root.join("proc"),
                sys_dir: sys.clone(),
            },
            4096,
        );
        assert_eq!(hw.cpu_model, "Test CPU");
        assert_eq!(hw.cpus, 3);
        assert_eq!(hw.ram_total, 4096);
        assert_eq!(hw.system_vendor, "Acme");
        assert_eq!(hw.product_name, "Node 9000");
        assert_eq!(hw.bios_version, "1.2.3");
        assert_eq!(
            (&*hw.board_vendor, &*hw.board_name, &*hw.bios_vendor),
            ("", "", "")
        );
        assert_eq!(
            hw.nics,
            vec![
                Nic {
                    name: "eth0".into(),
                    mac: "52:54:00:00:00:01".into(),
                    speed_mbps: Some(10000),
                    mtu: 9000
                },
                Nic {
                    name: "eth1".into(),
                    mac: "52:54:00:00:00:02".into(),
                    speed_mbps: None,
                    mtu: 1500
                },
                Nic {
                    name: "ib0".into(),
                    mac: "80:00:00:00".into(),
                    speed_mbps: None,
                    mtu: 2044
                },
            ]
        );
        assert_eq!(
            hw.disks,
            vec![
                Disk {
                    name: "nvme0n1".into(),
                    bytes: 2048 * 512,
                    model: String::new(),
                    rotational: false
                },
                Disk {
                    name: "sda".into(),
                    bytes: 1000 * 512,
                    model: "SuperDisk".into(),
                    rotational: true
                },
            ]
        );
    }

    #[test]
    fn real_machine_inventory() {
        let hw = gather(&Paths::default(), 1);
        // /proc/cpuinfo lists the online CPUs.
        assert_eq!(hw.cpus, crate::gather::online_cpus());
        assert!(!hw.nics.iter().any(|n| n.name == "lo"));
        let mut expected_nics: Vec<String> = fs::read_dir("/sys/class/net")
            .expect("read /sys/class/net")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n != "lo")
            .collect();
        expected_nics.sort();
        assert_eq!(
            hw.nics.iter().map(|n| n.name.clone()).collect::<Vec<_>>(),
            expected_nics
        );
        for n in &hw.nics {
            let mtu: u32 = fs::read_to_string(format!("/sys/class/net/{}/mtu", n.name))
                .expect("mtu")
                .trim()
                .parse()
                .expect("mtu number");
            assert_eq!(n.mtu, mtu);
        }
        for d in &hw.disks {
            assert!(!is_pseudo_disk(&d.name));
            let sectors: u64 = fs::read_to_string(format!("/sys/block/{}/size", d.name))
                .expect("size")
                .trim()
                .parse()
                .expect("size number");
            assert_eq!(d.bytes, sectors * 512);
        }
        let all_disks = fs::read_dir("/sys/block").map(|d| d.count()).unwrap_or(0);
        let real = fs::read_dir("/sys/block")
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| !is_pseudo_disk(n))
                    .count()
            })
            .unwrap_or(0);
        assert!(real <= all_disks);
        assert_eq!(hw.disks.len(), real);
    }
}
