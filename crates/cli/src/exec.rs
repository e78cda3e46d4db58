//! `exec [--up] [--stdin] [--timeout S] [--fanout N] -- CMD…`: run a command on every selected
//! node through the head's command channel, and print the output grouped by identical output
//! and exit code (like ClusterShell's `clush -b`), raw per node (`-l`), or as JSON.

use std::io::{Read, Write};

use wulf_api::action::{ExecOutcome, ExecReply, ExecRequest};
use wulf_model::{hostlist, Kind};

use crate::args::{Cli, ExecArgs, ObjectCmd};
use crate::conn::action_client;
use crate::fail::{usage, Fail};
use crate::output;
use crate::power::nodes_only;

/// How `--up` names the nodes it left out (on stderr; they are not failures).
const NOT_UP: &str = "skipped (not up)";

/// Checks what can be checked before anything is sent: a node selection and a command.
pub(crate) fn check(kind: Kind, cmd: &ObjectCmd, a: &ExecArgs) -> Result<String, Fail> {
    nodes_only(kind, "exec")?;
    if a.command.first().is_none_or(|p| p.trim().is_empty()) {
        return Err(usage(
            "exec needs a command: wulf node -i NODES exec [--up] [--stdin] -- CMD [ARG...]",
        ));
    }
    cmd.target_query(kind, "exec")
}

pub(crate) fn run(cli: &Cli, kind: Kind, cmd: &ObjectCmd, a: &ExecArgs) -> Result<(), Fail> {
    let q = check(kind, cmd, a)?;
    let stdin = if a.stdin {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| usage(format!("cannot read stdin: {e}")))?;
        Some(String::from_utf8(buf).map_err(|_| usage("--stdin sends text: stdin is not UTF-8"))?)
    } else {
        None
    };
    let req = ExecRequest {
        argv: a.command.clone(),
        stdin,
        timeout_secs: a.timeout,
        fanout: a.fanout as usize,
        up_only: a.up,
    };
    let reply: ExecReply = action_client(cli)?.send("POST", &format!("/node/exec{q}"), &req)?;
    if cli.json {
        output::print_json(&reply);
    } else if cli.long || cli.full || cli.table {
        let (out, err) = raw(&reply.results);
        print_both(&out, &err);
    } else {
        let (out, err) = grouped(&reply.results);
        print_both(&out, &err);
    }
    // Nodes `--up` left out: named on stderr, not failures.
    let not_up: Vec<&str> = reply
        .results
        .iter()
        .filter(|r| r.skipped)
        .map(|r| r.name.as_str())
        .collect();
    if !not_up.is_empty() {
        eprintln!("{NOT_UP}: {}", hostlist::compress(&not_up));
    }
    match failure(&reply.results) {
        None => Ok(()),
        Some(msg) => Err(Fail::Request(anyhow::anyhow!(msg))),
    }
}

fn print_both(out: &str, err: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(out.as_bytes());
    let _ = o.flush();
    let _ = std::io::stderr().lock().write_all(err.as_bytes());
}

/// `exit 0`, `exit 1`, `error: node is down (clean shutdown)`.
pub(crate) fn label(r: &ExecOutcome) -> String {
    match (&r.error, r.exit) {
        (Some(e), Some(c)) => format!("exit {c}, {e}"),
        (Some(e), None) => format!("error: {e}"),
        (None, Some(c)) => format!("exit {c}"),
        (None, None) => "no exit code".to_string(),
    }
}

fn with_newline(out: &mut String, text: &str) {
    out.push_str(text);
    if !text.is_empty() && !text.ends_with('\n') {
        out.push('\n');
    }
}

/// `clush -b`: nodes with the same stdout, stderr and exit code once, under a header naming
/// them. Returns what goes to stdout and to stderr; skipped nodes are left out.
pub(crate) fn grouped(results: &[ExecOutcome]) -> (String, String) {
    struct Group<'a> {
        stdout: &'a str,
        stderr: &'a str,
        label: String,
        nodes: Vec<&'a str>,
    }
    let mut groups: Vec<Group> = Vec::new();
    for r in results.iter().filter(|r| !r.skipped) {
        let label = label(r);
        match groups
            .iter_mut()
            .find(|g| g.stdout == r.stdout && g.stderr == r.stderr && g.label == label)
        {
            Some(g) => g.nodes.push(&r.name),
            None => groups.push(Group {
                stdout: &r.stdout,
                stderr: &r.stderr,
                label,
                nodes: vec![&r.name],
            }),
        }
    }
    let (mut out, mut err) = (String::new(), String::new());
    for g in groups {
        out.push_str(&format!(
            "---------------- {} ({})\n",
            hostlist::compress(&g.nodes),
            g.label
        ));
        with_newline(&mut out, g.stdout);
        with_newline(&mut err, g.stderr);
    }
    (out, err)
}

/// `-l`: every line of every node, prefixed `node: ` (stdout and stderr to their own
/// streams), and on stderr each node that failed with why.
pub(crate) fn raw(results: &[ExecOutcome]) -> (String, String) {
    let (mut out, mut err) = (String::new(), String::new());
    for r in results.iter().filter(|r| !r.skipped) {
        for line in r.stdout.lines() {
            out.push_str(&format!("{}: {line}\n", r.name));
        }
        for line in r.stderr.lines() {
            err.push_str(&format!("{}: {line}\n", r.name));
        }
        if !r.ok() {
            err.push_str(&format!("{}: {}\n", r.name, label(r)));
        }
    }
    (out, err)
}

/// When the command failed (or did not run) on some node: which, and why, as hostlists.
pub(crate) fn failure(results: &[ExecOutcome]) -> Option<String> {
    let ran: Vec<&ExecOutcome> = results.iter().filter(|r| !r.skipped).collect();
    let mut why: Vec<(String, Vec<&str>)> = Vec::new();
    for r in ran.iter().filter(|r| !r.ok()) {
        let l = label(r);
        match why.iter_mut().find(|(k, _)| *k == l) {
            Some((_, v)) => v.push(&r.name),
            None => why.push((l, vec![&r.name])),
        }
    }
    if why.is_empty() {
        return None;
    }
    let failed: Vec<&str> = why.iter().flat_map(|(_, v)| v.iter().copied()).collect();
    let detail: Vec<String> = why
        .iter()
        .map(|(l, v)| format!("{} ({l})", hostlist::compress(v)))
        .collect();
    Some(format!(
        "the command failed on {} of {} node{}: {}: {}",
        failed.len(),
        ran.len(),
        if ran.len() == 1 { "" } else { "s" },
        hostlist::compress(&failed),
        detail.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(name: &str, exit: Option<i32>, stdout: &str, stderr: &str) -> ExecOutcome {
        ExecOutcome {
            uid: format!("u-{name}"),
            name: name.to_string(),
            exit,
            stdout: stdout.to_string(),
            stderr: stderr.to_string(),
            error: None,
            skipped: false,
            millis: 1,
        }
    }

    fn sample() -> Vec<ExecOutcome> {
        let mut v: Vec<ExecOutcome> = (0..4)
            .map(|i| r(&format!("n{i}"), Some(0), "hi\n", ""))
            .collect();
        v.push(r("n4", Some(1), "", "oops\n"));
        v.push(r("n5", Some(0), "other", ""));
        v.push(r("n6", Some(0), "hi\n", ""));
        let mut down = r("n7", None, "", "");
        down.error = Some("node is down (clean shutdown)".into());
        v.push(down);
        let mut skipped = r("n8", None, "", "");
        skipped.skipped = true;
        skipped.error = Some("skipped: node is down".into());
        v.push(skipped);
        v
    }

    #[test]
    fn identical_output_groups_like_clush_b() {
        let (out, err) = grouped(&sample());
        assert_eq!(
            out,
            "---------------- n[0-3,6] (exit 0)\nhi\n\
             ---------------- n4 (exit 1)\n\
             ---------------- n5 (exit 0)\nother\n\
             ---------------- n7 (error: node is down (clean shutdown))\n"
        );
        assert_eq!(err, "oops\n");
    }

    #[test]
    fn raw_output_is_prefixed_per_node() {
        let (out, err) = raw(&sample());
        assert_eq!(out, "n0: hi\nn1: hi\nn2: hi\nn3: hi\nn5: other\nn6: hi\n");
        assert_eq!(
            err,
            "n4: oops\nn4: exit 1\nn7: error: node is down (clean shutdown)\n"
        );
    }

    #[test]
    fn failures_name_the_nodes_skips_do_not_count() {
        let msg = failure(&sample()).unwrap();
        assert_eq!(
            msg,
            "the command failed on 2 of 8 nodes: n[4,7]: n4 (exit 1); \
             n7 (error: node is down (clean shutdown))"
        );
        let ok: Vec<ExecOutcome> = sample()
            .into_iter()
            .filter(|r| r.ok() || r.skipped)
            .collect();
        assert_eq!(failure(&ok), None);
    }

    #[test]
    fn labels() {
        let mut x = r("n0", Some(137), "", "");
        x.error = Some("timed out after 5 s".into());
        assert_eq!(label(&x), "exit 137, timed out after 5 s");
        assert_eq!(label(&r("n0", None, "", "")), "no exit code");
    }
}
