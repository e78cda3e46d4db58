//! A writer of "newc" cpio archives, the format the kernel unpacks an initramfs from. Entries
//! are described, not copied from disk, so device nodes (`/dev/console`) and root ownership
//! need no privileges on the machine that builds the archive.

use std::collections::BTreeSet;
use std::io::{self, Write};

pub const S_IFDIR: u32 = 0o040000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFLNK: u32 = 0o120000;
pub const S_IFCHR: u32 = 0o020000;

pub struct Writer<W: Write> {
    out: W,
    ino: u32,
    dirs: BTreeSet<String>,
    written: u64,
    /// Bytes of file contents (what the archive unpacks to, about).
    pub content_bytes: u64,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Self {
        Writer {
            out,
            ino: 0,
            dirs: BTreeSet::new(),
            written: 0,
            content_bytes: 0,
        }
    }

    fn pad(&mut self) -> io::Result<()> {
        let n = (4 - (self.written % 4) as usize) % 4;
        self.put(&[0u8; 3][..n])
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.written += b.len() as u64;
        Ok(())
    }

    fn header(&mut self, name: &str, mode: u32, size: u32, rdev: (u32, u32)) -> io::Result<()> {
        if name.is_empty() || name.starts_with('/') || name.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad archive path '{name}'"),
            ));
        }
        self.ino += 1;
        let nlink = if mode & S_IFDIR == S_IFDIR { 2 } else { 1 };
        let fields = [
            self.ino,
            mode,
            0, // uid: root
            0, // gid: root
            nlink,
            0, // mtime: fixed, so the same inputs make the same archive
            size,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        let mut h = String::with_capacity(110);
        h.push_str("070701");
        for f in fields {
            h.push_str(&format!("{f:08x}"));
        }
        self.put(h.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()
    }

    /// Create `path`'s parent directories (mode 0755) that are not in the archive yet.
    fn parents(&mut self, path: &str) -> io::Result<()> {
        let mut at = 0;
        while let Some(i) = path[at..].find('/') {
            let dir = path[..at + i].to_string();
            at += i + 1;
            if !self.dirs.contains(&dir) {
                self.header(&dir, S_IFDIR | 0o755, 0, (0, 0))?;
                self.dirs.insert(dir);
            }
        }
        Ok(())
    }

    pub fn dir(&mut self, path: &str, perm: u32) -> io::Result<()> {
        self.parents(path)?;
        if self.dirs.insert(path.to_string()) {
            self.header(path, S_IFDIR | perm, 0, (0, 0))?;
        }
        Ok(())
    }

    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        let size = u32::try_from(data.len()).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("{path} is over 4 GiB"))
        })?;
        self.parents(path)?;
        self.header(path, S_IFREG | perm, size, (0, 0))?;
        self.put(data)?;
        self.content_bytes += data.len() as u64;
        self.pad()
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        self.parents(path)?;
        self.header(path, S_IFLNK | 0o777, target.len() as u32, (0, 0))?;
        self.put(target.as_bytes())?;
        self.pad()
    }

    pub fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.parents(path)?;
        self.header(path, S_IFCHR | perm, 0, (major, minor))
    }

    /// Write the trailer and hand back the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.header("TRAILER!!!", 0, 0, (0, 0))?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_layout() {
        let mut w = Writer::new(Vec::new());
        w.file("etc/x", 0o644, b"hello").unwrap();
        w.char_dev("dev/console", 0o600, 5, 1).unwrap();
        w.symlink("bin/sh", "busybox").unwrap();
        let out = w.finish().unwrap();
        assert_eq!(out.len() % 4, 0);
        let s = String::from_utf8_lossy(&out);
        // The parent directory comes first, then the file, each 4-byte aligned.
        assert!(s.starts_with("070701"));
        assert_eq!(&out[110..114], b"etc\0");
        let second = 116; // 110 + "etc\0" = 114, padded to 116
        assert_eq!(&out[second..second + 6], b"070701");
        assert_eq!(&out[second + 14..second + 22], b"000081a4"); // S_IFREG | 0644
        assert!(s.contains("etc/x\0"));
        assert!(s.contains("hello"));
        assert!(s.contains("dev/console\0"));
        assert!(s.ends_with("TRAILER!!!\0\0\0\0") || s.contains("TRAILER!!!\0"));
        assert!(Writer::new(Vec::new()).file("/abs", 0o644, b"").is_err());
    }

    #[test]
    fn the_real_cpio_reads_it() {
        let Ok(_) = std::process::Command::new("cpio").arg("--version").output() else {
            return; // cpio is not installed here
        };
        let mut w = Writer::new(Vec::new());
        w.file("a/b/c.txt", 0o640, b"data").unwrap();
        w.symlink("a/link", "b/c.txt").unwrap();
        let out = w.finish().unwrap();
        let mut child = std::process::Command::new("cpio")
            .args(["-it", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&out).unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success());
        let list = String::from_utf8_lossy(&o.stdout);
        assert_eq!(
            list.lines().collect::<Vec<_>>(),
            ["a", "a/b", "a/b/c.txt", "a/link"]
        );
    }
}
