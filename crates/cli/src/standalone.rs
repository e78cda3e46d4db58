//! Standalone nodes (servers wulf did not boot): `node create … --enroll-token` and
//! `node -i NODE enroll-token` issue the one-time token `wulf-agent --standalone` enrolls
//! with.

use serde_json::{json, Value};
use wulf_model::{hostlist, Kind};

use crate::args::{Cli, ObjectCmd};
use crate::attrs::split_attributes;
use crate::conn::client;
use crate::fail::{usage, Fail};
use crate::fields::parse_fields;
use crate::output;

/// A token's lifetime from `--enroll-token-ttl`: seconds, or a number with s, m, h or d.
pub(crate) fn parse_ttl(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1),
        Some((i, 'm')) => (&s[..i], 60),
        Some((i, 'h')) => (&s[..i], 3600),
        Some((i, 'd')) => (&s[..i], 86_400),
        _ => (s, 1),
    };
    match num.parse::<u64>() {
        Ok(n) if n > 0 => n
            .checked_mul(mult)
            .ok_or_else(|| format!("{s} is too long")),
        _ => Err(format!("{s:?} is not a duration like 3600, 90m, 24h or 7d")),
    }
}

fn issue(cli: &Cli, node: &str, ttl: Option<u64>) -> Result<Value, Fail> {
    let mut body = json!({ "node": node });
    if let Some(t) = ttl {
        body["ttl_secs"] = json!(t);
    }
    Ok(client(cli)?.send("POST", "/node/enroll-token", &body)?)
}

fn print_token(t: &Value) {
    let s = |k: &str| t.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let expires = t.get("expires").and_then(Value::as_i64).unwrap_or(0);
    println!(
        "Enrollment token for {} (one use, good until {} UTC; shown only now):\n{}",
        s("node"),
        crate::clock::utc(expires),
        s("token")
    );
    println!(
        "On the server: wulf-agent --standalone --head URL --pin CA_SHA256 --enroll-token-file FILE"
    );
}

/// `node create … --enroll-token`: one node, then its token.
pub(crate) fn create(
    cli: &Cli,
    kind: Kind,
    pairs: &[String],
    ttl: Option<u64>,
) -> Result<(), Fail> {
    if kind != Kind::Node {
        return Err(usage("--enroll-token creates nodes only"));
    }
    let (pairs, attributes) = split_attributes(Kind::Node, pairs)?;
    let (mut fields, files) = parse_fields(Kind::Node, &pairs)?;
    if !files.is_empty() {
        return Err(usage("--enroll-token takes no file fields"));
    }
    match fields.get("type").and_then(Value::as_str) {
        Some("standalone") => {}
        Some(t) => {
            return Err(usage(format!(
                "--enroll-token is for nodes of type standalone, not {t} (nodes wulf boots get \
                 theirs in the boot script)"
            )))
        }
        None => {
            fields.insert("type".into(), json!("standalone"));
        }
    }
    if !attributes.is_empty() {
        fields.insert("attributes".into(), json!(attributes));
    }
    let c = client(cli)?;
    let objs: Vec<Value> = c.send(
        "POST",
        &format!("/node?{}", &crate::objects::brief(cli)[1..]),
        &Value::Object(fields),
    )?;
    let Some(uid) = objs
        .first()
        .and_then(|o| o.get("uid"))
        .and_then(Value::as_str)
    else {
        return Err(usage("the head created no node"));
    };
    let token = issue(cli, uid, ttl)?;
    if cli.json {
        let mut obj = objs[0].clone();
        obj["enroll_token"] = token;
        output::print_json(&obj);
    } else {
        crate::objects::report(cli, "Created", Kind::Node, &objs);
        print_token(&token);
    }
    Ok(())
}

/// `node -i NODE enroll-token`: a fresh token for one standalone node (the earlier one stops
/// working).
pub(crate) fn reissue(cli: &Cli, cmd: &ObjectCmd, ttl: Option<u64>) -> Result<(), Fail> {
    let mut names = Vec::new();
    for id in &cmd.ids {
        for part in id.split(',').filter(|p| !p.trim().is_empty()) {
            names.extend(hostlist::expand(part.trim()).map_err(|e| usage(e.to_string()))?);
        }
    }
    let [node] = names.as_slice() else {
        return Err(usage(format!(
            "enroll-token takes exactly one node with -i NODE ({} given)",
            names.len()
        )));
    };
    let token = issue(cli, node, ttl)?;
    if cli.json {
        output::print_json(&token);
    } else {
        print_token(&token);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("3600"), Ok(3600));
        assert_eq!(parse_ttl("90m"), Ok(5400));
        assert_eq!(parse_ttl("24h"), Ok(86_400));
        assert_eq!(parse_ttl("7d"), Ok(604_800));
        for bad in ["", "0", "h", "-1", "1w", "1.5h"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }
}
