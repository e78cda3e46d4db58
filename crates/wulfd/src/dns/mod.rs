//! The head's DNS server: authoritative for the cluster domain(s) (each net's `domain`) and
//! the networks' in-addr.arpa zones, answering from an in-memory index of the object cache;
//! other names are forwarded to upstream servers. UDP and TCP on each listen address.
//! See docs/admin/dns.md.

pub mod forward;
pub mod names;
pub mod zone;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query as QueryParams, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use hickory_proto::op::{Edns, Message, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::web::ApiErr;
use forward::Forwarder;
use names::Snapshot;
use zone::Index;

/// How often the index is rebuilt even when no object changed (the head's own addresses may).
const REFRESH: Duration = Duration::from_secs(10);
/// How often the builder looks for a new cache revision.
const INDEX_POLL: Duration = Duration::from_millis(20);
/// How often the listen addresses are checked.
const LISTEN_CHECK: Duration = Duration::from_secs(1);
/// How long a failed bind waits before it is tried again.
const BIND_RETRY: Duration = Duration::from_secs(30);
/// Queries being forwarded at once (more are dropped; clients retry).
const MAX_FORWARDS: usize = 1024;
/// TCP connections at once.
const MAX_TCP: usize = 256;
/// An idle TCP connection is closed after this long.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// The UDP payload we advertise with EDNS.
const EDNS_PAYLOAD: u16 = 1232;

/// What to do with one received message.
#[derive(Debug)]
pub enum Action {
    Reply(Vec<u8>),
    Forward(hickory_proto::op::Query),
    Drop,
}

pub struct Server {
    app: Arc<App>,
    /// The current index, swapped whole by [`keep_index`]; queries never wait for a build.
    index: Mutex<Arc<Index>>,
    forwarder: Forwarder,
    forwards: Arc<Semaphore>,
    tcp_conns: Arc<Semaphore>,
}

/// The head's IPv4 addresses (interfaces that are up, loopback excluded).
fn head_addrs() -> Vec<Ipv4Addr> {
    match crate::netif::ipv4_addrs() {
        Ok(v) => v.into_iter().map(|a| a.addr).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "DNS: cannot list this head's addresses");
            Vec::new()
        }
    }
}

/// Nameservers in resolv.conf text (port 53).
fn resolv_conf_servers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver"))
                .then(|| w.next())
                .flatten()
                .and_then(|a| a.split('%').next())
                .and_then(|a| a.parse::<IpAddr>().ok())
        })
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// The upstream servers: `[dns] upstream`, else resolv.conf's nameservers that are not this
/// head itself (a loop) — its own addresses, and loopback when we would answer there.
fn upstreams(app: &App) -> Vec<SocketAddr> {
    let cfg = &app.cfg.dns;
    let mine = head_addrs();
    let listens_on = |s: &SocketAddr| {
        cfg.listen.iter().any(|l| {
            l.port() == s.port()
                && (l.ip() == s.ip() || (l.ip().is_unspecified() && s.ip().is_loopback()))
        })
    };
    let (list, from_config) = if cfg.upstream.is_empty() {
        let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        (resolv_conf_servers(&text), false)
    } else {
        (cfg.upstream.clone(), true)
    };
    let mut out = Vec::new();
    for s in list {
        let own = match s.ip() {
            IpAddr::V4(ip) => mine.contains(&ip) && s.port() == 53,
            IpAddr::V6(_) => false,
        };
        if listens_on(&s) || (!from_config && own) {
            tracing::warn!(upstream = %s, "DNS: not forwarding to {s}: that is this DNS server itself");
            continue;
        }
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

impl Server {
    pub fn new(app: Arc<App>) -> Server {
        let forwarder = Forwarder::new(upstreams(&app));
        Server {
            app,
            index: Mutex::new(Arc::new(Index::default())),
            forwarder,
            forwards: Arc::new(Semaphore::new(MAX_FORWARDS)),
            tcp_conns: Arc::new(Semaphore::new(MAX_TCP)),
        }
    }

    fn index(&self) -> Arc<Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Build a new index from the cache and swap it in.
    fn rebuild(&self) {
        let addrs = head_addrs();
        let snap = {
            let st = self.app.cache.read();
            Snapshot::from_state(&st, &self.app.head, &addrs)
        };
        let t = Instant::now();
        let ix = Arc::new(Index::build(&snap));
        tracing::debug!(revision = snap.revision, entries = snap.entries.len(), elapsed = ?t.elapsed(), "DNS: index rebuilt");
        *self.index.lock().unwrap_or_else(|p| p.into_inner()) = ix;
    }

    /// The addresses to serve: `[dns] listen`, else port 53 on each head address in a net.
    fn listen_addrs(&self) -> Vec<SocketAddr> {
        if !self.app.cfg.dns.listen.is_empty() {
            return self.app.cfg.dns.listen.clone();
        }
        let addrs = head_addrs();
        let st = self.app.cache.read();
        let nets = st.networks();
        addrs
            .into_iter()
            .filter(|ip| nets.iter().any(|n| n.contains(*ip)))
            .map(|ip| SocketAddr::new(IpAddr::V4(ip), 53))
            .collect()
    }

    /// Decide what to do with one message (`udp`: it came over UDP, so size limits apply).
    fn handle(&self, req: &[u8], udp: bool) -> Action {
        handle(&self.index(), !self.forwarder.is_empty(), req, udp)
    }

    /// Answer one message: the reply bytes, or None to stay silent.
    async fn respond(&self, req: &[u8], tcp: bool) -> Option<Vec<u8>> {
        let m = crate::metrics::get();
        m.dns_query(tcp);
        let reply = self.respond_to(req, tcp).await;
        if let Some(r) = &reply {
            m.dns_answer(r);
        }
        reply
    }

    async fn respond_to(&self, req: &[u8], tcp: bool) -> Option<Vec<u8>> {
        match self.handle(req, !tcp) {
            Action::Reply(r) => Some(r),
            Action::Drop => None,
            Action::Forward(q) => {
                crate::metrics::get().dns_forwarded();
                match self.forwarder.forward(req, &q, tcp).await {
                    Some(r) => Some(r),
                    None => {
                        tracing::debug!(name = %q.name(), "DNS: no upstream answered; SERVFAIL");
                        Message::from_vec(req).ok().and_then(|m| {
                            encode(&error_reply(&m, ResponseCode::ServFail, true), None)
                        })
                    }
                }
            }
        }
    }
}

fn error_reply(req: &Message, rcode: ResponseCode, ra: bool) -> Message {
    let mut m = Message::response(req.metadata.id, req.metadata.op_code);
    m.metadata = Metadata::response_from_request(&req.metadata);
    m.metadata.response_code = rcode;
    m.metadata.recursion_available = ra;
    m.add_queries(req.queries.iter().cloned());
    if req.edns.is_some() {
        m.set_edns(our_edns());
    }
    m
}

fn our_edns() -> Edns {
    let mut e = Edns::new();
    e.set_max_payload(EDNS_PAYLOAD);
    e.set_version(0);
    e
}

/// Encode `m`; over UDP (`limit` given) an answer that does not fit is sent truncated (TC,
/// the question only) so the client asks again over TCP. When even the questions do not fit
/// (several long ones in one message, answered FORMERR), the header alone is sent.
fn encode(m: &Message, limit: Option<usize>) -> Option<Vec<u8>> {
    let bytes = m.to_vec().ok()?;
    match limit {
        Some(l) if bytes.len() > l => {
            let mut t = m.truncate();
            t.metadata.truncation = true;
            let bytes = t.to_vec().ok()?;
            if bytes.len() <= l {
                return Some(bytes);
            }
            t.queries.clear();
            t.to_vec().ok()
        }
        _ => Some(bytes),
    }
}

/// FORMERR/NOTIMP built from the raw header when the message does not parse.
fn raw_error(req: &[u8], rcode: u8) -> Vec<u8> {
    let mut out = vec![0u8; 12];
    out[..2].copy_from_slice(&req[..2]);
    // QR, the request's opcode and RD; rcode.
    out[2] = 0x80 | (req[2] & 0x79);
    out[3] = rcode & 0x0f;
    out
}

/// The protocol logic, independent of sockets: parse, answer from the index, or forward.
pub fn handle(ix: &Index, can_forward: bool, req: &[u8], udp: bool) -> Action {
    if req.len() < 12 || req[2] & 0x80 != 0 {
        // Too short to answer, or a response: never answer those (no loops).
        return Action::Drop;
    }
    let msg = match Message::from_vec(req) {
        Ok(m) => m,
        Err(_) => return Action::Reply(raw_error(req, 1)),
    };
    if msg.metadata.op_code != OpCode::Query {
        return reply(
            &error_reply(&msg, ResponseCode::NotImp, can_forward),
            &msg,
            udp,
        );
    }
    if msg.queries.len() != 1 {
        return reply(
            &error_reply(&msg, ResponseCode::FormErr, can_forward),
            &msg,
            udp,
        );
    }
    if msg.edns.as_ref().is_some_and(|e| e.version() > 0) {
        return reply(
            &error_reply(&msg, ResponseCode::BADVERS, can_forward),
            &msg,
            udp,
        );
    }
    let q = &msg.queries[0];
    if q.query_type() == RecordType::OPT {
        return reply(
            &error_reply(&msg, ResponseCode::FormErr, can_forward),
            &msg,
            udp,
        );
    }
    match ix.lookup(q.name(), q.query_type(), q.query_class()) {
        Some(r) => {
            let mut m = error_reply(&msg, r.rcode, can_forward);
            m.metadata.authoritative = r.authoritative;
            m.answers = r.answers;
            m.authorities = r.authorities;
            m.additionals = r.additionals;
            reply(&m, &msg, udp)
        }
        None if can_forward => Action::Forward(q.clone()),
        None => reply(&error_reply(&msg, ResponseCode::Refused, false), &msg, udp),
    }
}

fn reply(m: &Message, req: &Message, udp: bool) -> Action {
    let limit = udp.then(|| usize::from(req.max_payload()));
    match encode(m, limit) {
        Some(b) => Action::Reply(b),
        None => Action::Drop,
    }
}

/// Serve one UDP socket until cancelled.
async fn serve_udp(server: Arc<Server>, sock: UdpSocket, cancel: CancellationToken) {
    let sock = Arc::new(sock);
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    // ICMP errors from earlier sends surface here; keep serving.
                    tracing::debug!(error = %e, "DNS: UDP receive error");
                    continue;
                }
            },
        };
        let req = &buf[..n];
        match server.handle(req, true) {
            Action::Reply(r) => {
                if let Err(e) = sock.send_to(&r, peer).await {
                    tracing::debug!(%peer, error = %e, "DNS: cannot send an answer");
                }
            }
            Action::Drop => {}
            Action::Forward(q) => {
                let Ok(permit) = server.forwards.clone().try_acquire_owned() else {
                    tracing::debug!("DNS: too many queries being forwarded; dropping one");
                    continue;
                };
                let (server, sock, req, cancel) =
                    (server.clone(), sock.clone(), req.to_vec(), cancel.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    let answer = tokio::select! {
                        _ = cancel.cancelled() => return,
                        a = server.forwarder.forward(&req, &q, false) => a,
                    };
                    let out = answer.or_else(|| {
                        Message::from_vec(&req).ok().and_then(|m| {
                            encode(&error_reply(&m, ResponseCode::ServFail, true), None)
                        })
                    });
                    if let Some(out) = out {
                        let _ = sock.send_to(&out, peer).await;
                    }
                });
            }
        }
    }
}

/// Serve one TCP listener until cancelled.
async fn serve_tcp(server: Arc<Server>, listener: TcpListener, cancel: CancellationToken) {
    let mut conns = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "DNS: TCP accept error");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = server.tcp_conns.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "DNS: too many TCP connections; closing one");
            continue;
        };
        let (server, cancel) = (server.clone(), cancel.clone());
        conns.spawn(async move {
            let _permit = permit;
            tokio::select! {
                _ = cancel.cancelled() => {}
                r = tcp_conn(&server, stream) => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "DNS: TCP connection ended");
                    }
                }
            }
        });
    }
    conns.shutdown().await;
}

async fn tcp_conn(server: &Server, mut s: TcpStream) -> std::io::Result<()> {
    loop {
        let mut lb = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, s.read_exact(&mut lb)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        }
        let mut req = vec![0u8; usize::from(u16::from_be_bytes(lb))];
        tokio::time::timeout(TCP_IDLE, s.read_exact(&mut req))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "slow client"))??;
        let Some(resp) = server.respond(&req, true).await else {
            // Nothing sensible to say (not a query): close.
            return Ok(());
        };
        let Ok(len) = u16::try_from(resp.len()) else {
            return Ok(());
        };
        let mut out = Vec::with_capacity(resp.len() + 2);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&resp);
        s.write_all(&out).await?;
    }
}

/// One address being served.
struct Listening {
    cancel: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

async fn bind(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    let udp = UdpSocket::bind(addr).await?;
    let tcp = TcpListener::bind(addr).await?;
    Ok((udp, tcp))
}

/// Rebuild the index whenever the object cache moves to a new revision (and every
/// [`REFRESH`], for the head's own addresses). Builds run off the async workers and are
/// coalesced: a burst of changes costs one build per [`INDEX_POLL`] at most.
async fn keep_index(server: Arc<Server>, cancel: CancellationToken) {
    let mut built: (i64, Instant) = (server.app.cache.revision(), Instant::now());
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(INDEX_POLL) => {}
        }
        let rev = server.app.cache.revision();
        if rev == built.0 && built.1.elapsed() < REFRESH {
            continue;
        }
        let s = server.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || s.rebuild()).await {
            tracing::error!(error = %e, "DNS: index build failed; keeping the previous one");
        }
        built = (rev, Instant::now());
    }
}

/// Run the DNS server until `cancel`. Binding failures are logged and retried; they never
/// stop the rest of wulfd.
pub async fn run(app: Arc<App>, cancel: CancellationToken) {
    let server = Arc::new(Server::new(app));
    server.rebuild();
    let indexer = tokio::spawn(keep_index(server.clone(), cancel.clone()));
    if server.forwarder.is_empty() {
        tracing::info!("DNS: no upstream servers ([dns] upstream is empty and /etc/resolv.conf names none besides this head): names outside the cluster are REFUSED");
    } else {
        let list: Vec<String> = server
            .forwarder
            .upstreams()
            .iter()
            .map(|s| s.to_string())
            .collect();
        tracing::info!(upstream = %list.join(","), "DNS: forwarding names outside the cluster");
    }
    let mut active: HashMap<SocketAddr, Listening> = HashMap::new();
    let mut failed: HashMap<SocketAddr, Instant> = HashMap::new();
    let mut warned: HashSet<SocketAddr> = HashSet::new();
    let mut tick = tokio::time::interval(LISTEN_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let want: Vec<SocketAddr> = server.listen_addrs();
        let gone: Vec<SocketAddr> = active
            .keys()
            .filter(|a| !want.contains(a))
            .copied()
            .collect();
        for addr in gone {
            if let Some(l) = active.remove(&addr) {
                tracing::info!(%addr, "DNS: no longer serving {addr}");
                l.cancel.cancel();
                for t in l.tasks {
                    let _ = t.await;
                }
            }
        }
        for addr in want {
            if active.contains_key(&addr)
                || failed.get(&addr).is_some_and(|t| t.elapsed() < BIND_RETRY)
            {
                continue;
            }
            match bind(addr).await {
                Ok((udp, tcp)) => {
                    failed.remove(&addr);
                    warned.remove(&addr);
                    tracing::info!(%addr, "DNS: serving on {addr} (UDP and TCP)");
                    let c = cancel.child_token();
                    let tasks = vec![
                        tokio::spawn(serve_udp(server.clone(), udp, c.clone())),
                        tokio::spawn(serve_tcp(server.clone(), tcp, c.clone())),
                    ];
                    active.insert(addr, Listening { cancel: c, tasks });
                }
                Err(e) => {
                    failed.insert(addr, Instant::now());
                    let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
                        " (port 53 needs root or CAP_NET_BIND_SERVICE)"
                    } else if e.kind() == std::io::ErrorKind::AddrInUse {
                        " (another DNS server, like dnsmasq or systemd-resolved, holds it)"
                    } else {
                        ""
                    };
                    if warned.insert(addr) {
                        tracing::warn!(%addr, error = %e, "DNS: cannot listen on {addr}: {e}{hint}; DNS is not served there (retrying every {}s)", BIND_RETRY.as_secs());
                    } else {
                        tracing::debug!(%addr, error = %e, "DNS: still cannot listen on {addr}");
                    }
                }
            }
        }
    }
    for (_, l) in active {
        l.cancel.cancel();
        for t in l.tasks {
            let _ = t.await;
        }
    }
    let _ = indexer.await;
    tracing::debug!("DNS: stopped");
}

/// `GET /api/v1/cluster/hosts`.
pub fn routes() -> axum::Router<Arc<App>> {
    axum::Router::new().route("/api/v1/cluster/hosts", axum::routing::get(cluster_hosts))
}

/// `GET /api/v1/cluster/hosts?format=hosts|ethers`: /etc/hosts or /etc/ethers lines for the
/// heads, nodes and hosts, made from the same names the DNS server answers.
async fn cluster_hosts(
    State(app): State<Arc<App>>,
    QueryParams(q): QueryParams<HashMap<String, String>>,
) -> Result<Response, ApiErr> {
    let format = q.get("format").map(String::as_str).unwrap_or("hosts");
    if format != "hosts" && format != "ethers" {
        return Err(ApiErr::new(
            StatusCode::BAD_REQUEST,
            format!("unknown format '{format}': use hosts or ethers"),
        ));
    }
    let addrs = head_addrs();
    let snap = {
        let st = app.cache.read();
        Snapshot::from_state(&st, &app.head, &addrs)
    };
    let text = if format == "hosts" {
        snap.hosts_file()
    } else {
        snap.ethers_file()
    };
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::{DNSClass, Name, RData};

    fn ix() -> Index {
        Index::build(&names::tests::sample())
    }

    fn query(name: &str, t: RecordType, edns: bool) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 0xbeef;
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        if edns {
            m.set_edns(Edns::new());
        }
        m.to_vec().unwrap()
    }

    fn reply_of(a: Action) -> Message {
        match a {
            Action::Reply(b) => Message::from_vec(&b).unwrap(),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn answers_authoritatively() {
        let r = reply_of(handle(
            &ix(),
            true,
            &query("n0.cluster.local.", RecordType::A, false),
            true,
        ));
        assert_eq!(r.metadata.id, 0xbeef);
        assert!(r.metadata.authoritative);
        assert!(r.metadata.recursion_desired && r.metadata.recursion_available);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(matches!(r.answers[0].data, RData::A(a) if a.0 == Ipv4Addr::new(10, 0, 0, 10)));
        assert!(r.edns.is_none());
        let r = reply_of(handle(
            &ix(),
            false,
            &query("x.cluster.local.", RecordType::A, true),
            true,
        ));
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        assert!(r.metadata.authoritative && !r.metadata.recursion_available);
        assert!(r.edns.is_some(), "EDNS in, EDNS out");
        assert_eq!(r.authorities.len(), 1);
    }

    #[test]
    fn forwards_or_refuses_other_names() {
        let q = query("example.com.", RecordType::A, false);
        assert!(matches!(handle(&ix(), true, &q, true), Action::Forward(_)));
        let r = reply_of(handle(&ix(), false, &q, true));
        assert_eq!(r.metadata.response_code, ResponseCode::Refused);
        // Our reverse zone is never forwarded.
        let q = query("99.0.0.10.in-addr.arpa.", RecordType::PTR, false);
        let r = reply_of(handle(&ix(), true, &q, true));
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        // Other classes are refused.
        let mut m = Message::query();
        let mut qq = Query::query(
            Name::from_ascii("n0.cluster.local.").unwrap(),
            RecordType::A,
        );
        qq.set_query_class(DNSClass::CH);
        m.add_query(qq);
        let r = reply_of(handle(&ix(), true, &m.to_vec().unwrap(), true));
        assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    }

    #[test]
    fn malformed_input_never_panics() {
        let ix = ix();
        // Too short, or a response: silence.
        assert!(matches!(handle(&ix, true, &[], true), Action::Drop));
        assert!(matches!(handle(&ix, true, &[1, 2, 3], true), Action::Drop));
        let mut resp = query("n0.cluster.local.", RecordType::A, false);
        resp[2] |= 0x80;
        assert!(matches!(handle(&ix, true, &resp, true), Action::Drop));
        // Garbage after a header: FORMERR with the id.
        let mut junk = vec![0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
        junk.extend_from_slice(&[0xff; 20]);
        let Action::Reply(b) = handle(&ix, true, &junk, true) else {
            panic!("expected FORMERR")
        };
        assert_eq!(&b[..2], &[0x12, 0x34]);
        assert_eq!(b[2] & 0x80, 0x80);
        assert_eq!(b[3] & 0x0f, 1);
        // No question, two questions: FORMERR.
        let mut m = Message::query();
        m.metadata.id = 7;
        let r = reply_of(handle(&ix, true, &m.to_vec().unwrap(), true));
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
        m.add_query(Query::query(Name::from_ascii("a.").unwrap(), RecordType::A));
        m.add_query(Query::query(Name::from_ascii("b.").unwrap(), RecordType::A));
        let r = reply_of(handle(&ix, true, &m.to_vec().unwrap(), true));
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
        // Other opcodes: NOTIMP.
        let mut q = query("n0.cluster.local.", RecordType::A, false);
        q[2] = (q[2] & !0x78) | (4 << 3);
        let r = reply_of(handle(&ix, true, &q, true));
        assert_eq!(r.metadata.response_code, ResponseCode::NotImp);
        // Every prefix and random bytes: never a panic.
        let good = query("compute-a.cluster.local.", RecordType::A, true);
        for n in 0..good.len() {
            let _ = handle(&ix, true, &good[..n], true);
        }
        let mut x: u32 = 12345;
        for _ in 0..2000 {
            let len = (x % 80) as usize;
            let mut b = Vec::with_capacity(len);
            for _ in 0..len {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                b.push((x >> 16) as u8);
            }
            if b.len() > 2 {
                b[2] &= 0x7f;
            }
            let _ = handle(&ix, true, &b, true);
        }
    }

    #[test]
    fn big_answers_are_truncated_over_udp() {
        let mut m = Message::response(1, OpCode::Query);
        m.add_query(Query::query(Name::from_ascii("x.").unwrap(), RecordType::A));
        for i in 0..100u8 {
            m.add_answer(hickory_proto::rr::Record::from_rdata(
                Name::from_ascii("x.").unwrap(),
                1,
                RData::A(hickory_proto::rr::rdata::A(Ipv4Addr::new(10, 0, 0, i))),
            ));
        }
        let b = encode(&m, Some(512)).unwrap();
        let t = Message::from_vec(&b).unwrap();
        assert!(t.metadata.truncation && t.answers.is_empty());
        let b = encode(&m, None).unwrap();
        assert_eq!(Message::from_vec(&b).unwrap().answers.len(), 100);
    }

    #[test]
    fn udp_answers_fit_even_with_many_long_questions() {
        // Five questions of long names: the FORMERR echoing them was 526 bytes over UDP to a
        // client taking 512 (found by fuzzing).
        let mut m = Message::query();
        m.metadata.id = 9;
        for i in 0..5u8 {
            // Distinct names, so compression cannot share them.
            let l: Vec<String> = (0..4u8)
                .map(|j| char::from(b'a' + i * 4 + j).to_string().repeat(60))
                .collect();
            let name = Name::from_ascii(format!("{}.", l.join("."))).unwrap();
            m.add_query(Query::query(name, RecordType::A));
        }
        let q = m.to_vec().unwrap();
        let Action::Reply(b) = handle(&ix(), true, &q, true) else {
            panic!("expected FORMERR")
        };
        assert!(b.len() <= 512, "{} bytes", b.len());
        let r = Message::from_vec(&b).unwrap();
        assert_eq!(r.metadata.id, 9);
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
        assert!(r.metadata.truncation);
        // Over TCP the questions come back.
        let Action::Reply(b) = handle(&ix(), true, &q, false) else {
            panic!("expected FORMERR")
        };
        assert_eq!(Message::from_vec(&b).unwrap().queries.len(), 5);
    }

    #[test]
    fn resolv_conf() {
        let text = "# x\nsearch a\nnameserver 10.0.0.1\nnameserver   fe80::1%eth0\nnameserver bad\noptions ndots:1\n";
        assert_eq!(
            resolv_conf_servers(text),
            vec![
                "10.0.0.1:53".parse::<SocketAddr>().unwrap(),
                "[fe80::1]:53".parse().unwrap()
            ]
        );
    }
}
