//! `wulf sim`: its options checked, a local head started if asked, then the simulator.

use wulf_api::Client;

use crate::args::{Cli, SimArgs};
use crate::conn;
use crate::fail::{usage, Fail};
use crate::{sim, status};

/// `wulf sim`.
pub(crate) fn run(cli: &Cli, a: &SimArgs) -> Result<(), Fail> {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    let stop = Arc::new(AtomicBool::new(false));
    // SIGHUP too: the head of --local-head is in a process group of its own, so it is
    // stopped by this process (after the nodes' shutdown reports), not by the terminal.
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
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
    let mut opts = sim::SimOptions {
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
        tls: None,
    };
    if a.nodes == 0 {
        return Err(usage("--nodes must be at least 1"));
    }
    if !a.local_head {
        let cfg = conn::load_config().map_err(|e| usage(format!("{e:#}")))?;
        let (url, token) = conn::resolve(
            cli.url.clone().or_else(|| heads.first().cloned()),
            cli.token.clone(),
            &cfg,
        )
        .map_err(|e| usage(format!("{e:#}")))?;
        // The simulated nodes talk TLS to every head with the CLI's CA (or --insecure).
        let probe = heads
            .iter()
            .chain([&url])
            .find(|h| h.starts_with("https://"))
            .unwrap_or(&url);
        let tls = conn::tls_for(probe, cli.ca.as_deref(), cli.insecure, &cfg)?;
        opts.tls = tls.as_ref().map(|t| t.config.clone());
        let c = conn::client_with(&url, token, tls.as_ref(), Client::builder());
        return sim::run(&c, opts, stop).map(|_| ()).map_err(Fail::Request);
    }
    if !heads.is_empty() {
        return Err(usage(
            "--heads and --local-head exclude each other: --local-head starts one head",
        ));
    }
    let head = sim::LocalHead::start().map_err(Fail::Request)?;
    opts.tls = head.tls.clone();
    let c = match &head.tls {
        Some(tls) => Client::with_tls(&head.url, Some(head.token.clone()), tls.clone()),
        None => Client::new(&head.url, Some(head.token.clone())),
    };
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
