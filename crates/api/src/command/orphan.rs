//! Run-to-completion: when a node becomes an orphan and what it then does.
//!
//! A node is an **orphan** when no head has accepted any of its reports for `_orphan_secs`
//! (default 60), or at once when a head orders it (`wulf node orphan`, before head
//! maintenance). What an orphan does is its `_orphan_policy`:
//!
//! - `reboot` (default): reboot at once, so it boots again from whichever head answers;
//! - `idle`: keep running, and reboot once CPU use has stayed below `_orphan_idle_pct` (% of
//!   one CPU, default 1) for `_orphan_idle_secs` (default 300) in a row; any busier interval
//!   restarts the count;
//! - `run`: never reboot on its own.
//!
//! An orphan keeps trying the heads (after an ordered orphan's quiet time of `_orphan_secs`,
//! during which it contacts none); an orphan that is still running when a head accepts a
//! report again has **rejoined**: it reports as usual, without rebooting.
//!
//! [`OrphanWatch`] is the decision alone, with time and CPU samples as inputs, so wulf-agent
//! and `wulf sim` behave the same and the rules are tested without waiting.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// `_orphan_secs` when unset.
pub const DEFAULT_SECS: u64 = 60;
/// `_orphan_idle_pct` when unset: % of one CPU.
pub const DEFAULT_IDLE_PCT: f64 = 1.0;
/// `_orphan_idle_secs` when unset.
pub const DEFAULT_IDLE_SECS: u64 = 300;
/// An orphan whose reboot did not happen asks again after this long at the least.
pub const REBOOT_RETRY: Duration = Duration::from_secs(60);

/// `_orphan_policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    #[default]
    Reboot,
    Idle,
    Run,
}

impl Policy {
    pub fn parse(s: &str) -> Option<Policy> {
        match s.trim().to_ascii_lowercase().as_str() {
            "reboot" => Some(Policy::Reboot),
            "idle" => Some(Policy::Idle),
            "run" => Some(Policy::Run),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Reboot => "reboot",
            Policy::Idle => "idle",
            Policy::Run => "run",
        }
    }
}

/// The `_orphan_*` attributes of a node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// `_orphan_secs`: how long without an answer makes an orphan, and how long an ordered
    /// orphan stays quiet.
    pub secs: u64,
    pub policy: Policy,
    /// `_orphan_idle_pct`.
    pub idle_pct: f64,
    /// `_orphan_idle_secs`.
    pub idle_secs: u64,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            secs: DEFAULT_SECS,
            policy: Policy::Reboot,
            idle_pct: DEFAULT_IDLE_PCT,
            idle_secs: DEFAULT_IDLE_SECS,
        }
    }
}

/// The attributes [`Settings::from_attributes`] reads.
pub const ATTRIBUTES: [&str; 4] = [
    "_orphan_secs",
    "_orphan_policy",
    "_orphan_idle_pct",
    "_orphan_idle_secs",
];

/// Check one `_orphan_*` attribute's value; the error says what is wrong.
pub fn check(name: &str, value: &str) -> Result<(), String> {
    wulf_model::attributes::check_orphan(name, value)
}

impl Settings {
    /// The settings in a node's effective attributes. A bad value leaves that setting at its
    /// default and is returned as (attribute, what is wrong with it).
    pub fn from_attributes(attrs: &BTreeMap<String, String>) -> (Settings, Vec<(String, String)>) {
        let mut s = Settings::default();
        let mut bad = Vec::new();
        for name in ATTRIBUTES {
            let Some(value) = attrs.get(name) else {
                continue;
            };
            if let Err(why) = check(name, value) {
                bad.push((name.to_string(), format!("{name}={value:?}: {why}")));
                continue;
            }
            let v = value.trim();
            match name {
                "_orphan_secs" => s.secs = v.parse().unwrap_or(DEFAULT_SECS),
                "_orphan_idle_secs" => s.idle_secs = v.parse().unwrap_or(DEFAULT_IDLE_SECS),
                "_orphan_policy" => s.policy = Policy::parse(v).unwrap_or_default(),
                "_orphan_idle_pct" => s.idle_pct = v.parse().unwrap_or(DEFAULT_IDLE_PCT),
                _ => {}
            }
        }
        (s, bad)
    }
}

/// What the node should do, as told by [`OrphanWatch`].
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The node became an orphan (`ordered`: on a head's request).
    Orphaned { ordered: bool },
    /// A head accepted a report again: the orphan rejoined, after this long.
    Rejoined { after: Duration },
    /// Reboot now; the reason is for the log.
    Reboot { reason: String },
}

#[derive(Debug, Clone)]
struct Orphan {
    since: Instant,
    /// An ordered orphan contacts no head before this.
    quiet_until: Option<Instant>,
    /// Start of the current run of idle intervals (idle policy).
    idle_since: Instant,
    /// When the last reboot was asked for.
    reboot_asked: Option<Instant>,
}

/// Whether the node is an orphan and what it must do, fed with the times heads answered and
/// CPU use samples.
#[derive(Debug, Clone)]
pub struct OrphanWatch {
    settings: Settings,
    last_answer: Instant,
    orphan: Option<Orphan>,
}

impl OrphanWatch {
    /// A watch that counts from `now` (the node has just started: no head has answered yet).
    pub fn new(settings: Settings, now: Instant) -> OrphanWatch {
        OrphanWatch {
            settings,
            last_answer: now,
            orphan: None,
        }
    }

    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// Take new settings (from a head's answer or the attributes file).
    pub fn set_settings(&mut self, settings: Settings) {
        self.settings = settings;
    }

    pub fn is_orphan(&self) -> bool {
        self.orphan.is_some()
    }

    /// False while an ordered orphan must contact no head.
    pub fn may_contact(&self, now: Instant) -> bool {
        self.quiet_until().is_none_or(|t| now >= t)
    }

    /// When an ordered orphan's quiet time ends.
    pub fn quiet_until(&self) -> Option<Instant> {
        self.orphan.as_ref().and_then(|o| o.quiet_until)
    }

    /// A head accepted a report at `now`. An orphan rejoins (answers that arrive while it
    /// should be quiet are ignored).
    pub fn answered(&mut self, now: Instant) -> Option<Event> {
        if !self.may_contact(now) {
            return None;
        }
        self.last_answer = now;
        self.orphan.take().map(|o| Event::Rejoined {
            after: now.saturating_duration_since(o.since),
        })
    }

    /// A head ordered the node to become an orphan at `now`: it stays quiet for
    /// `_orphan_secs`, and with the reboot policy reboots at once.
    pub fn ordered(&mut self, now: Instant) -> Vec<Event> {
        let quiet = now + Duration::from_secs(self.settings.secs);
        let mut events = vec![Event::Orphaned { ordered: true }];
        match &mut self.orphan {
            Some(o) => o.quiet_until = Some(quiet),
            None => {
                self.orphan = Some(Orphan {
                    since: now,
                    quiet_until: Some(quiet),
                    idle_since: now,
                    reboot_asked: None,
                })
            }
        }
        events.extend(self.policy(now, None, true));
        events
    }

    /// Called regularly (every report interval). `cpu_pct` is the CPU use since the last call,
    /// as % of one CPU (`None` when unknown, which counts as busy: an orphan that cannot
    /// measure never reboots for being idle).
    pub fn tick(&mut self, now: Instant, cpu_pct: Option<f64>) -> Vec<Event> {
        let mut events = Vec::new();
        let fresh = self.orphan.is_none();
        if fresh {
            let silent = now.saturating_duration_since(self.last_answer);
            if silent < Duration::from_secs(self.settings.secs) {
                return events;
            }
            self.orphan = Some(Orphan {
                since: now,
                quiet_until: None,
                idle_since: now,
                reboot_asked: None,
            });
            events.push(Event::Orphaned { ordered: false });
        }
        events.extend(self.policy(now, cpu_pct, fresh));
        events
    }

    /// The policy's verdict for an orphan at `now`. A fresh orphan's CPU sample is from
    /// before it was one and does not count.
    fn policy(&mut self, now: Instant, cpu_pct: Option<f64>, fresh: bool) -> Option<Event> {
        let s = self.settings;
        let o = self.orphan.as_mut()?;
        let reason = match s.policy {
            Policy::Run => return None,
            Policy::Reboot => format!(
                "orphan (no head for {} s or ordered), _orphan_policy=reboot",
                s.secs
            ),
            Policy::Idle => {
                if !fresh && cpu_pct.is_none_or(|p| p >= s.idle_pct) {
                    o.idle_since = now;
                }
                let idle = now.saturating_duration_since(o.idle_since);
                if idle < Duration::from_secs(s.idle_secs) {
                    return None;
                }
                format!(
                    "orphan idle (CPU below {}% of one CPU) for {} s, _orphan_policy=idle",
                    s.idle_pct,
                    idle.as_secs()
                )
            }
        };
        let retry = REBOOT_RETRY.max(Duration::from_secs(s.secs));
        if o.reboot_asked
            .is_some_and(|t| now.saturating_duration_since(t) < retry)
        {
            return None;
        }
        o.reboot_asked = Some(now);
        Some(Event::Reboot { reason })
    }
}

/// CPU use between two `/proc/stat` samples as % of one CPU: the busy share of all CPUs'
/// time, times the number of CPUs. `None` when the counters did not advance.
pub fn cpu_pct(busy: u64, total: u64, cpus: u32) -> Option<f64> {
    (total > 0).then(|| busy as f64 / total as f64 * f64::from(cpus.max(1)) * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn settings(policy: Policy) -> Settings {
        Settings {
            secs: 60,
            policy,
            idle_pct: 1.0,
            idle_secs: 300,
        }
    }

    fn reboots(e: &[Event]) -> bool {
        e.iter().any(|e| matches!(e, Event::Reboot { .. }))
    }

    #[test]
    fn attributes_with_defaults_and_bad_values() {
        let attrs = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            Settings::from_attributes(&attrs(&[])).0,
            Settings::default()
        );
        let (s, bad) = Settings::from_attributes(&attrs(&[
            ("_orphan_secs", "5"),
            ("_orphan_policy", " Idle"),
            ("_orphan_idle_pct", "2.5"),
            ("_orphan_idle_secs", "30"),
        ]));
        assert!(bad.is_empty());
        assert_eq!(
            s,
            Settings {
                secs: 5,
                policy: Policy::Idle,
                idle_pct: 2.5,
                idle_secs: 30
            }
        );
        let (s, bad) = Settings::from_attributes(&attrs(&[
            ("_orphan_secs", "0"),
            ("_orphan_policy", "sometimes"),
            ("_orphan_idle_pct", "-1"),
            ("_orphan_idle_secs", "x"),
        ]));
        assert_eq!(s, Settings::default());
        assert_eq!(bad.len(), 4);
        assert!(bad[1].1.contains("not one of reboot, idle, run"), "{bad:?}");
        assert!(check("_orphan_idle_pct", "NaN").is_err());
        assert!(check("_orphan_idle_pct", "0").is_ok());
    }

    #[test]
    fn reboot_policy_reboots_once_no_head_answered_for_orphan_secs() {
        let t0 = Instant::now();
        let mut w = OrphanWatch::new(settings(Policy::Reboot), t0);
        assert!(w.tick(t0 + secs(30), Some(0.0)).is_empty());
        assert!(w.answered(t0 + secs(40)).is_none());
        // 60 s after the last answer, not after the start.
        assert!(w.tick(t0 + secs(99), Some(0.0)).is_empty());
        let e = w.tick(t0 + secs(100), Some(50.0));
        assert_eq!(e[0], Event::Orphaned { ordered: false });
        assert!(reboots(&e), "{e:?}");
        assert!(w.is_orphan() && w.may_contact(t0 + secs(100)));
        // Asked once; again only if the node is still running a while later.
        assert!(w.tick(t0 + secs(110), Some(0.0)).is_empty());
        assert!(reboots(&w.tick(t0 + secs(160), Some(0.0))));
    }

    #[test]
    fn run_policy_never_reboots_and_rejoins() {
        let t0 = Instant::now();
        let mut w = OrphanWatch::new(settings(Policy::Run), t0);
        assert_eq!(
            w.tick(t0 + secs(60), Some(0.0)),
            vec![Event::Orphaned { ordered: false }]
        );
        for i in 1..100 {
            assert!(w.tick(t0 + secs(60 + i * 10), Some(0.0)).is_empty());
        }
        assert_eq!(
            w.answered(t0 + secs(1060)),
            Some(Event::Rejoined { after: secs(1000) })
        );
        assert!(!w.is_orphan());
        // The count starts again from that answer.
        assert!(w.tick(t0 + secs(1119), None).is_empty());
        assert!(!w.tick(t0 + secs(1120), None).is_empty());
    }

    #[test]
    fn idle_policy_reboots_after_idle_secs_and_a_busy_interval_restarts_the_count() {
        let t0 = Instant::now();
        let mut w = OrphanWatch::new(settings(Policy::Idle), t0);
        // Busy before becoming an orphan does not matter; the count starts at the orphaning.
        assert_eq!(
            w.tick(t0 + secs(60), Some(400.0)),
            vec![Event::Orphaned { ordered: false }]
        );
        let mut t = 60;
        // Idle for 290 s, then one busy interval (1 % is not below 1 %).
        while t < 350 {
            t += 10;
            assert!(w.tick(t0 + secs(t), Some(0.5)).is_empty(), "at {t}");
        }
        t += 10;
        assert!(w.tick(t0 + secs(t), Some(1.0)).is_empty());
        // 300 s idle from the end of that interval.
        let busy_end = t;
        while t < busy_end + 290 {
            t += 10;
            assert!(w.tick(t0 + secs(t), Some(0.0)).is_empty(), "at {t}");
        }
        // An unknown sample counts as busy.
        t += 10;
        assert!(w.tick(t0 + secs(t), None).is_empty());
        let unknown_end = t;
        while t < unknown_end + 290 {
            t += 10;
            assert!(w.tick(t0 + secs(t), Some(0.9)).is_empty(), "at {t}");
        }
        t += 10;
        let e = w.tick(t0 + secs(t), Some(0.9));
        assert!(reboots(&e), "{e:?}");
        match &e[0] {
            Event::Reboot { reason } => assert!(reason.contains("for 300 s"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_idle_orphan_rejoins_without_rebooting() {
        let t0 = Instant::now();
        let mut w = OrphanWatch::new(settings(Policy::Idle), t0);
        assert!(!w.tick(t0 + secs(60), Some(0.0)).is_empty());
        assert!(w.tick(t0 + secs(200), Some(0.0)).is_empty());
        assert!(matches!(
            w.answered(t0 + secs(210)),
            Some(Event::Rejoined { .. })
        ));
        // No reboot where the orphan's idle count would have ended.
        assert!(w.answered(t0 + secs(350)).is_none());
        assert!(w.tick(t0 + secs(361), Some(0.0)).is_empty());
        assert!(!w.is_orphan());
    }

    #[test]
    fn ordered_orphans_stay_quiet_then_probe() {
        let t0 = Instant::now();
        let mut w = OrphanWatch::new(settings(Policy::Run), t0);
        assert!(w.answered(t0 + secs(5)).is_none());
        assert_eq!(
            w.ordered(t0 + secs(10)),
            vec![Event::Orphaned { ordered: true }]
        );
        assert!(w.is_orphan());
        assert!(!w.may_contact(t0 + secs(69)));
        assert_eq!(w.quiet_until(), Some(t0 + secs(70)));
        // A late answer to a report sent before the order does not rejoin.
        assert!(w.answered(t0 + secs(11)).is_none());
        assert!(w.tick(t0 + secs(65), Some(0.0)).is_empty());
        assert!(w.may_contact(t0 + secs(70)));
        assert_eq!(
            w.answered(t0 + secs(72)),
            Some(Event::Rejoined { after: secs(62) })
        );
        assert!(w.may_contact(t0 + secs(72)));

        // With the reboot policy the order reboots at once.
        let mut w = OrphanWatch::new(settings(Policy::Reboot), t0);
        let e = w.ordered(t0);
        assert_eq!(e[0], Event::Orphaned { ordered: true });
        assert!(reboots(&e));

        // With the idle policy the quiet time counts as idle time.
        let mut w = OrphanWatch::new(settings(Policy::Idle), t0);
        assert!(!reboots(&w.ordered(t0)));
        assert!(w.tick(t0 + secs(299), Some(0.0)).is_empty());
        assert!(reboots(&w.tick(t0 + secs(300), Some(0.0))));
    }

    #[test]
    fn cpu_percent_of_one_cpu() {
        // 4 CPUs, a quarter of all time busy: one CPU's worth.
        assert_eq!(cpu_pct(100, 400, 4), Some(100.0));
        assert_eq!(cpu_pct(0, 400, 4), Some(0.0));
        assert_eq!(cpu_pct(0, 0, 4), None);
    }
}
