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
        polls: a.polls,
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
    if let Some(n) = a.boot_storm {
        return storm(cli, a, n, stop);
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

/// `wulf sim --boot-storm N`.
fn storm(
    cli: &Cli,
    a: &SimArgs,
    n: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Result<(), Fail> {
    if a.local_head {
        return Err(usage(
            "--boot-storm needs a running head with DHCP and TFTP on the storm's network, not --local-head",
        ));
    }
    if n == 0 {
        return Err(usage("--boot-storm must be at least 1"));
    }
    if !(a.spread >= 0.0 && a.spread.is_finite()) {
        return Err(usage(format!(
            "--spread {}: give 0 or more seconds",
            a.spread
        )));
    }
    if !(a.node_timeout > 0.0 && a.node_timeout.is_finite()) {
        return Err(usage(format!(
            "--node-timeout {}: give more than 0 seconds",
            a.node_timeout
        )));
    }
    if a.concurrency == 0 {
        return Err(usage("--concurrency must be at least 1"));
    }
    let cfg = conn::load_config().map_err(|e| usage(format!("{e:#}")))?;
    let (url, token) = conn::resolve(cli.url.clone(), cli.token.clone(), &cfg)
        .map_err(|e| usage(format!("{e:#}")))?;
    let tls = conn::tls_for(&url, cli.ca.as_deref(), cli.insecure, &cfg)?;
    let c = conn::client_with(&url, token, tls.as_ref(), Client::builder());
    let opts = sim::storm::StormOptions {
        nodes: n,
        spread: a.spread,
        node_timeout: a.node_timeout,
        concurrency: a.concurrency,
        iface: a.iface.clone(),
        boot_config: a.boot_config.clone(),
        tls: tls.as_ref().map(|t| t.config.clone()),
    };
    let o = sim::storm::run(&c, opts, stop).map_err(Fail::Request)?;
    if cli.json {
        crate::output::print_json(&o);
    } else {
        sim::storm::print(&o);
    }
    if o.failed > 0 {
        return Err(Fail::Request(anyhow::anyhow!(
            "{} of {} nodes failed to boot",
            o.failed,
            o.nodes
        )));
    }
    Ok(())
}
