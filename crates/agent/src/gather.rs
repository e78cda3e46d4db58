//! The fields of a report, read from `/proc` and a few syscalls.
//!
//! Everything here is cheap: no processes are spawned, each file is small and read into one
//! reused buffer. The cheap fields (uptime, load, RAM) take one `clock_gettime`, one
//! `sysinfo(2)` and the first lines of `/proc/meminfo`; the full fields add `uname(2)`,
//! `/proc/cmdline`, `/proc/modules` and `/sys/fs/selinux/enforce`.

use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use tracing::warn;

/// Where procfs and sysfs are mounted (tests point these at fake trees).
#[derive(Debug, Clone)]
pub struct Paths {
    pub proc_dir: PathBuf,
    pub sys_dir: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            proc_dir: PathBuf::from("/proc"),
            sys_dir: PathBuf::from("/sys"),
        }
    }
}

/// The fields gathered for every report, busy or not.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cheap {
    pub uptime_secs: f64,
    pub load: [f32; 3],
    pub ram_total: u64,
    pub ram_free: u64,
}

/// The fields left out in busy mode. Each is `None` when it could not be read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Full {
    pub hostname: Option<String>,
    pub kernel: Option<String>,
    pub cmdline: Option<String>,
    pub modules: Option<Vec<String>>,
    pub selinux: Option<String>,
}

/// Aggregate CPU time from the `cpu` line of `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuSample {
    /// Everything but idle and iowait.
    pub busy: u64,
    /// user + nice + system + idle + iowait + irq + softirq + steal.
    pub total: u64,
}

/// Reads report fields, reusing one buffer.
pub struct Gatherer {
    paths: Paths,
    buf: String,
    boot_id: Option<String>,
    /// `/proc/cmdline`, credential masked: it cannot change while the node runs.
    cmdline: Option<String>,
    cpus: u32,
}

/// Read a whole (small) file into `buf`, replacing its contents.
pub fn read_into(path: &Path, buf: &mut String) -> io::Result<()> {
    buf.clear();
    File::open(path)?.read_to_string(buf)?;
    Ok(())
}

/// Read a small file and trim it; `None` when it cannot be read.
pub fn read_trimmed(path: &Path) -> Option<String> {
    let mut s = String::new();
    read_into(path, &mut s).ok()?;
    Some(s.trim().to_string())
}

impl Gatherer {
    pub fn new(paths: Paths) -> Gatherer {
        let boot_id = read_trimmed(&paths.proc_dir.join("sys/kernel/random/boot_id"))
            .filter(|s| !s.is_empty());
        if boot_id.is_none() {
            warn!("cannot read the boot id from /proc/sys/kernel/random/boot_id");
        }
        let cmdline = match std::fs::read_to_string(paths.proc_dir.join("cmdline")) {
            Ok(c) => Some(mask_cmdline(c.trim())),
            Err(e) => {
                warn!("cannot read /proc/cmdline: {e}");
                None
            }
        };
        Gatherer {
            paths,
            buf: String::with_capacity(4096),
            boot_id,
            cmdline,
            cpus: online_cpus(),
        }
    }

    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// `/proc/sys/kernel/random/boot_id`, read once when the agent starts.
    pub fn boot_id(&self) -> Option<&str> {
        self.boot_id.as_deref()
    }

    /// Online CPUs, counted when the agent started.
    pub fn cpus(&self) -> u32 {
        self.cpus
    }

    /// Uptime, load and RAM.
    pub fn cheap(&mut self) -> Cheap {
        let (ram_total, ram_free) =
            match read_into(&self.paths.proc_dir.join("meminfo"), &mut self.buf) {
                Ok(()) => parse_meminfo(&self.buf),
                Err(e) => {
                    warn!("cannot read /proc/meminfo: {e}");
                    (0, 0)
                }
            };
        Cheap {
            uptime_secs: uptime().unwrap_or_else(|e| {
                warn!("cannot read the uptime: {e}");
                0.0
            }),
            load: loadavg().unwrap_or_else(|e| {
                warn!("cannot read the load average: {e}");
                [0.0; 3]
            }),
            ram_total,
            ram_free,
        }
    }

    /// Host name, kernel release, cmdline (credential masked), modules, SELinux.
    pub fn full(&mut self) -> Full {
        let (hostname, kernel) = match uname() {
            Ok((h, k)) => (Some(h), Some(k)),
            Err(e) => {
                warn!("uname failed: {e}");
                (None, None)
            }
        };
        let cmdline = self.cmdline.clone();
        let modules = match read_into(&self.paths.proc_dir.join("modules"), &mut self.buf) {
            Ok(()) => Some(parse_modules(&self.buf)),
            // A kernel without module support has no /proc/modules: nothing is loaded.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Some(Vec::new()),
            Err(e) => {
                warn!("cannot read /proc/modules: {e}");
                None
            }
        };
        Full {
            hostname,
            kernel,
            cmdline,
            modules,
            selinux: selinux(&self.paths.sys_dir),
        }
    }

    /// The aggregate `cpu` line of `/proc/stat` (only the first line is copied out).
    pub fn cpu_sample(&self) -> Option<CpuSample> {
        let mut buf = [0u8; 512];
        let n = File::open(self.paths.proc_dir.join("stat"))
            .and_then(|mut f| f.read(&mut buf))
            .ok()?;
        let text = std::str::from_utf8(&buf[..n]).ok()?;
        parse_cpu_line(text.lines().next()?)
    }
}

/// Seconds since boot, suspend included (what `/proc/uptime` shows): `CLOCK_BOOTTIME`.
pub fn uptime() -> io::Result<f64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9)
}

/// 1, 5 and 15 minute load averages from `sysinfo(2)`.
pub fn loadavg() -> io::Result<[f32; 3]> {
    // SAFETY: sysinfo is plain old data; all-zero is a valid value.
    let mut si: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: si is a valid, writable sysinfo struct.
    if unsafe { libc::sysinfo(&mut si) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let scale = (1u64 << libc::SI_LOAD_SHIFT) as f64;
    Ok(si.loads.map(|l| (l as f64 / scale) as f32))
}

/// (host name, kernel release) from `uname(2)`.
pub fn uname() -> io::Result<(String, String)> {
    // SAFETY: utsname is plain old data; all-zero is a valid value.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: u is a valid, writable utsname struct.
    if unsafe { libc::uname(&mut u) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let field = |f: &[libc::c_char]| {
        // SAFETY: the kernel NUL-terminates every utsname field within its length, and the
        // struct was zeroed first.
        unsafe { CStr::from_ptr(f.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    };
    Ok((field(&u.nodename), field(&u.release)))
}

/// Online CPUs (`sysconf(_SC_NPROCESSORS_ONLN)`), at least 1.
pub fn online_cpus() -> u32 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    u32::try_from(n).unwrap_or(1).max(1)
}

/// (MemTotal, MemAvailable) in bytes from `/proc/meminfo`; MemFree when the kernel has no
/// MemAvailable. Stops reading once both are found (they are near the top).
pub fn parse_meminfo(text: &str) -> (u64, u64) {
    let (mut total, mut avail, mut free) = (None, None, None);
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let slot = match key {
            "MemTotal" => &mut total,
            "MemAvailable" => &mut avail,
            "MemFree" => &mut free,
            _ => continue,
        };
        let kb = rest
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok();
        *slot = kb.map(|k| k.saturating_mul(1024));
        if total.is_some() && avail.is_some() {
            break;
        }
    }
    (total.unwrap_or(0), avail.or(free).unwrap_or(0))
}

/// Module names from `/proc/modules`, sorted.
pub fn parse_modules(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    v.sort_unstable();
    v
}

/// Parameters whose values are secrets: the credential, and the enrollment token.
const SECRET_KEYS: [&str; 2] = ["wulf.cred=", "wulf.enroll="];

/// The kernel command line with the value of every `wulf.cred=` and `wulf.enroll=` parameter
/// replaced by `***` (a quoted value is masked up to its closing quote). Everything else is
/// kept as it is.
pub fn mask_cmdline(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let (mut i, mut copied) = (0, 0);
    while i < b.len() {
        let token_start = i == 0 || b[i - 1].is_ascii_whitespace();
        let key_at = if b[i] == b'"' { i + 1 } else { i };
        let key = SECRET_KEYS
            .iter()
            .find(|k| token_start && b[key_at..].starts_with(k.as_bytes()));
        if let Some(key) = key {
            out.push_str(&s[copied..i]);
            out.push_str(key);
            out.push_str("***");
            let mut j = key_at + key.len();
            let mut quoted = key_at != i;
            while j < b.len() {
                match b[j] {
                    b'"' => quoted = !quoted,
                    c if !quoted && c.is_ascii_whitespace() => break,
                    _ => {}
                }
                j += 1;
            }
            i = j;
            copied = j;
        } else {
            i += 1;
        }
    }
    out.push_str(&s[copied..]);
    out
}

/// `enforcing` or `permissive` from `/sys/fs/selinux/enforce`, `disabled` when SELinux is
/// not mounted, `None` when the file says something else or cannot be read.
pub fn selinux(sys_dir: &Path) -> Option<String> {
    let mut s = String::new();
    match read_into(&sys_dir.join("fs/selinux/enforce"), &mut s) {
        Ok(()) => match s.trim() {
            "1" => Some("enforcing".into()),
            "0" => Some("permissive".into()),
            other => {
                warn!("unexpected /sys/fs/selinux/enforce contents: {other:?}");
                None
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Some("disabled".into()),
        Err(e) => {
            warn!("cannot read /sys/fs/selinux/enforce: {e}");
            None
        }
    }
}

/// Parse the aggregate `cpu  user nice system idle iowait irq softirq steal ...` line.
pub fn parse_cpu_line(line: &str) -> Option<CpuSample> {
    let mut it = line.split_whitespace();
    if it.next()? != "cpu" {
        return None;
    }
    let v: Vec<u64> = it.take(8).map(|f| f.parse().ok()).collect::<Option<_>>()?;
    if v.len() < 4 {
        return None;
    }
    let total: u64 = v.iter().sum();
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some(CpuSample {
        busy: total.saturating_sub(idle),
        total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meminfo_kb(key: &str) -> u64 {
        let text = std::fs::read_to_string("/proc/meminfo").expect("read /proc/meminfo");
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{key}:")))
            .expect("key in /proc/meminfo");
        line.split_whitespace()
            .nth(1)
            .expect("value")
            .parse()
            .expect("number")
    }

    fn proc_loadavg() -> [f32; 3] {
        let s = std::fs::read_to_string("/proc/loadavg").expect("read /proc/loadavg");
        let v: Vec<f32> = s
            .split_whitespace()
            .take(3)
            .map(|f| f.parse().expect("load"))
            .collect();
        [v[0], v[1], v[2]]
    }

    #[test]
    fn uptime_matches_proc_uptime() {
        let before: f64 = std::fs::read_to_string("/proc/uptime")
            .expect("read /proc/uptime")
            .split_whitespace()
            .next()
            .expect("field")
            .parse()
            .expect("number");
        let ours = uptime().expect("uptime");
        assert!(ours > 0.0);
        // /proc/uptime is rounded to 1/100 s.
        assert!(ours >= before - 0.02, "{ours} < {before}");
        assert!(ours < before + 5.0, "{ours} far after {before}");
    }

    #[test]
    fn loads_match_proc_loadavg() {
        let before = proc_loadavg();
        let ours = loadavg().expect("sysinfo");
        let after = proc_loadavg();
        for i in 0..3 {
            let lo = before[i].min(after[i]) - 0.011;
            let hi = before[i].max(after[i]) + 0.011;
            assert!(
                ours[i] >= lo && ours[i] <= hi,
                "load[{i}] {ours:?} vs {before:?}/{after:?}"
            );
        }
    }

    #[test]
    fn cheap_fields_from_the_real_proc() {
        let mut g = Gatherer::new(Paths::default());
        let c = g.cheap();
        assert!(c.uptime_secs > 0.0);
        assert_eq!(c.ram_total, meminfo_kb("MemTotal") * 1024);
        assert!(c.ram_free > 0 && c.ram_free <= c.ram_total, "{c:?}");
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").expect("boot_id");
        assert_eq!(g.boot_id(), Some(boot_id.trim()));
        assert_eq!(g.boot_id().map(str::len), Some(36));
    }

    #[test]
    fn full_fields_from_the_real_proc_and_sys() {
        let mut g = Gatherer::new(Paths::default());
        let f = g.full();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
        assert_eq!(f.hostname.as_deref(), Some(host.trim()));
        assert_eq!(f.kernel.as_deref(), Some(release.trim()));
        let cmdline = std::fs::read_to_string("/proc/cmdline").expect("cmdline");
        assert_eq!(f.cmdline, Some(mask_cmdline(cmdline.trim())));
        let modules = f.modules.expect("modules");
        assert!(modules.windows(2).all(|w| w[0] <= w[1]), "not sorted");
        match std::fs::read_to_string("/proc/modules") {
            Ok(text) => assert_eq!(modules.len(), text.lines().count()),
            Err(_) => assert!(modules.is_empty()),
        }
        let expected = match std::fs::read_to_string("/sys/fs/selinux/enforce") {
            Ok(s) if s.trim() == "1" => "enforcing",
            Ok(_) => "permissive",
            Err(_) => "disabled",
        };
        assert_eq!(f.selinux.as_deref(), Some(expected));
    }

    #[test]
    fn cpu_sample_from_the_real_proc_stat() {
        let g = Gatherer::new(Paths::default());
        let a = g.cpu_sample().expect("cpu line");
        assert!(a.total > 0 && a.busy <= a.total);
        // Burn a little CPU so the counters move.
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(50) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let b = g.cpu_sample().expect("cpu line");
        assert!(b.total >= a.total && b.busy >= a.busy, "{a:?} -> {b:?}");
        assert!(g.cpus() >= 1);
    }

    #[test]
    fn fake_proc_tree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path();
        std::fs::create_dir_all(p.join("proc/sys/kernel/random")).expect("mkdir");
        std::fs::create_dir_all(p.join("sys/fs/selinux")).expect("mkdir");
        std::fs::write(
            p.join("proc/sys/kernel/random/boot_id"),
            "0b4d0a1e-0000-4000-8000-000000000001\n",
        )
        .expect("write");
        std::fs::write(
            p.join("proc/meminfo"),
            "MemTotal:        2048 kB\nMemFree:          100 kB\nMemAvailable:    1024 kB\n",
        )
        .expect("write");
        std::fs::write(
            p.join("proc/modules"),
            "virtio_net 61440 0 - Live 0x0000000000000000\n\
             e1000 155648 0 - Live 0x0000000000000000\n\
             ahci 45056 2 - Live 0x0000000000000000\n",
        )
        .expect("write");
        std::fs::write(
            p.join("proc/cmdline"),
            "console=ttyS0 wulf.node=abc wulf.cred=s3cret quiet\n",
        )
        .expect("write");
        std::fs::write(
            p.join("proc/stat"),
            "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 100 0 50 800 50 0 0 0 0 0\n",
        )
        .expect("write");
        std::fs::write(p.join("sys/fs/selinux/enforce"), "1").expect("write");
        let mut g = Gatherer::new(Paths {
            proc_dir: p.join("proc"),
            sys_dir: p.join("sys"),
        });
        assert_eq!(g.boot_id(), Some("0b4d0a1e-0000-4000-8000-000000000001"));
        let c = g.cheap();
        assert_eq!((c.ram_total, c.ram_free), (2048 * 1024, 1024 * 1024));
        let f = g.full();
        assert_eq!(
            f.modules,
            Some(vec!["ahci".into(), "e1000".into(), "virtio_net".into()])
        );
        assert_eq!(
            f.cmdline.as_deref(),
            Some("console=ttyS0 wulf.node=abc wulf.cred=*** quiet")
        );
        assert_eq!(f.selinux.as_deref(), Some("enforcing"));
        assert_eq!(
            g.cpu_sample(),
            Some(CpuSample {
                busy: 150,
                total: 1000
            })
        );
        std::fs::write(p.join("sys/fs/selinux/enforce"), "0\n").expect("write");
        assert_eq!(selinux(&p.join("sys")).as_deref(), Some("permissive"));
        std::fs::remove_file(p.join("sys/fs/selinux/enforce")).expect("rm");
        assert_eq!(selinux(&p.join("sys")).as_deref(), Some("disabled"));
        std::fs::remove_file(p.join("proc/modules")).expect("rm");
        assert_eq!(g.full().modules, Some(vec![]));
    }

    #[test]
    fn meminfo_parsing() {
        assert_eq!(
            parse_meminfo("MemTotal: 10 kB\nMemFree: 3 kB\nMemAvailable: 7 kB\nBuffers: 1 kB\n"),
            (10240, 7168)
        );
        // Old kernels have no MemAvailable.
        assert_eq!(
            parse_meminfo("MemTotal: 10 kB\nMemFree: 3 kB\n"),
            (10240, 3072)
        );
        assert_eq!(parse_meminfo("garbage\nMemTotal: x kB\n"), (0, 0));
    }

    #[test]
    fn modules_are_sorted() {
        let m = parse_modules("zz 1 0 - Live 0x0\naa 1 0 - Live 0x0\n\nmm 1 0 - Live 0x0\n");
        assert_eq!(m, vec!["aa", "mm", "zz"]);
        assert!(parse_modules("").is_empty());
    }

    #[test]
    fn cmdline_masking() {
        assert_eq!(mask_cmdline("wulf.cred=abc"), "wulf.cred=***");
        assert_eq!(
            mask_cmdline("a=1 wulf.cred=abc b=2"),
            "a=1 wulf.cred=*** b=2"
        );
        assert_eq!(
            mask_cmdline("a=1  wulf.cred=abc\twulf.cred=def"),
            "a=1  wulf.cred=***\twulf.cred=***"
        );
        assert_eq!(mask_cmdline("x wulf.cred=\"a b c\" y"), "x wulf.cred=*** y");
        assert_eq!(mask_cmdline("x \"wulf.cred=a b\" y"), "x wulf.cred=*** y");
        assert_eq!(mask_cmdline("x wulf.cred= y"), "x wulf.cred=*** y");
        // Only whole parameters named wulf.cred are masked.
        assert_eq!(mask_cmdline("notwulf.cred=abc"), "notwulf.cred=abc");
        assert_eq!(mask_cmdline("wulf.credx=abc"), "wulf.credx=abc");
        assert_eq!(
            mask_cmdline("a wulf.enroll=t0k3n wulf.cred=c b"),
            "a wulf.enroll=*** wulf.cred=*** b"
        );
        assert_eq!(mask_cmdline("\"wulf.enroll=t k\" b"), "wulf.enroll=*** b");
        assert_eq!(mask_cmdline("é wulf.cred=ü ö"), "é wulf.cred=*** ö");
        assert_eq!(mask_cmdline(""), "");
        assert!(!mask_cmdline("wulf.node=u wulf.cred=topsecret").contains("topsecret"));
    }

    #[test]
    fn cpu_line_parsing() {
        assert_eq!(
            parse_cpu_line("cpu  10 2 3 80 5 0 0 0 0 0"),
            Some(CpuSample {
                busy: 15,
                total: 100
            })
        );
        // Guest time is already in user time: not counted twice.
        assert_eq!(
            parse_cpu_line("cpu  10 0 0 90 0 0 0 0 10 0"),
            Some(CpuSample {
                busy: 10,
                total: 100
            })
        );
        assert_eq!(parse_cpu_line("cpu0 10 0 0 90"), None);
        assert_eq!(parse_cpu_line("cpu 1 2"), None);
        assert_eq!(parse_cpu_line("cpu a b c d"), None);
    }
}
