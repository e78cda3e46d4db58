//! The agent's own cost: CPU time from `getrusage(RUSAGE_SELF)` and wall time per report
//! cycle (gathering + sending + acting on the answer).

use std::time::{Duration, Instant};

use wulf_api::status::AgentCost;

/// User + system CPU time the process has used, in microseconds.
pub fn cpu_time_us() -> u64 {
    // SAFETY: rusage is plain old data; all-zero is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: ru is a valid, writable rusage struct.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0;
    }
    let us = |t: libc::timeval| {
        u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000 + u64::try_from(t.tv_usec).unwrap_or(0)
    };
    us(ru.ru_utime) + us(ru.ru_stime)
}

/// One report cycle being measured.
pub struct Cycle {
    start: Instant,
    cpu0: u64,
}

impl Cycle {
    pub fn start() -> Cycle {
        Cycle {
            start: Instant::now(),
            cpu0: cpu_time_us(),
        }
    }

    /// Wall time so far.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// (CPU µs, wall µs) since the start.
    pub fn finish(&self) -> (u64, u64) {
        let wall = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        (cpu_time_us().saturating_sub(self.cpu0), wall)
    }
}

/// Totals over the agent's life.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cost {
    pub last_cpu_us: u64,
    pub last_wall_us: u64,
    pub worst_wall_us: u64,
    pub reports: u64,
}

impl Cost {
    /// Record a finished cycle.
    pub fn record(&mut self, cpu_us: u64, wall_us: u64) {
        self.last_cpu_us = cpu_us;
        self.last_wall_us = wall_us;
        self.worst_wall_us = self.worst_wall_us.max(wall_us);
        self.reports += 1;
    }

    /// What goes in a report: the cycles finished before it, and all CPU time so far.
    pub fn snapshot(&self) -> AgentCost {
        AgentCost {
            version: crate::VERSION.to_string(),
            cpu_us: self.last_cpu_us,
            wall_us: self.last_wall_us,
            worst_wall_us: self.worst_wall_us,
            total_cpu_us: cpu_time_us(),
            reports: self.reports,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_counts_work() {
        let c = Cycle::start();
        let mut x = 1u64;
        while c.elapsed() < Duration::from_millis(30) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let (cpu, wall) = c.finish();
        assert!(wall >= 30_000, "wall {wall}");
        // The loop is pure CPU; allow for scheduling on a loaded machine. (Other test
        // threads add to the process's CPU time, so there is no useful upper bound here.)
        assert!(cpu > 5_000, "cpu {cpu}");
        assert!(cpu_time_us() >= cpu);
    }

    #[test]
    fn totals() {
        let mut c = Cost::default();
        c.record(10, 300);
        c.record(20, 100);
        let s = c.snapshot();
        assert_eq!(
            (s.cpu_us, s.wall_us, s.worst_wall_us, s.reports),
            (20, 100, 300, 2)
        );
        assert_eq!(s.version, crate::VERSION);
        assert!(s.total_cpu_us > 0);
    }
}
