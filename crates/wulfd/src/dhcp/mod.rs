//! The DHCPv4 server (RFC 2131): reserved addresses for nodes, their BMCs and hosts, boot
//! files for PXE, UEFI and iPXE clients, and enrollment of unknown MACs when the cluster
//! accepts new nodes.
//!
//! One UDP socket on 0.0.0.0:67 with IP_PKTINFO receives everything; a small pool of worker
//! threads answers each datagram synchronously from the in-memory cache (the store is never
//! touched on this path). Interfaces are served when one of their addresses lies inside a
//! `net` (or, with `[dhcp] interfaces`, only those named); the set is re-evaluated every second
//! so nets and addresses added later are served without a restart.

pub mod logic;
mod sock;
mod unknown;
pub mod wire;

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use wulf_model::attributes::parse_assignments;
use wulf_model::{parse_bool, Kind, MacAddr, Network, Node};

use crate::app::App;
use crate::cache::State;
use crate::db::DbError;
use logic::{BootFile, ClientType, Dest, ReplyParams, Reservation, Verdict, Who};
use sock::{Batch, RxInfo, Sock, TxInfo, BATCH, RX_BUF};
use wire::{MsgType, Packet, BOOTREQUEST};

pub use unknown::UnknownMac;

/// Unknown MACs any head saw while the cluster does not accept new nodes (kept in the store),
/// minus those `known` claims.
pub async fn unknown_macs(
    store: &dyn wulf_store::Store,
    known: impl Fn(&MacAddr) -> bool,
) -> Result<Vec<UnknownMac>, wulf_store::StoreError> {
    unknown::list(store, known).await
}

/// On the maintaining head: drop stored unknown MACs that a node or host now has, and the
/// oldest beyond the limit.
pub async fn sweep_unknown(app: &App) {
    let known: HashSet<MacAddr> = app.cache.read().macs.keys().copied().collect();
    match unknown::sweep(app.store.as_ref(), |m| known.contains(m)).await {
        Ok(0) => {}
        Ok(n) => tracing::debug!(records = n, "removed unknown-MAC records"),
        Err(e) => tracing::warn!(error = %e, "cannot remove old unknown-MAC records"),
    }
}

/// How long a worker blocks in recv before checking whether it should stop.
const POLL: Duration = Duration::from_millis(200);
/// After a failed enrollment, requests from that MAC wait this long before trying again.
const ENROLL_COOLDOWN: Duration = Duration::from_secs(10);
const SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// An interface being served and its addresses that lie inside a `net`.
#[derive(Debug, Clone, PartialEq)]
struct Iface {
    name: String,
    addrs: Vec<Ipv4Addr>,
}

/// The interfaces served, and every local address.
#[derive(Debug, Default, PartialEq)]
struct Served {
    ifaces: HashMap<u32, Iface>,
    /// (interface index, address) for every local IPv4 address.
    local: Vec<(u32, Ipv4Addr)>,
    /// `[dhcp] interfaces` is set: relayed requests too are taken only on those.
    restrict: bool,
}

impl Served {
    fn is_local(&self, a: Ipv4Addr) -> bool {
        self.local.iter().any(|(_, l)| *l == a)
    }
}

/// Counters, summarized in the log.
#[derive(Default)]
struct Stats {
    received: AtomicU64,
    malformed: AtomicU64,
    replies: AtomicU64,
    send_errors: AtomicU64,
}

#[derive(Default)]
struct Enroll {
    in_flight: HashSet<MacAddr>,
    /// Indexes the nodes being created take (not yet in the cache).
    indexes: HashMap<MacAddr, u32>,
    cooldown: HashMap<MacAddr, Instant>,
}

/// The index a new node takes: with `append` the one after the highest index in use (0 when
/// there is none), with `insert` the lowest free one; `pending` are being created. None
/// when no index is left.
fn new_node_index(
    mode: &str,
    used: &std::collections::BTreeMap<u32, crate::cache::SharedUid>,
    pending: &HashMap<MacAddr, u32>,
) -> Option<u32> {
    let taken = |i: &u32| used.contains_key(i) || pending.values().any(|p| p == i);
    if mode == "append" {
        let last = used.keys().next_back().copied().into_iter();
        return match last.chain(pending.values().copied()).max() {
            Some(i) => i.checked_add(1),
            None => Some(0),
        };
    }
    (0..=u32::MAX).find(|i| !taken(i))
}

/// BMC MACs (`_macs` bmc=…) → (node uid, BMC address from `_ips` bmc=…), at one revision.
struct BmcIndex {
    rev: i64,
    map: HashMap<MacAddr, (String, Ipv4Addr)>,
}

struct Server {
    app: Arc<App>,
    rt: tokio::runtime::Handle,
    port: u16,
    client_port: u16,
    served: RwLock<Arc<Served>>,
    bmc: Mutex<Option<Arc<BmcIndex>>>,
    enroll: Mutex<Enroll>,
    /// (revision, things already logged once at that revision).
    once: Mutex<(i64, HashSet<(MacAddr, &'static str)>)>,
    sock: OnceLock<Arc<Sock>>,
    stats: Stats,
}

/// What to do with one request.
enum Outcome {
    Send {
        len: usize,
        dest: Dest,
        ifindex: u32,
        src: Ipv4Addr,
    },
    /// Nobody has this MAC; the interface (or relay) it came from.
    Unknown(String),
    Nothing,
}

/// The `bmc=` entry of a `name=value,…` attribute.
fn bmc_entry<'a>(st: &'a State, node: &'a Node, name: &str) -> Option<&'a str> {
    parse_assignments(st.attr(node, name)?)?
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("bmc"))
        .map(|(_, v)| v)
}

fn net_of(st: &State, ip: Ipv4Addr) -> Option<&Network> {
    st.objects(Kind::Net).find_map(|o| match o {
        crate::objects::AnyObj::Net(n) if n.contains(ip) => Some(n),
        _ => None,
    })
}

/// Where a request came in, for log lines: the interface's name, or "relay GIADDR".
/// Formatted only when a line is written (not once per packet).
struct Via<'a>(Option<&'a Iface>, Ipv4Addr);

impl std::fmt::Display for Via<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(i) => f.write_str(&i.name),
            None => write!(f, "relay {}", self.1),
        }
    }
}

/// Destination socket address and outgoing interface (only broadcasts are pinned to one).
fn route(dest: Dest, ifindex: u32) -> (SocketAddrV4, u32) {
    match dest {
        Dest::Relay(a) | Dest::Unicast(a) => (a, 0),
        Dest::Broadcast(port) => (SocketAddrV4::new(Ipv4Addr::BROADCAST, port), ifindex),
    }
}

fn now_secs() -> f64 {
    crate::db::now()
}

impl Server {
    fn served(&self) -> Arc<Served> {
        self.served
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// True the first time `what` is reported for `mac` since the cache last changed.
    fn once(&self, rev: i64, mac: MacAddr, what: &'static str) -> bool {
        let mut g = self.once.lock().unwrap_or_else(|p| p.into_inner());
        if g.0 != rev || g.1.len() > 100_000 {
            g.0 = rev;
            g.1.clear();
        }
        g.1.insert((mac, what))
    }

    fn bmc_index(&self, st: &State) -> Arc<BmcIndex> {
        let mut g = self.bmc.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = g.as_ref().filter(|i| i.rev == st.revision) {
            return i.clone();
        }
        let mut map = HashMap::new();
        for node in st.objects(Kind::Node).filter_map(|o| o.as_node()) {
            let mac = bmc_entry(st, node, "_macs").and_then(|m| m.parse::<MacAddr>().ok());
            let ip = bmc_entry(st, node, "_ips").and_then(|i| i.parse::<Ipv4Addr>().ok());
            if let (Some(mac), Some(ip)) = (mac, ip) {
                map.insert(mac, (node.uid.clone(), ip));
            }
        }
        let idx = Arc::new(BmcIndex {
            rev: st.revision,
            map,
        });
        *g = Some(idx.clone());
        idx
    }

    /// Recompute the served interfaces; log when they change.
    fn refresh_interfaces(&self) {
        let addrs = match crate::netif::ipv4_addrs() {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "DHCP: cannot list network interfaces");
                return;
            }
        };
        let only = &self.app.cfg.dhcp.interfaces;
        let mut served = Served {
            restrict: !only.is_empty(),
            ..Default::default()
        };
        let mut in_net: Vec<(String, String)> = Vec::new();
        {
            let st = self.app.cache.read();
            for a in &addrs {
                served.local.push((a.index, a.addr));
                if !only.is_empty() && !only.contains(&a.name) {
                    continue;
                }
                if let Some(net) = net_of(&st, a.addr) {
                    in_net.push((a.name.clone(), format!("{} (net {})", a.addr, net.name)));
                    served
                        .ifaces
                        .entry(a.index)
                        .or_insert_with(|| Iface {
                            name: a.name.clone(),
                            addrs: Vec::new(),
                        })
                        .addrs
                        .push(a.addr);
                }
            }
        }
        let old = self.served();
        if old.ifaces == served.ifaces {
            if old.local != served.local {
                *self.served.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(served);
            }
            return;
        }
        if served.ifaces.is_empty() {
            tracing::info!(
                "DHCP: no interface has an address inside a net{}; nothing to serve",
                if only.is_empty() {
                    String::new()
                } else {
                    format!(" among [dhcp] interfaces {only:?}")
                }
            );
        }
        for (name, what) in &in_net {
            tracing::info!(interface = %name, "DHCP serving {name}: {what}");
        }
        for name in only {
            if !in_net.iter().any(|(n, _)| n == name) {
                tracing::warn!(
                    interface = %name,
                    "DHCP: [dhcp] interfaces names {name}, but it has no address inside a net"
                );
            }
        }
        *self.served.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(served);
    }

    /// One received datagram; the reply to send, if any, is in `out`.
    fn handle(self: &Arc<Self>, data: &[u8], rx: &RxInfo, out: &mut Vec<u8>) -> Option<TxInfo> {
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        if rx.truncated {
            self.stats.malformed.fetch_add(1, Ordering::Relaxed);
            crate::metrics::get().dhcp_malformed();
            tracing::debug!(from = %rx.src, "DHCP: dropped an oversized datagram");
            return None;
        }
        let pkt = match Packet::parse(data) {
            Ok(p) => p,
            Err(e) => {
                self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                crate::metrics::get().dhcp_malformed();
                tracing::debug!(from = %rx.src, len = data.len(), error = %e, "DHCP: dropped a malformed packet");
                return None;
            }
        };
        if pkt.op != BOOTREQUEST {
            tracing::trace!(from = %rx.src, "DHCP: ignored a BOOTREPLY");
            return None;
        }
        crate::metrics::get().dhcp_received(pkt.msg_type.code());
        let Some(mac) = pkt.mac() else {
            tracing::debug!(from = %rx.src, htype = pkt.htype, hlen = pkt.hlen, "DHCP: ignored a non-Ethernet client");
            return None;
        };
        let mac = MacAddr(mac);
        let served = self.served();
        match self.answer(&pkt, mac, rx, &served, out) {
            Outcome::Send {
                len,
                dest,
                ifindex,
                src,
            } => {
                let (to, ifindex) = route(dest, ifindex);
                return Some(TxInfo {
                    slot: 0,
                    len,
                    to,
                    ifindex,
                    src,
                });
            }
            Outcome::Unknown(iface) => self.unknown(&pkt, mac, data, rx, iface),
            Outcome::Nothing => {}
        }
        None
    }

    fn send_error(&self, e: &std::io::Error) {
        if self
            .stats
            .send_errors
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(1000)
        {
            tracing::warn!(error = %e, "DHCP: cannot send a reply");
        }
    }

    fn send(&self, data: &[u8], dest: Dest, ifindex: u32, src: Ipv4Addr) {
        let Some(sock) = self.sock.get() else { return };
        let (to, ifindex) = route(dest, ifindex);
        match sock.send(data, to, ifindex, src) {
            Ok(()) => {
                self.stats.replies.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.send_error(&e),
        }
    }

    /// Decide and build the answer to one request (no I/O besides reading the cache).
    fn answer(
        &self,
        pkt: &Packet,
        mac: MacAddr,
        rx: &RxInfo,
        served: &Served,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let relayed = !pkt.giaddr.is_unspecified();
        let direct_if = if relayed {
            if served.restrict && !served.ifaces.contains_key(&rx.ifindex) {
                return Outcome::Nothing;
            }
            None
        } else {
            match served.ifaces.get(&rx.ifindex) {
                Some(i) => Some(i),
                None => return Outcome::Nothing,
            }
        };
        let st = self.app.cache.read();
        if relayed && net_of(&st, pkt.giaddr).is_none() {
            if self.once(st.revision, mac, "relay") {
                tracing::info!(%mac, relay = %pkt.giaddr, "DHCP: ignoring a request relayed from {}: no net contains it", pkt.giaddr);
            }
            return Outcome::Nothing;
        }
        let via = Via(direct_if, pkt.giaddr);

        // Who is it?
        let mut node_for_boot = None;
        let bmc_host: String;
        let (who, label, ip, hostname): (Who, &str, Option<Ipv4Addr>, Cow<str>) = match st
            .macs
            .get(&mac)
        {
            Some((Kind::Node, uid)) => {
                let Some(node) = st.get(Kind::Node, uid).and_then(|e| e.obj.as_node()) else {
                    return Outcome::Nothing;
                };
                if st.attr(node, "_no_boot").and_then(parse_bool) == Some(true) {
                    if self.once(st.revision, mac, "no_boot") {
                        tracing::info!(%mac, node = %node.name, "DHCP: ignoring node {} (_no_boot is set)", node.name);
                    }
                    return Outcome::Nothing;
                }
                node_for_boot = Some(node);
                let host = st.attr(node, "_hostname").unwrap_or(&node.name);
                (Who::Node, node.name.as_str(), node.ip, Cow::Borrowed(host))
            }
            Some((Kind::Host, uid)) => match st.get(Kind::Host, uid).map(|e| e.obj.as_ref()) {
                Some(crate::objects::AnyObj::Host(h)) => (
                    Who::Host,
                    h.name.as_str(),
                    Some(h.ip),
                    Cow::Borrowed(h.name.as_str()),
                ),
                _ => return Outcome::Nothing,
            },
            Some(_) => return Outcome::Nothing,
            None => {
                let idx = self.bmc_index(&st);
                let Some((uid, bmc_ip)) = idx.map.get(&mac) else {
                    return Outcome::Unknown(via.to_string());
                };
                let Some(node) = st.get(Kind::Node, uid).and_then(|e| e.obj.as_node()) else {
                    return Outcome::Nothing;
                };
                let host = st.attr(node, "_hostname").unwrap_or(&node.name);
                bmc_host = format!("{host}-bmc");
                (
                    Who::Bmc,
                    node.name.as_str(),
                    Some(*bmc_ip),
                    Cow::Borrowed(bmc_host.as_str()),
                )
            }
        };
        let Some(ip) = ip else {
            if self.once(st.revision, mac, "no_ip") {
                tracing::info!(%mac, node = %label, "DHCP: not answering node {label}: it has no IP address (is there a net numbering its index?)");
            }
            return Outcome::Nothing;
        };
        let Some(net) = net_of(&st, ip) else {
            if self.once(st.revision, mac, "no_net") {
                tracing::info!(%mac, %ip, "DHCP: not answering {} {label}: its address {ip} is in no net", who.name());
            }
            return Outcome::Nothing;
        };

        // Which of our addresses it talks to, and whether its reservation is on that network.
        let (server_id, net_ok) = match direct_if {
            Some(i) => match i.addrs.iter().find(|a| net.contains(**a)) {
                Some(a) => (*a, true),
                None => (i.addrs.first().copied().unwrap_or(rx.dst), false),
            },
            None => {
                let sid = if served.is_local(rx.dst) {
                    rx.dst
                } else {
                    served
                        .local
                        .iter()
                        .find(|(i, _)| *i == rx.ifindex)
                        .or(served.local.first())
                        .map(|(_, a)| *a)
                        .unwrap_or(Ipv4Addr::UNSPECIFIED)
                };
                (sid, net.contains(pkt.giaddr))
            }
        };
        let res = Reservation {
            who,
            ip,
            hostname,
            mask_bits: net.mask_bits,
            router: net.router_ip,
            dns: &net.dns_ips,
            domain: &net.domain,
            net_ok,
        };
        let verdict = logic::decide(pkt, &res, |a| served.is_local(a));
        let what = who.name();
        match verdict {
            Verdict::Ignore(why) => {
                if !net_ok && self.once(st.revision, mac, "wrong_net") {
                    tracing::info!(%mac, %ip, "DHCP: not answering {what} {label} via {}: its address {ip} (net {}) is not on that network", via, net.name);
                } else {
                    tracing::debug!(%mac, msg = pkt.msg_type.name(), "DHCP: ignoring {what} {label}: {why}");
                }
                return Outcome::Nothing;
            }
            Verdict::Decline => {
                tracing::warn!(%mac, %ip, "DHCP: {what} {label} declined {ip}: another device on the network is using that address");
                return Outcome::Nothing;
            }
            Verdict::Release => {
                tracing::info!(%mac, %ip, "DHCP: {what} {label} released {ip}");
                return Outcome::Nothing;
            }
            Verdict::Offer | Verdict::Ack | Verdict::Inform | Verdict::Nak(_) => {}
        }
        let boot = match (node_for_boot, verdict) {
            (_, Verdict::Nak(_)) | (None, _) => BootFile::None,
            (Some(_), _) => match logic::client_type(pkt) {
                ClientType::Ipxe => BootFile::Url {
                    url: crate::boot::script_url(&self.app, server_id, mac),
                    http_client: false,
                },
                ClientType::UefiHttp => BootFile::Url {
                    url: crate::boot::efi_url(&self.app, server_id),
                    http_client: true,
                },
                ClientType::Pxe(f) => BootFile::Tftp(f),
                ClientType::PxeUnsupported(arch) => {
                    if self.once(st.revision, mac, "arch") {
                        tracing::info!(%mac, arch, "DHCP: node {label} is PXE-booting with client architecture {arch}, which wulf has no boot loader for; giving it an address only");
                    }
                    BootFile::None
                }
                ClientType::Plain => BootFile::None,
            },
        };
        let len = logic::build(
            out,
            pkt,
            verdict,
            &res,
            &ReplyParams {
                server_id,
                lease_secs: self.app.cfg.dhcp.lease_secs,
                boot: &boot,
            },
        );
        let dest = logic::destination(pkt, verdict, self.port, self.client_port);
        match verdict {
            Verdict::Nak(why) => {
                if self.once(st.revision, mac, "nak") {
                    tracing::info!(%mac, msg = pkt.msg_type.name(), "DHCP: NAK to {what} {label} via {}: {why} (its address is {ip})", via);
                } else {
                    tracing::debug!(%mac, "DHCP: NAK to {what} {label}: {why}");
                }
            }
            v => {
                tracing::debug!(
                    %mac, %ip, boot = boot.name().unwrap_or(""),
                    "DHCP: {} {ip} to {what} {label} via {}",
                    if v == Verdict::Offer { "OFFER" } else { "ACK" },
                    via
                );
            }
        }
        // Offers and NAKs as such; ACK answers requests and informs.
        crate::metrics::get().dhcp_answer(match verdict {
            Verdict::Offer => 2,
            Verdict::Nak(_) => 6,
            _ => 5,
        });
        Outcome::Send {
            len,
            dest,
            ifindex: rx.ifindex,
            src: server_id,
        }
    }

    /// A MAC nobody has: enroll it when the cluster accepts new nodes, else remember it.
    fn unknown(
        self: &Arc<Self>,
        pkt: &Packet,
        mac: MacAddr,
        data: &[u8],
        rx: &RxInfo,
        iface: String,
    ) {
        if !matches!(pkt.msg_type, MsgType::Discover | MsgType::Request) {
            return;
        }
        let served = self.served();
        if pkt.server_id.is_some_and(|s| !served.is_local(s)) {
            return; // it is talking to another server
        }
        let mode = self
            .app
            .cache
            .read()
            .cluster()
            .map_or_else(|| "locked".to_string(), |c| c.accept_new_nodes.clone());
        if mode == "locked" {
            if unknown::record(mac, &iface, now_secs()) {
                tracing::info!(%mac, interface = %iface, "DHCP: unknown MAC {mac} on {iface}; not answering (the cluster does not accept new nodes; see 'wulf node unknown')");
            } else {
                tracing::debug!(%mac, interface = %iface, "DHCP: ignoring unknown MAC {mac}");
            }
            return;
        }
        let index = {
            let mut e = self.enroll.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            e.cooldown.retain(|_, until| *until > now);
            if e.cooldown.contains_key(&mac)
                || e.in_flight.len() >= crate::limits::DHCP_ENROLLING
                || e.in_flight.contains(&mac)
            {
                // Being created, failed just now, or a flood of new MACs is being created:
                // the client will retry.
                return;
            }
            let index = {
                let st = self.app.cache.read();
                new_node_index(&mode, &st.node_index, &e.indexes)
            };
            let Some(index) = index else {
                tracing::warn!(%mac, "DHCP: no node index is left for new MAC {mac}");
                e.cooldown.insert(mac, now + ENROLL_COOLDOWN);
                return;
            };
            e.in_flight.insert(mac);
            e.indexes.insert(mac, index);
            index
        };
        let me = self.clone();
        let data = data.to_vec();
        let rx = *rx;
        self.rt.spawn(async move {
            let res = me
                .app
                .db
                .create(
                    Kind::Node,
                    vec![serde_json::json!({ "mac": mac.to_string(), "index": index })],
                )
                .await;
            let mut failed = false;
            match res {
                Ok(objs) => {
                    let names: Vec<&str> = objs.iter().map(|o| o.name()).collect();
                    tracing::info!(target: "audit", %mac, interface = %iface, "created node {} for new MAC {mac} seen by DHCP on {iface}", names.join(","));
                }
                // Another request or head created it first; the cache has it now.
                Err(DbError::Conflict(m)) => {
                    tracing::debug!(%mac, "DHCP: node for {mac} already created: {m}");
                }
                Err(e) => {
                    tracing::warn!(%mac, error = %e, "DHCP: cannot create a node for new MAC {mac}");
                    failed = true;
                }
            }
            {
                let mut e = me.enroll.lock().unwrap_or_else(|p| p.into_inner());
                e.in_flight.remove(&mac);
                e.indexes.remove(&mac);
                if failed {
                    e.cooldown.insert(mac, Instant::now() + ENROLL_COOLDOWN);
                }
            }
            if failed {
                return;
            }
            // Answer the request that started it rather than waiting for a retry.
            let Ok(pkt) = Packet::parse(&data) else { return };
            let served = me.served();
            let mut out = Vec::with_capacity(wire::MAX_MESSAGE);
            match me.answer(&pkt, mac, &rx, &served, &mut out) {
                Outcome::Send {
                    len,
                    dest,
                    ifindex,
                    src,
                } => me.send(&out[..len], dest, ifindex, src),
                Outcome::Unknown(_) => {
                    tracing::debug!(%mac, "DHCP: {mac} is still unknown after enrollment");
                }
                Outcome::Nothing => {}
            }
        });
    }

    fn worker(self: Arc<Self>, sock: Arc<Sock>, stop: Arc<AtomicBool>) {
        let mut bufs = vec![[0u8; RX_BUF]; BATCH];
        let mut infos = [RxInfo::default(); BATCH];
        let mut outs: Vec<Vec<u8>> = (0..BATCH)
            .map(|_| Vec::with_capacity(wire::MAX_MESSAGE))
            .collect();
        let mut tx: Vec<TxInfo> = Vec::with_capacity(BATCH);
        let (mut rxb, mut txb) = (Batch::new(), Batch::new());
        let mut last_err = None::<Instant>;
        while !stop.load(Ordering::Relaxed) {
            match sock.recv_batch(&mut rxb, &mut bufs, &mut infos) {
                Ok(n) => {
                    tx.clear();
                    for (i, (buf, rx)) in bufs.iter().zip(infos.iter()).take(n).enumerate() {
                        if let Some(mut t) = self.handle(&buf[..rx.len], rx, &mut outs[i]) {
                            t.slot = i;
                            tx.push(t);
                        }
                    }
                    if !tx.is_empty() {
                        let (sent, err) = sock.send_batch(&mut txb, &outs, &tx);
                        self.stats.replies.fetch_add(sent as u64, Ordering::Relaxed);
                        if let Some(e) = err {
                            self.send_error(&e);
                        }
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => {
                    if last_err.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                        tracing::warn!(error = %e, "DHCP: receive failed");
                        last_err = Some(Instant::now());
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    fn summary(&self, last_malformed: &mut u64) {
        let malformed = self.stats.malformed.load(Ordering::Relaxed);
        if malformed > *last_malformed {
            tracing::info!(
                total = malformed,
                "DHCP: dropped {} malformed packets in the last minute",
                malformed - *last_malformed
            );
        }
        *last_malformed = malformed;
        tracing::debug!(
            received = self.stats.received.load(Ordering::Relaxed),
            replies = self.stats.replies.load(Ordering::Relaxed),
            malformed,
            send_errors = self.stats.send_errors.load(Ordering::Relaxed),
            "DHCP counters"
        );
    }
}

pub async fn run(app: Arc<App>, cancel: CancellationToken) {
    let port = app.cfg.dhcp.port;
    let server = Arc::new(Server {
        rt: tokio::runtime::Handle::current(),
        port,
        client_port: if port == 67 { 68 } else { port.wrapping_add(1) },
        served: RwLock::new(Arc::new(Served::default())),
        bmc: Mutex::new(None),
        enroll: Mutex::new(Enroll::default()),
        once: Mutex::new((0, HashSet::new())),
        sock: OnceLock::new(),
        stats: Stats::default(),
        app,
    });
    let writer = tokio::spawn(unknown::run_writer(
        server.app.store.clone(),
        server.app.head.clone(),
        cancel.clone(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_summary = Instant::now();
    let mut last_malformed = 0;
    let mut bind_failed: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        server.refresh_interfaces();
        // Listen once there is something to serve: a local interface inside a net, or any net
        // at all (it may be reached through relays).
        let wanted = !server.served().ifaces.is_empty()
            || server.app.cache.read().objects(Kind::Net).next().is_some();
        if server.sock.get().is_none() && wanted {
            match Sock::bind(port, POLL) {
                Ok(sock) => {
                    let sock = Arc::new(sock);
                    let _ = server.sock.set(sock.clone());
                    let n = std::thread::available_parallelism()
                        .map(|n| n.get())
                        .unwrap_or(1)
                        .clamp(1, 4);
                    for i in 0..n {
                        let (s, k, st) = (server.clone(), sock.clone(), stop.clone());
                        match std::thread::Builder::new()
                            .name(format!("dhcp-{i}"))
                            .spawn(move || s.worker(k, st))
                        {
                            Ok(h) => workers.push(h),
                            Err(e) => {
                                tracing::error!(error = %e, "DHCP: cannot start a worker thread")
                            }
                        }
                    }
                    tracing::info!(
                        port,
                        workers = workers.len(),
                        "DHCP server listening on 0.0.0.0:{port}"
                    );
                }
                Err(e) => {
                    if bind_failed.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                        tracing::error!(port, error = %e, "DHCP: cannot listen on UDP port {port} (another DHCP server? not root?); retrying");
                        bind_failed = Some(Instant::now());
                    }
                }
            }
        }
        if last_summary.elapsed() >= SUMMARY_EVERY {
            last_summary = Instant::now();
            server.summary(&mut last_malformed);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || {
        for w in workers {
            let _ = w.join();
        }
    })
    .await;
    let _ = writer.await;
    tracing::debug!("DHCP server stopped");
}

/// `GET /api/v1/node/unknown`.
pub fn routes() -> axum::Router<Arc<App>> {
    axum::Router::new().route("/api/v1/node/unknown", axum::routing::get(node_unknown))
}

/// MACs the DHCP server saw that belong to no node (while new nodes are not accepted).
async fn node_unknown(
    axum::extract::State(app): crate::app::AppState,
) -> Result<axum::Json<Vec<UnknownMac>>, crate::web::ApiErr> {
    let known: HashSet<MacAddr> = app.cache.read().macs.keys().copied().collect();
    Ok(axum::Json(
        unknown_macs(app.store.as_ref(), |m| known.contains(m)).await?,
    ))
}
