//! wulfd's logs, kept as ClusterWare keeps them (docs/admin/logs.md):
//!
//! - `LOG_DIR/error.log`, the head log: this head's lines at its level (AUDIT, ERROR,
//!   WARNING, INFO, DEBUG, tersest first; default WARNING), changed at run time by the
//!   cluster's `log_level`, SIGUSR1 (one level more) and SIGUSR2 (one level less);
//! - `LOG_DIR/access.log`: one line per HTTP request ([`access`]);
//! - the shared log: every head's lines at `[logs] shared_level` or terser go into the
//!   database ([`shared`]), and every head writes each head's lines to
//!   `LOG_DIR/head_NAME.log`, so one head shows what happened on all; `GET /api/v1/log`
//!   ([`routes`]) and `wulf log` read them.
//!
//! SIGHUP reopens every file (after logrotate moved them) and reads the config file's
//! `[logs] level` again. Standard error keeps the `--log` filter, as before.

pub mod access;
pub mod files;
pub mod routes;
pub mod shared;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use wulf_api::log::LogLine;

use crate::config::Config;

/// A log level, tersest first. AUDIT lines are the `audit` target's, whatever their tracing
/// level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Audit = 0,
    Error = 1,
    Warning = 2,
    Info = 3,
    Debug = 4,
}

impl Level {
    const ALL: [Level; 5] = [
        Level::Audit,
        Level::Error,
        Level::Warning,
        Level::Info,
        Level::Debug,
    ];

    /// `audit`, `error`, `warning` (or `warn`), `info`, `debug`, in any case.
    pub fn parse(s: &str) -> Result<Level, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "audit" => Ok(Level::Audit),
            "error" => Ok(Level::Error),
            "warning" | "warn" => Ok(Level::Warning),
            "info" => Ok(Level::Info),
            "debug" => Ok(Level::Debug),
            _ => Err(format!(
                "'{s}' is not a log level: use audit, error, warning, info or debug"
            )),
        }
    }

    /// As the log files write it: AUDIT, ERROR, WARNING, INFO, DEBUG.
    pub fn name(self) -> &'static str {
        wulf_api::log::LEVELS[self as usize]
    }

    fn from_u8(n: u8) -> Level {
        Self::ALL[usize::from(n).min(4)]
    }

    /// The level of an event or span.
    pub fn of(meta: &Metadata<'_>) -> Level {
        if meta.target() == "audit" {
            return Level::Audit;
        }
        match *meta.level() {
            tracing::Level::ERROR => Level::Error,
            tracing::Level::WARN => Level::Warning,
            tracing::Level::INFO => Level::Info,
            _ => Level::Debug,
        }
    }

    /// One level more (`more = true`) or less, within AUDIT..=DEBUG.
    pub fn step(self, more: bool) -> Level {
        let n = self as u8;
        Level::from_u8(if more { n + 1 } else { n.saturating_sub(1) })
    }
}

impl<'de> serde::Deserialize<'de> for Level {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Level::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Where the log files go: `[logs] dir`, else /var/log/wulf for the standard data directory
/// (a packaged head), else DATA_DIR/log (a head run by hand or in a test keeps its logs with
/// its data).
pub fn log_dir(cfg: &Config) -> PathBuf {
    if let Some(d) = &cfg.logs.dir {
        return d.clone();
    }
    if cfg.data_dir == Path::new("/var/lib/wulf") {
        PathBuf::from("/var/log/wulf")
    } else {
        cfg.data_dir.join("log")
    }
}

/// The logs of this process (set once by [`init`]).
pub struct Logs {
    pub dir: PathBuf,
    /// The head log's level now.
    level: AtomicU8,
    /// What set it last, for the line saying it changed.
    configured: Mutex<Level>,
    shared_level: Level,
    pub error: files::LogFile,
    pub access: files::LogFile,
    pub heads: files::HeadFiles,
    pub shared: shared::Shared,
    config_file: Option<PathBuf>,
    pub access_nodes: bool,
    pub access_on: bool,
}

static LOGS: OnceLock<Arc<Logs>> = OnceLock::new();

/// This process's logs, once [`init`] ran.
pub fn logs() -> Option<&'static Arc<Logs>> {
    LOGS.get()
}

impl Logs {
    pub fn level(&self) -> Level {
        Level::from_u8(self.level.load(Ordering::Relaxed))
    }

    /// Set the head log's level; says so in the log when it changes.
    pub fn set_level(&self, level: Level, why: &str) {
        let old = self.level();
        if old == level {
            return;
        }
        // The line saying so is written at the more verbose of the two levels.
        self.level.store(old.max(level) as u8, Ordering::Relaxed);
        tracing::warn!(
            target: "wulfd::log",
            "log level now {} (was {}): {why}",
            level.name(),
            old.name()
        );
        self.level.store(level as u8, Ordering::Relaxed);
    }

    /// The config file's level (read again by [`Logs::reopen`]).
    pub fn configured(&self) -> Level {
        *self.configured.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reopen every file (SIGHUP after a rotation) and read the config file's level again.
    pub fn reopen(&self) -> Level {
        for f in [&self.error, &self.access] {
            if let Err(e) = f.reopen() {
                eprintln!("wulfd: cannot reopen {}: {e}", f.path().display());
            }
        }
        self.heads.reopen();
        if let Some(path) = &self.config_file {
            match crate::config::FileConfig::load(path) {
                Ok(file) => {
                    *self.configured.lock().unwrap_or_else(|e| e.into_inner()) = file.logs.level
                }
                Err(e) => tracing::error!(
                    target: "wulfd::log",
                    "SIGHUP: {e:#}; keeping the log level it gave before"
                ),
            }
        }
        self.configured()
    }
}

/// Set up logging: standard error with the `--log` filter, and the log files under
/// [`log_dir`]. Fails (before anything else starts) when the directory or a file cannot be
/// made.
pub fn init(cfg: &Config) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::IsTerminal;
    let stderr_filter = tracing_subscriber::EnvFilter::try_new(&cfg.log)
        .map_err(|e| anyhow::anyhow!("bad log filter '{}': {e}", cfg.log))?;
    let dir = log_dir(cfg);
    files::make_dir(&dir)
        .with_context(|| format!("cannot create the log directory {}", dir.display()))?;
    let error = files::LogFile::open(&dir.join("error.log"), false)?;
    let access = files::LogFile::open(&dir.join("access.log"), true)?;
    let logs = Arc::new(Logs {
        heads: files::HeadFiles::new(&dir),
        dir,
        level: AtomicU8::new(cfg.logs.level as u8),
        configured: Mutex::new(cfg.logs.level),
        shared_level: cfg.logs.shared_level,
        error,
        access,
        shared: shared::Shared::new(&cfg.logs),
        config_file: cfg.config_file.clone(),
        access_nodes: cfg.logs.access_nodes,
        access_on: cfg.logs.access,
    });
    let _ = LOGS.set(logs.clone());
    let stderr = tracing_subscriber::fmt::layer()
        .with_target(true)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(stderr_filter);
    let files = FileLayer { logs: logs.clone() }.with_filter(FileFilter { logs });
    tracing_subscriber::registry()
        .with(stderr)
        .with(files)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}

/// Whether a target is wulf's own (its INFO and DEBUG lines are worth a file; a library's
/// are not).
fn ours(target: &str) -> bool {
    target == "audit" || target.starts_with("wulf")
}

/// The shared log's writer must not feed itself.
fn shareable(target: &str) -> bool {
    ours(target) && !target.starts_with(shared::WRITER_TARGET)
}

/// Lets through what a file or the shared log may want; asks each time for what the run-time
/// level decides, and never for a library's INFO and DEBUG lines.
struct FileFilter {
    logs: Arc<Logs>,
}

impl FileFilter {
    fn wanted(&self, meta: &Metadata<'_>) -> bool {
        let level = Level::of(meta);
        (level <= self.logs.level()
            || (level <= self.logs.shared_level && shareable(meta.target())))
            && (level <= Level::Warning || ours(meta.target()))
    }
}

impl<S: Subscriber> Filter<S> for FileFilter {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        meta.is_event() && self.wanted(meta)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        use tracing::subscriber::Interest;
        let level = Level::of(meta);
        if !meta.is_event()
            || *meta.level() == tracing::Level::TRACE
            || (level > Level::Warning && !ours(meta.target()))
        {
            Interest::never()
        } else {
            Interest::sometimes()
        }
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::DEBUG)
    }
}

/// Writes each event wanted once: to error.log at the head's level, and to the shared log.
struct FileLayer {
    logs: Arc<Logs>,
}

impl<S: Subscriber> Layer<S> for FileLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        let level = Level::of(meta);
        let to_file = level <= self.logs.level();
        let to_shared = level <= self.logs.shared_level && shareable(meta.target());
        if !to_file && !to_shared {
            return;
        }
        let mut v = Fields::default();
        event.record(&mut v);
        let (message, nodes) = v.text();
        let ts = shared::now();
        if to_file {
            let line = format!(
                "{} {} {}: {}\n",
                files::timestamp(ts),
                level.name(),
                meta.target(),
                message
            );
            self.logs.error.write(line.as_bytes());
        }
        if to_shared {
            self.logs.shared.offer(LogLine {
                ts,
                head: String::new(),
                level: level.name().to_string(),
                target: meta.target().to_string(),
                message,
                nodes,
            });
        }
    }
}

/// A field naming the nodes a line is about, for `wulf log --node`, when the message names
/// them already: not written out.
pub const NODES_TAG: &str = "tag.nodes";

/// An event's message, its other fields as ` key=value`, and the nodes it names.
#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
    nodes: Option<String>,
}

impl Fields {
    fn add(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.message = value;
            return;
        }
        if value.is_empty() {
            return;
        }
        if matches!(field.name(), "node" | "nodes" | NODES_TAG) {
            self.nodes = Some(value.clone());
        }
        if field.name() == NODES_TAG {
            return;
        }
        self.rest.push(' ');
        self.rest.push_str(field.name());
        self.rest.push('=');
        self.rest.push_str(&value);
    }

    /// The line as the files show it after the level and target.
    fn text(self) -> (String, Option<String>) {
        let mut m = self.message;
        if m.is_empty() {
            m = self.rest.trim_start().to_string();
        } else {
            m.push_str(&self.rest);
        }
        (m, self.nodes)
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.add(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.add(field, format!("{value:?}"));
    }
}

/// Follow the cluster's `log_level` and the signals that change the level or reopen the
/// files, until `cancel`.
pub async fn run_controls(app: Arc<crate::app::App>, cancel: tokio_util::sync::CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let Some(logs) = logs() else { return };
    let (Ok(mut hup), Ok(mut usr1), Ok(mut usr2)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::user_defined1()),
        signal(SignalKind::user_defined2()),
    ) else {
        tracing::error!("cannot listen for SIGHUP, SIGUSR1 and SIGUSR2");
        return;
    };
    let cluster_level = |app: &crate::app::App| {
        app.cache
            .read()
            .cluster()
            .and_then(|c| Level::parse(&c.log_level).ok())
    };
    let mut last = cluster_level(&app);
    if let Some(l) = last {
        logs.set_level(l, "the cluster's log_level");
    }
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    // access.log is written through a buffer: out twice a second.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = hup.recv() => {
                let configured = logs.reopen();
                tracing::info!(target: "wulfd::log", "SIGHUP: log files reopened");
                if cluster_level(&app).is_none() {
                    logs.set_level(configured, "the config file's [logs] level (SIGHUP)");
                }
            }
            _ = usr1.recv() => logs.set_level(logs.level().step(true), "SIGUSR1"),
            _ = usr2.recv() => logs.set_level(logs.level().step(false), "SIGUSR2"),
            _ = tick.tick() => {
                logs.access.flush();
                let now = cluster_level(&app);
                if now != last {
                    match now {
                        Some(l) => logs.set_level(l, "the cluster's log_level"),
                        None => logs.set_level(
                            logs.configured(),
                            "the cluster's log_level was cleared: the config file's [logs] level",
                        ),
                    }
                    last = now;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_and_step() {
        assert_eq!(Level::parse("WARN"), Ok(Level::Warning));
        assert_eq!(Level::parse(" audit "), Ok(Level::Audit));
        assert!(Level::parse("loud").unwrap_err().contains("'loud'"));
        assert_eq!(Level::Debug.step(true), Level::Debug);
        assert_eq!(Level::Audit.step(false), Level::Audit);
        assert_eq!(Level::Warning.step(true), Level::Info);
        assert_eq!(Level::Error.name(), "ERROR");
        assert!(Level::Audit < Level::Error && Level::Info < Level::Debug);
    }

    #[test]
    fn the_config_file_takes_level_names() {
        let f: crate::config::FileConfig =
            toml::from_str("[logs]\nlevel = \"info\"\nshared_level = \"audit\"\n").unwrap();
        assert_eq!(f.logs.level, Level::Info);
        assert_eq!(f.logs.shared_level, Level::Audit);
        let e = toml::from_str::<crate::config::FileConfig>("[logs]\nlevel = \"chatty\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("'chatty' is not a log level"), "{e}");
    }
}
