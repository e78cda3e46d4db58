//! Attributes and groups: `set`, `clear` (nodes and attribute groups), `join`, `leave`
//! (nodes), and the reserved attributes `create` and `update` take with the fields. Which
//! objects take which action is checked when the command line is parsed (actions.rs).

use std::collections::BTreeMap;

use serde_json::Value;
use wulf_api::UpdateRequest;
use wulf_model::{has_attributes, Kind};

use crate::args::{split_list, Cli, ObjectCmd};
use crate::conn::client;
use crate::fail::{usage, Fail};
use crate::fields::{read_value, split_pair};
use crate::objects::{brief, report};

/// One `NAME=VALUE` (or `NAME=@file`) attribute, checked as the head checks it.
fn attribute(p: &str) -> Result<(String, String), Fail> {
    let (k, v) = split_pair(p)?;
    let v = read_value(v)?;
    wulf_model::attributes::validate(k, &v).map_err(|e| usage(e.to_string()))?;
    Ok((k.to_string(), v))
}

/// `create` and `update` arguments of nodes and attribute groups: the `_name=value` pairs
/// (reserved attributes, checked as `set` checks them) apart from the fields, so an object
/// is created or changed with its attributes in one request. Other kinds: all fields.
pub(crate) fn split_attributes(
    kind: Kind,
    pairs: &[String],
) -> Result<(Vec<String>, BTreeMap<String, String>), Fail> {
    let mut fields = Vec::new();
    let mut attrs = BTreeMap::new();
    for p in pairs {
        if has_attributes(kind) && p.trim_start().starts_with('_') {
            let (k, v) = attribute(p)?;
            attrs.insert(k, v);
        } else {
            fields.push(p.clone());
        }
    }
    Ok((fields, attrs))
}

/// `set NAME=VALUE…`
pub(crate) fn set(cli: &Cli, kind: Kind, cmd: &ObjectCmd, pairs: &[String]) -> Result<(), Fail> {
    let set = pairs
        .iter()
        .map(|p| attribute(p))
        .collect::<Result<BTreeMap<_, _>, _>>()?;
    change(
        cli,
        kind,
        cmd,
        "set",
        UpdateRequest {
            set_attributes: set,
            ..Default::default()
        },
    )
}

/// `clear NAME…`
pub(crate) fn clear(cli: &Cli, kind: Kind, cmd: &ObjectCmd, names: &[String]) -> Result<(), Fail> {
    change(
        cli,
        kind,
        cmd,
        "clear",
        UpdateRequest {
            clear_attributes: names.to_vec(),
            ..Default::default()
        },
    )
}

/// `join GROUP…`
pub(crate) fn join(cli: &Cli, kind: Kind, cmd: &ObjectCmd, groups: &[String]) -> Result<(), Fail> {
    change(
        cli,
        kind,
        cmd,
        "join",
        UpdateRequest {
            join: split_list(groups),
            ..Default::default()
        },
    )
}

/// `leave GROUP…`
pub(crate) fn leave(cli: &Cli, kind: Kind, cmd: &ObjectCmd, groups: &[String]) -> Result<(), Fail> {
    change(
        cli,
        kind,
        cmd,
        "leave",
        UpdateRequest {
            leave: split_list(groups),
            ..Default::default()
        },
    )
}

fn change(
    cli: &Cli,
    kind: Kind,
    cmd: &ObjectCmd,
    action: &str,
    req: UpdateRequest,
) -> Result<(), Fail> {
    let q = cmd.target_query(kind, action)?;
    let objs: Vec<Value> =
        client(cli)?.send("PATCH", &format!("/{kind}{q}{}", brief(cli)), &req)?;
    report(cli, "Updated", kind, &objs);
    Ok(())
}
