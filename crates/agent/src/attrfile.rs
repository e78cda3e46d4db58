//! `<state-dir>/attributes.ini`: the node's effective attributes, for scripts on the node.
//!
//! ```ini
//! # Written by wulf-agent from the head's answer; local changes are overwritten.
//! [attributes]
//! _status_secs=10
//! slurm_features=a100
//! ```
//!
//! Lines are sorted by name. A value's line breaks become spaces so each attribute stays on
//! one line. The file is replaced atomically (temporary file in the same directory, fsync,
//! rename) and only when its content changes — or when someone else changed or removed it
//! (noticed with one `stat`, not by reading it back).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The file's name in the state directory.
pub const FILE_NAME: &str = "attributes.ini";

const HEADER: &str =
    "# Written by wulf-agent from the head's answer; local changes are overwritten.\n";

/// The file's content for these attributes.
pub fn render(attrs: &BTreeMap<String, String>) -> String {
    let mut s = String::with_capacity(64 + attrs.len() * 32);
    s.push_str(HEADER);
    s.push_str("[attributes]\n");
    for (k, v) in attrs {
        s.push_str(k);
        s.push('=');
        s.extend(
            v.chars()
                .map(|c| if c == '\n' || c == '\r' { ' ' } else { c }),
        );
        s.push('\n');
    }
    s
}

/// Read back attributes from a file's content: `name=value` lines of the `[attributes]`
/// section (or before any section); comments (`#`, `;`) and other sections are skipped.
pub fn parse(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut in_section = true;
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        if t.starts_with('[') {
            in_section = t == "[attributes]";
            continue;
        }
        if let (true, Some((k, v))) = (in_section, t.split_once('=')) {
            out.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    out
}

/// Write `content` to `dir/name` atomically, creating `dir` if needed.
pub fn write_atomic(dir: &Path, name: &str, content: &[u8]) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(0o644))?;
        f.write_all(content)?;
        f.sync_all()?;
        fs::rename(&tmp, dir.join(name))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// What identifies one version of the file: inode, size, modification time.
type Stamp = (u64, u64, i64, i64);

fn stamp(path: &Path) -> Option<Stamp> {
    let m = fs::metadata(path).ok()?;
    Some((m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
}

/// The file, remembering what it last held so it is only rewritten when that changes.
pub struct AttrFile {
    dir: PathBuf,
    current: Option<String>,
    stamp: Option<Stamp>,
}

impl AttrFile {
    /// Reads the existing file, if any (its attributes apply until the head answers).
    pub fn open(dir: &Path) -> AttrFile {
        let path = dir.join(FILE_NAME);
        let stamp = stamp(&path);
        AttrFile {
            dir: dir.to_path_buf(),
            current: fs::read_to_string(&path).ok(),
            stamp,
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// The attributes in the file as it was when the agent started or last wrote it.
    pub fn attributes(&self) -> BTreeMap<String, String> {
        self.current.as_deref().map(parse).unwrap_or_default()
    }

    /// Write the attributes if they differ from the file's content. Returns whether it wrote.
    pub fn update(&mut self, attrs: &BTreeMap<String, String>) -> io::Result<bool> {
        let content = render(attrs);
        let path = self.path();
        if self.current.as_deref() == Some(content.as_str())
            && self.stamp.is_some()
            && stamp(&path) == self.stamp
        {
            return Ok(false);
        }
        write_atomic(&self.dir, FILE_NAME, content.as_bytes())?;
        self.stamp = stamp(&path);
        self.current = Some(content);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn rendering() {
        let a = attrs(&[("zeta", "last"), ("_status_secs", "30"), ("alpha", "x=y")]);
        assert_eq!(
            render(&a),
            "# Written by wulf-agent from the head's answer; local changes are overwritten.\n\
             [attributes]\n_status_secs=30\nalpha=x=y\nzeta=last\n"
        );
        assert_eq!(parse(&render(&a)), a);
        assert_eq!(
            render(&attrs(&[("a", "one\ntwo\r\n")])).lines().nth(2),
            Some("a=one two  ")
        );
        assert_eq!(render(&BTreeMap::new()).lines().count(), 2);
    }

    #[test]
    fn parsing() {
        let text = "; c\n# c\nkey0=v0\n[attributes]\n a = b \nc=\n[other]\nd=e\n[attributes]\nf=g=h\nnoequals\n";
        assert_eq!(
            parse(text),
            attrs(&[("key0", "v0"), ("a", "b"), ("c", ""), ("f", "g=h")])
        );
    }

    #[test]
    fn rewrites_only_when_changed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("etc/wulf");
        let mut f = AttrFile::open(&state);
        assert!(f.attributes().is_empty());
        let a = attrs(&[("_status_secs", "5"), ("rack", "7")]);
        // The directory is created.
        assert!(f.update(&a).expect("write"));
        let path = state.join(FILE_NAME);
        assert_eq!(fs::read_to_string(&path).expect("read"), render(&a));
        assert_eq!(
            fs::metadata(&path).expect("stat").permissions().mode() & 0o777,
            0o644
        );
        let ino = fs::metadata(&path).expect("stat").ino();
        // Same attributes: not rewritten (same inode; a rewrite renames a new file in).
        assert!(!f.update(&a).expect("update"));
        assert_eq!(fs::metadata(&path).expect("stat").ino(), ino);
        // A new agent reading the file it left does not rewrite it either.
        let mut g = AttrFile::open(&state);
        assert_eq!(g.attributes(), a);
        assert!(!g.update(&a).expect("update"));
        assert_eq!(fs::metadata(&path).expect("stat").ino(), ino);
        // A change is written, atomically: a new inode, no temporary left behind.
        let b = attrs(&[("_status_secs", "5"), ("rack", "8")]);
        assert!(g.update(&b).expect("write"));
        assert_ne!(fs::metadata(&path).expect("stat").ino(), ino);
        assert_eq!(parse(&fs::read_to_string(&path).expect("read")), b);
        let names: Vec<_> = fs::read_dir(&state)
            .expect("ls")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        assert_eq!(names, vec![FILE_NAME.to_string()]);
        // A hand-edited or removed file is put back on the next report.
        fs::write(&path, "[attributes]\nrack=9\n").expect("edit");
        assert!(g.update(&b).expect("write"));
        assert_eq!(fs::read_to_string(&path).expect("read"), render(&b));
        assert!(!g.update(&b).expect("update"));
        fs::remove_file(&path).expect("rm");
        assert!(g.update(&b).expect("write"));
        assert_eq!(fs::read_to_string(&path).expect("read"), render(&b));
        let mut h = AttrFile::open(&state);
        fs::write(&path, "[attributes]\nrack=9\n").expect("edit");
        assert!(h.update(&b).expect("write"));
        assert_eq!(fs::read_to_string(&path).expect("read"), render(&b));
    }

    #[test]
    fn unwritable_directory_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("not-a-dir");
        fs::write(&file, "x").expect("write");
        let mut f = AttrFile::open(&file.join("sub"));
        assert!(f.update(&attrs(&[("a", "b")])).is_err());
    }
}
