//! `/etc/beowulf/config` → wulf objects: one net, hosts, boot configs (one per distinct
//! kernel, initrd and command line), nodes; sent as one transaction to
//! `POST /api/v1/cluster/import`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value as Json};
use wulf_api::{client::encode, Client};

use super::{Config, LineError, Part, Value};
use crate::args::Cli;
use crate::conn::client;
use crate::fail::{usage, Fail};

/// The net an import creates.
pub(crate) const NET: &str = "beowulf";
/// The boot config the un-ranged kernel lines make (the default group's).
pub(crate) const DEFAULT_BOOT: &str = "beowulf";

/// A boot: kernel path, initrd path, command line (None: `none` or never given).
type Combo = (Value, Value, Value);

fn overlay(c: &mut Combo, part: Part, v: &Value) {
    match part {
        Part::Kernel => c.0 = v.clone(),
        Part::Initrd => c.1 = v.clone(),
        Part::Cmdline => c.2 = v.clone(),
    }
}

/// Where each part's value was set (for errors about missing files).
fn line_of(cfg: &Config, path: &str) -> usize {
    cfg.boot
        .iter()
        .filter(|b| b.value.as_deref() == Some(path))
        .map(|b| b.line)
        .chain(cfg.classes.values().flat_map(|c| {
            c.parts
                .values()
                .filter(|(_, v)| v.as_deref() == Some(path))
                .map(|(l, _)| *l)
        }))
        .next()
        .unwrap_or(0)
}

/// What an import will do, before any file is uploaded.
pub(crate) struct Plan {
    pub net: Map<String, Json>,
    pub hosts: Vec<Json>,
    /// Boot config name and its parts, in order.
    pub boots: Vec<(String, Combo)>,
    pub nodes: Vec<Json>,
    /// Every file path a boot config names, resolved.
    pub files: BTreeMap<String, PathBuf>,
    pub accept_new_nodes: Option<String>,
    pub mask_note: Option<String>,
}

/// The smallest subnet holding every address, no narrower than /24.
fn mask_for(addrs: &[Ipv4Addr]) -> u8 {
    let Some(first) = addrs.first().map(|a| u32::from(*a)) else {
        return 24;
    };
    let diff = addrs.iter().fold(0u32, |d, a| d | (u32::from(*a) ^ first));
    let common = diff.leading_zeros() as u8;
    common.clamp(8, 24)
}

pub(crate) fn build(
    cfg: &Config,
    dir: &Path,
    heads: &[Ipv4Addr],
    pool_name: &dyn Fn(u32) -> String,
) -> Result<Plan, LineError> {
    cfg.check()?;
    let mut net = Map::new();
    let mut mask_note = None;
    if let Some((r, first_index)) = &cfg.iprange {
        let mut all = vec![r.first, r.last];
        for h in &cfg.hostranges {
            all.extend([h.first, h.last]);
        }
        let bits = match cfg.netmask {
            Some((_, b)) => b,
            None => {
                let b = mask_for(&all);
                mask_note = Some(format!(
                    "no netmask line: the net is /{b}, the smallest subnet holding the iprange \
                     and hostranges (no narrower than /24)"
                ));
                b
            }
        };
        for ip in heads {
            if let Some(x) = cfg.hostranges.iter().chain([r]).find(|x| x.contains(*ip)) {
                return Err(LineError::new(
                    x.line,
                    format!("{}-{} holds the head's address {ip}", x.first, x.last),
                ));
            }
        }
        net.insert("name".into(), json!(NET));
        net.insert("first_ip".into(), json!(r.first.to_string()));
        net.insert(
            "ip_count".into(),
            json!(u32::from(r.last) - u32::from(r.first) + 1),
        );
        net.insert("first_index".into(), json!(first_index));
        net.insert("mask_bits".into(), json!(bits));
        if let Some((_, d)) = &cfg.domain {
            net.insert("domain".into(), json!(d));
        }
        let ranges: Vec<String> = cfg
            .hostranges
            .iter()
            .map(|h| format!("{}-{}", h.first, h.last))
            .collect();
        net.insert("host_ranges".into(), json!(ranges));
    } else if let Some(h) = cfg.hosts.first() {
        return Err(LineError::new(
            h.line,
            "host lines need an iprange (the net)",
        ));
    }

    // Hosts: a host without an address takes the next free one of the hostranges.
    let mut used: Vec<Ipv4Addr> = cfg.hosts.iter().filter_map(|h| h.ip).collect();
    let mut hosts = Vec::new();
    for h in &cfg.hosts {
        let ip = match h.ip {
            Some(ip) => ip,
            None => {
                let free = cfg.hostranges.iter().find_map(|r| {
                    (u32::from(r.first)..=u32::from(r.last))
                        .map(Ipv4Addr::from)
                        .find(|a| !used.contains(a))
                });
                let ip = free.ok_or_else(|| {
                    LineError::new(h.line, "no free address left in the hostranges")
                })?;
                used.push(ip);
                ip
            }
        };
        hosts.push(json!({
            "name": h.names[0],
            "hostnames": h.names[1..],
            "mac": h.mac.to_string(),
            "ip": ip.to_string(),
        }));
    }

    // Boot configs: the default from un-ranged lines, one per class, one per other combination.
    let mut default: Combo = (None, None, None);
    for b in cfg.boot.iter().filter(|b| b.nodes.is_none()) {
        overlay(&mut default, b.part, &b.value);
    }
    let has_default = cfg.boot.iter().any(|b| b.nodes.is_none());
    let mut boots: Vec<(String, Combo)> = Vec::new();
    if has_default {
        boots.push((DEFAULT_BOOT.to_string(), default.clone()));
    }
    let mut class_combo = BTreeMap::new();
    for (name, class) in &cfg.classes {
        let mut c = default.clone();
        for (part, (_, v)) in &class.parts {
            overlay(&mut c, *part, v);
        }
        boots.push((name.clone(), c.clone()));
        class_combo.insert(name.clone(), c);
    }
    let mut nodes = Vec::new();
    let (r, first_index) = match &cfg.iprange {
        Some((r, f)) => (Some(r), *f),
        None => (None, 0),
    };
    for n in &cfg.node_lines {
        let mut combo = match &n.class {
            Some(cl) => class_combo.get(cl).cloned().unwrap_or_default(),
            None => default.clone(),
        };
        let mut ranged = false;
        for b in &cfg.boot {
            if let Some((a, z)) = b.nodes {
                if (a..=z).contains(&n.index) {
                    overlay(&mut combo, b.part, &b.value);
                    ranged = true;
                }
            }
        }
        let boot = match (&n.class, ranged) {
            (Some(cl), false) => Some(cl.clone()),
            (None, false) => None,
            _ => Some(
                match boots
                    .iter()
                    .find(|(name, c)| *c == combo && name.starts_with("beowulf-"))
                {
                    Some((name, _)) => name.clone(),
                    None => {
                        let name = format!("beowulf-{}", boots.len() + 1);
                        boots.push((name.clone(), combo.clone()));
                        name
                    }
                },
            ),
        };
        let mut attrs = Map::new();
        if n.macs.len() > 1 {
            let alt: Vec<String> = n.macs[1..].iter().map(|m| m.to_string()).collect();
            attrs.insert("_altmacs".into(), json!(alt.join(",")));
        }
        if let Some(b) = boot {
            attrs.insert("_boot_config".into(), json!(b));
        }
        let ip = r.map(|r| Ipv4Addr::from(u32::from(r.first) + (n.index - first_index)));
        let mut doc = json!({
            "name": pool_name(n.index),
            "index": n.index,
            "mac": n.macs[0].to_string(),
            "attributes": attrs,
        });
        if let Some(ip) = ip {
            doc["ip"] = json!(ip.to_string());
        }
        if let Some(s) = &n.sequence {
            doc["boot_sequence"] = json!(s);
        }
        if let Some(s) = &n.stage {
            doc["boot_stage"] = json!(s);
        }
        nodes.push(doc);
    }

    let mut files = BTreeMap::new();
    for (_, (k, i, _)) in &boots {
        for p in [k, i].into_iter().flatten() {
            let path = dir.join(p);
            if !path.is_file() {
                return Err(LineError::new(
                    line_of(cfg, p),
                    format!("the file {} does not exist", path.display()),
                ));
            }
            files.insert(p.clone(), path);
        }
    }
    Ok(Plan {
        net,
        hosts,
        boots,
        nodes,
        files,
        accept_new_nodes: cfg.nodeassign.as_ref().map(|(_, v)| v.clone()),
        mask_note,
    })
}

/// The heads' addresses, from their API URLs.
fn head_addrs(c: &Client) -> Result<Vec<Ipv4Addr>, Fail> {
    let heads: Vec<Json> = c.get("/head")?;
    let mut out = Vec::new();
    for h in heads {
        for u in h.get("urls").and_then(Json::as_array).into_iter().flatten() {
            let host = u
                .as_str()
                .unwrap_or("")
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .split([':', '/'])
                .next()
                .unwrap_or("");
            if let Ok(ip) = host.parse() {
                out.push(ip);
            }
        }
    }
    Ok(out)
}

fn uid_of(c: &Client, kind: &str, name: &str) -> Result<Option<String>, Fail> {
    let objs: Vec<Json> = c.get(&format!("/{kind}?ids={}&fields=uid", encode(name)))?;
    Ok(objs
        .first()
        .and_then(|o| o.get("uid"))
        .and_then(Json::as_str)
        .map(str::to_string))
}

fn bad_file(file: &Path, e: LineError) -> Fail {
    if e.line == 0 {
        usage(e.msg)
    } else {
        usage(format!("{}:{}: {}", file.display(), e.line, e.msg))
    }
}

/// `wulf cluster import-config FILE [--dry-run]`.
pub(crate) fn import(cli: &Cli, file: &Path, dry_run: bool) -> Result<(), Fail> {
    let cfg = super::read(file).map_err(|e| bad_file(file, e))?;
    let c = client(cli)?;
    let heads = head_addrs(&c)?;
    let cluster: Json = c
        .get::<Vec<Json>>("/cluster")?
        .into_iter()
        .next()
        .unwrap_or(Json::Null);
    let pools: Vec<wulf_model::Pool> = c.get("/pool")?;
    let pool_refs: Vec<&wulf_model::Pool> = pools.iter().collect();
    let pool_name = |i: u32| {
        wulf_model::pool_for_index(&pool_refs, i)
            .and_then(|p| pool_refs[p].name_for(i))
            .unwrap_or_else(|| format!("n{i}"))
    };
    let dir = file.parent().unwrap_or(Path::new("."));
    let plan = build(&cfg, dir, &heads, &pool_name).map_err(|e| bad_file(file, e))?;
    for w in &cfg.warnings {
        eprintln!("warning: {}:{}: {}", file.display(), w.line, w.msg);
    }
    if let Some(n) = &plan.mask_note {
        eprintln!("note: {n}");
    }

    // Files: uploaded once each (not on a dry run: the head is asked about the rest).
    let mut refs: BTreeMap<String, Json> = BTreeMap::new();
    for (p, path) in &plan.files {
        if dry_run {
            let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            println!("would upload {} ({size} bytes)", path.display());
            continue;
        }
        let f = std::fs::File::open(path)
            .map_err(|e| usage(format!("cannot open {}: {e}", path.display())))?;
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let bar = crate::output::bytes_bar(len, &format!("upload {name}"));
        let r: Json = c.upload(
            &format!("/cluster/import/files?filename={}", encode(&name)),
            bar.wrap_read(f),
            len,
        )?;
        bar.finish_and_clear();
        refs.insert(p.clone(), r);
    }

    let mut steps = Vec::new();
    if !plan.net.is_empty() {
        steps.push(json!({"create": "net", "docs": [plan.net]}));
    }
    if !plan.hosts.is_empty() {
        steps.push(json!({"create": "host", "docs": plan.hosts}));
    }
    let boot_docs: Vec<Json> = plan
        .boots
        .iter()
        .map(|(name, (k, i, cmd))| {
            let mut d = json!({"name": name, "cmdline": cmd.clone().unwrap_or_default()});
            match k {
                Some(k) => {
                    if let Some(r) = refs.get(k) {
                        d["kernel"] = r.clone();
                    }
                }
                None => d["boot_style"] = json!("next"),
            }
            if let Some(r) = i.as_ref().and_then(|i| refs.get(i)) {
                d["initramfs"] = r.clone();
            }
            d
        })
        .collect();
    if !boot_docs.is_empty() {
        steps.push(json!({"create": "boot", "docs": boot_docs}));
    }
    if !plan.nodes.is_empty() {
        steps.push(json!({"create": "node", "docs": plan.nodes}));
    }
    let default_group = cluster
        .get("default_group")
        .and_then(Json::as_str)
        .unwrap_or(wulf_model::DEFAULT_GROUP)
        .to_string();
    if plan.boots.iter().any(|(n, _)| n == DEFAULT_BOOT) {
        let set = json!({"_boot_config": DEFAULT_BOOT});
        match uid_of(&c, "attrib", &default_group)? {
            Some(uid) => steps.push(json!({"update": "attrib", "uids": [uid],
                "request": {"set_attributes": set}})),
            None => steps.push(json!({"create": "attrib",
                "docs": [{"name": default_group, "attributes": set}]})),
        }
    }
    if let Some(a) = &plan.accept_new_nodes {
        steps.push(
            json!({"update": "cluster", "uids": [wulf_model::CLUSTER_UID],
            "request": {"fields": {"accept_new_nodes": a}}}),
        );
    }
    let body = json!({"steps": steps, "dry_run": dry_run});
    let reply: Json = c
        .send("POST", "/cluster/import", &body)
        .map_err(|e| match e {
            wulf_api::ApiError::Status { status, .. } if (400..500).contains(&status) => {
                usage(format!("the head refused the import: {e}"))
            }
            e => Fail::from(e),
        })?;
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reply).unwrap_or_default()
        );
        return Ok(());
    }
    let verb = if dry_run { "Would create" } else { "Created" };
    let names = reply.get("names").cloned().unwrap_or(Json::Null);
    for kind in ["net", "host", "boot", "node", "attrib", "cluster"] {
        let Some(list) = names.get(kind).and_then(Json::as_array) else {
            continue;
        };
        let list: Vec<&str> = list.iter().filter_map(Json::as_str).collect();
        let what = if matches!(kind, "attrib" | "cluster") {
            "or change"
        } else {
            ""
        };
        println!(
            "{verb}{} {} {kind}: {}",
            if what.is_empty() { "" } else { " " },
            list.len(),
            wulf_model::hostlist::compress(&list)
        );
    }
    if dry_run {
        println!("The head accepts this import (nothing was written).");
    }
    Ok(())
}
