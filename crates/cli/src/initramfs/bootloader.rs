//! The boot loader a `disked` node installs on its disk: extlinux (Debian: apt-get install
//! extlinux), the program and the 440-byte MBR boot code it goes with. Both come from the
//! machine that builds the initramfs, with the libraries extlinux needs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Where the program goes in the initramfs.
pub const PROGRAM: &str = "usr/sbin/extlinux";
/// Where the MBR boot code goes in the initramfs.
pub const MBR: &str = "usr/lib/wulf/mbr.bin";

const PROGRAMS: &[&str] = &["/usr/bin/extlinux", "/usr/sbin/extlinux", "/sbin/extlinux"];
const MBRS: &[&str] = &[
    "/usr/lib/EXTLINUX/mbr.bin",
    "/usr/lib/syslinux/mbr/mbr.bin",
    "/usr/share/syslinux/mbr.bin",
];

/// extlinux and its MBR code on the machine that builds the initramfs.
pub struct Found {
    pub program: PathBuf,
    pub mbr: PathBuf,
}

fn first(list: &[&str]) -> Option<PathBuf> {
    list.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// extlinux on this machine, or None (the initramfs then says, when a disked node boots it,
/// that it cannot install).
pub fn find() -> Option<Found> {
    Some(Found {
        program: first(PROGRAMS)?,
        mbr: first(MBRS)?,
    })
}

/// The MBR code: exactly 440 bytes (the rest of sector 0 is the partition table).
pub fn read_mbr(p: &Path) -> Result<Vec<u8>> {
    let data = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
    anyhow::ensure!(
        data.len() == 440,
        "{} is {} bytes, not the 440 of MBR boot code",
        p.display(),
        data.len()
    );
    Ok(data)
}
