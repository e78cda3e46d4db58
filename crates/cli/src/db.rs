//! `wulf cluster db`: the database's size and health, and maintenance on demand.

use serde::Deserialize;
use wulf_api::{ApiError, Client};
use wulf_model::db::{human_size, DbStatus};

use crate::status::{ago, now};

/// What the head answers to a maintenance request.
#[derive(Deserialize)]
struct Acted {
    done: Vec<String>,
    status: DbStatus,
}

/// Show the status, or run `action` (compact, defrag, disarm, recover) first.
pub fn run(c: &Client, action: Option<&str>, json: bool) -> Result<(), ApiError> {
    let st = match action {
        None => c.get::<DbStatus>("/cluster/db")?,
        Some(action) => {
            let acted: Acted = c.send(
                "POST",
                "/cluster/db",
                &serde_json::json!({ "action": action }),
            )?;
            if !json {
                for step in &acted.done {
                    println!("{step}");
                }
                println!();
            }
            acted.status
        }
    };
    if json {
        crate::output::print_json(&st);
    } else {
        print(&st);
    }
    Ok(())
}

fn print(st: &DbStatus) {
    let quota = st
        .quota_bytes
        .map(|q| format!("   quota {}", human_size(q)))
        .unwrap_or_default();
    println!(
        "store: {}   revision {}   history compacted up to {}{quota}",
        st.backend, st.revision, st.compacted_revision
    );
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING).set_header([
        "MEMBER", "ENDPOINT", "LEADER", "VERSION", "DB SIZE", "IN USE", "QUOTA", "STATE",
    ]);
    for m in &st.members {
        let reachable = m.unreachable.is_none();
        let size = |n: u64| if reachable { human_size(n) } else { "-".into() };
        let fill = match (st.quota_bytes, reachable) {
            (Some(q), true) if q > 0 => format!("{:.0}%", m.db_size as f64 * 100.0 / q as f64),
            _ => "-".into(),
        };
        let state = match &m.unreachable {
            Some(why) => format!("unreachable: {why}"),
            None if !m.errors.is_empty() => format!("errors: {}", m.errors.join("; ")),
            None => "ok".into(),
        };
        t.add_row([
            m.name.clone(),
            m.endpoint.clone(),
            if m.leader { "*".into() } else { String::new() },
            m.version.clone(),
            size(m.db_size),
            size(m.db_in_use),
            fill,
            state,
        ]);
    }
    println!("{t}");
    for a in &st.alarms {
        if a.alarm == "NOSPACE" {
            println!(
                "ALARM NOSPACE on {}: etcd database space exceeded; etcd refuses every write. \
                 Recover with `wulf cluster db --recover` (compact, defragment, disarm), and \
                 raise etcd's --quota-backend-bytes if it fills again.",
                a.member
            );
        } else {
            println!("ALARM {} on {}: see etcd's logs.", a.alarm, a.member);
        }
    }
    if let Some(m) = &st.maintenance {
        let now = now();
        let mut parts = vec![format!("run by head {}", m.head)];
        if let Some((rev, at)) = m.compacted {
            parts.push(format!(
                "last compaction up to revision {rev} {}",
                ago(now - at as f64)
            ));
        }
        if let Some((members, at)) = &m.defragmented {
            parts.push(format!(
                "last defragmentation ({}) {}",
                members.join(", "),
                ago(now - *at as f64)
            ));
        }
        println!("maintenance: {}", parts.join("; "));
    }
}
