//! `wulf sysinfo [-o FILE] [--no-tar]`: a support snapshot, as ClusterWare's scyld-sysinfo
//! makes: plain text and JSON files in one directory, packed as a .tar.gz by default.
//!
//! Each part is collected on its own; one that fails becomes a line in `errors.txt` and the
//! rest carry on. What could hold a secret is left out or masked: the config file's
//! passwords, secrets, tokens and keys are `********`, API answers carry no token or hash
//! (the head masks them), and neither the data directory's token and key files nor the
//! database are read.

use std::fmt::Write as _;
use std::io::{BufRead, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde_json::Value;
use wulf_model::Kind;

use crate::args::Cli;
use crate::fail::{usage, Fail};

#[derive(clap::Args, Debug)]
pub(crate) struct SysinfoArgs {
    /// Where to write it [default: ./wulf-sysinfo-HOST-DATE.tar.gz; with --no-tar the
    /// directory ./wulf-sysinfo-HOST-DATE]
    #[arg(short = 'o', long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Leave the directory of plain files instead of packing a .tar.gz
    #[arg(long)]
    pub(crate) no_tar: bool,
    /// The head's config file [default: $WULFD_CONFIG, else /etc/wulf/wulfd.toml]
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// The head's data directory, for its disk use [default: the config file's data_dir,
    /// $WULF_DATA_DIR, ./wulf-data, /var/lib/wulf]
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
}

/// Lines kept of each local log file, and log lines asked of the head.
const LOG_LINES: usize = 2000;
/// What replaces a masked value.
const MASK: &str = "********";

/// The snapshot directory being filled.
struct Snapshot {
    dir: PathBuf,
    parts: Vec<String>,
    errors: Vec<String>,
}

impl Snapshot {
    /// Collect one part into `name`; a failure is noted, not fatal.
    fn part(&mut self, name: &str, collect: impl FnOnce() -> anyhow::Result<Vec<u8>>) {
        match collect() {
            Ok(bytes) => {
                let p = self.dir.join(name);
                if let Some(parent) = p.parent() {
                    let _ = std::fs::create_dir_all(parent);
                }
                match std::fs::write(&p, bytes) {
                    Ok(()) => self.parts.push(name.to_string()),
                    Err(e) => self.errors.push(format!("{name}: cannot write: {e}")),
                }
            }
            Err(e) => self.errors.push(format!("{name}: {e:#}")),
        }
    }
}

fn pretty(v: &Value) -> anyhow::Result<Vec<u8>> {
    let mut out = serde_json::to_vec_pretty(v)?;
    out.push(b'\n');
    Ok(out)
}

/// Whether a config key names a secret: password, secret, token, key, or a word of it
/// (`key_file`, `admin_token`).
fn secret_key(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| {
        matches!(
            w,
            "password" | "passwd" | "secret" | "token" | "key" | "credential"
        )
    }) || n.contains("password")
        || n.contains("secret")
        || n.contains("token")
}

/// Mask every secret in a parsed config: keys named like one, and etcd's and [auth]'s
/// credentials (etcd's user, every string under [auth]).
fn mask(v: &mut toml::Value, path: &[String]) {
    match v {
        toml::Value::Table(t) => {
            for (k, val) in t.iter_mut() {
                let section = path.first().map(String::as_str);
                let credential = (section == Some("etcd") && matches!(k.as_str(), "user"))
                    || (section == Some("auth")
                        && !matches!(
                            val,
                            toml::Value::Integer(_)
                                | toml::Value::Boolean(_)
                                | toml::Value::Float(_)
                        )
                        && !matches!(val, toml::Value::Table(_)));
                if secret_key(k) || credential {
                    *val = toml::Value::String(MASK.into());
                } else {
                    let mut p = path.to_vec();
                    p.push(k.clone());
                    mask(val, &p);
                }
            }
        }
        toml::Value::Array(a) => {
            for x in a {
                mask(x, path);
            }
        }
        _ => {}
    }
}

/// The head's config file with its secrets masked (and what it says about directories).
fn masked_config(path: &Path) -> anyhow::Result<(Vec<u8>, toml::Value)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let mut v: toml::Value = toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{} is not valid TOML, so its secrets cannot be masked; not copied: {e}",
            path.display()
        )
    })?;
    let raw = v.clone();
    mask(&mut v, &[]);
    let mut out = format!(
        "# {} with every password, secret, token and key masked\n",
        path.display()
    );
    out.push_str(&toml::to_string_pretty(&v)?);
    Ok((out.into_bytes(), raw))
}

/// The last `n` lines of a file, read from its end.
fn tail(path: &Path, n: usize) -> anyhow::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    // Up to 64 MiB from the end is plenty for 2,000 lines.
    let start = len.saturating_sub(64 << 20);
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    f.take(64 << 20).read_to_end(&mut buf)?;
    let mut count = 0;
    let mut cut = 0;
    let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            count += 1;
            if count == n {
                cut = i + 1;
                break;
            }
        }
    }
    if count < n && start > 0 {
        // The first line is cut; drop it.
        cut = body.iter().position(|b| *b == b'\n').map_or(0, |i| i + 1);
    }
    Ok(buf[cut..].to_vec())
}

/// Interfaces: name, MAC, MTU, state and addresses.
fn interfaces() -> anyhow::Result<Vec<u8>> {
    let addrs = if_addrs::get_if_addrs()?;
    let mut names: Vec<String> = addrs.iter().map(|a| a.name.clone()).collect();
    if let Ok(rd) = std::fs::read_dir("/sys/class/net") {
        names.extend(
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned()),
        );
    }
    names.sort();
    names.dedup();
    let mut out = String::new();
    for n in names {
        let sys = |f: &str| {
            std::fs::read_to_string(format!("/sys/class/net/{n}/{f}"))
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "-".into())
        };
        let _ = writeln!(
            out,
            "{n}: mac {} mtu {} state {}",
            sys("address"),
            sys("mtu"),
            sys("operstate")
        );
        for a in addrs.iter().filter(|a| a.name == n) {
            match &a.addr {
                if_addrs::IfAddr::V4(v) => {
                    let bits = u32::from(v.netmask).count_ones();
                    let _ = writeln!(out, "    inet  {}/{bits}", v.ip);
                }
                if_addrs::IfAddr::V6(v) => {
                    let bits = u128::from(v.netmask).count_ones();
                    let _ = writeln!(out, "    inet6 {}/{bits}", v.ip);
                }
            }
        }
    }
    Ok(out.into_bytes())
}

/// Socket inode → "pid/command", from /proc/PID/fd (what this user may see).
fn socket_owners() -> std::collections::HashMap<u64, String> {
    let mut out = std::collections::HashMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let name = p.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        let comm = std::fs::read_to_string(p.path().join("comm"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let l = link.to_string_lossy();
            if let Some(inode) = l
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .and_then(|s| s.parse().ok())
            {
                out.insert(inode, format!("{name}/{comm}"));
            }
        }
    }
    out
}

/// An address of /proc/net/{tcp,udp}[6]: little-endian hex words, then the port.
fn proc_addr(s: &str, v6: bool) -> Option<String> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = if v6 {
        let mut bytes = [0u8; 16];
        for (i, chunk) in ip.as_bytes().chunks(8).enumerate().take(4) {
            let w = u32::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
            bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
        }
        format!("[{}]", std::net::Ipv6Addr::from(bytes))
    } else {
        let w = u32::from_str_radix(ip, 16).ok()?;
        std::net::Ipv4Addr::from(w.to_le_bytes()).to_string()
    };
    Some(format!("{ip}:{port}"))
}

/// Listening TCP sockets and bound UDP sockets, from /proc/net, with their owners.
fn listeners() -> anyhow::Result<Vec<u8>> {
    let owners = socket_owners();
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (file, proto, v6) in [
        ("tcp", "tcp", false),
        ("tcp6", "tcp6", true),
        ("udp", "udp", false),
        ("udp6", "udp6", true),
    ] {
        let path = format!("/proc/net/{file}");
        let f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                errors.push(format!("# {path}: {e}"));
                continue;
            }
        };
        for line in std::io::BufReader::new(f)
            .lines()
            .skip(1)
            .map_while(Result::ok)
        {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 10 {
                continue;
            }
            // TCP: 0A is LISTEN; UDP: 07 is a bound ("unconnected") socket.
            let listening = if proto.starts_with("tcp") {
                cols[3] == "0A"
            } else {
                cols[3] == "07"
            };
            if !listening {
                continue;
            }
            let local = proc_addr(cols[1], v6).unwrap_or_else(|| cols[1].to_string());
            let inode: u64 = cols[9].parse().unwrap_or(0);
            let owner = owners.get(&inode).cloned().unwrap_or_else(|| "-".into());
            rows.push((proto, local, owner));
        }
    }
    let mut out = String::from(
        "# listening TCP and bound UDP sockets, from /proc/net/{tcp,tcp6,udp,udp6}; owner \
         from /proc/PID/fd (\"-\": not visible to this user)\nPROTO  LOCAL ADDRESS                                    OWNER (PID/COMMAND)\n",
    );
    for (p, l, o) in rows {
        let _ = writeln!(out, "{p:<6} {l:<48} {o}");
    }
    for e in errors {
        let _ = writeln!(out, "{e}");
    }
    Ok(out.into_bytes())
}

/// Bytes in the files under `dir` and how many there are.
fn tree_size(dir: &Path) -> (u64, u64) {
    let (mut bytes, mut files) = (0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => {
                    bytes += m.len();
                    files += 1;
                }
                Err(_) => {}
            }
        }
    }
    (bytes, files)
}

/// The data directory's file system, database and file store sizes.
fn disk(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    if !data_dir.is_dir() {
        anyhow::bail!(
            "no data directory at {} (give --data-dir)",
            data_dir.display()
        );
    }
    let c = std::ffi::CString::new(data_dir.as_os_str().as_bytes())?;
    // SAFETY: statvfs writes into the zeroed struct we pass; `c` is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        anyhow::bail!(
            "statvfs {}: {}",
            data_dir.display(),
            std::io::Error::last_os_error()
        );
    }
    let frsize = st.f_frsize as u64;
    let total = st.f_blocks as u64 * frsize;
    let avail = st.f_bavail as u64 * frsize;
    let free = st.f_bfree as u64 * frsize;
    let used = total.saturating_sub(free);
    let h = crate::backup::human_bytes;
    let mut out = format!(
        "data directory: {}\nfile system: {} total, {} used, {} available to wulfd ({:.0}% used); inodes {} free of {}\n",
        data_dir.display(),
        h(total),
        h(used),
        h(avail),
        if total > 0 { used as f64 * 100.0 / total as f64 } else { 0.0 },
        st.f_ffree,
        st.f_files
    );
    match std::fs::metadata(data_dir.join("wulf.redb")) {
        Ok(m) => {
            let _ = writeln!(
                out,
                "database wulf.redb: {} ({} bytes)",
                h(m.len()),
                m.len()
            );
        }
        Err(e) => {
            let _ = writeln!(
                out,
                "database wulf.redb: {e} (etcd store, or not this head's)"
            );
        }
    }
    let (bytes, files) = tree_size(&data_dir.join("blobs/sha256"));
    let _ = writeln!(
        out,
        "file store blobs/sha256: {files} files, {} ({bytes} bytes)",
        h(bytes)
    );
    let (tbytes, tfiles) = tree_size(&data_dir.join("blobs/tmp"));
    let _ = writeln!(
        out,
        "uploads in progress blobs/tmp: {tfiles} files, {}",
        h(tbytes)
    );
    Ok(out.into_bytes())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "host".into())
}

/// `YYYYMMDD-HHMMSS` (UTC) for `secs` since the epoch.
fn stamp(secs: u64) -> String {
    let c = crate::clock::Civil::at(i64::try_from(secs).unwrap_or(i64::MAX));
    format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}",
        c.y, c.m, c.d, c.hh, c.mm, c.ss
    )
}

pub(crate) fn run(cli: &Cli, a: &SysinfoArgs) -> Result<(), Fail> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let base = format!("wulf-sysinfo-{}-{}", hostname(), stamp(now));
    let output = match &a.output {
        Some(o) => o.clone(),
        None if a.no_tar => PathBuf::from(&base),
        None => PathBuf::from(format!("{base}.tar.gz")),
    };
    if output.exists() {
        return Err(usage(format!(
            "{} exists; name another with -o",
            output.display()
        )));
    }
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(usage(format!("no directory {}", parent.display())));
    }
    // With a tarball, the files gather in a temporary directory beside it.
    let work = if a.no_tar {
        None
    } else {
        Some(
            tempfile::Builder::new()
                .prefix(".wulf-sysinfo-")
                .tempdir_in(&parent)
                .map_err(|e| usage(format!("cannot write in {}: {e}", parent.display())))?,
        )
    };
    let inner = match &work {
        Some(_) => output
            .file_name()
            .map(|f| {
                f.to_string_lossy()
                    .trim_end_matches(".tar.gz")
                    .trim_end_matches(".tgz")
                    .to_string()
            })
            .filter(|s| !s.is_empty())
            .unwrap_or(base.clone()),
        None => String::new(),
    };
    let dir = match &work {
        Some(w) => w.path().join(&inner),
        None => output.clone(),
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| usage(format!("cannot create {}: {e}", dir.display())))?;
    let mut s = Snapshot {
        dir: dir.clone(),
        parts: Vec::new(),
        errors: Vec::new(),
    };
    collect(cli, a, &mut s, now);
    let mut index = format!(
        "wulf sysinfo {} taken {} UTC on {} by wulf {}\n\nfiles:\n",
        base,
        stamp(now),
        hostname(),
        env!("CARGO_PKG_VERSION")
    );
    for p in &s.parts {
        let _ = writeln!(index, "  {p}");
    }
    let _ = writeln!(
        index,
        "\n{} parts could not be collected (errors.txt)",
        s.errors.len()
    );
    let mut errors = String::new();
    for e in &s.errors {
        let _ = writeln!(errors, "{e}");
    }
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text)
            .map_err(|e| Fail::Request(anyhow::anyhow!("cannot write {}: {e}", dir.display())))
    };
    write("errors.txt", &errors)?;
    write("index.txt", &index)?;
    let Some(work) = work else {
        println!(
            "wrote {} ({} parts, {} errors in errors.txt)",
            output.display(),
            s.parts.len(),
            s.errors.len()
        );
        return Ok(());
    };
    let packed = (|| -> std::io::Result<tempfile::NamedTempFile> {
        let mut tmp = tempfile::Builder::new()
            .prefix(".wulf-sysinfo-")
            .tempfile_in(&parent)?;
        {
            let gz =
                flate2::write::GzEncoder::new(tmp.as_file_mut(), flate2::Compression::default());
            let mut b = tar::Builder::new(gz);
            b.follow_symlinks(false);
            b.append_dir_all(&inner, &dir)?;
            b.into_inner()?.finish()?;
        }
        tmp.as_file().sync_all()?;
        Ok(tmp)
    })()
    .map_err(|e| Fail::Request(anyhow::anyhow!("cannot pack {}: {e}", output.display())))?;
    packed.persist(&output).map_err(|e| {
        Fail::Request(anyhow::anyhow!(
            "cannot write {}: {}",
            output.display(),
            e.error
        ))
    })?;
    drop(work);
    println!(
        "wrote {} ({} parts, {} errors in errors.txt)",
        output.display(),
        s.parts.len(),
        s.errors.len()
    );
    Ok(())
}

/// Every part, in order.
fn collect(cli: &Cli, a: &SysinfoArgs, s: &mut Snapshot, now: u64) {
    let client = crate::conn::client(cli).map_err(|e| match e {
        Fail::Usage(m) => anyhow::anyhow!(m),
        Fail::Request(e) => e,
    });
    let api = |path: &str| -> anyhow::Result<Value> {
        match &client {
            Ok(c) => c
                .get::<Value>(path)
                .map_err(|e| anyhow::anyhow!("GET /api/v1{path}: {e}")),
            Err(e) => Err(anyhow::anyhow!("no connection to the head: {e:#}")),
        }
    };

    // Versions.
    let info = api("/info");
    let version = {
        let mut t = format!("wulf {}\n", env!("CARGO_PKG_VERSION"));
        match &info {
            Ok(i) => {
                let _ = writeln!(
                    t,
                    "wulfd {} (head {}, store {}, revision {})",
                    i["version"].as_str().unwrap_or("?"),
                    i["head"].as_str().unwrap_or("?"),
                    i["store"].as_str().unwrap_or("?"),
                    i["revision"]
                );
            }
            Err(e) => {
                let _ = writeln!(t, "wulfd: unknown ({e:#})");
            }
        }
        if let Ok(k) = std::fs::read_to_string("/proc/version") {
            let _ = write!(t, "kernel: {k}");
        }
        if let Ok(os) = std::fs::read_to_string("/etc/os-release") {
            if let Some(p) = os.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=")) {
                let _ = writeln!(t, "os: {}", p.trim_matches('"'));
            }
        }
        let _ = writeln!(t, "taken: {} UTC ({now})", stamp(now));
        t
    };
    s.part("version.txt", || Ok(version.into_bytes()));
    s.part("info.json", || pretty(&info?));

    // The head's config file, masked.
    let cfg_path = a
        .config
        .clone()
        .or_else(|| std::env::var_os("WULFD_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/etc/wulf/wulfd.toml"));
    let mut cfg: Option<toml::Value> = None;
    if cfg_path.exists() || a.config.is_some() {
        s.part("wulfd.toml", || {
            let (text, raw) = masked_config(&cfg_path)?;
            cfg = Some(raw);
            Ok(text)
        });
    } else {
        s.errors.push(format!(
            "wulfd.toml: no config file at {} (the head runs on defaults and flags, or give \
             --config)",
            cfg_path.display()
        ));
    }

    s.part("heads.json", || pretty(&api("/head")?));
    s.part("db.json", || pretty(&api("/cluster/db")?));
    s.part("objects.txt", || {
        let mut t = String::from("objects per kind\n");
        for k in Kind::ALL {
            let n = api(&format!("/{k}?fields=uid"))?
                .as_array()
                .map_or(0, Vec::len);
            let _ = writeln!(t, "  {:<8} {n}", k.as_str());
        }
        Ok(t.into_bytes())
    });
    s.part("status-summary.json", || {
        pretty(&api("/node/status/summary")?)
    });
    s.part("log.json", || {
        pretty(&api(&format!("/log?limit={LOG_LINES}"))?)
    });

    // Log files on this machine, where wulfd puts them.
    let data_dir = a
        .data_dir
        .clone()
        .or_else(|| {
            cfg.as_ref()
                .and_then(|c| c.get("data_dir")?.as_str().map(PathBuf::from))
        })
        .or_else(|| std::env::var_os("WULF_DATA_DIR").map(PathBuf::from))
        .or_else(|| {
            [PathBuf::from("wulf-data"), PathBuf::from("/var/lib/wulf")]
                .into_iter()
                .find(|p| p.is_dir())
        })
        .unwrap_or_else(|| PathBuf::from("/var/lib/wulf"));
    let log_dir = cfg
        .as_ref()
        .and_then(|c| c.get("logs")?.get("dir")?.as_str().map(PathBuf::from))
        .unwrap_or_else(|| {
            if data_dir == Path::new("/var/lib/wulf") {
                PathBuf::from("/var/log/wulf")
            } else {
                data_dir.join("log")
            }
        });
    match std::fs::read_dir(&log_dir) {
        Ok(rd) => {
            let mut files: Vec<PathBuf> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "log") && p.is_file())
                .collect();
            files.sort();
            if files.is_empty() {
                s.errors
                    .push(format!("logs/: no *.log files in {}", log_dir.display()));
            }
            for f in files {
                let name = f
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                s.part(&format!("logs/{name}"), || {
                    tail(&f, LOG_LINES).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))
                });
            }
        }
        Err(e) => s
            .errors
            .push(format!("logs/: cannot read {}: {e}", log_dir.display())),
    }

    s.part("interfaces.txt", interfaces);
    s.part("listening.txt", listeners);

    s.part("disk.txt", || disk(&data_dir));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_secrets_and_credentials() {
        let mut v: toml::Value = toml::from_str(
            "data_dir = \"/d\"\nadmin_token = \"t\"\n[etcd]\nuser = \"u\"\npassword = \"p\"\nkey_file = \"/k\"\nca_file = \"/c\"\n[auth]\naccess_secs = 3600\nsecret = \"s\"\n[x]\napi_key = \"a\"\nkeep_days = 3\n",
        )
        .unwrap();
        mask(&mut v, &[]);
        let t = toml::to_string(&v).unwrap();
        for s in ["\"t\"", "\"u\"", "\"p\"", "\"/k\"", "\"s\"", "\"a\""] {
            assert!(!t.contains(s), "{s} in {t}");
        }
        assert!(
            t.contains("/d")
                && t.contains("/c")
                && t.contains("3600")
                && t.contains("keep_days = 3"),
            "{t}"
        );
    }

    #[test]
    fn stamps_and_addresses() {
        assert_eq!(stamp(0), "19700101-000000");
        assert_eq!(stamp(1_796_602_531), "20261207-001531");
        assert_eq!(proc_addr("0100007F:1F90", false).unwrap(), "127.0.0.1:8080");
        assert_eq!(
            proc_addr("00000000000000000000000001000000:0035", true).unwrap(),
            "[::1]:53"
        );
    }
}
