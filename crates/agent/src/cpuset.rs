//! `_status_cpuset`: pin the agent to some CPUs with `sched_setaffinity(2)`.

use std::io;
use std::path::Path;

use tracing::{info, warn};

/// The highest CPU number + 1 that a `cpu_set_t` holds.
pub const MAX_CPUS: usize = libc::CPU_SETSIZE as usize;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CpusetError {
    #[error("'{0}' is not a CPU list like 0-3,7")]
    Syntax(String),
    #[error("CPU {0} is beyond the {MAX_CPUS} CPUs the agent can pin to")]
    TooHigh(usize),
    #[error("this node has no CPU {cpu} (online: {online})")]
    Missing { cpu: usize, online: String },
}

/// Parse a CPU list (`0`, `0-1,3`, the format of `/sys/devices/system/cpu/online`) into sorted,
/// distinct CPU numbers.
pub fn parse(s: &str) -> Result<Vec<usize>, CpusetError> {
    let bad = || CpusetError::Syntax(s.to_string());
    let mut cpus = Vec::new();
    for part in s.trim().split(',') {
        let part = part.trim();
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let num = |x: &str| {
            if x.is_empty() || !x.bytes().all(|c| c.is_ascii_digit()) {
                return Err(bad());
            }
            let n: usize = x.parse().map_err(|_| CpusetError::TooHigh(usize::MAX))?;
            if n >= MAX_CPUS {
                return Err(CpusetError::TooHigh(n));
            }
            Ok(n)
        };
        let (a, b) = (num(a)?, num(b)?);
        if b < a {
            return Err(bad());
        }
        cpus.extend(a..=b);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// Format CPU numbers as a compact list (`0-2,5`).
pub fn format(cpus: &[usize]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        let mut end = start;
        while i + 1 < cpus.len() && cpus[i + 1] == end + 1 {
            i += 1;
            end = cpus[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(",")
}

/// The CPUs the kernel has online, from `<sys>/devices/system/cpu/online`.
pub fn online(sys_dir: &Path) -> io::Result<Vec<usize>> {
    let text = std::fs::read_to_string(sys_dir.join("devices/system/cpu/online"))?;
    parse(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
}

/// Check a requested list against the node's online CPUs.
pub fn check(requested: &[usize], online: &[usize]) -> Result<(), CpusetError> {
    match requested.iter().find(|c| !online.contains(c)) {
        Some(&cpu) => Err(CpusetError::Missing {
            cpu,
            online: format(online),
        }),
        None => Ok(()),
    }
}

/// The calling thread's CPU affinity.
pub fn get_affinity() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain old data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is a valid, writable cpu_set_t of the size passed.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: CPU_ISSET reads a valid set for indexes below CPU_SETSIZE.
    Ok((0..MAX_CPUS)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

/// Pin the calling thread (the agent is single-threaded: the process) to `cpus`.
pub fn set_affinity(cpus: &[usize]) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain old data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        if c >= MAX_CPUS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                CpusetError::TooHigh(c).to_string(),
            ));
        }
        // SAFETY: c is below CPU_SETSIZE.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: set is a valid cpu_set_t of the size passed.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Follows `_status_cpuset`: applies it when it changes, restores the affinity the agent
/// started with when it is cleared, and keeps the current affinity (with a warning) when the
/// value is bad or names CPUs the node lacks.
pub struct Pinner {
    original: Option<Vec<usize>>,
    /// The attribute value last acted on (`None`: unset).
    seen: Option<String>,
}

impl Default for Pinner {
    fn default() -> Self {
        Self::new()
    }
}

impl Pinner {
    pub fn new() -> Pinner {
        let original = match get_affinity() {
            Ok(v) => Some(v),
            Err(e) => {
                warn!("cannot read the agent's CPU affinity: {e}");
                None
            }
        };
        Pinner {
            original,
            seen: None,
        }
    }

    /// Act on the current attribute value; returns the error when it could not be applied.
    /// Does nothing when the value has not changed since the last call.
    pub fn update(&mut self, value: Option<&str>, sys_dir: &Path) -> Result<(), CpusetError> {
        let value = value.map(str::trim).filter(|v| !v.is_empty());
        if value == self.seen.as_deref() {
            return Ok(());
        }
        self.seen = value.map(str::to_string);
        let Some(value) = value else {
            if let Some(orig) = &self.original {
                match set_affinity(orig) {
                    Ok(()) => info!(
                        "_status_cpuset cleared: CPU affinity back to {}",
                        format(orig)
                    ),
                    Err(e) => warn!("cannot restore the CPU affinity {}: {e}", format(orig)),
                }
            }
            return Ok(());
        };
        let result = parse(value).and_then(|cpus| {
            match online(sys_dir) {
                Ok(on) => check(&cpus, &on)?,
                Err(e) => warn!("cannot read the online CPUs: {e}"),
            }
            Ok(cpus)
        });
        match result {
            Ok(cpus) => match set_affinity(&cpus) {
                Ok(()) => {
                    info!("pinned to CPUs {} (_status_cpuset)", format(&cpus));
                    Ok(())
                }
                Err(e) => {
                    warn!("_status_cpuset={value}: sched_setaffinity failed: {e}; keeping the current CPU affinity");
                    Ok(())
                }
            },
            Err(e) => {
                warn!("_status_cpuset: {e}; keeping the current CPU affinity");
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing() {
        assert_eq!(parse("0"), Ok(vec![0]));
        assert_eq!(parse("0-1,3"), Ok(vec![0, 1, 3]));
        assert_eq!(parse(" 3, 1-2 ,2\n"), Ok(vec![1, 2, 3]));
        assert_eq!(parse("5-5"), Ok(vec![5]));
        for bad in [
            "", "a", "1-", "-1", "3-1", "1,,2", "1-2-3", "+1", "0x1", "1.5",
        ] {
            assert!(
                matches!(parse(bad), Err(CpusetError::Syntax(_))),
                "{bad:?} -> {:?}",
                parse(bad)
            );
        }
        assert_eq!(parse("1024"), Err(CpusetError::TooHigh(1024)));
        assert_eq!(parse("0-4000000000"), Err(CpusetError::TooHigh(4000000000)));
        assert!(parse("99999999999999999999999").is_err());
    }

    #[test]
    fn formatting() {
        assert_eq!(format(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
        assert_eq!(format(&[3]), "3");
        assert_eq!(format(&[]), "");
        assert_eq!(parse(&format(&[0, 2, 3, 4, 9])), Ok(vec![0, 2, 3, 4, 9]));
    }

    #[test]
    fn checking_against_online_cpus() {
        assert_eq!(check(&[0, 1], &[0, 1, 2, 3]), Ok(()));
        assert_eq!(
            check(&[1, 7], &[0, 1]),
            Err(CpusetError::Missing {
                cpu: 7,
                online: "0-1".into()
            })
        );
        let on = online(Path::new("/sys")).expect("online CPUs");
        assert!(!on.is_empty());
        assert_eq!(on.len(), crate::gather::online_cpus() as usize);
    }

    // Affinity is per thread, and each test runs on its own thread, so this does not disturb
    // the others.
    #[test]
    fn pinning_follows_the_attribute() {
        let sys = Path::new("/sys");
        let start = get_affinity().expect("affinity");
        let mut p = Pinner::new();
        let first = start[0];
        p.update(Some(&first.to_string()), sys).expect("pin");
        assert_eq!(get_affinity().expect("affinity"), vec![first]);
        // Bad values and missing CPUs keep the current affinity.
        assert!(matches!(
            p.update(Some("3-1"), sys),
            Err(CpusetError::Syntax(_))
        ));
        assert_eq!(get_affinity().expect("affinity"), vec![first]);
        assert!(matches!(
            p.update(Some("1023"), sys),
            Err(CpusetError::Missing { cpu: 1023, .. })
        ));
        assert_eq!(get_affinity().expect("affinity"), vec![first]);
        // The same value again is not re-applied (no second warning).
        assert_eq!(p.update(Some("1023"), sys), Ok(()));
        // Cleared: back to what the agent started with.
        p.update(None, sys).expect("clear");
        assert_eq!(get_affinity().expect("affinity"), start);
        if start.len() > 1 {
            let two = format(&start[..2]);
            p.update(Some(&two), sys).expect("pin two");
            assert_eq!(get_affinity().expect("affinity"), start[..2].to_vec());
            p.update(Some(""), sys).expect("clear");
            assert_eq!(get_affinity().expect("affinity"), start);
        }
    }
}
