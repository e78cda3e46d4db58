//! Cluster-only verbs: `hosts` and `db`.

use wulf_model::Kind;

use crate::args::Cli;
use crate::conn::client;
use crate::db;
use crate::fail::{usage, Fail};

/// `wulf cluster hosts --format hosts|ethers`: the head's text, as is.
pub(crate) fn hosts(cli: &Cli, kind: Kind, format: &str) -> Result<(), Fail> {
    if kind != Kind::Cluster {
        return Err(usage("hosts is a cluster action: wulf cluster hosts"));
    }
    if format != "hosts" && format != "ethers" {
        return Err(usage(format!(
            "unknown format '{format}': use --format hosts or --format ethers"
        )));
    }
    let (_, mut reader) = client(cli)?.download(&format!("/cluster/hosts?format={format}"))?;
    std::io::copy(&mut reader, &mut std::io::stdout().lock())
        .map_err(|e| Fail::Request(anyhow::anyhow!("cannot read the head's answer: {e}")))?;
    Ok(())
}

/// `wulf cluster db [--compact|--defrag|--disarm|--recover]`.
pub(crate) fn db(cli: &Cli, kind: Kind, asked: [bool; 4]) -> Result<(), Fail> {
    if kind != Kind::Cluster {
        return Err(usage("db is a cluster action: wulf cluster db"));
    }
    let c = client(cli)?;
    let actions = ["compact", "defrag", "disarm", "recover"];
    let chosen: Vec<&str> = actions
        .iter()
        .zip(asked)
        .filter(|(_, on)| *on)
        .map(|(a, _)| *a)
        .collect();
    if chosen.is_empty() {
        return db::run(&c, None, cli.json).map_err(Fail::from);
    }
    for a in chosen {
        db::run(&c, Some(a), cli.json)?;
    }
    Ok(())
}
