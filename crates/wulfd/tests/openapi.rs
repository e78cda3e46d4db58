//! docs/openapi.json against the head's access table (`auth/table.rs`): every route of the
//! table is an operation of the document with the same role, and every operation a route of
//! the table; the document is JSON, its `$ref`s name only what it defines, and its path
//! parameters, object kinds and error answers are what the head has.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use wulf_api::auth::Role;
use wulfd::auth::table::{Access, RULES};

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

fn doc() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

/// The `x-wulf-role` a rule's access is written as.
fn role_name(a: Access) -> &'static str {
    match a {
        Access::Firmware => "firmware",
        Access::Public => "public",
        Access::Node => "node",
        Access::Account(r) => r.as_str(),
    }
}

/// (METHOD, path) → operation.
fn operations(doc: &Value) -> BTreeMap<(String, String), &Value> {
    let mut out = BTreeMap::new();
    let paths = doc["paths"].as_object().expect("paths is an object");
    for (path, item) in paths {
        let item = item
            .as_object()
            .unwrap_or_else(|| panic!("{path} is not an object"));
        for (k, op) in item {
            if METHODS.contains(&k.as_str()) {
                out.insert((k.to_uppercase(), path.clone()), op);
            }
        }
    }
    out
}

/// Follow a local `$ref` (`#/components/...`).
fn resolve<'a>(doc: &'a Value, r: &str) -> Option<&'a Value> {
    doc.pointer(r.strip_prefix('#')?)
}

fn deref<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => resolve(doc, r).unwrap_or_else(|| panic!("{r} names nothing")),
        None => v,
    }
}

/// Every `$ref` in `v`, with where it is.
fn refs(v: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref" {
                    if let Some(s) = x.as_str() {
                        out.push((at.to_string(), s.to_string()));
                    }
                } else {
                    refs(x, &format!("{at}/{k}"), out);
                }
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                refs(x, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn document_and_access_table_agree() {
    let doc = doc();
    let ops = operations(&doc);
    let mut wrong = Vec::new();
    for r in RULES {
        let key = (r.method.to_string(), r.path.to_string());
        match ops.get(&key) {
            None => wrong.push(format!(
                "{} {} is in RULES but not in docs/openapi.json",
                r.method, r.path
            )),
            Some(op) => {
                let want = role_name(r.access);
                let got = op["x-wulf-role"].as_str().unwrap_or("(none)");
                if got != want {
                    wrong.push(format!(
                        "{} {}: x-wulf-role is {got}, RULES says {want}",
                        r.method, r.path
                    ));
                }
                // The security requirement matches who may call it.
                let sec: Vec<BTreeSet<String>> = op["security"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|req| {
                                req.as_object()
                                    .map(|m| m.keys().cloned().collect())
                                    .unwrap_or_default()
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let has = |s: &str| sec.iter().any(|req| req.contains(s));
                let open = op["security"].as_array().is_some_and(|a| a.is_empty())
                    || sec.iter().any(BTreeSet::is_empty);
                let ok = match r.access {
                    Access::Account(_) => has("accountBearer") && !open,
                    Access::Node if r.path == "/api/v1/node/enroll" => open,
                    Access::Node => has("nodeBearer") && !open,
                    Access::Firmware | Access::Public => open && !has("accountBearer"),
                };
                if !ok {
                    wrong.push(format!(
                        "{} {}: security {} does not fit {want}",
                        r.method, r.path, op["security"]
                    ));
                }
            }
        }
    }
    for (method, path) in ops.keys() {
        if !RULES.iter().any(|r| r.method == method && r.path == path) {
            wrong.push(format!(
                "{method} {path} is in docs/openapi.json but not in RULES (crates/wulfd/src/auth/table.rs)"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "docs/openapi.json and RULES disagree:\n{}",
        wrong.join("\n")
    );
    assert_eq!(ops.len(), RULES.len());
    // Every role of the table is one the API knows.
    for r in RULES {
        if let Access::Account(role) = r.access {
            assert!(Role::ALL.contains(&role));
        }
    }
}

#[test]
fn document_refers_only_to_what_it_defines() {
    let doc = doc();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "not an OpenAPI 3 document"
    );
    let mut all = Vec::new();
    refs(&doc, "#", &mut all);
    assert!(all.len() > 50, "only {} $refs", all.len());
    let bad: Vec<String> = all
        .iter()
        .filter(|(_, r)| !r.starts_with("#/components/") || resolve(&doc, r).is_none())
        .map(|(at, r)| format!("{at}: {r}"))
        .collect();
    assert!(
        bad.is_empty(),
        "$refs to nothing the document defines:\n{}",
        bad.join("\n")
    );
    // Every schema it defines is used.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let unused: Vec<&String> = schemas
        .keys()
        .filter(|k| {
            !all.iter()
                .any(|(_, r)| *r == format!("#/components/schemas/{k}"))
        })
        .collect();
    assert!(unused.is_empty(), "schemas nothing refers to: {unused:?}");
    // Security schemes named by operations exist.
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    for ((m, p), op) in operations(&doc) {
        for req in op["security"].as_array().into_iter().flatten() {
            for name in req.as_object().into_iter().flat_map(|o| o.keys()) {
                assert!(
                    schemes.contains_key(name),
                    "{m} {p}: no security scheme {name}"
                );
            }
        }
    }
}

#[test]
fn operations_are_complete() {
    let doc = doc();
    let kinds: Vec<&str> = wulf_model::Kind::ALL.iter().map(|k| k.as_str()).collect();
    let mut ids = BTreeSet::new();
    for ((method, path), op) in operations(&doc) {
        let what = format!("{method} {path}");
        let id = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no operationId"));
        assert!(ids.insert(id.to_string()), "{what}: operationId {id} twice");
        assert!(op["summary"].is_string(), "{what}: no summary");
        // Path parameters: each {name} declared, and only those.
        let in_path: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        let params: Vec<&Value> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| deref(&doc, p))
            .collect();
        let declared: BTreeSet<&str> = params
            .iter()
            .filter(|p| p["in"] == "path")
            .map(|p| {
                assert_eq!(
                    p["required"], true,
                    "{what}: path parameter {} not required",
                    p["name"]
                );
                p["name"].as_str().unwrap()
            })
            .collect();
        assert_eq!(in_path, declared, "{what}: path parameters");
        // {kind} is one of the object kinds.
        if let Some(k) = params
            .iter()
            .find(|p| p["in"] == "path" && p["name"] == "kind")
        {
            let e: Vec<&str> = k["schema"]["enum"]
                .as_array()
                .unwrap_or_else(|| panic!("{what}: kind has no enum"))
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert_eq!(e, kinds, "{what}: the kinds of wulf_model::Kind::ALL");
        }
        // Answers: a success, and JSON errors as ErrorBody.
        let responses = op["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{what}: no responses"));
        assert!(
            responses.keys().any(|c| c.starts_with('2')),
            "{what}: no success answer"
        );
        for (code, resp) in responses {
            let resp = deref(&doc, resp);
            assert!(
                resp["description"].is_string(),
                "{what} {code}: no description"
            );
            if code.starts_with('4') || code.starts_with('5') {
                if let Some(json) = resp["content"].get("application/json") {
                    assert_eq!(
                        json["schema"]["$ref"], "#/components/schemas/ErrorBody",
                        "{what} {code}: errors are ErrorBody"
                    );
                }
            }
        }
        // Account routes say what a missing token and a low role get.
        if op["x-wulf-role"]
            .as_str()
            .is_some_and(|r| r.parse::<Role>().is_ok())
        {
            for c in ["401", "403"] {
                assert!(responses.contains_key(c), "{what}: no {c}");
            }
        }
    }
}
