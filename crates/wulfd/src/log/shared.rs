//! The shared log: each head puts its lines at `[logs] shared_level` or terser into the
//! database (`/wulf/log/HEAD/…`, a few writes a second, each a batch), and every head follows
//! the prefix: it keeps the newest lines in memory for `GET /api/v1/log` and appends each
//! head's lines to `LOG_DIR/head_NAME.log`. The maintaining head removes lines older than
//! `[logs] keep_days` and beyond `[logs] keep_lines`.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wulf_api::log::LogLine;
use wulf_store::{EventKind, KeyValue, Op, Store, Txn};

use crate::config::LogsSection;

/// Where the shared lines live in the store.
pub const LOG_PREFIX: &str = "/wulf/log/";
/// The writer's own lines (its failures) stay out of the shared log, which they would feed.
pub const WRITER_TARGET: &str = "wulfd::log::shared";

/// Lines waiting for the writer at most; beyond, lines are counted and left out.
const QUEUE: usize = 10_000;
/// Lines in one store transaction at most (etcd's default --max-txn-ops is 128).
const BATCH: usize = 100;

/// A shared line as this head holds it: the store revision that wrote it and its place in
/// that revision order them across heads.
#[derive(Debug, Clone)]
pub struct Entry {
    pub rev: i64,
    pub idx: u32,
    pub key: String,
    pub line: LogLine,
}

impl Entry {
    /// `REV.IDX`, what a client gives back as `after` to get the lines after this one.
    pub fn cursor(&self) -> String {
        format!("{}.{}", self.rev, self.idx)
    }
}

/// Parse a cursor ([`Entry::cursor`]).
pub fn parse_cursor(s: &str) -> Option<(i64, u32)> {
    let (r, i) = s.split_once('.')?;
    Some((r.parse().ok()?, i.parse().ok()?))
}

pub struct Shared {
    tx: mpsc::Sender<LogLine>,
    rx: Mutex<Option<mpsc::Receiver<LogLine>>>,
    /// Lines left out because the queue was full.
    dropped: AtomicU64,
    lines: RwLock<VecDeque<Entry>>,
    /// Bumped whenever lines arrive (followers of `GET /api/v1/log` wait on it).
    changed: tokio::sync::watch::Sender<u64>,
    keep_lines: usize,
    keep_secs: f64,
    per_sec: u32,
}

pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Shared {
    pub fn new(cfg: &LogsSection) -> Shared {
        let (tx, rx) = mpsc::channel(QUEUE);
        Shared {
            tx,
            rx: Mutex::new(Some(rx)),
            dropped: AtomicU64::new(0),
            lines: RwLock::new(VecDeque::new()),
            changed: tokio::sync::watch::channel(0).0,
            keep_lines: cfg.keep_lines,
            keep_secs: cfg.keep_days as f64 * 86_400.0,
            per_sec: cfg.shared_per_sec,
        }
    }

    /// Queue a line for the store (never blocks: a full queue counts it as left out).
    pub fn offer(&self, line: LogLine) {
        if self.tx.try_send(line).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Wakes when lines arrive.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Run `f` over the lines held, oldest first.
    pub fn with_lines<T>(&self, f: impl FnOnce(&VecDeque<Entry>) -> T) -> T {
        f(&self.lines.read().unwrap_or_else(|e| e.into_inner()))
    }
}

/// A store key for a line of `head`: sorts by head, then time.
fn key_for(head: &str, ts: f64, seq: u64) -> String {
    let head: String = head
        .chars()
        .map(|c| if c == '/' { '_' } else { c })
        .collect();
    format!(
        "{LOG_PREFIX}{head}/{:016}{:06}",
        (ts * 1e6) as u64,
        seq % 1_000_000
    )
}

/// Put this head's queued lines into the store, a batch at a time, at most `per_sec` a second
/// over a minute, until `cancel` (then what is queued, for up to two seconds).
pub async fn run_writer(store: Arc<dyn Store>, head: String, cancel: CancellationToken) {
    let Some(shared) = super::logs().map(|l| &l.shared) else {
        return;
    };
    let Some(mut rx) = shared.rx.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return;
    };
    let burst = f64::from(shared.per_sec) * 60.0;
    let mut tokens = burst;
    let mut filled = Instant::now();
    let mut left_out: u64 = 0;
    let mut seq: u64 = 0;
    let mut stopping: Option<Instant> = None;
    loop {
        let first = if stopping.is_some() {
            rx.try_recv().ok()
        } else {
            tokio::select! {
                l = rx.recv() => l,
                _ = cancel.cancelled() => {
                    stopping = Some(Instant::now());
                    rx.try_recv().ok()
                }
            }
        };
        let Some(first) = first else { return };
        if stopping.is_none() {
            // Let a burst gather into one write.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(l) => batch.push(l),
                Err(_) => break,
            }
        }
        tokens = (tokens + filled.elapsed().as_secs_f64() * f64::from(shared.per_sec)).min(burst);
        filled = Instant::now();
        let mut ops = Vec::with_capacity(batch.len() + 1);
        for mut l in batch {
            if tokens < 1.0 {
                left_out += 1;
                continue;
            }
            tokens -= 1.0;
            l.head = head.clone();
            seq += 1;
            ops.push(put(&head, &l, seq));
        }
        left_out += shared.dropped.swap(0, Ordering::Relaxed);
        if left_out > 0 && tokens >= 1.0 {
            tokens -= 1.0;
            seq += 1;
            let note = LogLine {
                ts: now(),
                head: head.clone(),
                level: "WARNING".into(),
                target: "wulfd::log".into(),
                message: format!(
                    "{left_out} log lines of this head were left out of the shared log (more \
                     than {} a second; they are in its error.log)",
                    shared.per_sec
                ),
                nodes: None,
            };
            ops.push(put(&head, &note, seq));
            left_out = 0;
        }
        if ops.is_empty() {
            continue;
        }
        let mut pause = Duration::from_millis(250);
        loop {
            let txn = Txn {
                compares: vec![],
                ops: ops.clone(),
            };
            // A head stopping waits for the store at most until its grace ends.
            let wait = match stopping {
                Some(t) => STOP_GRACE.saturating_sub(t.elapsed()),
                None => Duration::from_secs(30),
            };
            let e = match tokio::time::timeout(wait, store.txn(txn)).await {
                Ok(Ok(_)) => break,
                Ok(Err(e)) => e.to_string(),
                Err(_) => "the store did not answer in time".to_string(),
            };
            if stopping.is_some_and(|t| t.elapsed() >= STOP_GRACE) {
                tracing::warn!(target: WRITER_TARGET, error = %e, "stopping: log lines not yet in the shared log are left out (they are in error.log)");
                return;
            }
            if pause > Duration::from_secs(8) {
                tracing::warn!(target: WRITER_TARGET, error = %e, lines = ops.len(), "cannot put log lines into the shared log; left out (they are in error.log)");
                break;
            }
            tracing::debug!(target: WRITER_TARGET, error = %e, "cannot put log lines into the shared log; trying again");
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = cancel.cancelled(), if stopping.is_none() => stopping = Some(Instant::now()),
            }
            pause *= 2;
        }
        if stopping.is_some_and(|t| t.elapsed() >= STOP_GRACE) {
            return;
        }
    }
}

/// How long a stopping head tries to put its last lines into the store.
const STOP_GRACE: Duration = Duration::from_secs(2);

fn put(head: &str, l: &LogLine, seq: u64) -> Op {
    Op::Put {
        key: key_for(head, l.ts, seq),
        value: serde_json::to_vec(l).unwrap_or_default(),
        lease: None,
    }
}

fn entry(kv: &KeyValue, idx: u32) -> Option<Entry> {
    let line: LogLine = serde_json::from_slice(&kv.value).ok()?;
    Some(Entry {
        rev: kv.mod_revision,
        idx,
        key: kv.key.clone(),
        line,
    })
}

/// The revision up to which this log directory's head_NAME.log files are written.
fn written_path(logs: &super::Logs) -> std::path::PathBuf {
    logs.dir.join(".head-logs-revision")
}

/// Follow the shared log until `cancel`: lines into memory and into the head_NAME.log files.
pub async fn run_follower(store: Arc<dyn Store>, cancel: CancellationToken) {
    let Some(logs) = super::logs() else { return };
    let shared = &logs.shared;
    let mut written: i64 = std::fs::read_to_string(written_path(logs))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let mut saved_at = Instant::now();
    'relist: loop {
        let (kvs, rev) = loop {
            let listed = tokio::select! {
                _ = cancel.cancelled() => return,
                r = store.list(LOG_PREFIX) => r,
            };
            match listed {
                Ok(r) => break r,
                Err(e) => {
                    tracing::debug!(target: WRITER_TARGET, error = %e, "cannot read the shared log; trying again");
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        let mut kvs = kvs;
        kvs.sort_by(|a, b| (a.mod_revision, &a.key).cmp(&(b.mod_revision, &b.key)));
        let mut fresh = VecDeque::with_capacity(kvs.len().min(shared.keep_lines));
        let mut last_rev = -1;
        let mut idx = 0;
        for kv in &kvs {
            idx = if kv.mod_revision == last_rev {
                idx + 1
            } else {
                0
            };
            last_rev = kv.mod_revision;
            if let Some(e) = entry(kv, idx) {
                fresh.push_back(e);
            }
        }
        write_heads(logs, fresh.iter(), &mut written);
        while fresh.len() > shared.keep_lines {
            fresh.pop_front();
        }
        *shared.lines.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        shared.changed.send_modify(|n| *n += 1);
        save_written(logs, written.max(rev));
        written = written.max(rev);
        let watched = tokio::select! {
            _ = cancel.cancelled() => return,
            w = store.watch(LOG_PREFIX, rev + 1) => w,
        };
        let Ok(mut watch) = watched else {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue 'relist;
        };
        loop {
            let batch = tokio::select! {
                _ = cancel.cancelled() => {
                    logs.heads.flush();
                    return;
                }
                b = watch.next() => b,
            };
            let batch = match batch {
                Some(Ok(b)) => b,
                // Compacted or the store went away: read it all again.
                _ => continue 'relist,
            };
            let mut added = Vec::new();
            let mut deleted = HashSet::new();
            let mut idx = 0;
            for ev in &batch.events {
                match ev.kind {
                    EventKind::Put => {
                        if let Some(e) = entry(&ev.kv, idx) {
                            added.push(e);
                        }
                        idx += 1;
                    }
                    EventKind::Delete => {
                        deleted.insert(ev.kv.key.clone());
                    }
                }
            }
            write_heads(logs, added.iter(), &mut written);
            written = written.max(batch.revision);
            {
                let mut lines = shared.lines.write().unwrap_or_else(|e| e.into_inner());
                if !deleted.is_empty() {
                    lines.retain(|e| !deleted.contains(&e.key));
                }
                lines.extend(added);
                while lines.len() > shared.keep_lines {
                    lines.pop_front();
                }
            }
            shared.changed.send_modify(|n| *n += 1);
            if saved_at.elapsed() >= Duration::from_secs(1) {
                save_written(logs, written);
                saved_at = Instant::now();
            }
        }
    }
}

/// Append the lines not yet in the head_NAME.log files.
fn write_heads<'a>(logs: &super::Logs, lines: impl Iterator<Item = &'a Entry>, written: &mut i64) {
    let mut any = false;
    for e in lines {
        if e.rev <= *written {
            continue;
        }
        logs.heads
            .write(&e.line.head, super::files::head_line(&e.line).as_bytes());
        any = true;
    }
    if any {
        logs.heads.flush();
    }
}

fn save_written(logs: &super::Logs, rev: i64) {
    let _ = std::fs::write(written_path(logs), format!("{rev}\n"));
}

/// On the maintaining head: remove shared lines older than `keep_days` and the oldest beyond
/// `keep_lines` (with a tenth to spare, so this runs seldom). Returns how many went.
pub async fn sweep(store: &dyn Store) -> Result<usize, wulf_store::StoreError> {
    let Some(shared) = super::logs().map(|l| &l.shared) else {
        return Ok(0);
    };
    let cutoff = now() - shared.keep_secs;
    let needed = shared.with_lines(|l| {
        l.len() >= shared.keep_lines || l.front().is_some_and(|e| e.line.ts < cutoff)
    });
    if !needed {
        return Ok(0);
    }
    let (mut kvs, _) = store.list(LOG_PREFIX).await?;
    kvs.sort_by(|a, b| (a.mod_revision, &a.key).cmp(&(b.mod_revision, &b.key)));
    let keep = shared.keep_lines - shared.keep_lines / 10;
    let excess = kvs.len().saturating_sub(keep);
    let doomed: Vec<String> = kvs
        .iter()
        .enumerate()
        .filter(|(i, kv)| {
            *i < excess || serde_json::from_slice::<LogLine>(&kv.value).is_ok_and(|l| l.ts < cutoff)
        })
        .map(|(_, kv)| kv.key.clone())
        .collect();
    for chunk in doomed.chunks(BATCH) {
        let ops = chunk
            .iter()
            .map(|k| Op::Delete { key: k.clone() })
            .collect();
        store
            .txn(Txn {
                compares: vec![],
                ops,
            })
            .await?;
    }
    Ok(doomed.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_head_then_time_and_cursors_round_trip() {
        let a = key_for("h1", 100.0, 1);
        let b = key_for("h1", 100.5, 2);
        let c = key_for("h/2", 1.0, 3);
        assert!(a < b);
        assert!(c.starts_with("/wulf/log/h_2/"));
        let e = Entry {
            rev: 42,
            idx: 3,
            key: a,
            line: LogLine {
                ts: 1.0,
                head: "h1".into(),
                level: "AUDIT".into(),
                target: "audit".into(),
                message: "m".into(),
                nodes: None,
            },
        };
        assert_eq!(parse_cursor(&e.cursor()), Some((42, 3)));
        assert_eq!(parse_cursor("42"), None);
        assert_eq!(parse_cursor("x.1"), None);
    }
}
