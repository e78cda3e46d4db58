//! The report cycle and the loop around it, and the orphan's decisions (run-to-completion,
//! see [`wulf_api::command::orphan`]): the loop counts the time since a head last accepted a
//! report, samples CPU use while the node is an orphan, and reboots when the node's
//! `_orphan_policy` says so.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};
use wulf_api::command::orphan::{self, Event, OrphanWatch};
use wulf_api::status::{Hardware, ReportReply, ReportState, StatusReport};

use crate::attrfile::AttrFile;
use crate::busy;
use crate::commands::{Channel, PowerCommands, Shared};
use crate::config::Settings;
use crate::cost::{Cost, Cycle};
use crate::cpuset::Pinner;
use crate::gather::{CpuSample, Full, Gatherer, Paths};
use crate::hardware;
use crate::send::{SendError, Sender};
use crate::signals::Stop;
pub use wulf_model::{status_secs, DEFAULT_STATUS_SECS};

/// Gathering that takes longer than this is logged as a warning.
pub const SLOW_GATHER: Duration = Duration::from_millis(100);

/// The agent's state between reports.
pub struct Agent {
    node: String,
    /// `--standalone`: a refused credential is an error an admin must act on.
    standalone: bool,
    sender: Sender,
    gatherer: Gatherer,
    /// `<state-dir>/busy.flag`.
    flag_path: PathBuf,
    attr_file: AttrFile,
    attrs: BTreeMap<String, String>,
    interval: u32,
    pinner: Pinner,
    /// The inventory, once gathered, until a report carrying it succeeds.
    hardware: Option<Hardware>,
    hardware_sent: bool,
    prev_cpu: Option<CpuSample>,
    /// Busy mode in the last report.
    busy: Option<bool>,
    cost: Cost,
    failures: u32,
    /// Bad attribute values already warned about: (_status_secs, _busy).
    warned: (Option<String>, Option<String>),
    /// Bad `_orphan_*` values already warned about.
    warned_orphan: Vec<String>,
    /// What the command thread needs from the report loop, and tells it.
    shared: Arc<Shared>,
    orphan: OrphanWatch,
    /// The CPU sample at the last tick, while the node is an orphan.
    orphan_cpu: Option<CpuSample>,
    power: PowerCommands,
    self_reboot: bool,
    cred: String,
    /// The address reported, and the head it leads to (found again when that changes).
    local_ip: Option<(String, String)>,
}

impl Agent {
    /// Attributes left in `<state_dir>/attributes.ini` by an earlier run apply until the head
    /// answers (so `_status_secs`, `_busy` and `_status_cpuset` hold from the first report).
    pub fn new(settings: Settings, state_dir: PathBuf, paths: Paths) -> Agent {
        let attr_file = AttrFile::open(&state_dir);
        let self_reboot = settings.self_reboot();
        let sender = Sender::new(settings.heads, &settings.node, &settings.cred);
        let mut agent = Agent {
            shared: Arc::new(Shared::new(sender.current())),
            sender,
            orphan: OrphanWatch::new(orphan::Settings::default(), Instant::now()),
            orphan_cpu: None,
            power: PowerCommands {
                reboot: settings.reboot_cmd,
                poweroff: settings.poweroff_cmd,
            },
            self_reboot,
            standalone: settings.standalone,
            cred: settings.cred,
            warned_orphan: Vec::new(),
            node: settings.node,
            gatherer: Gatherer::new(paths),
            flag_path: state_dir.join(busy::FLAG_FILE),
            attrs: attr_file.attributes(),
            attr_file,
            interval: DEFAULT_STATUS_SECS,
            pinner: Pinner::new(),
            hardware: None,
            hardware_sent: false,
            prev_cpu: None,
            busy: None,
            cost: Cost::default(),
            failures: 0,
            warned: (None, None),
            local_ip: None,
        };
        agent.apply_attributes();
        agent
    }

    /// Seconds between reports (`_status_secs`).
    pub fn interval(&self) -> u32 {
        self.interval
    }

    /// Act on the current attributes: interval and CPU pinning.
    fn apply_attributes(&mut self) {
        let interval = match status_secs(&self.attrs) {
            Ok(n) => n,
            Err(bad) => {
                if self.warned.0.as_ref() != Some(&bad) {
                    warn!("_status_secs={bad:?} is not a positive number of seconds; reporting every {DEFAULT_STATUS_SECS} s");
                    self.warned.0 = Some(bad);
                }
                DEFAULT_STATUS_SECS
            }
        };
        if interval != self.interval {
            info!("reporting every {interval} s");
            self.interval = interval;
        }
        let cpuset = self.attrs.get("_status_cpuset").map(String::as_str);
        let _ = self.pinner.update(cpuset, &self.gatherer.paths().sys_dir);
        let (settings, bad) = orphan::Settings::from_attributes(&self.attrs);
        for (_, why) in &bad {
            if !self.warned_orphan.contains(why) {
                warn!("{why}; using the default");
            }
        }
        self.warned_orphan = bad.into_iter().map(|(_, why)| why).collect();
        if settings != self.orphan.settings() {
            let s = settings;
            info!(
                "orphan after {} s without a head, then {}",
                s.secs,
                match s.policy {
                    orphan::Policy::Reboot => "reboot".to_string(),
                    orphan::Policy::Idle => format!(
                        "reboot once below {}% of one CPU for {} s",
                        s.idle_pct, s.idle_secs
                    ),
                    orphan::Policy::Run => "keep running".to_string(),
                }
            );
            self.orphan.set_settings(settings);
        }
    }

    /// The state shared with the command thread.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// The command thread for this agent (started by [`Agent::run`]).
    pub fn channel(&self) -> Channel {
        Channel::new(
            &self.node,
            &self.cred,
            self.shared.clone(),
            self.power.clone(),
        )
    }

    /// True while no head has accepted a report for `_orphan_secs`, or since a head
    /// ordered the node to become an orphan (until a head accepts a report again).
    pub fn is_orphan(&self) -> bool {
        self.orphan.is_orphan()
    }

    /// This node's address on the way to the head it reports to first: that interface's
    /// address, as the kernel's route to the head picks it.
    fn local_ip(&mut self) -> Option<String> {
        let head = self.sender.current();
        match &self.local_ip {
            Some((h, ip)) if h == head => Some(ip.clone()),
            _ => {
                let ip = wulf_api::status::local_ip_toward(head)?.to_string();
                self.local_ip = Some((head.to_string(), ip.clone()));
                Some(ip)
            }
        }
    }

    /// Gather a report. `full` is false for the shutdown report (cheap fields only).
    pub fn build_report(&mut self, state: ReportState, full: bool) -> StatusReport {
        let cheap = self.gatherer.cheap();
        let busy_attr = self.attrs.get("_busy").map(String::as_str);
        let flag = &self.flag_path;
        let (gatherer, prev_cpu) = (&self.gatherer, &mut self.prev_cpu);
        let decision = busy::decide(
            busy_attr,
            || flag.exists(),
            || {
                let now = gatherer.cpu_sample();
                let busy = busy::heuristic(*prev_cpu, now, cheap.load[0], gatherer.cpus());
                *prev_cpu = now;
                busy
            },
        );
        if decision.bad_attribute {
            let v = busy_attr.unwrap_or_default().to_string();
            if self.warned.1.as_ref() != Some(&v) {
                warn!("_busy={v:?} is not a boolean; ignoring it");
                self.warned.1 = Some(v);
            }
        }
        if self.busy != Some(decision.busy) {
            match (decision.busy, self.busy.is_some()) {
                (true, _) => info!("busy mode on ({}): cheap fields only", decision.reason),
                (false, true) => info!("busy mode off ({})", decision.reason),
                (false, false) => {}
            }
        }
        self.busy = Some(decision.busy);
        // Until the head has the first report (with hardware), it gets every field, busy or
        // not: it knows nothing else about this boot.
        let f = if full && (!decision.busy || !self.hardware_sent) {
            self.gatherer.full()
        } else {
            Full::default()
        };
        let hardware = if full && !self.hardware_sent {
            let paths = self.gatherer.paths();
            Some(
                self.hardware
                    .get_or_insert_with(|| hardware::gather(paths, cheap.ram_total))
                    .clone(),
            )
        } else {
            None
        };
        let ip = self.local_ip();
        StatusReport {
            node: self.node.clone(),
            state,
            boot_id: self.gatherer.boot_id().map(str::to_string),
            uptime_secs: cheap.uptime_secs,
            interval_secs: self.interval,
            busy: decision.busy,
            load: cheap.load,
            ram_total: cheap.ram_total,
            ram_free: cheap.ram_free,
            ip,
            hostname: f.hostname,
            kernel: f.kernel,
            cmdline: f.cmdline,
            modules: f.modules,
            selinux: f.selinux,
            hardware,
            agent: Some(self.cost.snapshot()),
        }
    }

    /// One report: gather, send, act on the answer; its cost is recorded for the next one.
    pub fn cycle(&mut self) -> Result<ReportReply, SendError> {
        let c = Cycle::start();
        let report = self.build_report(ReportState::Up, true);
        let gathering = c.elapsed();
        if gathering > SLOW_GATHER {
            warn!(
                "gathering the report took {} ms (busy: {})",
                gathering.as_millis(),
                report.busy
            );
        }
        let result = self.sender.send(&report, false);
        match &result {
            Ok((reply, head)) => {
                self.accept(reply, head, report.hardware.is_some());
                if let Some(Event::Rejoined { after }) = self.orphan.answered(Instant::now()) {
                    info!(target: "audit", "rejoined: {head} took a report after {} s as an orphan", after.as_secs());
                }
            }
            Err(e) => {
                self.failures += 1;
                // Once per run of failures, not every report: the fix is the admin's.
                if self.standalone && self.failures == 1 && crate::standalone::credential_refused(e)
                {
                    tracing::error!(
                        "the head refused this standalone node's credential ({e}): issue a new \
                         enrollment token (wulf node -i NODE enroll-token), remove the kept \
                         credential (--state-dir/{}) and start the agent with --enroll-token",
                        crate::standalone::CRED_NAME
                    );
                }
            }
        }
        self.shared.set_head(self.sender.current());
        let (cpu, wall) = c.finish();
        self.cost.record(cpu, wall);
        debug!(
            "report {}: busy {}, gathering {} us, cycle {wall} us wall, {cpu} us CPU",
            self.cost.reports,
            report.busy,
            gathering.as_micros()
        );
        result.map(|(reply, _)| reply)
    }

    fn accept(&mut self, reply: &ReportReply, head: &str, had_hardware: bool) {
        if had_hardware {
            self.hardware_sent = true;
            self.hardware = None;
        }
        let changed = self.attrs != reply.attributes;
        if self.failures > 0 || self.cost.reports == 0 || changed {
            info!("reported to {head} as {}", reply.name);
        }
        self.failures = 0;
        if changed {
            self.attrs = reply.attributes.clone();
        }
        match self.attr_file.update(&self.attrs) {
            Ok(true) => info!("wrote {}", self.attr_file.path().display()),
            Ok(false) => {}
            Err(e) => warn!("cannot write {}: {e}", self.attr_file.path().display()),
        }
        self.apply_attributes();
        self.sender.learn(&reply.heads);
    }

    /// Report every interval until SIGTERM/SIGINT, then send the shutdown report. Commands
    /// from the head run in a thread of their own, started here.
    pub fn run(&mut self, stop: &Stop) {
        info!(
            "wulf-agent {} for node {} reporting to {}",
            crate::VERSION,
            self.node,
            self.sender.heads().join(",")
        );
        if let Err(e) = self.channel().spawn() {
            warn!("cannot start the command thread: {e}; the head cannot send commands");
        }
        let mut next = Instant::now();
        loop {
            if self.shared.take_orphan_order() {
                self.orphan_on_request();
            } else {
                let started = Instant::now();
                if self.orphan.may_contact(started) {
                    if let Err(e) = self.cycle() {
                        warn!(
                            "report failed ({} in a row): {e}; trying again in {} s",
                            self.failures, self.interval
                        );
                    }
                }
                self.orphan_tick();
                next = started + Duration::from_secs(u64::from(self.interval));
            }
            // An ordered orphan's quiet time may end before the next report is due.
            let wake = match self.orphan.quiet_until() {
                Some(q) if q > Instant::now() => next.min(q),
                _ => next,
            };
            if stop.sleep(wake.saturating_duration_since(Instant::now())) {
                break;
            }
        }
        self.shutdown();
    }

    /// A head ordered the node to become an orphan: send the orphan report, go quiet for
    /// `_orphan_secs` and follow the policy.
    pub fn orphan_on_request(&mut self) {
        let report = self.build_report(ReportState::Orphan, false);
        match self.sender.send(&report, true) {
            Ok((_, head)) => info!("sent the orphan report to {head}"),
            Err(e) => warn!("orphan report failed: {e}"),
        }
        let now = Instant::now();
        let events = self.orphan.ordered(now);
        self.orphan_cpu = self.gatherer.cpu_sample();
        self.shared.set_quiet(!self.orphan.may_contact(now));
        self.orphan_events(events);
    }

    /// Feed the orphan watch with the time and, for an orphan, the CPU use since the last
    /// tick; act on what it says.
    pub fn orphan_tick(&mut self) {
        let now = Instant::now();
        let pct = if self.orphan.is_orphan() {
            let sample = self.gatherer.cpu_sample();
            let pct = match (self.orphan_cpu, sample) {
                (Some(a), Some(b)) => orphan::cpu_pct(
                    b.busy.saturating_sub(a.busy),
                    b.total.saturating_sub(a.total),
                    self.gatherer.cpus(),
                ),
                _ => None,
            };
            self.orphan_cpu = sample;
            pct
        } else {
            None
        };
        let events = self.orphan.tick(now, pct);
        if !self.orphan.is_orphan() {
            self.orphan_cpu = None;
        } else if self.orphan_cpu.is_none() {
            self.orphan_cpu = self.gatherer.cpu_sample();
        }
        // An orphan order the loop has not taken yet keeps the command thread quiet too.
        self.shared
            .set_quiet(!self.orphan.may_contact(now) || self.shared.orphan_pending());
        self.orphan_events(events);
    }

    fn orphan_events(&mut self, events: Vec<Event>) {
        for e in events {
            match e {
                Event::Orphaned { ordered } => {
                    let s = self.orphan.settings();
                    if ordered {
                        info!(target: "audit", "orphan on request: no head contacted for {} s; _orphan_policy={}", s.secs, s.policy.as_str());
                    } else {
                        info!(target: "audit", "orphan: no head took a report for {} s; _orphan_policy={}", s.secs, s.policy.as_str());
                    }
                    // A head that takes this node back gets the whole picture again.
                    self.hardware_sent = false;
                }
                Event::Rejoined { .. } => {}
                Event::Reboot { reason } => {
                    if self.self_reboot {
                        info!(target: "audit", command = %self.power.reboot.join(" "), "{reason}: rebooting");
                        crate::exec::start_detached(&self.power.reboot, "orphan reboot");
                    } else {
                        warn!("{reason}: NOT rebooting, because this machine was not booted by a wulf head (no wulf.node= on its kernel command line) and no reboot command is configured (reboot_cmd=)");
                    }
                }
            }
        }
    }

    /// Send the last report, `state: shutdown`, with the short timeout (not while the node is
    /// an orphan that must contact no head: the head keeps showing it orphaned).
    pub fn shutdown(&mut self) {
        if !self.orphan.may_contact(Instant::now()) {
            info!("stopping as a quiet orphan: no shutdown report");
            return;
        }
        let report = self.build_report(ReportState::Shutdown, false);
        match self.sender.send(&report, true) {
            Ok((_, head)) => info!("sent the shutdown report to {head}"),
            Err(e) => warn!("shutdown report failed: {e}"),
        }
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
    fn status_secs_from_attributes() {
        assert_eq!(status_secs(&attrs(&[])), Ok(10));
        assert_eq!(status_secs(&attrs(&[("_status_secs", "30")])), Ok(30));
        assert_eq!(status_secs(&attrs(&[("_status_secs", " 1 ")])), Ok(1));
        assert_eq!(
            status_secs(&attrs(&[("_status_secs", "0")])),
            Err("0".into())
        );
        assert_eq!(
            status_secs(&attrs(&[("_status_secs", "ten")])),
            Err("ten".into())
        );
    }

    fn agent(dir: &std::path::Path) -> Agent {
        Agent::new(
            Settings::new(vec!["http://127.0.0.1:1".into()], "uid", "cred"),
            dir.to_path_buf(),
            Paths::default(),
        )
    }

    #[test]
    fn reports_follow_busy_mode_and_hardware_is_kept_until_sent() {
        let dir = tempfile::tempdir().expect("tempdir");
        crate::attrfile::write_atomic(
            dir.path(),
            crate::attrfile::FILE_NAME,
            b"[attributes]\n_status_secs=3\n_busy=no\n",
        )
        .expect("write");
        let mut a = agent(dir.path());
        // attributes.ini from an earlier run applies at once.
        assert_eq!(a.interval(), 3);
        let r = a.build_report(ReportState::Up, true);
        assert_eq!(r.node, "uid");
        assert_eq!(r.interval_secs, 3);
        assert!(!r.busy);
        assert!(r.hostname.is_some() && r.kernel.is_some() && r.cmdline.is_some());
        assert!(r.modules.is_some() && r.selinux.is_some());
        assert!(r.hardware.is_some());
        assert!(r.uptime_secs > 0.0 && r.ram_total > 0);
        assert_eq!(r.agent.as_ref().map(|c| c.reports), Some(0));
        // Its address on the way to the head (127.0.0.1 here), in every report.
        assert_eq!(r.ip.as_deref(), Some("127.0.0.1"));
        // Not sent yet: the next report carries the same inventory.
        let r2 = a.build_report(ReportState::Up, true);
        assert_eq!(r2.hardware, r.hardware);
        // The flag file does not matter while _busy says no.
        std::fs::write(dir.path().join(busy::FLAG_FILE), "").expect("flag");
        assert!(!a.build_report(ReportState::Up, true).busy);
        // Without _busy, the flag file makes the node busy. Until the first report is
        // accepted it still carries every field (the head knows nothing of this boot yet)...
        a.attrs.remove("_busy");
        let r = a.build_report(ReportState::Up, true);
        assert!(r.busy);
        assert!(r.hostname.is_some() && r.kernel.is_some() && r.hardware.is_some());
        // ... then cheap fields only.
        a.hardware_sent = true;
        let r = a.build_report(ReportState::Up, true);
        assert!(r.busy);
        assert!(r.hostname.is_none() && r.kernel.is_none() && r.cmdline.is_none());
        assert!(r.modules.is_none() && r.selinux.is_none());
        assert_eq!(r.ip.as_deref(), Some("127.0.0.1"));
        assert!(r.uptime_secs > 0.0 && r.ram_total > 0 && r.ram_free > 0);
        assert!(r.boot_id.is_some());
        // _busy=yes without a flag file.
        std::fs::remove_file(dir.path().join(busy::FLAG_FILE)).expect("rm");
        a.attrs.insert("_busy".into(), "YES".into());
        assert!(a.build_report(ReportState::Up, true).busy);
        // The shutdown report: cheap fields, no inventory.
        a.attrs.insert("_busy".into(), "false".into());
        let s = a.build_report(ReportState::Shutdown, false);
        assert_eq!(s.state, ReportState::Shutdown);
        assert!(s.hardware.is_none() && s.hostname.is_none());
    }

    /// What gathering a report costs on this machine, without the HTTP exchange:
    /// `cargo test --release -p wulf-agent -- --ignored gathering_cost --nocapture`.
    #[test]
    #[ignore]
    fn gathering_cost() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut a = agent(dir.path());
        let _ = a.build_report(ReportState::Up, true);
        a.hardware_sent = true;
        const N: u32 = 20_000;
        for (label, busy) in [("not busy", "no"), ("busy", "yes"), ("heuristic", "")] {
            if busy.is_empty() {
                a.attrs.remove("_busy");
            } else {
                a.attrs.insert("_busy".into(), busy.into());
            }
            let c = Cycle::start();
            let mut bytes = 0;
            for _ in 0..N {
                let r = a.build_report(ReportState::Up, true);
                bytes += serde_json::to_vec(&r).map_or(0, |v| v.len());
            }
            let (cpu, wall) = c.finish();
            println!(
                "{label}: {:.1} us CPU, {:.1} us wall per report ({} bytes of JSON)",
                cpu as f64 / f64::from(N),
                wall as f64 / f64::from(N),
                bytes / N as usize
            );
        }
        let c = Cycle::start();
        let hw = hardware::gather(&Paths::default(), 1);
        let (cpu, wall) = c.finish();
        println!(
            "hardware inventory: {cpu} us CPU, {wall} us wall ({} NICs, {} disks)",
            hw.nics.len(),
            hw.disks.len()
        );
    }

    #[test]
    fn a_failed_cycle_keeps_the_inventory_and_counts_its_cost() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut a = agent(dir.path());
        assert!(a.cycle().is_err());
        assert!(!a.hardware_sent && a.hardware.is_some());
        assert_eq!(a.failures, 1);
        assert_eq!(a.cost.reports, 1);
        assert!(a.cost.last_wall_us > 0);
        let r = a.build_report(ReportState::Up, true);
        assert!(r.hardware.is_some());
        let cost = r.agent.expect("cost");
        assert_eq!(cost.reports, 1);
        assert!(cost.worst_wall_us >= cost.wall_us && cost.wall_us > 0);
        // Nothing was written: no answer.
        assert!(!dir.path().join(crate::attrfile::FILE_NAME).exists());
    }
}
