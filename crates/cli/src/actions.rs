//! Which object takes which action: each object's `--help` lists only its own actions, and an
//! action given to another object is refused before anything is sent.
//!
//! Every object shares one `Action` enum (crates/cli/src/args.rs). The table of who takes
//! what is the first words of each action's help: `Nodes only: …`, `Cluster only: …`,
//! `Nodes and attribute groups only: …` (the phrases in [`WHO`]); an action whose help
//! starts otherwise is taken by every object but those [`EXCEPT`] names. A new action is one
//! edit: its variant, its help saying whose it is. The command line is parsed with the clap
//! command built here, in which each object's subcommand hides the actions it does not take
//! and drops the now needless `X only:` from those it does.

use std::ffi::OsString;

use clap::{Command, CommandFactory, FromArgMatches, Subcommand};
use wulf_model::Kind;

use crate::args::{Action, Cli};
use crate::fail::{usage, Fail};

/// The words an action's help starts with, and the objects they name.
const WHO: &[(&str, &[Kind])] = &[
    ("Nodes only:", &[Kind::Node]),
    (
        "Nodes and attribute groups only:",
        &[Kind::Node, Kind::Attrib],
    ),
    ("Boot configs and images only:", &[Kind::Boot, Kind::Image]),
    ("Nodes and images only:", &[Kind::Node, Kind::Image]),
    ("Images only:", &[Kind::Image]),
    ("Cluster only:", &[Kind::Cluster]),
    ("Admin accounts only:", &[Kind::Admin]),
];

/// Actions an object does not take although their help names no objects.
const EXCEPT: &[(Kind, &[&str])] = &[
    // One settings object, made with the cluster and never deleted.
    (Kind::Cluster, &["create", "delete"]),
];

/// `about` without its `X only:` words, and the objects those name (None: no such words).
fn who(about: &str) -> (Option<&'static [Kind]>, &str) {
    for (words, kinds) in WHO {
        if let Some(rest) = about.strip_prefix(words) {
            return (Some(kinds), rest.trim_start());
        }
    }
    (None, about)
}

/// The objects that take the action `sub` (one of `Action`'s subcommands).
fn objects_taking(sub: &Command) -> Vec<Kind> {
    let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
    let name = sub.get_name();
    let kinds = who(&about).0.unwrap_or(&Kind::ALL);
    kinds
        .iter()
        .copied()
        .filter(|k| {
            !EXCEPT
                .iter()
                .any(|(ek, names)| ek == k && names.contains(&name))
        })
        .collect()
}

/// Every action and the objects that take it, in `Action`'s order.
pub(crate) fn table() -> Vec<(String, Vec<Kind>)> {
    Action::augment_subcommands(Command::new("actions"))
        .get_subcommands()
        .map(|s| (s.get_name().to_string(), objects_taking(s)))
        .collect()
}

/// `text` with its `X only:` words dropped and its first letter made upper case.
fn strip_who(text: &str) -> String {
    let (found, rest) = who(text);
    if found.is_none() {
        return text.to_string();
    }
    let mut c = rest.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The clap command `wulf` parses with: each object lists only its own actions.
pub(crate) fn command() -> Command {
    let table = table();
    let mut cmd = Cli::command();
    for kind in Kind::ALL {
        cmd = cmd.mut_subcommand(kind.as_str(), |mut obj| {
            for (name, kinds) in &table {
                let own = kinds.contains(&kind);
                obj = obj.mut_subcommand(name, |a| {
                    if !own {
                        return a.hide(true);
                    }
                    let about = a.get_about().map(|s| strip_who(&s.to_string()));
                    let long = a.get_long_about().map(|s| strip_who(&s.to_string()));
                    let a = match about {
                        Some(t) => a.about(t),
                        None => a,
                    };
                    match long {
                        Some(t) => a.long_about(t),
                        None => a,
                    }
                });
            }
            obj
        });
    }
    cmd
}

/// Why `kind` does not take `action`, or None when it does.
fn refusal(table: &[(String, Vec<Kind>)], kind: Kind, action: &str) -> Option<String> {
    let (_, kinds) = table.iter().find(|(n, _)| n == action)?;
    if kinds.contains(&kind) {
        return None;
    }
    let see = format!("wulf {kind} --help lists its actions");
    Some(match kinds.as_slice() {
        [] => format!("no object takes {action}"),
        some if some.len() <= 2 => {
            let names: Vec<&str> = some.iter().map(|k| k.as_str()).collect();
            let article = if names[0].starts_with(['a', 'e', 'i', 'o', 'u']) {
                "an"
            } else {
                "a"
            };
            format!(
                "{action} is {article} {} action: {see}",
                names.join(" and ")
            )
        }
        _ => format!("{kind} has no action {action}: {see}"),
    })
}

/// Parse one command line (program name first). Clap's own errors (and `--help`) end the
/// program as usual; an action the object does not take is a usage error.
pub(crate) fn parse_from<I, T>(words: I) -> Result<Cli, Fail>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut cmd = command();
    let m = cmd
        .try_get_matches_from_mut(words)
        .unwrap_or_else(|e| e.exit());
    if let Some((obj, om)) = m.subcommand() {
        if let (Ok(kind), Some(action)) = (obj.parse::<Kind>(), om.subcommand_name()) {
            if let Some(why) = refusal(&table(), kind, action) {
                return Err(usage(why));
            }
        }
    }
    match Cli::from_arg_matches(&m) {
        Ok(cli) => Ok(cli),
        Err(e) => e.format(&mut cmd).exit(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The action names an object's `--help` lists under "Commands:".
    fn listed(kind: Kind) -> Vec<String> {
        let mut cmd = command();
        cmd.build();
        let help = cmd
            .find_subcommand_mut(kind.as_str())
            .map(|c| c.render_help().to_string())
            .unwrap_or_default();
        help.lines()
            .skip_while(|l| !l.starts_with("Commands:"))
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .filter(|l| !l.starts_with("   "))
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .filter(|n| n != "help")
            .collect()
    }

    #[test]
    fn each_object_lists_only_its_own_actions() {
        let table = table();
        for kind in Kind::ALL {
            let want: Vec<String> = table
                .iter()
                .filter(|(_, kinds)| kinds.contains(&kind))
                .map(|(n, _)| n.clone())
                .collect();
            assert_eq!(listed(kind), want, "wulf {kind} --help");
        }
        let node = listed(Kind::Node);
        for other in ["db", "hosts", "revoke", "upload"] {
            assert!(!node.iter().any(|n| n == other), "{node:?}");
        }
        for own in ["status", "exec", "set", "join", "ls"] {
            assert!(node.iter().any(|n| n == own), "{node:?}");
        }
        let cluster = listed(Kind::Cluster);
        assert!(cluster.contains(&"db".to_string()) && cluster.contains(&"hosts".to_string()));
        assert!(!cluster.contains(&"create".to_string()), "{cluster:?}");
        assert_eq!(
            listed(Kind::Admin),
            ["ls", "create", "update", "delete", "revoke"]
        );
    }

    /// An action whose help says `… only:` must use one of the phrases in WHO, or it would
    /// silently be every object's.
    #[test]
    fn every_only_phrase_is_known() {
        for s in Action::augment_subcommands(Command::new("actions")).get_subcommands() {
            let about = s.get_about().map(|a| a.to_string()).unwrap_or_default();
            let first = about.split(['.', '(']).next().unwrap_or("");
            if first.contains(" only:") {
                assert!(
                    who(&about).0.is_some(),
                    "{}: '{about}' names objects WHO does not know",
                    s.get_name()
                );
            }
        }
    }

    #[test]
    fn the_wrong_object_is_refused() {
        let t = table();
        assert_eq!(refusal(&t, Kind::Node, "status"), None);
        let why = refusal(&t, Kind::Boot, "reboot").unwrap_or_default();
        assert!(why.contains("reboot is a node action"), "{why}");
        let why = refusal(&t, Kind::Node, "db").unwrap_or_default();
        assert!(why.contains("db is a cluster action"), "{why}");
        let why = refusal(&t, Kind::Admin, "set").unwrap_or_default();
        assert!(why.contains("set is a node and attrib action"), "{why}");
        let why = refusal(&t, Kind::Node, "revoke").unwrap_or_default();
        assert!(why.contains("revoke is an admin action"), "{why}");
        let why = refusal(&t, Kind::Cluster, "delete").unwrap_or_default();
        assert!(why.contains("cluster has no action delete"), "{why}");
        assert!(matches!(
            parse_from(["wulf", "node", "-i", "n1", "revoke"]),
            Err(Fail::Usage(_))
        ));
        assert!(parse_from(["wulf", "cluster", "db"]).is_ok());
    }

    #[test]
    fn own_actions_lose_their_only_words() {
        assert_eq!(
            strip_who("Nodes only: node status as the head sees it now"),
            "Node status as the head sees it now"
        );
        assert_eq!(strip_who("List objects"), "List objects");
    }
}
