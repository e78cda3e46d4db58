//! Mapping a requested file name to a file under the TFTP root, never outside it.
//!
//! 1. The name is cleaned lexically: `\` counts as `/`, empty and `.` components are dropped (so
//!    an absolute name is taken relative to the root), and any `..` component is refused.
//! 2. The result is resolved (symlinks followed) and must stay under the canonical root, or be
//!    one of the `allow_outside` paths (Debian's /usr/lib/ipxe/ipxe.efi links to
//!    /boot/ipxe.efi).
//! 3. It must be a regular file. It is opened without following a final symlink, and the file
//!    actually opened is checked again through /proc/self/fd, so a symlink swapped in between
//!    the check and the open cannot lead outside either.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Why a request maps to no file we serve.
#[derive(Debug)]
pub enum Refusal {
    /// No such file (TFTP error 1).
    NotFound,
    /// Outside the root, `..`, not a regular file, or not readable (TFTP error 2); the text
    /// says which, for the log and the client.
    Denied(&'static str),
    /// Something else went wrong reading the disk.
    Io(io::Error),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotFound => write!(f, "file not found"),
            Refusal::Denied(why) => write!(f, "access denied: {why}"),
            Refusal::Io(e) => write!(f, "{e}"),
        }
    }
}

/// The requested name as a path relative to the root.
pub fn clean(name: &[u8]) -> Result<PathBuf, Refusal> {
    let mut out = PathBuf::new();
    for comp in name.split(|b| *b == b'/' || *b == b'\\') {
        match comp {
            b"" | b"." => {}
            b".." => return Err(Refusal::Denied("'..' is not allowed in file names")),
            c => out.push(OsStr::from_bytes(c)),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(Refusal::Denied("no file name"));
    }
    Ok(out)
}

fn io_refusal(e: io::Error) -> Refusal {
    match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => Refusal::NotFound,
        Some(libc::EACCES) | Some(libc::EPERM) => Refusal::Denied("permission denied"),
        Some(libc::ELOOP) => Refusal::Denied("too many symbolic links"),
        _ => Refusal::Io(e),
    }
}

/// Whether canonical path `real` may be served.
fn permitted(real: &Path, root: &Path, allow_outside: &[PathBuf]) -> bool {
    real.starts_with(root)
        || allow_outside.iter().any(|a| {
            a.canonicalize()
                .map(|a| real.starts_with(a))
                .unwrap_or(false)
        })
}

/// An opened file to serve.
#[derive(Debug)]
pub struct Opened {
    pub file: File,
    pub size: u64,
    /// Its canonical path.
    pub path: PathBuf,
}

/// Open requested `name` under `root`.
pub fn open(root: &Path, name: &[u8], allow_outside: &[PathBuf]) -> Result<Opened, Refusal> {
    let rel = clean(name)?;
    let root = root.canonicalize().map_err(Refusal::Io)?;
    let real = root.join(&rel).canonicalize().map_err(io_refusal)?;
    if !permitted(&real, &root, allow_outside) {
        return Err(Refusal::Denied("the file lies outside the TFTP root"));
    }
    // Refuse devices, FIFOs and directories before opening anything.
    let meta = std::fs::metadata(&real).map_err(io_refusal)?;
    if !meta.is_file() {
        return Err(Refusal::Denied("not a regular file"));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(&real)
        .map_err(io_refusal)?;
    let meta = file.metadata().map_err(Refusal::Io)?;
    if !meta.is_file() {
        return Err(Refusal::Denied("not a regular file"));
    }
    // What was opened, for certain (a directory on the way may have been swapped for a link).
    if let Ok(opened) = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())) {
        if !permitted(&opened, &root, allow_outside) {
            return Err(Refusal::Denied("the file lies outside the TFTP root"));
        }
    }
    Ok(Opened {
        file,
        size: meta.len(),
        path: real,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn cleans_names() {
        let ok = |n: &str| clean(n.as_bytes()).unwrap();
        assert_eq!(ok("undionly.kpxe"), PathBuf::from("undionly.kpxe"));
        assert_eq!(ok("/undionly.kpxe"), PathBuf::from("undionly.kpxe"));
        assert_eq!(ok("//a/./b//c"), PathBuf::from("a/b/c"));
        assert_eq!(ok("\\efi\\boot\\x.efi"), PathBuf::from("efi/boot/x.efi"));
        assert_eq!(ok("a..b/..c"), PathBuf::from("a..b/..c"));
        for bad in [
            "..",
            "../x",
            "../../etc/passwd",
            "/../etc/passwd",
            "a/../b",
            "a/..",
            "..\\..\\etc\\passwd",
            "",
            "/",
            "./.",
        ] {
            assert!(
                matches!(clean(bad.as_bytes()), Err(Refusal::Denied(_))),
                "{bad}"
            );
        }
        // Not UTF-8: fine, Linux names are bytes.
        assert_eq!(
            clean(b"a\xff").unwrap().as_os_str().as_bytes(),
            b"a\xff".as_slice()
        );
    }

    #[test]
    fn keeps_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let outside = t.path().join("outside");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(root.join("a"), b"aaa").unwrap();
        std::fs::write(root.join("sub/b"), b"b").unwrap();
        std::fs::write(outside.join("secret"), b"s").unwrap();
        std::fs::write(outside.join("allowed"), b"ok").unwrap();
        symlink("a", root.join("rel-link")).unwrap();
        symlink(root.join("sub/b"), root.join("abs-link-inside")).unwrap();
        symlink("../outside/secret", root.join("out-rel")).unwrap();
        symlink(outside.join("secret"), root.join("out-abs")).unwrap();
        symlink(&outside, root.join("out-dir")).unwrap();
        symlink(outside.join("allowed"), root.join("allowed-link")).unwrap();
        symlink("missing", root.join("dangling")).unwrap();
        symlink("loop", root.join("loop")).unwrap();

        let allow = vec![outside.join("allowed")];
        let get = |n: &str| open(&root, n.as_bytes(), &allow);
        let read = |n: &str| {
            let o = get(n).unwrap_or_else(|e| panic!("{n}: {e}"));
            let mut s = String::new();
            io::Read::read_to_string(&mut &o.file, &mut s).unwrap();
            (s, o.size)
        };
        assert_eq!(read("a"), ("aaa".into(), 3));
        assert_eq!(read("/a"), ("aaa".into(), 3));
        assert_eq!(read("sub/b").0, "b");
        assert_eq!(read("rel-link").0, "aaa");
        assert_eq!(read("abs-link-inside").0, "b");
        assert_eq!(read("allowed-link").0, "ok");
        // The allowed file is what counts, whichever link leads to it.
        assert_eq!(read("out-dir/allowed").0, "ok");

        for denied in [
            "out-rel",
            "out-abs",
            "out-dir/secret",
            "sub",
            "../outside/secret",
            "sub/../../outside/secret",
            "loop",
        ] {
            let r = get(denied);
            assert!(matches!(r, Err(Refusal::Denied(_))), "{denied}: {r:?}");
        }
        for missing in ["nope", "sub/nope", "a/x", "dangling"] {
            let r = get(missing);
            assert!(matches!(r, Err(Refusal::NotFound)), "{missing}: {r:?}");
        }
        // Without the allow list the outside file is refused too.
        assert!(matches!(
            open(&root, b"allowed-link", &[]),
            Err(Refusal::Denied(_))
        ));
        // A FIFO is refused without blocking.
        let fifo = std::ffi::CString::new(root.join("fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        assert!(matches!(get("fifo"), Err(Refusal::Denied(_))));
    }

    #[test]
    fn allows_a_root_that_is_itself_a_symlink() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("real")).unwrap();
        std::fs::write(t.path().join("real/f"), b"x").unwrap();
        symlink(t.path().join("real"), t.path().join("root")).unwrap();
        assert!(open(&t.path().join("root"), b"f", &[]).is_ok());
    }
}
