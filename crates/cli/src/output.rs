//! Printing: names, tables, full listings, JSON, progress bars.

use std::io::Write;

use comfy_table::{presets, ContentArrangement, Table};
use serde_json::Value;
use wulf_api::NodeAttributes;
use wulf_model::Kind;

pub fn print_json<T: serde::Serialize + ?Sized>(v: &T) {
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let _ = serde_json::to_writer_pretty(&mut out, v);
    let _ = writeln!(out);
}

fn plural(kind: Kind) -> &'static str {
    match kind {
        Kind::Node => "Nodes",
        Kind::Attrib => "Attribute groups",
        Kind::Boot => "Boot configs",
        Kind::Image => "Images",
        Kind::Pool => "Naming pools",
        Kind::Net => "Networks",
        Kind::Host => "Hosts",
        Kind::Cluster => "Cluster",
        Kind::Admin => "Admin accounts",
        Kind::Repo => "Repos",
    }
}

/// `ls`: a heading and one name a line (ClusterWare's style).
pub fn print_names(kind: Kind, objs: &[Value]) {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let _ = writeln!(out, "{}", plural(kind));
    for o in objs {
        let _ = writeln!(
            out,
            "  {}",
            o.get("name").and_then(Value::as_str).unwrap_or("?")
        );
    }
}

/// A value as a table cell.
fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| cell(Some(x)))
            .collect::<Vec<_>>()
            .join(","),
        Some(Value::Object(m)) if m.contains_key("sha256") => {
            let sha = m.get("sha256").and_then(Value::as_str).unwrap_or("");
            let size = m.get("size").and_then(Value::as_u64).unwrap_or(0);
            format!("{} ({})", &sha[..sha.len().min(12)], human_size(size))
        }
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| format!("{k}={}", cell(Some(v))))
            .collect::<Vec<_>>()
            .join(" "),
        Some(other) => other.to_string(),
    }
}

pub use wulf_model::db::human_size;

fn columns(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Node => &[
            "name",
            "index",
            "mac",
            "ip",
            "type",
            "groups",
            "boot_sequence",
            "description",
        ],
        Kind::Attrib => &["name", "attributes", "description"],
        Kind::Boot => &[
            "name",
            "boot_style",
            "kernel",
            "initramfs",
            "image",
            "cmdline",
            "frozen",
        ],
        Kind::Image => &[
            "name",
            "content",
            "size",
            "parent",
            "parent_sha256",
            "used_by",
            "frozen",
            "description",
        ],
        Kind::Pool => &["name", "pattern", "first_index", "description"],
        Kind::Net => &[
            "name",
            "first_ip",
            "ip_count",
            "mask_bits",
            "first_index",
            "router_ip",
            "domain",
            "host_ranges",
        ],
        Kind::Host => &["name", "mac", "ip", "hostnames", "description"],
        Kind::Cluster => &[
            "name",
            "accept_new_nodes",
            "default_group",
            "log_level",
            "description",
        ],
        Kind::Admin => &["name", "role", "ssh_keys", "description"],
        Kind::Repo => &["name", "iso", "url", "description"],
    }
}

/// `ls -t`: a table of the kind's main fields.
pub fn print_table(kind: Kind, objs: &[Value]) {
    let cols = columns(kind);
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(cols.iter().map(|c| c.to_uppercase()));
    for o in objs {
        t.add_row(cols.iter().map(|c| cell(o.get(*c))));
    }
    println!("{t}");
}

fn fmt_time(secs: f64) -> String {
    if secs <= 0.0 {
        return String::new();
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(secs);
    let ago = (now - secs).max(0.0) as u64;
    let rel = match ago {
        0..=1 => "just now".to_string(),
        2..=119 => format!("{ago} seconds ago"),
        120..=7199 => format!("{} minutes ago", ago / 60),
        7200..=172_799 => format!("{} hours ago", ago / 3600),
        _ => format!("{} days ago", ago / 86400),
    };
    format!("{secs:.0} ({rel})")
}

/// `ls -l` (the kind's main fields) and `ls -L` (every field): one block per object, with
/// attributes — for nodes, effective attributes and the layer each came from.
pub fn print_full(kind: Kind, objs: &[Value], attrs: Option<&[NodeAttributes]>, every_field: bool) {
    let main = columns(kind);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for o in objs {
        let name = o.get("name").and_then(Value::as_str).unwrap_or("?");
        let _ = writeln!(out, "{name}");
        if let Some(m) = o.as_object() {
            let rest = m
                .keys()
                .filter(|k| every_field && !main.contains(&k.as_str()));
            for k in main.iter().copied().chain(rest.map(String::as_str)) {
                if k == "name" || k == "attributes" {
                    continue;
                }
                let Some(v) = m.get(k) else { continue };
                let shown = if k == "last_modified" {
                    fmt_time(v.as_f64().unwrap_or(0.0))
                } else {
                    cell(Some(v))
                };
                let _ = writeln!(out, "  {k}: {shown}");
            }
        }
        let uid = o.get("uid").and_then(Value::as_str).unwrap_or("");
        match attrs.and_then(|a| a.iter().find(|a| a.uid == uid)) {
            Some(na) if na.attributes.is_empty() => {
                let _ = writeln!(out, "  attributes: (none)");
            }
            Some(na) => {
                let _ = writeln!(out, "  attributes:");
                let width = na.attributes.keys().map(String::len).max().unwrap_or(0);
                for (k, a) in &na.attributes {
                    let _ = writeln!(out, "    {k:width$} = {:30} ({})", a.value, a.source);
                }
            }
            None => {
                if let Some(a) = o.get("attributes").and_then(Value::as_object) {
                    let _ = writeln!(out, "  attributes:");
                    for (k, v) in a {
                        let _ = writeln!(out, "    {k} = {}", cell(Some(v)));
                    }
                }
            }
        }
    }
}

/// Objects for `--json -l`/`-L`: each node with an `effective_attributes` map.
pub fn with_effective(objs: Vec<Value>, attrs: Vec<NodeAttributes>) -> Vec<Value> {
    let mut by_uid: std::collections::HashMap<String, NodeAttributes> =
        attrs.into_iter().map(|a| (a.uid.clone(), a)).collect();
    objs.into_iter()
        .map(|mut o| {
            let uid = o
                .get("uid")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if let (Some(m), Some(a)) = (o.as_object_mut(), by_uid.remove(&uid)) {
                m.insert(
                    "effective_attributes".into(),
                    serde_json::to_value(a.attributes).unwrap_or(Value::Null),
                );
            }
            o
        })
        .collect()
}

/// A progress bar for a transfer (drawn only on a terminal).
pub fn bytes_bar(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    let style = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar
}
