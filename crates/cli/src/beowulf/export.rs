//! The current cluster as an `/etc/beowulf/config`: its first net, hosts, nodes (index,
//! class, boot sequence and stage, MACs) and boot configs (kernel and initrd as paths to
//! files written into FILE.d/), so the file imports back to the same cluster.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value as Json;
use wulf_api::{client::encode, Client};

use super::plan::DEFAULT_BOOT;
use crate::args::Cli;
use crate::conn::client;
use crate::fail::{usage, Fail};

fn s<'a>(v: &'a Json, k: &str) -> &'a str {
    v.get(k).and_then(Json::as_str).unwrap_or("")
}

fn attr<'a>(v: &'a Json, k: &str) -> Option<&'a str> {
    v.get("attributes")
        .and_then(|a| a.get(k))
        .and_then(Json::as_str)
}

/// Download a boot config's file field into `dir`, answering the path the config names.
fn fetch(c: &Client, boot: &Json, field: &str, dir: Option<&Path>) -> Result<String, Fail> {
    let name = s(boot, "name");
    let file = boot.get(field).filter(|f| !f.is_null());
    let Some(f) = file else {
        return Ok("none".to_string());
    };
    let Some(dir) = dir else {
        // No -o: the paths are only named.
        return Ok(format!("{name}.{field}"));
    };
    let base = format!("{name}.{field}");
    let (_, mut r) = c.download(&format!("/boot/{}/files/{field}", encode(name)))?;
    let path = dir.join(&base);
    let mut out = std::fs::File::create(&path)
        .map_err(|e| usage(format!("cannot create {}: {e}", path.display())))?;
    std::io::copy(&mut r, &mut out)
        .map_err(|e| Fail::Request(anyhow::anyhow!("download failed: {e}")))?;
    let _ = f;
    let dname = dir
        .file_name()
        .map(|d| d.to_string_lossy().to_string())
        .unwrap_or_default();
    Ok(format!("{dname}/{base}"))
}

/// `wulf cluster export-config [-o FILE]`.
pub(crate) fn export(cli: &Cli, output: Option<&Path>) -> Result<(), Fail> {
    let c = client(cli)?;
    let nets: Vec<Json> = c.get("/net")?;
    let hosts: Vec<Json> = c.get("/host")?;
    let mut nodes: Vec<Json> = c.get("/node")?;
    let boots: Vec<Json> = c.get("/boot")?;
    let cluster: Json = c
        .get::<Vec<Json>>("/cluster")?
        .into_iter()
        .next()
        .unwrap_or(Json::Null);
    let dir = match output {
        Some(o) => {
            let mut d = o.as_os_str().to_owned();
            d.push(".d");
            let d = std::path::PathBuf::from(d);
            std::fs::create_dir_all(&d)
                .map_err(|e| usage(format!("cannot create {}: {e}", d.display())))?;
            Some(d)
        }
        None => None,
    };
    let mut out = String::from("# /etc/beowulf/config written by wulf cluster export-config\n");
    if nets.len() > 1 {
        let _ = writeln!(
            out,
            "# {} nets; only the first ({}) is written",
            nets.len(),
            s(&nets[0], "name")
        );
    }
    if let Some(net) = nets.first() {
        let first: std::net::Ipv4Addr = s(net, "first_ip")
            .parse()
            .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
        let count = net.get("ip_count").and_then(Json::as_u64).unwrap_or(1) as u32;
        let last = std::net::Ipv4Addr::from(u32::from(first).wrapping_add(count.saturating_sub(1)));
        let fi = net.get("first_index").and_then(Json::as_u64).unwrap_or(0);
        let bits = net.get("mask_bits").and_then(Json::as_u64).unwrap_or(24) as u8;
        let mask = std::net::Ipv4Addr::from(wulf_model::net::mask(bits));
        let _ = writeln!(
            out,
            "nodes {count}\niprange {fi} {first} {last}\nnetmask {mask}"
        );
        if !s(net, "domain").is_empty() {
            let _ = writeln!(out, "domain {}", s(net, "domain"));
        }
        for r in net
            .get("host_ranges")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            let r = r.as_str().unwrap_or("");
            let (a, b) = r.split_once('-').unwrap_or((r, r));
            let _ = writeln!(out, "hostrange {a} {b}");
        }
    }
    let assign = s(&cluster, "accept_new_nodes");
    if !assign.is_empty() {
        let _ = writeln!(out, "nodeassign {assign}");
    }
    for h in &hosts {
        let mut names = vec![s(h, "name").to_string()];
        for n in h
            .get("hostnames")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            names.push(n.as_str().unwrap_or("").to_string());
        }
        let _ = writeln!(
            out,
            "host {} {} {}",
            s(h, "mac"),
            names.join(" "),
            s(h, "ip")
        );
    }
    // Boot configs: the default group's as the un-ranged lines, those named by nodes as
    // classes (beowulf-N ones as per-node lines).
    let default_group = s(&cluster, "default_group").to_string();
    let groups: Vec<Json> = c.get(&format!("/attrib?ids={}", encode(&default_group)))?;
    let default_boot = groups
        .first()
        .and_then(|g| attr(g, "_boot_config"))
        .map(str::to_string);
    let mut lines: BTreeMap<String, [String; 3]> = BTreeMap::new();
    for b in &boots {
        let k = if s(b, "boot_style") == "next" {
            "none".to_string()
        } else {
            fetch(&c, b, "kernel", dir.as_deref())?
        };
        let i = fetch(&c, b, "initramfs", dir.as_deref())?;
        let cmd = match s(b, "cmdline") {
            "" => "none".to_string(),
            x => x.to_string(),
        };
        lines.insert(s(b, "name").to_string(), [k, i, cmd]);
    }
    let words = ["kernelimage", "initrdimage", "kernelcommandline"];
    if let Some(d) = default_boot.as_ref().and_then(|d| lines.get(d)) {
        for (w, v) in words.iter().zip(d) {
            let _ = writeln!(out, "{w} {v}");
        }
    }
    nodes.sort_by_key(|n| n.get("index").and_then(Json::as_u64).unwrap_or(0));
    let mut node_lines = String::new();
    for n in &nodes {
        let idx = n.get("index").and_then(Json::as_u64).unwrap_or(0);
        let mut words_n = vec![idx.to_string()];
        match attr(n, "_boot_config") {
            Some(b) if b.starts_with("beowulf-") || b == DEFAULT_BOOT => {
                if let Some(v) = lines.get(b) {
                    for (w, v) in words.iter().zip(v) {
                        let _ = writeln!(out, "{w} {idx} {v}");
                    }
                }
            }
            Some(b) => words_n.push(b.to_string()),
            None => {}
        }
        let seq = s(n, "boot_sequence");
        let stage = s(n, "boot_stage");
        if !(matches!(seq, "" | "pxe") && stage.is_empty()) {
            let seq = if seq.is_empty() { "pxe" } else { seq };
            let stage = if stage.is_empty() { "pxe" } else { stage };
            words_n.push(format!("{seq} {stage}"));
        }
        words_n.push(s(n, "mac").to_string());
        if let Some(alt) = attr(n, "_altmacs") {
            words_n.extend(alt.split(',').map(|m| m.trim().to_string()));
        }
        let _ = writeln!(node_lines, "node {}", words_n.join(" "));
    }
    let classes: std::collections::BTreeSet<&str> = nodes
        .iter()
        .filter_map(|n| attr(n, "_boot_config"))
        .filter(|b| !b.starts_with("beowulf-") && *b != DEFAULT_BOOT)
        .collect();
    for cl in classes {
        if let Some(v) = lines.get(cl) {
            for (w, v) in words.iter().zip(v) {
                let _ = writeln!(out, "class {cl} {w} {v}");
            }
        }
    }
    out.push_str(&node_lines);
    match output {
        Some(o) => std::fs::write(o, out)
            .map_err(|e| usage(format!("cannot write {}: {e}", o.display())))?,
        None => print!("{out}"),
    }
    Ok(())
}
