//! `wulf admin`: accounts (objects of kind `admin`) with a role, SSH public keys and a
//! password that only ever travels from standard input or the terminal to the head, which
//! keeps its argon2id hash. `ls` and `delete` are the generic object verbs; `create` and
//! `update` add `--password-stdin`/`--password`; `revoke` ends an account's tokens.

use std::str::FromStr;

use serde_json::Value;
use wulf_api::auth::Role;
use wulf_api::UpdateRequest;
use wulf_model::Kind;

use crate::args::{Action, Cli, ObjectCmd};
use crate::conn::client;
use crate::fail::{usage, Fail};
use crate::fields::{parse_fields, split_pair};
use crate::objects::{self, brief, list_names, report};
use crate::output;

/// How the password of `create`/`update` is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PasswordFrom {
    None,
    /// `--password-stdin`: the first line of standard input.
    Stdin,
    /// `--password`: asked twice on the terminal, not shown.
    Terminal,
}

impl PasswordFrom {
    pub(crate) fn of(stdin: bool, terminal: bool) -> PasswordFrom {
        match (stdin, terminal) {
            (true, _) => PasswordFrom::Stdin,
            (false, true) => PasswordFrom::Terminal,
            _ => PasswordFrom::None,
        }
    }
}

const ACTIONS: &str = "ls, create, update, delete, revoke";

/// What can be refused before anything is read or sent: passwords on the command line,
/// the password flags and `revoke` on other kinds, verbs accounts do not have.
pub(crate) fn check(kind: Kind, cmd: &ObjectCmd) -> Result<(), Fail> {
    let (pairs, from) = match &cmd.action {
        Action::Create {
            pairs,
            password_stdin,
            password,
            ..
        }
        | Action::Update {
            pairs,
            password_stdin,
            password,
        } => (
            pairs.as_slice(),
            PasswordFrom::of(*password_stdin, *password),
        ),
        Action::Revoke if kind != Kind::Admin => {
            return Err(usage(format!(
                "revoke ends admin accounts' tokens: wulf admin -i NAME revoke (not wulf {kind})"
            )))
        }
        Action::Ls { .. } | Action::Delete | Action::Revoke => return Ok(()),
        _ if kind == Kind::Admin => {
            return Err(usage(format!(
                "admin accounts have these actions: {ACTIONS} (see wulf admin --help)"
            )))
        }
        _ => return Ok(()),
    };
    if kind != Kind::Admin {
        if from != PasswordFrom::None {
            return Err(usage(format!(
                "--password-stdin and --password set admin accounts' passwords, not {}s'",
                kind.title()
            )));
        }
        return Ok(());
    }
    if let Action::Create {
        count,
        macs,
        from_dir,
        from_tar,
        ..
    } = &cmd.action
    {
        if count.is_some() || macs.is_some() || from_dir.is_some() || from_tar.is_some() {
            return Err(usage(
                "create one account at a time: wulf admin create name=NAME role=ROLE \
                 [--password-stdin]",
            ));
        }
    }
    for p in pairs {
        let (k, v) = split_pair(p)?;
        match k {
            "password" => {
                return Err(usage(
                    "a password is never given on the command line (other users see it in \
                     ps, and it stays in the shell's history): pipe it in with \
                     --password-stdin, or give --password to be asked on the terminal",
                ))
            }
            "role" => {
                Role::from_str(v).map_err(usage)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// `wulf admin …`: the account verbs, the rest refused by [`check`].
pub(crate) fn run(cli: &Cli, cmd: &ObjectCmd) -> Result<(), Fail> {
    check(Kind::Admin, cmd)?;
    match &cmd.action {
        Action::Ls { names } => objects::ls(cli, Kind::Admin, cmd, names),
        Action::Delete => objects::delete(cli, Kind::Admin, cmd),
        Action::Create {
            pairs,
            password_stdin,
            password,
            ..
        } => create(cli, pairs, PasswordFrom::of(*password_stdin, *password)),
        Action::Update {
            pairs,
            password_stdin,
            password,
        } => update(
            cli,
            cmd,
            pairs,
            PasswordFrom::of(*password_stdin, *password),
        ),
        Action::Revoke => revoke(cli, cmd),
        _ => Err(usage(format!(
            "admin accounts have these actions: {ACTIONS}"
        ))),
    }
}

/// The fields of `pairs`, with `ssh_keys=@FILE` read as an authorized_keys file (one key a
/// line; blank lines and `#` comments skipped) and `ssh_keys=K1,K2` as a list.
fn account_fields(pairs: &[String]) -> Result<serde_json::Map<String, Value>, Fail> {
    let mut rest = Vec::new();
    let mut keys = None;
    for p in pairs {
        match split_pair(p)? {
            ("ssh_keys", v) if v.starts_with('@') => {
                let path = &v[1..];
                let text = std::fs::read_to_string(path)
                    .map_err(|e| usage(format!("ssh_keys: cannot read {path}: {e}")))?;
                let list: Vec<Value> = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(|l| Value::String(l.to_string()))
                    .collect();
                if list.is_empty() {
                    return Err(usage(format!("ssh_keys: {path} holds no keys")));
                }
                keys = Some(Value::Array(list));
            }
            _ => rest.push(p.clone()),
        }
    }
    let (mut fields, files) = parse_fields(Kind::Admin, &rest)?;
    if !files.is_empty() {
        return Err(usage("admin accounts have no file fields"));
    }
    if let Some(k) = keys {
        fields.insert("ssh_keys".into(), k);
    }
    Ok(fields)
}

fn read_password(from: PasswordFrom, name: &str) -> Result<Option<String>, Fail> {
    match from {
        PasswordFrom::None => Ok(None),
        PasswordFrom::Stdin => crate::login::password_from_stdin().map(Some),
        PasswordFrom::Terminal => {
            crate::login::password_from_terminal(&format!("New password for {name}"), true)
                .map(Some)
        }
    }
}

fn create(cli: &Cli, pairs: &[String], from: PasswordFrom) -> Result<(), Fail> {
    let mut fields = account_fields(pairs)?;
    let name = fields
        .get("name")
        .and_then(Value::as_str)
        .map(String::from)
        .ok_or_else(|| usage("an account needs a name: wulf admin create name=NAME role=ROLE"))?;
    if let Some(p) = read_password(from, &name)? {
        fields.insert("password".into(), Value::String(p));
    }
    let objs: Vec<Value> = client(cli)?.send(
        "POST",
        &format!("/admin?{}", &brief(cli)[1..]),
        &Value::Object(fields),
    )?;
    report(cli, "Created", Kind::Admin, &objs);
    if from == PasswordFrom::None {
        eprintln!(
            "wulf: {name} has no password and cannot log in until it gets one: \
             wulf admin -i {name} update --password"
        );
    }
    Ok(())
}

fn update(cli: &Cli, cmd: &ObjectCmd, pairs: &[String], from: PasswordFrom) -> Result<(), Fail> {
    let mut fields = account_fields(pairs)?;
    let q = cmd.target_query(Kind::Admin, "update")?;
    let who = cmd.ids_query(&[]).unwrap_or_else(|| "every account".into());
    if let Some(p) = read_password(from, &who)? {
        fields.insert("password".into(), Value::String(p));
    }
    let req = UpdateRequest {
        fields,
        ..Default::default()
    };
    let objs: Vec<Value> = client(cli)?.send("PATCH", &format!("/admin{q}{}", brief(cli)), &req)?;
    report(cli, "Updated", Kind::Admin, &objs);
    Ok(())
}

/// `revoke`: end every session and token of the selected accounts.
fn revoke(cli: &Cli, cmd: &ObjectCmd) -> Result<(), Fail> {
    let q = cmd.target_query(Kind::Admin, "revoke")?;
    let reply: Value =
        client(cli)?.send("POST", &format!("/admin/revoke{q}"), &serde_json::json!({}))?;
    if cli.json {
        output::print_json(&reply);
    } else {
        let names: Vec<String> = reply
            .get("revoked")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "Revoked the tokens of {} {}: they must log in again",
            Kind::Admin.title(),
            list_names(Kind::Admin, &names)
        );
    }
    Ok(())
}
