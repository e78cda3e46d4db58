//! Chaining, as in ClusterWare: `wulf node -i n[0-15] reboot then waitfor up then exec uptime`.
//!
//! The command line is split on standalone `then` words before it is parsed. The first part
//! is a whole command; each later part is an action that reuses the first part's object, its
//! `--ids`/`--all` and its global flags (`--url`, `--token`, `--json`, `-l`, `-L`, `-t`).
//! Every part is parsed (and checked) before the first one runs, so a mistake anywhere
//! changes nothing; they then run in order, stopping at the first that fails.
//!
//! Everything after a standalone `--` belongs to the part it is in (an `exec` command may
//! contain `then`), and a `then` that is the value of `-i`/`--ids`/`--url`/`--token` is
//! that value.

use std::ffi::{OsStr, OsString};

use crate::actions::parse_from;
use crate::args::{Cli, Top};
use crate::fail::{usage, Fail};

/// Options before the action that take the next word as their value.
const VALUE_OPTIONS: &[&str] = &["-i", "--ids", "--url", "--token"];

/// The object words that start a chainable command.
const OBJECTS: &[&str] = &[
    "node", "attrib", "boot", "image", "pool", "net", "host", "cluster",
];

fn takes_value(word: &OsStr) -> bool {
    let Some(w) = word.to_str() else {
        return false;
    };
    if VALUE_OPTIONS.contains(&w) {
        return true;
    }
    // Bundled short flags ending in i (`-li n1`).
    w.len() > 2 && w.starts_with('-') && !w.starts_with("--") && w.ends_with('i')
}

/// `argv` (without the program name) cut at each standalone `then`.
pub(crate) fn split(argv: &[OsString]) -> Vec<Vec<OsString>> {
    let mut parts = vec![Vec::new()];
    let mut rest_is_literal = false;
    let mut prev_takes_value = false;
    for word in argv {
        if !rest_is_literal && !prev_takes_value && word == "then" {
            parts.push(Vec::new());
            prev_takes_value = false;
            continue;
        }
        if word == "--" {
            rest_is_literal = true;
        }
        prev_takes_value = !rest_is_literal && takes_value(word);
        if let Some(last) = parts.last_mut() {
            last.push(word.clone());
        }
    }
    parts
}

/// The first word that is not an option (or an option's value): the object.
fn object_word(part: &[OsString]) -> Option<&str> {
    let mut skip = false;
    for w in part {
        if skip {
            skip = false;
            continue;
        }
        let s = w.to_str()?;
        if s.starts_with('-') {
            skip = matches!(s, "--url" | "--token");
            continue;
        }
        return Some(s);
    }
    None
}

/// The commands to run: one, or a chain. Clap's own errors (unknown flag, bad value, `--help`)
/// end the program here, as for a single command; an action the object does not take is a
/// usage error.
pub(crate) fn parse(argv: Vec<OsString>) -> Result<Vec<Cli>, Fail> {
    let (prog, args) = match argv.split_first() {
        Some((p, a)) => (p.clone(), a.to_vec()),
        None => (OsString::from("wulf"), Vec::new()),
    };
    let parts = split(&args);
    let object = object_word(&parts[0]).filter(|w| OBJECTS.contains(w));
    let Some(object) = object.filter(|_| parts.len() > 1) else {
        // Not a chain: `then` is an ordinary word (a hostname, say).
        return Ok(vec![parse_from(argv)?]);
    };
    let object = object.to_string();
    let first = parse_from(std::iter::once(prog.clone()).chain(parts[0].iter().cloned()))?;
    let mut clis = Vec::with_capacity(parts.len());
    for part in parts.iter().skip(1) {
        if part.is_empty() {
            return Err(usage(format!(
                "'then' must be followed by an action: \
                 wulf {object} -i IDS ACTION then ACTION ..."
            )));
        }
        let words = [prog.clone(), OsString::from(&object)]
            .into_iter()
            .chain(part.iter().cloned());
        let mut cli = parse_from(words)?;
        inherit(&mut cli, &first);
        clis.push(cli);
    }
    clis.insert(0, first);
    Ok(clis)
}

/// A later part takes the first part's selection and global flags.
fn inherit(cli: &mut Cli, first: &Cli) {
    cli.url = cli.url.take().or_else(|| first.url.clone());
    cli.token = cli.token.take().or_else(|| first.token.clone());
    cli.json |= first.json;
    cli.long |= first.long;
    cli.full |= first.full;
    cli.table |= first.table;
    if let (Some(c), Some(f)) = (object_cmd(&mut cli.command), object_cmd_ref(&first.command)) {
        if c.ids.is_empty() {
            c.ids = f.ids.clone();
        }
        c.all |= f.all;
    }
}

fn object_cmd(t: &mut Top) -> Option<&mut crate::args::ObjectCmd> {
    match t {
        Top::Node(c)
        | Top::Attrib(c)
        | Top::Boot(c)
        | Top::Image(c)
        | Top::Pool(c)
        | Top::Net(c)
        | Top::Host(c)
        | Top::Cluster(c) => Some(c),
        _ => None,
    }
}

fn object_cmd_ref(t: &Top) -> Option<&crate::args::ObjectCmd> {
    match t {
        Top::Node(c)
        | Top::Attrib(c)
        | Top::Boot(c)
        | Top::Image(c)
        | Top::Pool(c)
        | Top::Net(c)
        | Top::Host(c)
        | Top::Cluster(c) => Some(c),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Action, WaitState};

    fn words(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    fn parts(s: &str) -> Vec<String> {
        split(&words(s))
            .into_iter()
            .map(|p| {
                p.iter()
                    .map(|w| w.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    #[test]
    fn then_splits_the_command_line() {
        assert_eq!(
            parts("node -i n[0-15] reboot then waitfor up then exec uptime"),
            ["node -i n[0-15] reboot", "waitfor up", "exec uptime"]
        );
        assert_eq!(parts("node ls"), ["node ls"]);
        // After `--` it is the command's.
        assert_eq!(
            parts("node -i n1 exec -- echo a then b then waitfor up"),
            ["node -i n1 exec -- echo a then b then waitfor up"]
        );
        assert_eq!(
            parts("node -i n1 reboot then exec -- echo then"),
            ["node -i n1 reboot", "exec -- echo then"]
        );
        // An option's value named `then`.
        assert_eq!(
            parts("node -i then reboot then waitfor up"),
            ["node -i then reboot", "waitfor up"]
        );
        assert_eq!(parts("node -li then ls"), ["node -li then ls"]);
        assert_eq!(parts("node reboot then"), ["node reboot", ""]);
        assert_eq!(parts("then"), ["", ""]);
    }

    #[test]
    fn later_parts_reuse_object_ids_and_flags() {
        let argv = words("wulf --url http://h:1 node -i n[0-3] reboot --json then waitfor up");
        let clis = parse(argv).unwrap_or_else(|_| panic!("parse"));
        assert_eq!(clis.len(), 2);
        let second = &clis[1];
        assert_eq!(second.url.as_deref(), Some("http://h:1"));
        assert!(second.json);
        match &second.command {
            Top::Node(c) => {
                assert_eq!(c.ids, ["n[0-3]"]);
                match &c.action {
                    Action::Waitfor(w) => assert_eq!(w.state, WaitState::Up),
                    other => panic!("{other:?}"),
                }
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn exec_takes_the_rest_as_its_command() {
        for line in [
            "wulf node -i n1 exec ls -l /tmp",
            "wulf node -i n1 exec -- ls -l /tmp",
        ] {
            let clis = parse(words(line)).unwrap_or_else(|_| panic!("parse"));
            let Top::Node(c) = &clis[0].command else {
                panic!("not a node command")
            };
            let Action::Exec(a) = &c.action else {
                panic!("not exec")
            };
            assert_eq!(a.command, ["ls", "-l", "/tmp"], "{line}");
            assert!(!clis[0].long, "{line}");
        }
        let clis = parse(words(
            "wulf node -i n1 exec --up -l uptime then exec -- echo then",
        ))
        .unwrap_or_else(|_| panic!("parse"));
        assert_eq!(clis.len(), 2);
        assert!(clis[0].long && clis[1].long);
        let Top::Node(c) = &clis[1].command else {
            panic!("not a node command")
        };
        let Action::Exec(a) = &c.action else {
            panic!("not exec")
        };
        assert_eq!(a.command, ["echo", "then"]);
        assert!(!a.up, "flags of an action are its own");
    }

    #[test]
    fn then_outside_an_object_command_is_a_word() {
        let clis =
            parse(words("wulf hostlist compress a then b")).unwrap_or_else(|_| panic!("parse"));
        assert_eq!(clis.len(), 1);
        assert!(matches!(
            parse(words("wulf node -i n1 reboot then")),
            Err(Fail::Usage(_))
        ));
    }
}
