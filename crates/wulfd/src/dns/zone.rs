//! The DNS index: the zones this head is authoritative for and their records, built from a
//! [`Snapshot`] and answered from memory. Names are compared case-insensitively; answers
//! carry the question's own spelling as their owner name.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, NS, PTR, SOA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::names::Snapshot;

/// TTL of the records we serve (seconds).
pub const TTL: u32 = 60;
/// How long resolvers may cache a negative answer (SOA minimum, seconds).
pub const NEG_TTL: u32 = 10;

/// A zone this head is authoritative for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Zone {
    /// Lowercase, no trailing dot: `cluster.local`, `0.10.10.in-addr.arpa`.
    apex: String,
}

/// An authoritative answer, before it is put in a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub rcode: ResponseCode,
    /// AA: the answer comes from our own data.
    pub authoritative: bool,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
}

impl Reply {
    fn new(rcode: ResponseCode) -> Reply {
        Reply {
            rcode,
            authoritative: true,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
        }
    }
}

/// The records of every cluster zone.
#[derive(Debug, Default)]
pub struct Index {
    pub revision: i64,
    /// Forward (each net's domain) and reverse (in-addr.arpa of each net) zones.
    zones: Vec<Zone>,
    /// Lowercase FQDN (no trailing dot) → addresses.
    a: HashMap<String, Vec<Ipv4Addr>>,
    /// Lowercase single label → addresses (unqualified names like `n0.`).
    short: HashMap<String, Vec<Ipv4Addr>>,
    /// Address → canonical FQDN as written.
    ptr: HashMap<Ipv4Addr, String>,
    /// Every name that exists in a zone, with its ancestors below the apex (lowercase), so
    /// an empty non-terminal answers NODATA rather than NXDOMAIN.
    exists: HashSet<String>,
    /// This head's FQDN: the SOA MNAME and the NS of every zone.
    ns_name: String,
    /// The first cluster domain (for reverse zones' SOA RNAME).
    default_domain: Option<String>,
    /// `_ethers.`: lowercase `<mac with dashes>` or name (short or qualified) → TXT text
    /// (the owner's name, or its MAC with colons), what libnss_wulf asks for.
    ethers: HashMap<String, String>,
}

/// The apex of the ethers pseudo-zone (TXT records for `getent ethers`).
pub const ETHERS_APEX: &str = "_ethers";

/// A name as a lookup key: lowercase labels joined by dots, no trailing dot. Bytes that
/// cannot occur in our names are escaped (`\DDD`), so such names still fall inside a zone
/// (and get NXDOMAIN) without ever matching a record.
pub fn key(name: &Name) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, label) in name.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        for &b in label {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                out.push(b.to_ascii_lowercase() as char);
            } else {
                out.push_str(&format!("\\{b:03}"));
            }
        }
    }
    out
}

/// True when `name` is `apex` or below it.
fn in_zone(name: &str, apex: &str) -> bool {
    name == apex
        || (name.len() > apex.len()
            && name.ends_with(apex)
            && name.as_bytes()[name.len() - apex.len() - 1] == b'.')
}

/// `d.c.b.a.in-addr.arpa` → a.b.c.d.
pub fn parse_reverse(key: &str) -> Option<Ipv4Addr> {
    let rest = key.strip_suffix(".in-addr.arpa")?;
    let mut octets = [0u8; 4];
    let mut n = 0;
    for label in rest.split('.') {
        if n == 4
            || label.is_empty()
            || label.len() > 3
            || !label.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        octets[3 - n] = label.parse().ok()?;
        n += 1;
    }
    (n == 4).then(|| Ipv4Addr::from(octets))
}

/// The reverse zones covering a network of `bits` prefix length: one per octet boundary at
/// or above the prefix (a /20 gives sixteen /24 zones; a /26 lies in its /24 zone).
pub fn reverse_zones(ip: Ipv4Addr, bits: u8) -> Vec<String> {
    let bits = bits.clamp(8, 32);
    let zone_bits = bits.div_ceil(8).min(3) * 8;
    let base = u32::from(ip) & wulf_model::net::mask(bits.min(zone_bits));
    let count = 1u32 << zone_bits.saturating_sub(bits);
    (0..count)
        .map(|i| {
            let o = Ipv4Addr::from(base + (i << (32 - zone_bits))).octets();
            let mut labels: Vec<String> = o[..usize::from(zone_bits / 8)]
                .iter()
                .rev()
                .map(|b| b.to_string())
                .collect();
            labels.push("in-addr.arpa".to_string());
            labels.join(".")
        })
        .collect()
}

fn fqdn(s: &str) -> Option<Name> {
    Name::from_ascii(format!("{}.", s.trim_end_matches('.'))).ok()
}

impl Index {
    pub fn build(s: &Snapshot) -> Index {
        let mut ix = Index {
            revision: s.revision,
            ..Default::default()
        };
        let mut apexes: Vec<String> = Vec::new();
        for n in &s.nets {
            if let Some(d) = &n.domain {
                apexes.push(d.to_ascii_lowercase());
            }
            apexes.extend(reverse_zones(n.first_ip, n.mask_bits));
        }
        let mut seen = HashSet::new();
        apexes.retain(|a| seen.insert(a.clone()));
        // Longest apex first: the most specific zone answers.
        apexes.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        ix.zones = apexes.into_iter().map(|apex| Zone { apex }).collect();
        ix.default_domain = s.nets.iter().find_map(|n| n.domain.clone());
        ix.ns_name = match &ix.default_domain {
            Some(d) => format!("{}.{d}", s.head),
            None => s.head.clone(),
        };

        let mut claims: HashMap<String, String> = HashMap::new();
        let mut short_claims: HashMap<String, String> = HashMap::new();
        for e in &s.entries {
            for n in &e.names {
                let full = e.qualify(n).to_ascii_lowercase();
                if claims
                    .entry(full.clone())
                    .or_insert_with(|| e.owner.clone())
                    == &e.owner
                {
                    let v = ix.a.entry(full.clone()).or_default();
                    if !v.contains(&e.ip) {
                        v.push(e.ip);
                    }
                    ix.add_exists(&full);
                }
                if !n.contains('.') {
                    let short = n.to_ascii_lowercase();
                    if short_claims
                        .entry(short.clone())
                        .or_insert_with(|| e.owner.clone())
                        == &e.owner
                    {
                        let v = ix.short.entry(short).or_default();
                        if !v.contains(&e.ip) {
                            v.push(e.ip);
                        }
                    }
                }
            }
            if let (Some(mac), Some(name)) = (e.mac, e.names.first()) {
                let dashed = mac.to_string().replace(':', "-").to_ascii_lowercase();
                ix.ethers.entry(dashed).or_insert_with(|| name.clone());
                for n in &e.names {
                    for k in [n.to_ascii_lowercase(), e.qualify(n).to_ascii_lowercase()] {
                        ix.ethers.entry(k).or_insert_with(|| mac.to_string());
                    }
                }
            }
            if let std::collections::hash_map::Entry::Vacant(v) = ix.ptr.entry(e.ip) {
                v.insert(e.canonical());
                let o = e.ip.octets();
                let rev = format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0]);
                ix.add_exists(&rev);
            }
        }
        ix
    }

    /// Record `name` and its ancestors below its zone's apex as existing.
    fn add_exists(&mut self, name: &str) {
        let Some(apex) = self.zone_of(name).map(|z| z.apex.clone()) else {
            return;
        };
        let mut cur = name;
        while cur.len() > apex.len() {
            self.exists.insert(cur.to_string());
            match cur.split_once('.') {
                Some((_, rest)) => cur = rest,
                None => break,
            }
        }
    }

    fn zone_of(&self, name: &str) -> Option<&Zone> {
        self.zones.iter().find(|z| in_zone(name, &z.apex))
    }

    fn soa(&self, apex: &str, ttl: u32) -> Option<Record> {
        let owner = fqdn(apex)?;
        let mname = fqdn(&self.ns_name)?;
        let rdomain = if apex.ends_with("in-addr.arpa") {
            self.default_domain.as_deref().unwrap_or(apex)
        } else {
            apex
        };
        let rname = fqdn(&format!("hostmaster.{rdomain}"))?;
        let serial = (self.revision.max(0) as u64 & 0xffff_ffff) as u32;
        let soa = SOA::new(mname, rname, serial, 3600, 600, 86400, NEG_TTL);
        Some(Record::from_rdata(owner, ttl, RData::SOA(soa)))
    }

    fn a_records(owner: &Name, addrs: &[Ipv4Addr]) -> Vec<Record> {
        addrs
            .iter()
            .map(|ip| Record::from_rdata(owner.clone(), TTL, RData::A(A(*ip))))
            .collect()
    }

    /// Answer a question, or None when it is not ours (forward it).
    pub fn lookup(&self, qname: &Name, qtype: RecordType, qclass: DNSClass) -> Option<Reply> {
        let k = key(qname);
        if k == ETHERS_APEX || k.ends_with("._ethers") {
            return Some(self.ethers_lookup(qname, &k, qtype, qclass));
        }
        let zone = self.zone_of(&k);
        let short = (!k.is_empty() && !k.contains('.'))
            .then(|| self.short.get(&k))
            .flatten();
        if zone.is_none() && short.is_none() {
            return None;
        }
        if !matches!(qclass, DNSClass::IN | DNSClass::ANY)
            || matches!(qtype, RecordType::AXFR | RecordType::IXFR)
        {
            let mut r = Reply::new(ResponseCode::Refused);
            r.authoritative = false;
            return Some(r);
        }
        let Some(zone) = zone else {
            // An unqualified single-label name of the cluster.
            let mut r = Reply::new(ResponseCode::NoError);
            if matches!(qtype, RecordType::A | RecordType::ANY) {
                r.answers = Self::a_records(qname, short.map(Vec::as_slice).unwrap_or(&[]));
            }
            return Some(r);
        };
        let apex = zone.apex.as_str();
        let mut r = Reply::new(ResponseCode::NoError);
        if k == apex {
            let ns = || {
                fqdn(&self.ns_name)
                    .map(|n| Record::from_rdata(qname.clone(), TTL, RData::NS(NS(n))))
            };
            let glue = |r: &mut Reply| {
                if let (Some(addrs), Some(n)) = (
                    self.a.get(&self.ns_name.to_ascii_lowercase()),
                    fqdn(&self.ns_name),
                ) {
                    r.additionals = Self::a_records(&n, addrs);
                }
            };
            match qtype {
                RecordType::SOA => r.answers.extend(self.soa(apex, TTL)),
                RecordType::NS => {
                    r.answers.extend(ns());
                    glue(&mut r);
                }
                RecordType::ANY => {
                    r.answers.extend(self.soa(apex, TTL));
                    r.answers.extend(ns());
                }
                _ => {}
            }
        } else if apex.ends_with("in-addr.arpa") {
            match parse_reverse(&k).and_then(|ip| self.ptr.get(&ip)) {
                Some(target) => {
                    if matches!(qtype, RecordType::PTR | RecordType::ANY) {
                        if let Some(t) = fqdn(target) {
                            r.answers.push(Record::from_rdata(
                                qname.clone(),
                                TTL,
                                RData::PTR(PTR(t)),
                            ));
                        }
                    }
                }
                None if self.exists.contains(&k) => {}
                None => r.rcode = ResponseCode::NXDomain,
            }
        } else {
            match self.a.get(&k) {
                Some(addrs) => {
                    if matches!(qtype, RecordType::A | RecordType::ANY) {
                        r.answers = Self::a_records(qname, addrs);
                    }
                }
                None if self.exists.contains(&k) => {}
                None => r.rcode = ResponseCode::NXDomain,
            }
        }
        if r.answers.is_empty() {
            // NXDOMAIN or NODATA: the zone's SOA tells resolvers how long to remember it.
            r.authorities.extend(self.soa(apex, NEG_TTL));
        }
        Some(r)
    }
}

impl Index {
    /// `<mac with dashes>._ethers.` TXT → the name; `<name>._ethers.` TXT → the MAC.
    fn ethers_lookup(&self, qname: &Name, k: &str, qtype: RecordType, qclass: DNSClass) -> Reply {
        if !matches!(qclass, DNSClass::IN | DNSClass::ANY)
            || matches!(qtype, RecordType::AXFR | RecordType::IXFR)
        {
            let mut r = Reply::new(ResponseCode::Refused);
            r.authoritative = false;
            return r;
        }
        let mut r = Reply::new(ResponseCode::NoError);
        if k == ETHERS_APEX {
            return r;
        }
        let label = &k[..k.len() - ETHERS_APEX.len() - 1];
        match self.ethers.get(label) {
            Some(text) => {
                if matches!(qtype, RecordType::TXT | RecordType::ANY) {
                    r.answers.push(Record::from_rdata(
                        qname.clone(),
                        TTL,
                        RData::TXT(TXT::new(vec![text.clone()])),
                    ));
                }
            }
            None => r.rcode = ResponseCode::NXDomain,
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::names::tests::sample;

    fn q(ix: &Index, name: &str, t: RecordType) -> Option<Reply> {
        ix.lookup(&Name::from_ascii(name).unwrap(), t, DNSClass::IN)
    }

    fn addrs(r: &Reply) -> Vec<String> {
        r.answers
            .iter()
            .map(|rec| match &rec.data {
                RData::A(a) => a.0.to_string(),
                RData::PTR(p) => p.0.to_string(),
                RData::SOA(s) => format!("SOA {}", s.mname),
                RData::NS(n) => format!("NS {}", n.0),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn keys_and_reverse_names() {
        assert_eq!(
            key(&Name::from_ascii("N0.Cluster.LOCAL.").unwrap()),
            "n0.cluster.local"
        );
        assert_eq!(key(&Name::root()), "");
        assert_eq!(
            key(&Name::from_ascii("a\\.b.cluster.local.").unwrap()),
            "a\\046b.cluster.local"
        );
        assert_eq!(
            parse_reverse("5.0.79.10.in-addr.arpa"),
            Some("10.79.0.5".parse().unwrap())
        );
        assert_eq!(parse_reverse("0.79.10.in-addr.arpa"), None);
        assert_eq!(parse_reverse("256.0.79.10.in-addr.arpa"), None);
        assert_eq!(parse_reverse("1.5.0.79.10.in-addr.arpa"), None);
        assert_eq!(parse_reverse("x.0.79.10.in-addr.arpa"), None);
        assert_eq!(
            reverse_zones("10.79.0.10".parse().unwrap(), 24),
            vec!["0.79.10.in-addr.arpa"]
        );
        assert_eq!(
            reverse_zones("10.79.3.10".parse().unwrap(), 16),
            vec!["79.10.in-addr.arpa"]
        );
        assert_eq!(
            reverse_zones("10.79.0.70".parse().unwrap(), 26),
            vec!["0.79.10.in-addr.arpa"]
        );
        let z = reverse_zones("10.79.17.1".parse().unwrap(), 20);
        assert_eq!(z.len(), 16);
        assert_eq!(z[0], "16.79.10.in-addr.arpa");
        assert_eq!(z[15], "31.79.10.in-addr.arpa");
        assert_eq!(reverse_zones("10.200.0.1".parse().unwrap(), 9).len(), 128);
        assert!(in_zone("n0.cluster.local", "cluster.local"));
        assert!(in_zone("cluster.local", "cluster.local"));
        assert!(!in_zone("xcluster.local", "cluster.local"));
    }

    #[test]
    fn forward_answers() {
        let ix = Index::build(&sample());
        let r = q(&ix, "n0.cluster.local.", RecordType::A).unwrap();
        assert_eq!(r.rcode, ResponseCode::NoError);
        assert!(r.authoritative);
        assert_eq!(addrs(&r), vec!["10.0.0.10"]);
        // Case-insensitive, and the answer keeps the question's spelling.
        let r = q(&ix, "COMPUTE-A.cluster.LOCAL.", RecordType::A).unwrap();
        assert_eq!(addrs(&r), vec!["10.0.0.10"]);
        assert_eq!(r.answers[0].name.to_string(), "COMPUTE-A.cluster.LOCAL.");
        for alias in ["switch1", "core", "sw1"] {
            let r = q(&ix, &format!("{alias}.cluster.local."), RecordType::A).unwrap();
            assert_eq!(addrs(&r), vec!["10.0.0.200"], "{alias}");
        }
        assert_eq!(
            addrs(&q(&ix, "n0-bmc.cluster.local.", RecordType::A).unwrap()),
            vec!["10.0.1.10"]
        );
        assert_eq!(
            addrs(&q(&ix, "headnode.cluster.local.", RecordType::A).unwrap()),
            vec!["10.0.0.1"]
        );
        // ANY gives the A records too.
        assert_eq!(
            addrs(&q(&ix, "n1.cluster.local.", RecordType::ANY).unwrap()),
            vec!["10.0.0.11"]
        );
    }

    #[test]
    fn negative_answers() {
        let ix = Index::build(&sample());
        let r = q(&ix, "nope.cluster.local.", RecordType::A).unwrap();
        assert_eq!(r.rcode, ResponseCode::NXDomain);
        assert!(r.authoritative && r.answers.is_empty());
        assert_eq!(r.authorities.len(), 1);
        assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
        assert_eq!(r.authorities[0].name.to_string(), "cluster.local.");
        assert_eq!(r.authorities[0].ttl, NEG_TTL);
        // A name that exists, with no record of the type asked: NODATA.
        let r = q(&ix, "n0.cluster.local.", RecordType::AAAA).unwrap();
        assert_eq!(r.rcode, ResponseCode::NoError);
        assert!(r.answers.is_empty());
        assert_eq!(r.authorities.len(), 1);
        // Escaped bytes stay inside the zone.
        let r = q(&ix, "a\\.b.cluster.local.", RecordType::A).unwrap();
        assert_eq!(r.rcode, ResponseCode::NXDomain);
        // Unknown reverse address inside a cluster network.
        let r = q(&ix, "99.0.0.10.in-addr.arpa.", RecordType::PTR).unwrap();
        assert_eq!(r.rcode, ResponseCode::NXDomain);
        assert_eq!(r.authorities[0].name.to_string(), "0.0.10.in-addr.arpa.");
        // Zone transfers are refused.
        let r = q(&ix, "cluster.local.", RecordType::AXFR).unwrap();
        assert_eq!(r.rcode, ResponseCode::Refused);
    }

    #[test]
    fn apex_and_reverse() {
        let ix = Index::build(&sample());
        let r = q(&ix, "cluster.local.", RecordType::SOA).unwrap();
        assert_eq!(addrs(&r), vec!["SOA headnode.Cluster.Local."]);
        let r = q(&ix, "cluster.local.", RecordType::NS).unwrap();
        assert_eq!(addrs(&r), vec!["NS headnode.Cluster.Local."]);
        assert_eq!(r.additionals.len(), 1);
        let r = q(&ix, "cluster.local.", RecordType::A).unwrap();
        assert!(r.answers.is_empty() && r.rcode == ResponseCode::NoError);
        let r = q(&ix, "10.0.0.10.in-addr.arpa.", RecordType::PTR).unwrap();
        assert_eq!(addrs(&r), vec!["compute-a.Cluster.Local."]);
        let r = q(&ix, "200.0.0.10.in-addr.arpa.", RecordType::PTR).unwrap();
        assert_eq!(addrs(&r), vec!["sw1.Cluster.Local."]);
        let r = q(&ix, "1.0.0.10.in-addr.arpa.", RecordType::PTR).unwrap();
        assert_eq!(addrs(&r), vec!["headnode.Cluster.Local."]);
        // The BMC's address is outside every net: not our reverse zone.
        assert!(q(&ix, "10.1.0.10.in-addr.arpa.", RecordType::PTR).is_none());
    }

    #[test]
    fn unqualified_and_foreign_names() {
        let ix = Index::build(&sample());
        let r = q(&ix, "n0.", RecordType::A).unwrap();
        assert_eq!(addrs(&r), vec!["10.0.0.10"]);
        assert!(r.authoritative);
        let r = q(&ix, "Core.", RecordType::A).unwrap();
        assert_eq!(addrs(&r), vec!["10.0.0.200"]);
        let r = q(&ix, "n0.", RecordType::AAAA).unwrap();
        assert!(r.answers.is_empty() && r.rcode == ResponseCode::NoError);
        assert!(q(&ix, "unknown.", RecordType::A).is_none());
        assert!(q(&ix, "com.", RecordType::NS).is_none());
        assert!(q(&ix, ".", RecordType::NS).is_none());
        assert!(q(&ix, "example.com.", RecordType::A).is_none());
        assert!(q(&ix, "local.", RecordType::SOA).is_none());
    }

    #[test]
    fn first_claimant_keeps_a_name() {
        use crate::dns::names::{tests as t, NodeIn};
        let nets = [t::net("c", "10.0.0.10", 24, "c.test")];
        let n0 = t::node("u0", "n0", "10.0.0.10", None);
        let n1 = t::node("u1", "n1", "10.0.0.11", None);
        let nodes = [
            NodeIn {
                node: &n0,
                hostname: None,
                ips: None,
            },
            // n1 claims n0's name as its host name: n0 keeps it.
            NodeIn {
                node: &n1,
                hostname: Some("n0"),
                ips: None,
            },
        ];
        let s = Snapshot::build(
            1,
            &[&nets[0]],
            &nodes,
            &[],
            "h",
            &["10.0.0.1".parse().unwrap()],
        );
        let ix = Index::build(&s);
        assert_eq!(
            addrs(&q(&ix, "n0.c.test.", RecordType::A).unwrap()),
            vec!["10.0.0.10"]
        );
        assert_eq!(
            addrs(&q(&ix, "n1.c.test.", RecordType::A).unwrap()),
            vec!["10.0.0.11"]
        );
        // The head with two addresses in one domain answers both.
        let s = Snapshot::build(
            1,
            &[&nets[0]],
            &[],
            &[],
            "h",
            &["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()],
        );
        let ix = Index::build(&s);
        assert_eq!(
            addrs(&q(&ix, "h.c.test.", RecordType::A).unwrap()),
            vec!["10.0.0.1", "10.0.0.2"]
        );
    }

    #[test]
    fn empty_non_terminals() {
        use crate::dns::names::tests as t;
        let nets = [t::net("c", "10.5.0.10", 16, "c.test")];
        let h = t::host("h1", "sw1", "10.5.7.9", &["sw1.rack2"], None);
        let s = Snapshot::build(1, &[&nets[0]], &[], &[&h], "h", &[]);
        let ix = Index::build(&s);
        assert_eq!(
            addrs(&q(&ix, "sw1.rack2.c.test.", RecordType::A).unwrap()),
            vec!["10.5.7.9"]
        );
        let r = q(&ix, "rack2.c.test.", RecordType::A).unwrap();
        assert_eq!(r.rcode, ResponseCode::NoError);
        let r = q(&ix, "7.5.10.in-addr.arpa.", RecordType::PTR).unwrap();
        assert_eq!(r.rcode, ResponseCode::NoError);
        let r = q(&ix, "8.5.10.in-addr.arpa.", RecordType::PTR).unwrap();
        assert_eq!(r.rcode, ResponseCode::NXDomain);
        assert_eq!(
            addrs(&q(&ix, "9.7.5.10.in-addr.arpa.", RecordType::PTR).unwrap()),
            vec!["sw1.c.test."]
        );
    }
}

#[cfg(test)]
mod ethers_tests {
    use super::*;
    use crate::dns::names::tests::sample;

    fn txt(ix: &Index, name: &str) -> (ResponseCode, Vec<String>) {
        let r = ix
            .lookup(
                &Name::from_ascii(name).unwrap(),
                RecordType::TXT,
                DNSClass::IN,
            )
            .unwrap();
        let t = r
            .answers
            .iter()
            .filter_map(|a| match &a.data {
                RData::TXT(t) => Some(t.to_string()),
                _ => None,
            })
            .collect();
        (r.rcode, t)
    }

    #[test]
    fn ethers_txt_both_ways() {
        let ix = Index::build(&sample());
        assert_eq!(
            txt(&ix, "52-54-00-00-00-c8._ethers.").1,
            ["sw1".to_string()]
        );
        assert_eq!(
            txt(&ix, "SW1._ethers.").1,
            ["52:54:00:00:00:c8".to_string()]
        );
        assert_eq!(
            txt(&ix, "switch1.cluster.local._ethers.").1,
            ["52:54:00:00:00:c8".to_string()]
        );
        assert_eq!(
            txt(&ix, "52-54-00-00-00-99._ethers.").0,
            ResponseCode::NXDomain
        );
        assert_eq!(txt(&ix, "n1._ethers.").0, ResponseCode::NXDomain);
    }
}
