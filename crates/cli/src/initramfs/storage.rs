//! The device aliases of the kernel's storage drivers, written to `/etc/wulf/storage.alias`
//! so the init can say which module a disk it cannot see needs (`wulf initramfs build
//! --drivers virtio_blk`), whether or not that module is in the initramfs.

use anyhow::Result;

use super::{module_name, InfoCache, Modules};

/// Where the kernel's block storage drivers live (SATA/SAS/SCSI, NVMe, virtio and other
/// block devices, MMC, Fusion MPT).
const STORAGE_DIRS: &[&str] = &[
    "kernel/drivers/ata/",
    "kernel/drivers/scsi/",
    "kernel/drivers/nvme/",
    "kernel/drivers/block/",
    "kernel/drivers/mmc/",
    "kernel/drivers/message/",
];

/// Only buses the init looks at (`/sys/bus/{pci,virtio}/devices/*/modalias`).
fn wanted(alias: &str) -> bool {
    (alias.starts_with("pci:") || alias.starts_with("virtio:"))
        && !alias.contains(char::is_whitespace)
}

/// "PATTERN MODULE" lines: each storage module's PCI and virtio aliases (from the kernel's
/// modules.alias when it has one, else from each module's own `.modinfo`).
pub(super) fn aliases(mods: &Modules, info: &mut InfoCache) -> Result<String> {
    let storage = |rel: &str| STORAGE_DIRS.iter().any(|d| rel.starts_with(d));
    let mut out = String::new();
    if let Ok(text) = std::fs::read_to_string(mods.dir.join("modules.alias")) {
        for l in text.lines() {
            let mut w = l.split_whitespace();
            if let (Some("alias"), Some(pat), Some(m)) = (w.next(), w.next(), w.next()) {
                let m = m.replace('-', "_");
                if wanted(pat) && mods.paths.get(&m).is_some_and(|r| storage(r)) {
                    out += &format!("{pat} {m}\n");
                }
            }
        }
        return Ok(out);
    }
    let rels: Vec<String> = mods
        .paths
        .values()
        .filter(|r| storage(r))
        .cloned()
        .collect();
    for rel in rels {
        let name = module_name(&rel);
        for (k, v) in info.get(mods, &rel)? {
            if k == "alias" && wanted(v) {
                out += &format!("{v} {name}\n");
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pci_and_virtio_aliases() {
        assert!(wanted("pci:v00001AF4d00001001sv*sd*bc*sc*i*"));
        assert!(wanted("virtio:d00000002v*"));
        assert!(!wanted("scsi:t-0x00*"));
        assert!(!wanted("pci:a b"));
    }
}
