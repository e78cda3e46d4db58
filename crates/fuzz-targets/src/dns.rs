//! DNS: a message to the head's server, through `dns::handle` (parse, answer from the cluster
//! index or forward) over UDP and TCP, with and without upstreams; and the same bytes as an
//! upstream's answer to a forwarded question (`forward::answers`).

use std::net::Ipv4Addr;
use std::str::FromStr;
use std::sync::OnceLock;

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use serde_json::json;
use wulf_model::{Host, Network, Node};
use wulfd::dns::names::{NodeIn, Snapshot};
use wulfd::dns::zone::Index;
use wulfd::dns::{forward, handle, Action};

/// A small cluster: two nets with domains (one a /20, so sixteen reverse zones), nodes with
/// a `_hostname` and `_ips`, a switch with aliases, this head on both nets.
fn index() -> &'static Index {
    static IX: OnceLock<Index> = OnceLock::new();
    IX.get_or_init(|| {
        let net =
            |v: serde_json::Value| -> Network { serde_json::from_value(v).expect("sample net") };
        let nets = [
            net(
                json!({"name": "cluster", "first_ip": "10.0.0.10", "ip_count": 100,
                "mask_bits": 24, "domain": "Cluster.Local"}),
            ),
            net(
                json!({"name": "ib", "first_ip": "10.16.0.10", "ip_count": 100,
                "mask_bits": 20, "domain": "ib.cluster.local."}),
            ),
        ];
        let node = |uid: &str, name: &str, ip: &str| -> Node {
            serde_json::from_value(json!({"uid": uid, "name": name, "ip": ip,
                "mac": "52:54:00:00:00:10"}))
            .expect("sample node")
        };
        let nodes = [
            node("u0", "n0", "10.0.0.10"),
            node("u1", "n1", "10.0.0.11"),
            node("u2", "n2", "192.168.7.7"),
        ];
        let sw: Host = serde_json::from_value(json!({"uid": "h1", "name": "sw1",
            "ip": "10.0.0.200", "hostnames": ["switch1.cluster.local", "core"]}))
        .expect("sample host");
        let node_ins = [
            NodeIn {
                node: &nodes[0],
                hostname: Some("compute-a"),
                ips: Some("bmc=10.0.1.10,ib0=10.16.3.10"),
            },
            NodeIn {
                node: &nodes[1],
                hostname: None,
                ips: None,
            },
            NodeIn {
                node: &nodes[2],
                hostname: Some("x"),
                ips: Some("broken"),
            },
        ];
        let snap = Snapshot::build(
            1,
            &[&nets[0], &nets[1]],
            &node_ins,
            &[&sw],
            "headnode.example.org",
            &[Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 16, 0, 1)],
        );
        Index::build(&snap)
    })
}

pub fn dns(data: &[u8]) {
    let ix = index();
    let parsed = Message::from_vec(data).ok();
    for (can_forward, udp) in [(true, true), (false, true), (true, false), (false, false)] {
        let action = handle(ix, can_forward, data, udp);
        if data.len() < 12 || data[2] & 0x80 != 0 {
            assert!(
                matches!(action, Action::Drop),
                "answered a response or a runt"
            );
            continue;
        }
        match action {
            Action::Drop => {}
            Action::Forward(q) => {
                assert!(can_forward, "forwarded with no upstream");
                let m = parsed
                    .as_ref()
                    .expect("forwarded a message that does not parse");
                assert_eq!(m.queries.len(), 1);
                assert_eq!(&m.queries[0], &q);
            }
            Action::Reply(r) => check_reply(data, parsed.as_ref(), &r, udp),
        }
    }
    // The same bytes as an upstream's answer to a question we forwarded.
    let question = Query::query(
        Name::from_str("example.com.").expect("a name"),
        RecordType::A,
    );
    let id = data
        .get(..2)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    if let Some(m) = forward::answers(data, id, &question) {
        assert_eq!(m.metadata.id, id);
        assert_eq!(m.queries.len(), 1);
        assert_eq!(m.queries[0].query_type(), RecordType::A);
        assert_eq!(
            m.queries[0].name().to_lowercase(),
            question.name().to_lowercase()
        );
    }
    assert!(forward::answers(data, id.wrapping_add(1), &question).is_none());
}

fn check_reply(req: &[u8], parsed: Option<&Message>, r: &[u8], udp: bool) {
    // Same id, QR set: a client matches it to its query; never a query we would answer.
    assert_eq!(&r[..2], &req[..2]);
    assert!(r[2] & 0x80 != 0);
    let Some(m) = parsed else {
        // FORMERR built from the header alone.
        assert_eq!(r.len(), 12);
        assert_eq!(r[3] & 0x0f, 1);
        return;
    };
    // No UDP answer larger than the client said it takes (512 without EDNS).
    if udp {
        let limit = usize::from(m.max_payload()).max(512);
        assert!(
            r.len() <= limit,
            "a UDP answer of {} bytes to a client taking {limit}",
            r.len()
        );
    }
    let a = Message::from_vec(r).expect("our answer does not parse");
    assert_eq!(a.metadata.id, m.metadata.id);
    assert_eq!(a.metadata.op_code, m.metadata.op_code);
    // The question comes back, unless over UDP not even it fits (then TC says ask by TCP).
    if !(udp && a.metadata.truncation && a.queries.is_empty()) {
        assert_eq!(
            a.queries, m.queries,
            "the answer's question is not the query's"
        );
    }
    assert_eq!(a.edns.is_some(), m.edns.is_some(), "EDNS in, EDNS out");
}
