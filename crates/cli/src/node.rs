//! Node-only verbs that read what the head knows: `status` and `unknown` (other objects
//! are refused when the command line is parsed, see actions.rs).

use serde_json::Value;

use crate::args::{Cli, ObjectCmd};
use crate::conn::client;
use crate::fail::{usage, Fail};
use crate::{output, status};

/// `wulf node status`.
pub(crate) fn status(
    cli: &Cli,
    cmd: &ObjectCmd,
    refresh: bool,
    refresh_for: Option<f64>,
) -> Result<(), Fail> {
    let c = client(cli)?;
    let ids = cmd.ids_query(&[]);
    let ids = ids.as_deref();
    if refresh {
        let until =
            refresh_for.map(|s| std::time::Instant::now() + std::time::Duration::from_secs_f64(s));
        return status::refresh_tui(&c, ids, until).map_err(Fail::Request);
    }
    if cli.json {
        output::print_json(&status::nodes(&c, ids, 2)?);
    } else if cli.full {
        status::print_full(&status::nodes(&c, ids, 2)?);
    } else if cli.long || cli.table {
        status::print_long(&status::nodes(&c, ids, 1)?);
    } else {
        status::print_summary(&status::summary(&c, ids, None)?);
    }
    Ok(())
}

/// `wulf node -i NODE replace mac=NEW [_altmacs=…]`: the node's hardware was replaced.
pub(crate) fn replace(cli: &Cli, cmd: &ObjectCmd, pairs: &[String]) -> Result<(), Fail> {
    let mut body = serde_json::Map::new();
    for p in pairs {
        let Some((k, v)) = p.split_once('=') else {
            return Err(usage(format!("{p:?}: give mac=NEW (and _altmacs=…)")));
        };
        let key = match k.trim() {
            "mac" => "mac",
            "_altmacs" | "altmacs" => "altmacs",
            other => {
                return Err(usage(format!(
                    "replace takes mac=NEW and _altmacs=…, not {other:?}"
                )))
            }
        };
        body.insert(key.into(), Value::String(v.trim().to_string()));
    }
    let Some(mac) = body.get("mac").and_then(Value::as_str) else {
        return Err(usage("replace needs mac=NEW, the new box's MAC"));
    };
    if mac.parse::<wulf_model::MacAddr>().is_err() {
        return Err(usage(format!("mac={mac} is not a MAC address")));
    }
    if let Some(alt) = body.get("altmacs").and_then(Value::as_str) {
        wulf_model::attributes::parse_mac_list(alt)
            .map_err(|e| usage(format!("_altmacs={alt}: {e}")))?;
    }
    let q = cmd.target_query(wulf_model::Kind::Node, "replace")?;
    if q == "?all=true" {
        return Err(usage(
            "replace takes exactly one node: give it with -i NODE",
        ));
    }
    let reply: Value = match client(cli)?.send("POST", &format!("/node/replace{q}"), &body) {
        Ok(r) => r,
        // Two nodes selected, a MAC someone has: bad input, nothing changed.
        Err(wulf_api::ApiError::Status {
            status: 400 | 404 | 409,
            message,
            ..
        }) => return Err(usage(message)),
        Err(e) => return Err(e.into()),
    };
    if cli.json {
        output::print_json(&reply);
        return Ok(());
    }
    let text = |k: &str| reply.get(k).and_then(Value::as_str).unwrap_or("(none)");
    println!(
        "replaced {}: MAC {} -> {}{}",
        text("node"),
        text("old_mac"),
        text("mac"),
        match reply.get("boot_stage").and_then(Value::as_str) {
            Some(s) => format!(", boot stage {s}"),
            None => String::new(),
        }
    );
    println!(
        "its credential is revoked and its status forgotten: the new box enrolls when it boots"
    );
    Ok(())
}

/// `wulf node unknown`: MACs the head's DHCP server saw that belong to no node.
pub(crate) fn unknown(cli: &Cli) -> Result<(), Fail> {
    let list: Vec<Value> = client(cli)?.get("/node/unknown")?;
    if cli.json {
        output::print_json(&list);
        return Ok(());
    }
    if list.is_empty() {
        println!("No unknown MAC addresses have asked for an address.");
        return Ok(());
    }
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING)
        .set_content_arrangement(comfy_table::ContentArrangement::Disabled)
        .set_header(["MAC", "INTERFACE", "FIRST SEEN", "LAST SEEN", "COUNT"]);
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let time = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_f64)
            .map(utc)
            .unwrap_or_default()
    };
    for u in &list {
        t.add_row([
            text(u, "mac"),
            text(u, "interface"),
            time(u, "first_seen"),
            time(u, "last_seen"),
            u.get("count")
                .and_then(Value::as_u64)
                .unwrap_or(0)
                .to_string(),
        ]);
    }
    println!("{t}");
    Ok(())
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` UTC.
fn utc(secs: f64) -> String {
    crate::clock::utc(secs.max(0.0) as i64)
}
