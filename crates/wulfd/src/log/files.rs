//! The log files: appended to, reopened on SIGHUP (logrotate moves them away first).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Create the log directory (0750) if it is missing.
pub fn make_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

/// One log file. Lines are written whole (one `write` each) unless `buffered`, when they go
/// out at [`LogFile::flush`] (every second) or when the buffer fills.
pub struct LogFile {
    path: PathBuf,
    buffered: bool,
    out: Mutex<BufWriter<File>>,
}

impl LogFile {
    pub fn open(path: &Path, buffered: bool) -> anyhow::Result<LogFile> {
        let f = open_append(path)
            .map_err(|e| anyhow::anyhow!("cannot open the log file {}: {e}", path.display()))?;
        Ok(LogFile {
            path: path.to_path_buf(),
            buffered,
            out: Mutex::new(BufWriter::with_capacity(64 * 1024, f)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append a line (ending in a newline). A full disk loses the line, never the head.
    pub fn write(&self, line: &[u8]) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = out.write_all(line);
        if !self.buffered {
            let _ = out.flush();
        }
    }

    pub fn flush(&self) {
        let _ = self.out.lock().unwrap_or_else(|e| e.into_inner()).flush();
    }

    /// Open the file at its path again (a new file if logrotate moved the old one).
    pub fn reopen(&self) -> std::io::Result<()> {
        let f = open_append(&self.path)?;
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = out.flush();
        *out = BufWriter::with_capacity(64 * 1024, f);
        Ok(())
    }
}

/// The `head_NAME.log` files: each head's shared lines, opened as lines arrive.
pub struct HeadFiles {
    dir: PathBuf,
    open: Mutex<HashMap<String, BufWriter<File>>>,
}

impl HeadFiles {
    pub fn new(dir: &Path) -> HeadFiles {
        HeadFiles {
            dir: dir.to_path_buf(),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// The file of head `name` (characters other than letters, digits, `.`, `-` and `_`
    /// become `_`).
    pub fn path(&self, name: &str) -> PathBuf {
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("head_{safe}.log"))
    }

    /// Append `line` to head `name`'s file; written out at [`HeadFiles::flush`].
    pub fn write(&self, name: &str, line: &[u8]) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if !open.contains_key(name) {
            match open_append(&self.path(name)) {
                Ok(f) => {
                    open.insert(name.to_string(), BufWriter::new(f));
                }
                Err(e) => {
                    eprintln!("wulfd: cannot open {}: {e}", self.path(name).display());
                    return;
                }
            }
        }
        if let Some(w) = open.get_mut(name) {
            let _ = w.write_all(line);
        }
    }

    pub fn flush(&self) {
        for w in self
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values_mut()
        {
            let _ = w.flush();
        }
    }

    /// Close every file; the next line opens it again at its path.
    pub fn reopen(&self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        for w in open.values_mut() {
            let _ = w.flush();
        }
        open.clear();
    }
}

/// `2026-12-07 00:31:02.123` (UTC) for Unix time `ts`.
pub fn timestamp(ts: f64) -> String {
    let secs = ts.floor();
    let nanos = ((ts - secs) * 1e9) as i64;
    let at = time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .map(|t| t + time::Duration::nanoseconds(nanos));
    match at {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        ),
        Err(_) => format!("{ts:.3}"),
    }
}

/// A shared line as the head_NAME.log files show it.
pub fn head_line(l: &wulf_api::log::LogLine) -> String {
    format!(
        "{} {} {}: {}\n",
        timestamp(l.ts),
        l.level,
        l.target,
        l.message
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_names() {
        assert_eq!(timestamp(0.5), "1970-01-01 00:00:00.500");
        assert_eq!(timestamp(1_796_603_462.25), "2026-12-07 00:31:02.250");
        let h = HeadFiles::new(Path::new("/x"));
        assert_eq!(h.path("head1"), Path::new("/x/head_head1.log"));
        assert_eq!(h.path("a/../b"), Path::new("/x/head_a_.._b.log"));
    }

    #[test]
    fn reopen_follows_a_rotation() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("error.log");
        let f = LogFile::open(&p, false).unwrap();
        f.write(b"one\n");
        std::fs::rename(&p, d.path().join("error.log.1")).unwrap();
        f.write(b"two\n");
        f.reopen().unwrap();
        f.write(b"three\n");
        assert_eq!(
            std::fs::read_to_string(d.path().join("error.log.1")).unwrap(),
            "one\ntwo\n"
        );
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "three\n");
    }
}
