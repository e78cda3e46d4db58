//! Attributes and groups: `set`, `clear` (nodes and attribute groups), `join`, `leave`
//! (nodes).

use std::collections::BTreeMap;

use serde_json::Value;
use wulf_api::UpdateRequest;
use wulf_model::{has_attributes, Kind};

use crate::args::{split_list, Cli, ObjectCmd};
use crate::conn::client;
use crate::fail::{usage, Fail};
use crate::fields::{read_value, split_pair};
use crate::objects::{brief, report};

/// `set NAME=VALUE…`
pub(crate) fn set(cli: &Cli, kind: Kind, cmd: &ObjectCmd, pairs: &[String]) -> Result<(), Fail> {
    attrs_kind(kind)?;
    let mut set = BTreeMap::new();
    for p in pairs {
        let (k, v) = split_pair(p)?;
        let v = read_value(v)?;
        wulf_model::attributes::validate(k, &v).map_err(|e| usage(e.to_string()))?;
        set.insert(k.to_string(), v);
    }
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
    attrs_kind(kind)?;
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
    nodes_only(kind, "join")?;
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
    nodes_only(kind, "leave")?;
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

fn attrs_kind(kind: Kind) -> Result<(), Fail> {
    if has_attributes(kind) {
        Ok(())
    } else {
        Err(usage(format!(
            "{} objects have no attributes (nodes and attribute groups do)",
            kind.title()
        )))
    }
}

fn nodes_only(kind: Kind, action: &str) -> Result<(), Fail> {
    if kind == Kind::Node {
        Ok(())
    } else {
        Err(usage(format!("only nodes {action} attribute groups")))
    }
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
