//! `wulf sim`: its options checked, a local head started if asked, then the simulator.

use wulf_api::Client;

use crate::args::{Cli, SimArgs};
use crate::conn::{self, client};
use crate::fail::{usage, Fail};
use crate::{sim, status};

/// `wulf sim`.
pub(crate) fn run(cli: &Cli, a: &SimArgs) -> Result<(), Fail> {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| Fail::Request(anyhow::anyhow!("cannot catch signals: {e}")))?;
    }
    let mut heads: Vec<String> = Vec::new();
    for h in a.heads.iter().filter(|h| !h.trim().is_empty()) {
        let h = sim::normalize_head(h).map_err(usage)?;
        if !heads.contains(&h) {
            heads.push(h);
        }
    }
    let opts = sim::SimOptions {
        nodes: a.nodes,
        duration: a.duration,
        boot_secs: a.boot_secs,
        connections: a.connections,
        crash: a.crash,
        stats_every: a.stats,
        create: !a.no_create,
        heads: heads.clone(),
        ignore_soft: match &a.ignore_soft {
            Some(h) => wulf_model::hostlist::expand(h)
                .map_err(|e| usage(format!("--ignore-soft {h}: {e}")))?
                .into_iter()
                .collect(),
            None => Default::default(),
        },
    };
    if a.nodes == 0 {
        return Err(usage("--nodes must be at least 1"));
    }
    if !a.local_head {
        let c = match (&cli.url, heads.first()) {
            (None, Some(first)) => {
                let cfg = conn::load_config().map_err(|e| usage(format!("{e:#}")))?;
                let (url, token) = conn::resolve(Some(first.clone()), cli.token.clone(), &cfg)
                    .map_err(|e| usage(format!("{e:#}")))?;
                Client::new(&url, token)
            }
            _ => client(cli)?,
        };
        return sim::run(&c, opts, stop).map(|_| ()).map_err(Fail::Request);
    }
    if !heads.is_empty() {
        return Err(usage(
            "--heads and --local-head exclude each other: --local-head starts one head",
        ));
    }
    let head = sim::LocalHead::start().map_err(Fail::Request)?;
    let c = Client::new(&head.url, Some(head.token.clone()));
    let watcher = {
        let c = c.clone();
        let stop = stop.clone();
        let n = a.nodes;
        std::thread::spawn(move || sim::show_when_up(&c, n, &stop))
    };
    let result = sim::run(&c, opts, stop.clone());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = watcher.join();
    if result.is_ok() {
        println!();
        if let Ok(s) = status::summary(&c, None, None) {
            status::print_summary(&s);
        }
    }
    drop(head);
    result.map(|_| ()).map_err(Fail::Request)
}
