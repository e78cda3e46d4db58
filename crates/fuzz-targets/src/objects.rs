//! JSON object bodies: a `POST /api/v1/{kind}` body as `AnyObj::from_json` validates it, for
//! every kind; and a `PATCH` body (`wulf_api::UpdateRequest`) applied to an object of every
//! kind the way the head applies it (fields replaced, attributes set and cleared, groups
//! joined and left, then validated again). Whatever validates must validate again from its
//! own JSON and read back from its stored bytes unchanged.

use serde_json::{json, Value};
use wulf_api::UpdateRequest;
use wulf_model::{field_type, has_attributes, FieldType, Kind};
use wulfd::objects::{describe_unique_key, AnyObj, IDX_PREFIX};

use crate::json::same;

const UID: &str = "0123456789abcdef0123456789abcdef";

/// Everything that must hold for an object the head accepted.
fn check_valid(kind: Kind, o: &AnyObj) {
    assert_eq!(o.kind(), kind);
    let j = o.to_json();
    assert!(j.is_object(), "{kind} serializes to {j}");
    let again = AnyObj::from_json(kind, j.clone())
        .unwrap_or_else(|e| panic!("a valid {kind} fails validation from its own JSON {j}: {e}"));
    assert!(
        same(&again.to_json(), &j),
        "{kind} changes when validated again"
    );
    let stored = AnyObj::decode(kind, &o.to_bytes())
        .unwrap_or_else(|e| panic!("a stored {kind} does not decode: {e}"));
    assert!(
        same(&stored.to_json(), &j),
        "{kind} changes through the store"
    );
    for k in o.unique_keys() {
        assert!(k.starts_with(IDX_PREFIX));
        let _ = describe_unique_key(&k);
    }
    match o {
        AnyObj::Node(n) => {
            let _ = wulf_model::secret::mask_node(n);
            let _ = n.all_macs();
        }
        AnyObj::Attrib(g) => {
            let _ = wulf_model::secret::mask_group(g);
        }
        _ => {}
    }
}

fn validate(kind: Kind, v: Value) -> Option<AnyObj> {
    match AnyObj::from_json(kind, v) {
        Ok(o) => {
            check_valid(kind, &o);
            Some(o)
        }
        Err(e) => {
            assert!(!e.message.is_empty(), "an error without a message");
            None
        }
    }
}

pub fn objects(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    for kind in Kind::ALL {
        validate(kind, v.clone());
    }
}

/// One valid object of each kind, as stored.
fn sample(kind: Kind) -> Value {
    let mut v = match kind {
        Kind::Node => json!({"name": "n0", "index": 0, "mac": "52:54:00:00:00:01",
            "ip": "10.0.0.10", "groups": ["compute"], "attributes": {"a": "1"}}),
        Kind::Attrib => json!({"name": "compute", "attributes": {"_boot_config": "b"}}),
        Kind::Boot => json!({"name": "b", "cmdline": "console=ttyS0"}),
        Kind::Image => json!({"name": "i"}),
        Kind::Pool => json!({"name": "p", "pattern": "n{}"}),
        Kind::Net => json!({"name": "cluster", "first_ip": "10.0.0.10", "ip_count": 100,
            "mask_bits": 24, "domain": "cluster.local"}),
        Kind::Host => json!({"name": "sw1", "ip": "10.0.0.200"}),
        Kind::Cluster => json!({"name": "cluster"}),
        Kind::Admin => json!({"name": "alice", "role": "viewer"}),
        Kind::Repo => json!({"name": "rocky9", "url": "http://mirror/rocky/9"}),
    };
    v["uid"] = Value::String(UID.into());
    v["last_modified"] = json!(1.5);
    v
}

/// The head's checks of the request before it touches anything (`db::check_request`).
fn acceptable(kind: Kind, req: &UpdateRequest) -> bool {
    let fields_ok = req.fields.keys().all(|k| {
        matches!(
            field_type(kind, k),
            Some(t) if !matches!(t, FieldType::ReadOnly | FieldType::File)
        )
    });
    let attrs = !req.set_attributes.is_empty() || !req.clear_attributes.is_empty();
    let groups = !req.join.is_empty() || !req.leave.is_empty();
    fields_ok
        && (!attrs || has_attributes(kind))
        && (!groups || kind == Kind::Node)
        && req
            .set_attributes
            .iter()
            .all(|(k, v)| wulf_model::attributes::validate(k, v).is_ok())
        && !req.is_empty()
}

/// The change `db::prepare_update` makes to an object's JSON.
fn apply(json: &mut Value, req: &UpdateRequest) {
    for (k, v) in &req.fields {
        json[k.as_str()] = v.clone();
    }
    if let Some(attrs) = json.get_mut("attributes").and_then(Value::as_object_mut) {
        for k in &req.clear_attributes {
            attrs.remove(k);
        }
        for (k, v) in &req.set_attributes {
            attrs.insert(k.clone(), Value::String(v.clone()));
        }
    }
    if let Some(groups) = json.get_mut("groups").and_then(Value::as_array_mut) {
        groups.retain(|g| !req.leave.iter().any(|l| g.as_str() == Some(l)));
        for j in &req.join {
            if !groups.iter().any(|g| g.as_str() == Some(j)) {
                groups.push(Value::String(j.clone()));
            }
        }
    }
}

pub fn update(data: &[u8]) {
    let Ok(req) = serde_json::from_slice::<UpdateRequest>(data) else {
        return;
    };
    // The request as the CLI sends it reads back the same.
    let v = serde_json::to_value(&req).expect("an update request serializes");
    let back: UpdateRequest = serde_json::from_value(v.clone())
        .unwrap_or_else(|e| panic!("{v} does not read back as an update request: {e}"));
    assert!(same(
        &serde_json::to_value(&back).unwrap_or(Value::Null),
        &v
    ));
    for kind in Kind::ALL {
        if !acceptable(kind, &req) {
            continue;
        }
        let mut json = sample(kind);
        assert!(
            AnyObj::from_json(kind, json.clone()).is_ok(),
            "sample {kind} is invalid"
        );
        apply(&mut json, &req);
        json["uid"] = Value::String(UID.into());
        json["last_modified"] = json!(2.5);
        if let Some(o) = validate(kind, json) {
            assert_eq!(o.uid(), UID);
        }
    }
}
