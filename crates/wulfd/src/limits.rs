//! What one client may hold on the API port, so that a slow or flooding client cannot starve
//! boot files, status intake or the API: the open-file limit (raised to the hard limit at
//! start), a cap on HTTP connections below what that limit allows, a request-head timeout
//! (slowloris), a keep-alive idle timeout, and a stall timeout for bodies and responses that
//! stop moving. Also the per-client caps of the UDP services. See docs/security.md, "Limits".
//!
//! The accept loop asks [`admit`] for each new connection. Past the cap, the connection that
//! has gone longest without a complete request head (an idle or slowloris one, or one kept
//! alive with no request) is closed to make room; when every connection is busy with a
//! request, the new one is closed at once, so the accept loop never stalls and the listen
//! backlog never fills. A real client sends its request within milliseconds of connecting, so
//! a flood has to replace every connection under the cap faster than that to push it out. The per-connection task runs
//! inside [`guard`], and the stream handed to the HTTP server is wrapped by [`track`], which
//! follows the connection's HTTP/1 exchanges from the bytes going through it (request head,
//! body, response) without changing them.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// TFTP transfers one client address may have running at once (firmware fetches one file at a
/// time; a restarted client's old transfer is replaced, not counted).
pub const TFTP_PER_CLIENT: usize = 8;

/// Nodes DHCP creates at once for new MACs (when the cluster accepts new nodes): a flood of
/// made-up MACs waits its turn instead of piling up store writes.
pub const DHCP_ENROLLING: usize = 64;

/// Connections under the cap looked through for each one closed to make room: past the cap,
/// every new connection closes one for up to this many (bounding the scan of a large cap).
const EVICT_SCAN: usize = 4096;

/// Bytes of a request or response head kept to read its Content-Length.
const HEAD_KEEP: usize = 8 * 1024;

/// The largest request head the API port takes (request line and header fields); a larger
/// one gets [`TOO_LARGE`]. hyper's own limits (100 fields) apply too.
pub const MAX_REQUEST_HEAD: usize = 64 * 1024;

/// The answer to a request head over [`MAX_REQUEST_HEAD`].
const TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\n\
Content-Type: text/plain\r\nContent-Length: 35\r\nConnection: close\r\n\r\n\
request head is larger than 64 KiB\n";

/// After that answer, what the client still sends is read and dropped for this long (or this
/// much), so that closing does not reset the connection before the client reads the answer.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 4 << 20;

/// How often timeouts are checked and what was closed is logged.
const SWEEP_EVERY: Duration = Duration::from_millis(500);
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// The process's open-file limits before and after [`raise_nofile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nofile {
    pub soft_before: u64,
    pub soft: u64,
    pub hard: u64,
}

/// Raise the soft RLIMIT_NOFILE to the hard limit (or to fs.nr_open when the hard limit is
/// unlimited).
pub fn raise_nofile() -> io::Result<Nofile> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let (before, hard) = (r.rlim_cur, r.rlim_max);
    let mut target = hard;
    if hard == libc::RLIM_INFINITY {
        target = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1 << 20);
    }
    let mut soft = before;
    if before < target {
        let want = libc::rlimit {
            rlim_cur: target,
            rlim_max: hard,
        };
        // SAFETY: setrlimit reads the struct we pass; raising the soft limit up to the hard
        // one needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } != 0 {
            return Err(io::Error::last_os_error());
        }
        soft = target;
    }
    Ok(Nofile {
        soft_before: before,
        soft,
        hard,
    })
}

/// Open files kept out of the connection cap for everything else: the store, blob files
/// being served, DHCP, TFTP and DNS sockets, peer and etcd connections, power tools' pipes.
pub fn fd_reserve(soft: u64) -> u64 {
    (soft / 4).clamp(64, 8192)
}

/// The HTTP connection cap for an open-file limit of `soft`: `configured` (0: no own limit),
/// never more than the limit less [`fd_reserve`].
pub fn connection_cap(configured: usize, soft: u64) -> usize {
    let room = soft.saturating_sub(fd_reserve(soft)).max(16);
    let room = usize::try_from(room).unwrap_or(usize::MAX);
    if configured == 0 {
        room
    } else {
        configured.min(room)
    }
}

/// The settings the API port's connections are held to.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Most connections open at once.
    pub max_connections: usize,
    /// From accept (or a kept-alive request's first byte) to the end of the request head.
    pub head_timeout: Duration,
    /// A kept-alive connection waiting for its next request; a body or response that makes
    /// no progress.
    pub idle_timeout: Duration,
}

/// Why a connection was closed by these limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// No complete request head within the head timeout.
    Head,
    /// Kept alive with no request, or a body or response stalled, for the idle timeout.
    Idle,
    /// Closed to make room at the cap.
    Evicted,
}

/// Where a connection is in its HTTP exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a request head, since accept or the first byte of a kept-alive request.
    Head { since: Instant },
    /// Reading a request body; `left` is u64::MAX when its length is not known (chunked).
    Body { left: u64, last: Instant },
    /// The request is being handled (long polls, commands, power actions take their time).
    Work,
    /// Sending a response; `left` as for the body.
    Reply { left: u64, last: Instant },
    /// Kept alive, waiting for the next request.
    Idle { since: Instant },
    /// HTTP/2: many streams, measured by traffic alone.
    H2 { last: Instant },
}

/// Finds the end of a head (an empty line; CRLF or LF) and keeps its first bytes.
#[derive(Debug, Default)]
struct HeadScan {
    kept: Vec<u8>,
    /// Bytes fed so far.
    len: usize,
    /// Just after a line feed (carriage returns aside).
    at_line_start: bool,
    started: bool,
}

impl HeadScan {
    /// Feed bytes; `Some(n)` when the head ended after the first `n` of them.
    fn feed(&mut self, data: &[u8]) -> Option<usize> {
        for (i, &b) in data.iter().enumerate() {
            self.len += 1;
            if self.kept.len() < HEAD_KEEP {
                self.kept.push(b);
            }
            match b {
                b'\n' if self.at_line_start && self.started => return Some(i + 1),
                b'\n' => self.at_line_start = true,
                b'\r' => {}
                _ => {
                    self.at_line_start = false;
                    self.started = true;
                }
            }
        }
        None
    }
}

/// What the kept part of a head says.
#[derive(Debug, Default, PartialEq, Eq)]
struct HeadInfo {
    first: String,
    content_length: Option<u64>,
    chunked: bool,
}

fn head_info(raw: &[u8]) -> HeadInfo {
    let text = String::from_utf8_lossy(raw);
    let mut lines = text.lines().map(str::trim).skip_while(|l| l.is_empty());
    let mut info = HeadInfo {
        first: lines.next().unwrap_or_default().to_string(),
        ..HeadInfo::default()
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-length") {
            info.content_length = value.trim().parse().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            info.chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    info
}

/// The last bytes of a chunked body: its zero-length chunk and the empty line after it.
const CHUNKED_END: &[u8; 7] = b"\r\n0\r\n\r\n";

/// A connection's exchange as seen from the bytes going through it.
#[derive(Debug)]
struct Track {
    phase: Phase,
    request: HeadScan,
    response: HeadScan,
    /// The request being answered is a HEAD (its response has no body).
    head_method: bool,
    /// A response went out before its request's body was read (a 413, a 401): the client may
    /// still be sending it when the connection closes.
    unread_body: bool,
    /// The last bytes of a body of unknown length, to see it end.
    tail: [u8; 7],
}

impl Track {
    fn new(now: Instant) -> Track {
        Track {
            phase: Phase::Head { since: now },
            request: HeadScan::default(),
            response: HeadScan::default(),
            head_method: false,
            unread_body: false,
            tail: [0; 7],
        }
    }

    fn start_unknown_length(&mut self) {
        // A chunked body may be the last chunk alone.
        self.tail = [0, 0, 0, 0, 0, b'\r', b'\n'];
    }

    /// Whether a body of unknown length ended with these bytes.
    fn unknown_ended(&mut self, data: &[u8]) -> bool {
        let mut joined = self.tail.to_vec();
        joined.extend_from_slice(&data[data.len().saturating_sub(7)..]);
        self.tail.copy_from_slice(&joined[joined.len() - 7..]);
        &self.tail == CHUNKED_END
    }

    /// Follow bytes read; true when they make the request head too large.
    fn on_read(&mut self, mut data: &[u8], now: Instant) -> bool {
        loop {
            match self.phase {
                Phase::Idle { .. } => {
                    self.phase = Phase::Head { since: now };
                    self.request = HeadScan::default();
                    self.unread_body = false;
                }
                Phase::Head { .. } => {
                    let ended = self.request.feed(data);
                    if self.request.len > MAX_REQUEST_HEAD {
                        // Answered and closed without the router: no timeouts meanwhile.
                        self.phase = Phase::Work;
                        return true;
                    }
                    let Some(n) = ended else {
                        return false;
                    };
                    let info = head_info(&self.request.kept);
                    self.request = HeadScan::default();
                    data = &data[n..];
                    if info.first.starts_with("PRI * HTTP/2") {
                        self.phase = Phase::H2 { last: now };
                        return false;
                    }
                    self.head_method = info.first.starts_with("HEAD ");
                    let left = if info.chunked {
                        self.start_unknown_length();
                        u64::MAX
                    } else {
                        info.content_length.unwrap_or(0)
                    };
                    if left == 0 {
                        // Bytes after a body-less request are a pipelined one: not followed.
                        self.phase = Phase::Work;
                        return false;
                    }
                    self.phase = Phase::Body { left, last: now };
                }
                Phase::Body { left, .. } => {
                    let left = if left == u64::MAX {
                        if self.unknown_ended(data) {
                            0
                        } else {
                            u64::MAX
                        }
                    } else {
                        left.saturating_sub(data.len() as u64)
                    };
                    self.phase = if left == 0 {
                        Phase::Work
                    } else {
                        Phase::Body { left, last: now }
                    };
                    return false;
                }
                Phase::H2 { .. } => {
                    self.phase = Phase::H2 { last: now };
                    return false;
                }
                Phase::Work | Phase::Reply { .. } => return false,
            }
            if data.is_empty() {
                return false;
            }
        }
    }

    fn on_write(&mut self, mut data: &[u8], now: Instant) {
        loop {
            match self.phase {
                Phase::Head { .. } | Phase::Body { .. } | Phase::Work => {
                    let fresh = self.response.kept.is_empty();
                    if fresh
                        && !data.is_empty()
                        && !b"HTTP/1.".starts_with(&data[..data.len().min(7)])
                    {
                        return; // not an HTTP/1 response head
                    }
                    let Some(n) = self.response.feed(data) else {
                        return;
                    };
                    let info = head_info(&self.response.kept);
                    self.response = HeadScan::default();
                    data = &data[n..];
                    let status: u16 = info
                        .first
                        .split_whitespace()
                        .nth(1)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(200);
                    if status < 200 {
                        continue; // 100 Continue: the body follows, then the real answer
                    }
                    if matches!(self.phase, Phase::Body { .. }) {
                        self.unread_body = true;
                    }
                    let left = if self.head_method || status == 204 || status == 304 {
                        0
                    } else if let (false, Some(n)) = (info.chunked, info.content_length) {
                        n
                    } else {
                        // Chunked, or until the connection closes.
                        self.start_unknown_length();
                        u64::MAX
                    };
                    self.phase = if left == 0 {
                        Phase::Idle { since: now }
                    } else {
                        Phase::Reply { left, last: now }
                    };
                }
                Phase::Reply { left, .. } => {
                    let left = if left == u64::MAX {
                        if self.unknown_ended(data) {
                            0
                        } else {
                            u64::MAX
                        }
                    } else {
                        left.saturating_sub(data.len() as u64)
                    };
                    self.phase = if left == 0 {
                        Phase::Idle { since: now }
                    } else {
                        Phase::Reply { left, last: now }
                    };
                    return;
                }
                Phase::H2 { .. } => {
                    self.phase = Phase::H2 { last: now };
                    return;
                }
                Phase::Idle { .. } => return,
            }
            if data.is_empty() {
                return;
            }
        }
    }

    /// Since when the connection has been without a complete request head (None: it has one,
    /// or is answering one).
    fn headless_since(&self) -> Option<Instant> {
        match self.phase {
            Phase::Head { since } | Phase::Idle { since } => Some(since),
            _ => None,
        }
    }

    fn expired(&self, now: Instant, s: &Settings) -> Option<Reason> {
        let over = |t: Instant, d: Duration| now.saturating_duration_since(t) > d;
        match self.phase {
            Phase::Head { since } if over(since, s.head_timeout) => Some(Reason::Head),
            Phase::Idle { since } if over(since, s.idle_timeout) => Some(Reason::Idle),
            Phase::Body { last, .. } | Phase::Reply { last, .. } | Phase::H2 { last }
                if over(last, s.idle_timeout) =>
            {
                Some(Reason::Idle)
            }
            _ => None,
        }
    }
}

struct Slot {
    id: u64,
    peer: SocketAddr,
    token: CancellationToken,
    /// Closed by these limits (counted once).
    retired: AtomicBool,
    track: Mutex<Track>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Default)]
struct Counts {
    evicted: AtomicU64,
    refused: AtomicU64,
    head_timeouts: AtomicU64,
    idle_timeouts: AtomicU64,
}

/// The connections of the API port.
pub struct Limits {
    settings: Settings,
    /// Most connections open at once counting those being closed: closing takes a moment
    /// (a task has to notice), and a flood must not outrun it past the open-file limit.
    ceiling: usize,
    nofile: u64,
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<Slot>>>,
    /// Connections closed by these limits whose tasks have not let go of them yet.
    retiring: AtomicUsize,
    counts: Counts,
}

impl Limits {
    pub fn new(settings: Settings, nofile: u64) -> Arc<Limits> {
        let cap = settings.max_connections;
        Arc::new(Limits {
            settings,
            ceiling: cap.saturating_add((cap / 8).max(8)),
            nofile,
            next_id: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
            retiring: AtomicUsize::new(0),
            counts: Counts::default(),
        })
    }

    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// Connections open now (those being closed included).
    pub fn open(&self) -> usize {
        lock(&self.conns).len()
    }

    fn retire(&self, slot: &Slot, why: Reason) {
        if slot.retired.swap(true, Ordering::SeqCst) {
            return;
        }
        self.retiring.fetch_add(1, Ordering::SeqCst);
        let c = match why {
            Reason::Head => &self.counts.head_timeouts,
            Reason::Idle => &self.counts.idle_timeouts,
            Reason::Evicted => &self.counts.evicted,
        };
        c.fetch_add(1, Ordering::Relaxed);
        tracing::trace!(peer = %slot.peer, reason = ?why, "closing a connection");
        slot.token.cancel();
    }

    /// Take a new connection from `peer`, making room if needed; None: close it at once.
    pub fn admit(self: &Arc<Self>, peer: SocketAddr) -> Option<Ticket> {
        let now = Instant::now();
        let mut conns = lock(&self.conns);
        if conns.len() >= self.ceiling {
            self.counts.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let staying = conns
            .len()
            .saturating_sub(self.retiring.load(Ordering::SeqCst));
        if staying >= self.settings.max_connections {
            let mut idle: Vec<(Instant, &Arc<Slot>)> = conns
                .values()
                .filter(|s| !s.retired.load(Ordering::Relaxed))
                .filter_map(|s| Some((lock(&s.track).headless_since()?, s)))
                .collect();
            if idle.is_empty() {
                self.counts.refused.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            let batch = (self.settings.max_connections / EVICT_SCAN)
                .max(1)
                .min(idle.len());
            if batch < idle.len() {
                idle.select_nth_unstable_by_key(batch - 1, |(t, _)| *t);
            }
            for (_, s) in &idle[..batch] {
                self.retire(s, Reason::Evicted);
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            id,
            peer,
            token: CancellationToken::new(),
            retired: AtomicBool::new(false),
            track: Mutex::new(Track::new(now)),
        });
        conns.insert(id, slot.clone());
        Some(Ticket(Some(Arc::new(Entry {
            slot,
            limits: self.clone(),
        }))))
    }

    /// Close connections past their timeouts.
    fn sweep(&self) {
        let now = Instant::now();
        let conns = lock(&self.conns);
        for s in conns.values() {
            if s.retired.load(Ordering::Relaxed) {
                continue;
            }
            let why = lock(&s.track).expired(now, &self.settings);
            if let Some(why) = why {
                self.retire(s, why);
            }
        }
    }

    /// Check timeouts until the process ends, and log what the limits closed.
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reported = Instant::now();
        loop {
            tick.tick().await;
            self.sweep();
            if reported.elapsed() >= REPORT_EVERY {
                reported = Instant::now();
                self.report();
            }
        }
    }

    fn report(&self) {
        let take = |c: &AtomicU64| c.swap(0, Ordering::Relaxed);
        let (evicted, refused) = (take(&self.counts.evicted), take(&self.counts.refused));
        let (head, idle) = (
            take(&self.counts.head_timeouts),
            take(&self.counts.idle_timeouts),
        );
        let open = self.open();
        if evicted + refused > 0 {
            tracing::warn!(
                open,
                cap = self.settings.max_connections,
                evicted,
                refused,
                "connection cap reached ({} connections, open-file limit {}): closed {evicted} \
                 connection(s) without a complete request to make room, refused {refused} new \
                 one(s) (closed at once)",
                self.settings.max_connections,
                self.nofile
            );
        }
        if head + idle > 0 {
            tracing::info!(
                open,
                head_timeouts = head,
                idle_timeouts = idle,
                "closed {head} connection(s) with no complete request head within {} s and \
                 {idle} idle or stalled for {} s",
                self.settings.head_timeout.as_secs(),
                self.settings.idle_timeout.as_secs()
            );
        }
    }
}

struct Entry {
    slot: Arc<Slot>,
    limits: Arc<Limits>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        lock(&self.limits.conns).remove(&self.slot.id);
        if self.slot.retired.load(Ordering::SeqCst) {
            self.limits.retiring.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// A connection's place under the cap; the connection counts until every copy is dropped.
#[derive(Clone)]
pub struct Ticket(Option<Arc<Entry>>);

impl Ticket {
    /// A ticket that holds nothing (no limits installed).
    pub fn unlimited() -> Ticket {
        Ticket(None)
    }

    fn with_track<R>(&self, f: impl FnOnce(&mut Track, Instant) -> R) -> Option<R> {
        let e = self.0.as_ref()?;
        let r = f(&mut lock(&e.slot.track), Instant::now());
        Some(r)
    }
}

static LIMITS: OnceLock<Arc<Limits>> = OnceLock::new();

/// Make `limits` the ones the API port's accept loop uses, and start checking timeouts.
pub fn install(limits: Arc<Limits>) {
    if LIMITS.set(limits.clone()).is_ok() {
        tokio::spawn(limits.run());
    }
}

/// Take a new connection (see [`Limits::admit`]); without installed limits, always.
pub fn admit(peer: SocketAddr) -> Option<Ticket> {
    match LIMITS.get() {
        Some(l) => l.admit(peer),
        None => Some(Ticket::unlimited()),
    }
}

/// The answer a connection refused at the cap gets, if it can take it at once.
pub const REFUSED: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\nRetry-After: 1\r\n\r\n";

/// Close a connection refused at the cap: a 503 if the socket takes it without waiting.
pub fn refuse(stream: tokio::net::TcpStream) {
    let _ = stream.try_write(REFUSED);
}

tokio::task_local! {
    static CURRENT: Ticket;
}

/// Run a connection's task: it ends when `fut` does or when the limits close the connection
/// (dropping `fut`, and with it the socket). [`track`], [`head_complete`] and [`progress`]
/// called inside it apply to this connection.
pub async fn guard<F: Future<Output = ()>>(ticket: Ticket, fut: F) {
    let token = ticket.0.as_ref().map(|e| e.slot.token.clone());
    let run = CURRENT.scope(ticket, fut);
    match token {
        Some(t) => {
            tokio::select! {
                _ = t.cancelled() => {}
                _ = run => {}
            }
        }
        None => run.await,
    }
}

fn current() -> Ticket {
    CURRENT
        .try_with(Ticket::clone)
        .unwrap_or_else(|_| Ticket::unlimited())
}

/// The connection's request head has been read (by a reader other than [`Tracked`]).
pub fn head_complete() {
    current().with_track(|t, _| t.phase = Phase::Work);
}

/// The connection's response is moving (sent other than through [`Tracked`]).
pub fn progress() {
    current().with_track(|t, now| {
        t.phase = Phase::Reply {
            left: u64::MAX,
            last: now,
        }
    });
}

/// Wrap the stream of the current connection (inside [`guard`]) for the HTTP server.
pub fn track<S>(inner: S) -> Tracked<S> {
    let ticket = current();
    let cancelled = ticket
        .0
        .as_ref()
        .map(|e| Box::pin(e.slot.token.clone().cancelled_owned()));
    Tracked {
        ticket,
        cancelled,
        refusing: None,
        closing: None,
        inner,
    }
}

/// Sending a last answer, then reading and dropping what the client still sends for a moment,
/// so that closing does not reset the connection (and lose the answer) while it sends.
struct Linger {
    answer: &'static [u8],
    sent: usize,
    flushed: bool,
    drained: usize,
    until: Pin<Box<tokio::time::Sleep>>,
}

impl Linger {
    fn new(answer: &'static [u8]) -> Linger {
        Linger {
            answer,
            sent: 0,
            flushed: false,
            drained: 0,
            until: Box::pin(tokio::time::sleep(LINGER)),
        }
    }

    fn poll<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        inner: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while self.sent < self.answer.len() {
            match Pin::new(&mut *inner).poll_write(cx, &self.answer[self.sent..]) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(n)) => self.sent += n,
                Poll::Pending => return Poll::Pending,
            }
        }
        if !self.flushed {
            match Pin::new(&mut *inner).poll_flush(cx) {
                Poll::Ready(_) => self.flushed = true,
                Poll::Pending => return Poll::Pending,
            }
        }
        let mut scratch = [0u8; 8192];
        loop {
            if self.drained > LINGER_BYTES || self.until.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
            let mut rb = ReadBuf::new(&mut scratch);
            match Pin::new(&mut *inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if !rb.filled().is_empty() => self.drained += rb.filled().len(),
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// A stream whose HTTP/1 exchanges are followed for the timeouts, and which fails once the
/// limits close its connection.
pub struct Tracked<S> {
    ticket: Ticket,
    cancelled: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    /// Answering a request head that is too large.
    refusing: Option<Linger>,
    /// Closing after an answer that left a request body unread.
    closing: Option<Linger>,
    inner: S,
}

impl<S> Tracked<S> {
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    fn closed(&mut self, cx: &mut Context<'_>) -> bool {
        match &mut self.cancelled {
            Some(c) => c.as_mut().poll(cx).is_ready(),
            None => false,
        }
    }
}

fn closed_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "closed by the connection limits",
    )
}

impl<S: AsyncRead + AsyncWrite + Unpin> Tracked<S> {
    /// Send [`TOO_LARGE`], read and drop what still comes for a moment, then end the stream
    /// (the HTTP server sees the client close).
    fn poll_refuse(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.refusing {
            Some(l) => l.poll(&mut self.inner, cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.closed(cx) {
            return Poll::Ready(Err(closed_error()));
        }
        if this.refusing.is_some() {
            return this.poll_refuse(cx);
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let got = &buf.filled()[before..];
            if !got.is_empty() {
                let too_large = this.ticket.with_track(|t, now| t.on_read(got, now));
                if too_large == Some(true) {
                    tracing::debug!("refused a request head over {MAX_REQUEST_HEAD} bytes");
                    // The router does not see these bytes; it sees the stream end instead.
                    buf.set_filled(before);
                    this.refusing = Some(Linger::new(TOO_LARGE));
                    return this.poll_refuse(cx);
                }
            }
        }
        r
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.closed(cx) {
            return Poll::Ready(Err(closed_error()));
        }
        if self.refusing.is_some() {
            return Poll::Ready(Ok(buf.len())); // the client has its answer
        }
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.ticket.with_track(|t, now| t.on_write(&buf[..n], now));
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.closed(cx) {
            return Poll::Ready(Err(closed_error()));
        }
        if self.refusing.is_some() {
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            self.ticket.with_track(|t, now| {
                let mut left = n;
                for b in bufs {
                    if left == 0 {
                        break;
                    }
                    let take = left.min(b.len());
                    t.on_write(&b[..take], now);
                    left -= take;
                }
            });
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.closing.is_none() {
            let unread = this.ticket.with_track(|t, _| t.unread_body) == Some(true);
            if !unread || this.closed(cx) {
                return Pin::new(&mut this.inner).poll_shutdown(cx);
            }
            // Our side is done (the client sees the answer end), then linger.
            std::task::ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            this.closing = Some(Linger::new(b""));
        }
        match &mut this.closing {
            Some(l) => l.poll(&mut this.inner, cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(cap: usize) -> Settings {
        Settings {
            max_connections: cap,
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }

    #[test]
    fn caps_follow_the_open_file_limit() {
        assert_eq!(connection_cap(0, 1024), 768);
        assert_eq!(connection_cap(100, 1024), 100);
        assert_eq!(connection_cap(5000, 1024), 768);
        assert_eq!(connection_cap(0, 1 << 20), (1 << 20) - 8192);
        assert_eq!(connection_cap(0, 20), 16);
    }

    #[test]
    fn heads_end_at_an_empty_line() {
        let mut s = HeadScan::default();
        assert_eq!(s.feed(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(s.feed(b"\r\nbody"), Some(2));
        let mut s = HeadScan::default();
        assert_eq!(s.feed(b"GET / HTTP/1.1\nA: b\n\n"), Some(21));
        // Blank lines before a request are skipped (RFC 9112 2.2).
        let mut s = HeadScan::default();
        assert_eq!(s.feed(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n"), Some(22));
        let info = head_info(b"POST /x HTTP/1.1\r\nContent-Length: 12\r\nHost: h\r\n\r\n");
        assert_eq!(info.first, "POST /x HTTP/1.1");
        assert_eq!(info.content_length, Some(12));
        assert!(head_info(b"POST / HTTP/1.1\r\ntransfer-encoding: Chunked\r\n").chunked);
    }

    #[test]
    fn an_exchange_from_head_to_idle() {
        let t0 = Instant::now();
        let mut t = Track::new(t0);
        t.on_read(b"POST /api HTTP/1.1\r\nContent-", t0);
        assert!(matches!(t.phase, Phase::Head { .. }));
        t.on_read(b"Length: 10\r\n\r\n01234", t0);
        assert!(matches!(t.phase, Phase::Body { left: 5, .. }));
        t.on_read(b"56789", t0);
        assert_eq!(t.phase, Phase::Work);
        // 100 Continue is not the answer.
        t.on_write(b"HTTP/1.1 100 Continue\r\n\r\n", t0);
        assert_eq!(t.phase, Phase::Work);
        t.on_write(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nab", t0);
        assert!(matches!(t.phase, Phase::Reply { left: 2, .. }));
        t.on_write(b"cd", t0);
        assert!(matches!(t.phase, Phase::Idle { .. }));
        assert_eq!(t.headless_since(), Some(t0));
        // The next request on the same connection; a HEAD's answer has no body.
        let t1 = t0 + Duration::from_secs(1);
        t.on_read(b"HEAD /boot/ipxe HTTP/1.1\r\n\r\n", t1);
        assert_eq!(t.phase, Phase::Work);
        t.on_write(b"HTTP/1.1 200 OK\r\ncontent-length: 400\r\n\r\n", t1);
        assert_eq!(t.phase, Phase::Idle { since: t1 });
        // Chunked both ways.
        t.on_read(
            b"PUT /f HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello",
            t1,
        );
        assert!(matches!(t.phase, Phase::Body { .. }));
        t.on_read(b"\r\n0\r\n\r\n", t1);
        assert_eq!(t.phase, Phase::Work);
        t.on_write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n", t1);
        assert!(matches!(t.phase, Phase::Reply { .. }));
        t.on_write(b"2\r\nok\r\n", t1);
        t.on_write(b"0\r\n\r\n", t1);
        assert!(matches!(t.phase, Phase::Idle { .. }));
        // An answer before the body was read.
        let mut e = Track::new(t0);
        e.on_read(b"POST /x HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc", t0);
        assert!(!e.unread_body);
        e.on_write(
            b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n",
            t0,
        );
        assert!(e.unread_body);
        assert!(!t.unread_body);
        // HTTP/2 with prior knowledge.
        let mut t = Track::new(t0);
        t.on_read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", t0);
        assert!(matches!(t.phase, Phase::H2 { .. }));
    }

    #[test]
    fn timeouts() {
        let s = settings(10);
        let t0 = Instant::now();
        let mut t = Track::new(t0);
        assert_eq!(t.expired(t0 + Duration::from_secs(9), &s), None);
        assert_eq!(
            t.expired(t0 + Duration::from_secs(11), &s),
            Some(Reason::Head)
        );
        t.on_read(b"GET / HTTP/1.1\r\n\r\n", t0);
        assert_eq!(t.expired(t0 + Duration::from_secs(3600), &s), None, "work");
        t.on_write(b"HTTP/1.1 204 No Content\r\n\r\n", t0);
        assert_eq!(t.expired(t0 + Duration::from_secs(59), &s), None);
        assert_eq!(
            t.expired(t0 + Duration::from_secs(61), &s),
            Some(Reason::Idle)
        );
    }

    #[tokio::test]
    async fn past_the_cap_idle_connections_go_first() {
        let l = Limits::new(settings(3), 1024);
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let t0 = Instant::now();
        let a = l.admit(peer).unwrap();
        let b = l.admit(peer).unwrap();
        let c = l.admit(peer).unwrap();
        // b sent its request; c connected before a.
        let request = |t: &Ticket| t.with_track(|t, now| t.on_read(b"GET / HTTP/1.1\r\n\r\n", now));
        request(&b);
        let ago = |secs| t0 - Duration::from_secs(secs);
        a.with_track(|t, _| t.phase = Phase::Head { since: ago(1) });
        c.with_track(|t, _| t.phase = Phase::Idle { since: ago(2) });
        let token = |t: &Ticket| t.0.as_ref().unwrap().slot.token.clone();
        let d = l.admit(peer).expect("room made");
        assert!(
            token(&c).is_cancelled(),
            "the oldest without a request goes"
        );
        assert!(!token(&a).is_cancelled() && !token(&b).is_cancelled());
        let e = l.admit(peer).expect("room made");
        assert!(token(&a).is_cancelled());
        assert!(!token(&d).is_cancelled() && !token(&e).is_cancelled());
        drop((a, c));
        assert_eq!(l.open(), 3);
        // Every connection busy with a request: a new one is refused.
        request(&d);
        request(&e);
        assert!(l.admit(peer).is_none());
        assert_eq!(l.open(), 3);
        drop((b, d, e));
        assert_eq!(l.open(), 0);
    }

    #[tokio::test]
    async fn closing_connections_count_up_to_a_ceiling() {
        let l = Limits::new(settings(8), 1024);
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        // Each one past the cap closes another, but none has let go of its socket yet.
        let held: Vec<Ticket> = (0..16).map(|_| l.admit(peer).expect("room")).collect();
        assert!(l.admit(peer).is_none());
        assert_eq!(l.open(), 16);
        drop(held);
        assert_eq!(l.open(), 0);
        assert!(l.admit(peer).is_some());
    }

    #[tokio::test]
    async fn a_request_head_too_large_gets_431() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = Limits::new(settings(3), 1024);
        let ticket = l.admit("127.0.0.1:1".parse().unwrap()).unwrap();
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let (tx, rx) = tokio::sync::oneshot::channel();
        guard(ticket, async move {
            let _ = tx.send(track(server));
        })
        .await;
        let mut server = rx.await.unwrap();
        // All of it at once, its end included.
        let mut head = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        head.extend(std::iter::repeat_n(b'x', MAX_REQUEST_HEAD + 100));
        head.extend_from_slice(b"\r\n\r\n");
        client.write_all(&head).await.unwrap();
        let mut seen = 0;
        let mut buf = vec![0u8; 8192];
        loop {
            let n = server.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            seen += n;
        }
        assert!(seen <= MAX_REQUEST_HEAD + 8192, "{seen}");
        drop(client.write_all(b"more").await);
        let mut answer = Vec::new();
        drop(server);
        client.read_to_end(&mut answer).await.unwrap();
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
        let (_, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            text.contains(&format!("Content-Length: {}\r\n", body.len())),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_closed_connection_fails_its_reads() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = Limits::new(settings(3), 1024);
        let ticket = l.admit("127.0.0.1:1".parse().unwrap()).unwrap();
        let token = ticket.0.as_ref().unwrap().slot.token.clone();
        let (mut client, server) = tokio::io::duplex(64);
        let (tx, rx) = tokio::sync::oneshot::channel();
        guard(ticket, async move {
            let _ = tx.send(track(server));
        })
        .await;
        let mut server = rx.await.unwrap();
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        let n = server.read(&mut buf).await.unwrap();
        assert_eq!(n, 16);
        token.cancel();
        let e = server.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted);
        drop(server);
        assert_eq!(l.open(), 0);
    }
}
