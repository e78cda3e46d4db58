//! Status reports: a `POST /api/v1/node/status` body as the head reads it (`StatusReport`
//! JSON and `status::check_report`), taken in by `Status::report`; what the head then stores
//! for the node (heartbeat and info records, read back at start and by other heads) must
//! read back as it was. The same bytes as another head's stored records
//! (`Status::apply_remote`), and as a node's bearer token.

use serde_json::Value;
use wulf_api::status::{node_token, parse_node_token, StatusReport};
use wulfd::status::{check_report, Heartbeat, InfoRecord, Status, STATUS_PREFIX};

use crate::json::same;

/// Serialize `v` as the head stores it and read it back; the two must agree.
fn stored_round_trip<T>(what: &str, v: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let bytes = serde_json::to_vec(v).unwrap_or_else(|e| panic!("{what} does not serialize: {e}"));
    let back: T = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{what} as stored ({}) does not read back: {e}",
            String::from_utf8_lossy(&bytes)
        )
    });
    let (a, b) = (
        serde_json::to_value(v).unwrap_or(Value::Null),
        serde_json::to_value(&back).unwrap_or(Value::Null),
    );
    assert!(same(&a, &b), "{what} changed through the store: {a} → {b}");
}

pub fn status(data: &[u8]) {
    if let Some((uid, cred)) = std::str::from_utf8(data).ok().and_then(parse_node_token) {
        assert!(!uid.is_empty() && !cred.is_empty() && !uid.contains(':'));
        assert_eq!(node_token(uid, cred).as_bytes(), data);
    }
    let other = Status::new("other-head".into(), 600);
    other.apply_remote(&format!("{STATUS_PREFIX}hb/u1"), data);
    other.apply_remote(&format!("{STATUS_PREFIX}info/u1"), data);

    // What the route takes in: a report that parses and passes the head's checks.
    let Ok(report) = serde_json::from_slice::<StatusReport>(data) else {
        return;
    };
    if check_report(&report).is_err() {
        return;
    }
    let head = Status::new("head".into(), 600);
    let uid = report.node.clone();
    let info = InfoRecord {
        ip: report.ip.clone(),
        hostname: report.hostname.clone(),
        kernel: report.kernel.clone(),
        cmdline: report.cmdline.clone(),
        modules: report.modules.clone(),
        selinux: report.selinux.clone(),
        hardware: report.hardware.clone(),
    };
    head.report(&uid, report.clone());
    let hb: Heartbeat = head.heartbeat(&uid).expect("a report leaves a heartbeat");
    assert_eq!(&*hb.head, "head");
    assert_eq!(hb.interval_secs, report.interval_secs);
    assert_eq!(hb.busy, report.busy);
    assert!(hb.report_ms.is_some());
    stored_round_trip("the heartbeat", &hb);
    stored_round_trip("the node's info", &info);
    // A second report of the same node is taken the same way.
    head.report(&uid, report);
    // Another head reads what this one stored.
    let stored = serde_json::to_vec(&hb).unwrap_or_default();
    let other = Status::new("other-head".into(), 600);
    other.apply_remote(&format!("{STATUS_PREFIX}hb/{uid}"), &stored);
    let seen = other
        .heartbeat(&uid)
        .expect("another head takes a newer heartbeat");
    assert!(same(
        &serde_json::to_value(&seen).unwrap_or(Value::Null),
        &serde_json::to_value(&hb).unwrap_or(Value::Null)
    ));
}
