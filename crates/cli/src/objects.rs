//! The verbs every object kind has: `ls`, `create`, `update`, `delete`, and how their
//! results are reported. Nodes and attribute groups take reserved attributes (`_name=value`)
//! in `create` and `update` too, in the same request as the fields.

use std::io::Read;
use std::path::Path;

use serde_json::Value;
use wulf_api::{client::encode, Deleted, NodeAttributes, UpdateRequest};
use wulf_model::{hostlist, Kind};

use crate::args::{Cli, ObjectCmd};
use crate::attrs::split_attributes;
use crate::conn::client;
use crate::fail::{usage, Fail};
use crate::fields::parse_fields;
use crate::files::upload;
use crate::output;

pub(crate) fn ls(cli: &Cli, kind: Kind, cmd: &ObjectCmd, names: &[String]) -> Result<(), Fail> {
    let c = client(cli)?;
    let mut q = Vec::new();
    if let Some(ids) = cmd.ids_query(names) {
        q.push(format!("ids={}", encode(&ids)));
    }
    let plain = !cli.json && !cli.long && !cli.full && !cli.table;
    if plain {
        q.push("fields=name".to_string());
    }
    let path = if q.is_empty() {
        format!("/{kind}")
    } else {
        format!("/{kind}?{}", q.join("&"))
    };
    let mut objs: Vec<Value> = c.get(&path)?;
    if kind == Kind::Image && !cli.json && (cli.long || cli.full || cli.table) {
        crate::image::ls::annotate(&c, &mut objs)?;
    }
    let attrs: Option<Vec<NodeAttributes>> = if kind == Kind::Node && (cli.full || cli.long) {
        let uids: Vec<&str> = objs
            .iter()
            .filter_map(|o| o.get("uid").and_then(Value::as_str))
            .collect();
        let ids = encode(&uids.join(","));
        if objs.is_empty() {
            Some(Vec::new())
        } else {
            Some(c.get(&format!("/node/attributes?ids={ids}"))?)
        }
    } else {
        None
    };
    if cli.json {
        match attrs {
            Some(a) => output::print_json(&output::with_effective(objs, a)),
            None => output::print_json(&objs),
        }
    } else if cli.table {
        output::print_table(kind, &objs);
    } else if cli.full || cli.long {
        output::print_full(kind, &objs, attrs.as_deref(), cli.full);
    } else {
        output::print_names(kind, &objs);
    }
    Ok(())
}

pub(crate) fn create(
    cli: &Cli,
    kind: Kind,
    pairs: &[String],
    count: Option<u32>,
    macs: Option<&Path>,
) -> Result<(), Fail> {
    if (count.is_some() || macs.is_some()) && kind != Kind::Node {
        return Err(usage("--count and --macs create nodes only"));
    }
    let (pairs, attributes) = split_attributes(kind, pairs)?;
    let (mut fields, files) = parse_fields(kind, &pairs)?;
    if !attributes.is_empty() {
        fields.insert("attributes".into(), serde_json::json!(attributes));
    }
    let macs = macs.map(read_macs).transpose()?;
    let n = match (&macs, count) {
        (Some(m), None) => m.len(),
        (Some(m), Some(c)) if c as usize == m.len() => m.len(),
        (Some(m), Some(c)) => {
            return Err(usage(format!(
                "--count {c} but the MAC file lists {}",
                m.len()
            )))
        }
        (None, Some(0)) => return Err(usage("--count must be at least 1")),
        (None, Some(c)) => c as usize,
        (None, None) => 1,
    };
    if n > 1 {
        for unique in ["name", "ip", "mac", "uid"] {
            if fields.contains_key(unique) {
                return Err(usage(format!(
                    "{unique}= cannot be given to {n} nodes at once"
                )));
            }
        }
        if !files.is_empty() {
            return Err(usage("files can be uploaded to one object at a time"));
        }
    }
    let first_index = fields.get("index").and_then(Value::as_u64);
    let docs: Vec<Value> = (0..n)
        .map(|i| {
            let mut doc = fields.clone();
            if let (Some(first), true) = (first_index, n > 1) {
                doc.insert("index".into(), Value::from(first + i as u64));
            }
            if let Some(m) = &macs {
                doc.insert("mac".into(), Value::String(m[i].clone()));
            }
            Value::Object(doc)
        })
        .collect();
    let c = client(cli)?;
    let body = if docs.len() == 1 {
        docs.into_iter().next().unwrap_or(Value::Null)
    } else {
        Value::Array(docs)
    };
    let mut objs: Vec<Value> = c.send("POST", &format!("/{kind}?{}", &brief(cli)[1..]), &body)?;
    if let [obj] = objs.as_mut_slice() {
        let s = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let (uid, name) = (s("uid"), s("name"));
        if let Some(uploaded) = crate::files::upload_to_new(&c, kind, &uid, &name, &files)? {
            *obj = uploaded;
        }
    }
    report(cli, "Created", kind, &objs);
    Ok(())
}

fn read_macs(path: &Path) -> Result<Vec<String>, Fail> {
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| usage(format!("cannot read stdin: {e}")))?;
    } else {
        text = std::fs::read_to_string(path)
            .map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
    }
    let mut macs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mac: wulf_model::MacAddr = line
            .parse()
            .map_err(|e| usage(format!("{}:{}: {e}", path.display(), n + 1)))?;
        macs.push(mac.to_string());
    }
    if macs.is_empty() {
        return Err(usage(format!("{} holds no MAC addresses", path.display())));
    }
    Ok(macs)
}

/// `update KEY=VALUE…`: fields (and `_name=value` attributes) in one request, then any file
/// fields uploaded.
pub(crate) fn update(cli: &Cli, kind: Kind, cmd: &ObjectCmd, pairs: &[String]) -> Result<(), Fail> {
    let (pairs, set_attributes) = split_attributes(kind, pairs)?;
    let (fields, files) = parse_fields(kind, &pairs)?;
    let q = cmd.target_query(kind, "update")?;
    let c = client(cli)?;
    let mut objs = Vec::new();
    let ids = match files.is_empty() {
        true => None,
        false => Some(
            cmd.ids_query(&[])
                .ok_or_else(|| usage("uploading a file needs --ids naming one object"))?,
        ),
    };
    let req = (!fields.is_empty() || !set_attributes.is_empty()).then(|| UpdateRequest {
        fields,
        set_attributes,
        ..Default::default()
    });
    // Fields and files: the fields are checked first and set last, so that a refused field
    // sends no file and a refused file sets no field.
    if let (Some(req), Some(_)) = (&req, &ids) {
        crate::files::check_update(&c, kind, &q, req)?;
    }
    if let Some(ids) = &ids {
        for (field, path) in &files {
            objs = vec![upload(&c, kind, ids, field, path)?];
        }
    }
    if let Some(req) = &req {
        objs = c.send("PATCH", &format!("/{kind}{q}{}", brief(cli)), req)?;
    }
    report(cli, "Updated", kind, &objs);
    Ok(())
}

/// `delete`
pub(crate) fn delete(cli: &Cli, kind: Kind, cmd: &ObjectCmd) -> Result<(), Fail> {
    let q = cmd.target_query(kind, "delete")?;
    let d: Deleted = client(cli)?.delete(&format!("/{kind}{q}"))?;
    if cli.json {
        output::print_json(&d);
    } else {
        println!("Deleted {} {}", kind.title(), list_names(kind, &d.deleted));
    }
    Ok(())
}

/// Without --json only names are printed, so ask the head for just those.
pub(crate) fn brief(cli: &Cli) -> &'static str {
    if cli.json {
        "&"
    } else {
        "&fields=uid,name"
    }
}

pub(crate) fn names_of(objs: &[Value]) -> Vec<String> {
    objs.iter()
        .filter_map(|o| o.get("name").and_then(Value::as_str))
        .map(String::from)
        .collect()
}

pub(crate) fn list_names(kind: Kind, names: &[String]) -> String {
    if names.is_empty() {
        "nothing".to_string()
    } else if kind == Kind::Node {
        hostlist::compress(names)
    } else {
        names.join(", ")
    }
}

pub(crate) fn report(cli: &Cli, verb: &str, kind: Kind, objs: &[Value]) {
    if cli.json {
        output::print_json(&objs);
    } else {
        println!(
            "{verb} {} {}",
            kind.title(),
            list_names(kind, &names_of(objs))
        );
    }
}
