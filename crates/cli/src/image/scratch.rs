//! A scratch directory for building or changing an image root: removed when dropped, after
//! unmounting anything still mounted beneath it (a tool that failed half-way may leave its
//! /proc or /dev mounted), so removing it never reaches into the host's /dev or /proc.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub(crate) struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// A new empty directory under $TMPDIR (default /tmp), named `wulf-image-…`.
    pub(crate) fn new() -> Result<Scratch> {
        let dir = tempfile::Builder::new()
            .prefix("wulf-image-")
            .tempdir()
            .context("cannot create a temporary directory")?
            .keep();
        Ok(Scratch { dir })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }
}

/// Mount points at or beneath `dir` in this mount namespace, deepest first.
pub(crate) fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .map(PathBuf::from)
        .filter(|m| m.starts_with(dir))
        .collect();
    out.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    out
}

/// mountinfo writes space, tab, newline and backslash as octal escapes (`\040`).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn unmount(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) == 0 }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for m in mounts_under(&self.dir) {
            if !unmount(&m) {
                eprintln!(
                    "wulf: cannot unmount {}: left {} in place",
                    m.display(),
                    self.dir.display()
                );
                return;
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("wulf: cannot remove {}: {e}", self.dir.display());
        }
    }
}

/// Refuse to run as anyone but root: building and changing images makes device nodes, sets
/// owners and mounts.
pub(crate) fn need_root(what: &str) -> Result<(), crate::fail::Fail> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(crate::fail::Fail::Request(anyhow::anyhow!(
            "{what} needs root (it sets file owners, makes device nodes and mounts): run it as root or with sudo"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn mountinfo_escapes() {
        assert_eq!(super::unescape(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(super::unescape("/plain"), "/plain");
    }
}
