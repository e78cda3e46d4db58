//! `wulf`: the cluster administrator's command line, in ClusterWare's style:
//! `wulf <object> [-i IDS]... [--all] <action> [key=value | key=@file]...`

mod conn;
mod db;
mod image;
mod initramfs;
mod output;
mod sim;
mod status;

use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde_json::Value;
use wulf_api::{client::encode, ApiError, Client, Deleted, NodeAttributes, UpdateRequest};
use wulf_model::{field_type, field_value, has_attributes, hostlist, FieldType, Kind};

/// wulf: manage a Beowulf-style cluster from its head node.
///
/// Objects: node, attrib (attribute groups), boot (boot configs), image, pool (naming pools),
/// net (networks), host (non-cluster devices), cluster (settings).
///
/// Name objects with -i/--ids: names, UIDs, UID prefixes (5+ characters); nodes also by MAC,
/// IP, index, hostlist ranges like n[0-15,20] and %group.
///
/// Exit codes: 0 ok, 1 the request failed, 2 bad usage.
#[derive(Parser, Debug)]
#[command(name = "wulf", version, propagate_version = true)]
struct Cli {
    /// Head URL [default: $WULF_URL, the config file, the local head, http://127.0.0.1:8740]
    #[arg(long, env = "WULF_URL", global = true)]
    url: Option<String>,
    /// API token [default: $WULF_TOKEN, the config file, the local head's admin.token]
    #[arg(long, env = "WULF_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// Print JSON for scripts instead of tables
    #[arg(long, global = true)]
    json: bool,
    /// Long listing: main fields, and for nodes their effective attributes with the layer
    /// each came from (default group, a group, or the node)
    #[arg(short = 'l', long = "long", global = true)]
    long: bool,
    /// Longest listing: every field, and effective attributes with their layers
    #[arg(short = 'L', long = "full", global = true)]
    full: bool,
    /// One table row per object
    #[arg(short = 't', long = "table", global = true)]
    table: bool,
    #[command(subcommand)]
    command: Top,
}

#[derive(Subcommand, Debug)]
enum Top {
    /// Compute nodes
    Node(ObjectCmd),
    /// Attribute groups
    Attrib(ObjectCmd),
    /// Boot configs (kernel, initramfs, cmdline, image)
    Boot(ObjectCmd),
    /// Root filesystem images
    Image(ObjectCmd),
    /// Naming pools (pattern n{} or gpu{:03d} from a first index)
    Pool(ObjectCmd),
    /// Networks (addresses nodes get by index)
    Net(ObjectCmd),
    /// Non-cluster devices on the private network (switches, PDUs, storage)
    Host(ObjectCmd),
    /// Cluster settings
    Cluster(ObjectCmd),
    /// Expand or compress hostlists like n[0-15,20]
    Hostlist {
        #[command(subcommand)]
        action: HostlistCmd,
    },
    /// Show the head's version, store backend and revision
    Info,
    /// The cluster's head nodes: which are up, which are down; remove down ones
    Head(HeadCmd),
    /// Build the initramfs nodes boot into (busybox, NIC drivers, wulf-agent, an init that
    /// fetches the node's image into RAM)
    Initramfs {
        #[command(subcommand)]
        action: initramfs::InitramfsCmd,
    },
    /// Run simulated nodes (type simulated) that boot and report status like real ones
    ///
    /// Each simulated node fetches its boot script from the head (the head sees it boot),
    /// takes the node credential from it, and reports status every _status_secs with that
    /// credential, as wulf-agent does. Missing simulated nodes are created (MACs
    /// 02:57:xx:xx:xx:xx). When the simulator stops (Ctrl-C, SIGTERM or --duration) its nodes
    /// report a clean shutdown, or with --crash simply go silent.
    ///
    /// With --heads, node i boots from and reports to head i mod H. As with wulf-agent, a node
    /// whose head cannot take a report (no connection, a timeout, HTTP 5xx) sends it to another
    /// head at once and stays there, keeping its identity; every answer names the heads that
    /// are up, and the nodes fail over to those too. Failovers are counted in the stats.
    Sim(SimArgs),
}

#[derive(Args, Debug)]
struct HeadCmd {
    /// Which heads, by name (repeatable; comma-separated)
    #[arg(short = 'i', long = "ids", global = true, value_name = "NAMES")]
    ids: Vec<String>,
    #[command(subcommand)]
    action: HeadAction,
}

#[derive(Subcommand, Debug)]
enum HeadAction {
    /// List heads: name, up or down, API URLs, version, when it started
    Ls,
    /// Remove down heads (a head that is up refuses: stop it first)
    Delete,
}

#[derive(Args, Debug)]
struct SimArgs {
    /// How many simulated nodes to run
    #[arg(long, short = 'n', default_value_t = 8)]
    nodes: usize,
    /// Stop after this many seconds (default: run until Ctrl-C)
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Simulated boot time: each node first reports after a random delay up to this
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    boot_secs: f64,
    /// Heads to spread the nodes over: base URLs, comma-separated or repeated (default: the
    /// head of --url). Node i reports to head i mod H. Missing nodes are created through
    /// --url, else the first of these
    #[arg(long, value_name = "URLS", value_delimiter = ',')]
    heads: Vec<String>,
    /// Parallel reporting threads; each keeps one connection to each head it reports to
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Stop without clean-shutdown reports (the head sees the nodes stop sending status)
    #[arg(long)]
    crash: bool,
    /// Print reports/s and latency every this many seconds (0: only at the end)
    #[arg(long, value_name = "SECS", default_value_t = 0.0)]
    stats: f64,
    /// Do not create missing simulated nodes
    #[arg(long)]
    no_create: bool,
    /// Start a head (wulfd beside this wulf binary, on embedded defaults) for the simulation
    /// and stop it afterwards; print the node status once the nodes are up
    #[arg(long)]
    local_head: bool,
}

#[derive(Subcommand, Debug)]
enum HostlistCmd {
    /// Print each name of a hostlist, one per line
    Expand { hostlist: Vec<String> },
    /// Print names (arguments, or stdin lines) as the shortest hostlist
    Compress { names: Vec<String> },
}

#[derive(Args, Debug)]
struct ObjectCmd {
    /// Which objects (repeatable; comma-separated; hostlists and %group for nodes)
    #[arg(short = 'i', long = "ids", global = true, value_name = "IDS")]
    ids: Vec<String>,
    /// Every object of this kind (needed to update or delete without --ids)
    #[arg(short = 'a', long, global = true)]
    all: bool,
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand, Debug)]
enum Action {
    /// List objects (-l table, -L everything, --json)
    Ls {
        /// Names of objects to list (same as --ids)
        names: Vec<String>,
    },
    /// Create objects: key=value fields, key=@file to upload a file field
    Create {
        /// Fields: name=… and the kind's other fields; FILE fields take @PATH
        #[arg(value_name = "KEY=VALUE")]
        pairs: Vec<String>,
        /// Nodes: create this many (index=N starts them at N)
        #[arg(long)]
        count: Option<u32>,
        /// Nodes: one node per MAC in this file (one MAC a line, '#' comments; '-' = stdin)
        #[arg(long, value_name = "FILE")]
        macs: Option<PathBuf>,
        /// Images: pack this root filesystem directory (tar.gz, modes, owners, links and
        /// device nodes kept) and upload it as the content; the image is created if absent
        #[arg(long, value_name = "DIR", conflicts_with = "from_tar")]
        from_dir: Option<PathBuf>,
        /// Images: upload this .tar or .tar.gz root filesystem as the content (a .tar is
        /// gzip'd first); the image is created if absent
        #[arg(long, value_name = "FILE")]
        from_tar: Option<PathBuf>,
    },
    /// Change fields of the selected objects
    Update {
        #[arg(value_name = "KEY=VALUE", required = true)]
        pairs: Vec<String>,
    },
    /// Delete the selected objects
    Delete,
    /// Set attributes (nodes and attribute groups): name=value or name=@file
    Set {
        #[arg(value_name = "NAME=VALUE", required = true)]
        pairs: Vec<String>,
    },
    /// Remove attributes
    Clear {
        #[arg(value_name = "NAME", required = true)]
        names: Vec<String>,
    },
    /// Add nodes to attribute groups (appended, in order)
    Join {
        #[arg(value_name = "GROUP", required = true)]
        groups: Vec<String>,
    },
    /// Remove nodes from attribute groups
    Leave {
        #[arg(value_name = "GROUP", required = true)]
        groups: Vec<String>,
    },
    /// Upload a file field (boot: kernel, initramfs; image: content)
    Upload { field: String, file: PathBuf },
    /// Download a file field to a file (or stdout with -o -)
    Download {
        field: String,
        #[arg(short = 'o', long, value_name = "FILE")]
        output: PathBuf,
    },
    /// Nodes only: MAC addresses that asked the head's DHCP server for an address but belong
    /// to no node (while the cluster does not accept new nodes). Create nodes from them with
    /// `wulf node unknown --json | jq -r '.[].mac' | wulf node create --macs -`
    Unknown,
    /// Cluster only: print /etc/hosts lines (heads, nodes, hosts) or /etc/ethers lines
    Hosts {
        /// hosts or ethers
        #[arg(long, default_value = "hosts")]
        format: String,
    },
    /// Cluster only: the database's size and health, and maintenance on demand
    ///
    /// One row per store member (each etcd member, or the embedded file): size, bytes in
    /// use, fill of the space quota, leader, reachability; raised alarms (NOSPACE: "database
    /// space exceeded", etcd refuses writes) and what the heads' maintenance last did.
    /// With an option, that maintenance runs first.
    Db {
        /// Compact all history up to the current revision
        #[arg(long)]
        compact: bool,
        /// Defragment every reachable etcd member, one at a time, the leader last
        #[arg(long)]
        defrag: bool,
        /// Clear raised alarms (after making room)
        #[arg(long)]
        disarm: bool,
        /// Recover from "database space exceeded": compact, defragment, disarm
        #[arg(long, conflicts_with_all = ["compact", "defrag", "disarm"])]
        recover: bool,
    },
    /// Nodes only: node status as the head sees it now
    ///
    /// Without options: one row per state (up, booting, down with its reason, new) listing
    /// the nodes as hostlist ranges, pasteable into --ids. -l: one row per node (state, last
    /// change, uptime, load, RAM, busy). -L: everything each node reported (hostname,
    /// kernel, cmdline, modules, SELinux, hardware, agent cost). --json: the same as JSON.
    Status {
        /// A live full-screen view that updates as reports arrive (q quits); without a
        /// terminal, prints the summary again each time it changes
        #[arg(long, short = 'r')]
        refresh: bool,
        /// With --refresh: stop after this many seconds
        #[arg(long, value_name = "SECS", requires = "refresh")]
        refresh_for: Option<f64>,
    },
}

/// A failure and its exit code.
enum Fail {
    Usage(String),
    Request(anyhow::Error),
}

impl From<anyhow::Error> for Fail {
    fn from(e: anyhow::Error) -> Fail {
        Fail::Request(e)
    }
}

impl From<ApiError> for Fail {
    fn from(e: ApiError) -> Fail {
        Fail::Request(explain(e))
    }
}

fn explain(e: ApiError) -> anyhow::Error {
    match &e {
        ApiError::Status { status: 401, .. } => anyhow::anyhow!(
            "{e}. Give the token with --token or WULF_TOKEN (the head writes it to DATA_DIR/admin.token)"
        ),
        ApiError::Transport { .. } => anyhow::anyhow!("{e}. Is wulfd running? Point at it with --url or WULF_URL"),
        _ => anyhow::anyhow!(e),
    }
}

fn usage(msg: impl Into<String>) -> Fail {
    Fail::Usage(msg.into())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail::Usage(m)) => {
            eprintln!("wulf: {m}");
            ExitCode::from(2)
        }
        Err(Fail::Request(e)) => {
            eprintln!("wulf: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn client(cli: &Cli) -> Result<Client, Fail> {
    let cfg = conn::load_config().map_err(|e| usage(format!("{e:#}")))?;
    let (url, token) = conn::resolve(cli.url.clone(), cli.token.clone(), &cfg)
        .map_err(|e| usage(format!("{e:#}")))?;
    Ok(Client::new(&url, token))
}

fn run(cli: Cli) -> Result<(), Fail> {
    match &cli.command {
        Top::Hostlist { action } => hostlist_cmd(action),
        Top::Sim(a) => sim_cmd(&cli, a),
        Top::Initramfs { action } => initramfs::run(&cli, action),
        Top::Head(h) => head_cmd(&cli, h),
        Top::Info => {
            let info: wulf_api::Info = client(&cli)?.get("/info")?;
            if cli.json {
                output::print_json(&info);
            } else {
                println!(
                    "head:     {}\nversion:  {}\nstore:    {}\nrevision: {}",
                    info.head, info.version, info.store, info.revision
                );
            }
            Ok(())
        }
        Top::Node(c) => object(&cli, Kind::Node, c),
        Top::Attrib(c) => object(&cli, Kind::Attrib, c),
        Top::Boot(c) => object(&cli, Kind::Boot, c),
        Top::Image(c) => object(&cli, Kind::Image, c),
        Top::Pool(c) => object(&cli, Kind::Pool, c),
        Top::Net(c) => object(&cli, Kind::Net, c),
        Top::Host(c) => object(&cli, Kind::Host, c),
        Top::Cluster(c) => object(&cli, Kind::Cluster, c),
    }
}

fn hostlist_cmd(action: &HostlistCmd) -> Result<(), Fail> {
    let mut out = std::io::stdout().lock();
    match action {
        HostlistCmd::Expand { hostlist: h } => {
            for expr in h {
                let names = hostlist::expand(expr).map_err(|e| usage(e.to_string()))?;
                for n in names {
                    let _ = writeln!(out, "{n}");
                }
            }
        }
        HostlistCmd::Compress { names } => {
            let names: Vec<String> = if names.is_empty() {
                std::io::stdin()
                    .lock()
                    .lines()
                    .map_while(Result::ok)
                    .map(|l| l.trim().to_string())
                    .filter(|l| !l.is_empty())
                    .collect()
            } else {
                names.clone()
            };
            let _ = writeln!(out, "{}", hostlist::compress(&names));
        }
    }
    Ok(())
}

/// The `ids` query for the selection, or None for "not given".
fn ids_query(cmd: &ObjectCmd, extra: &[String]) -> Option<String> {
    let all: Vec<&str> = cmd
        .ids
        .iter()
        .chain(extra)
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect();
    (!all.is_empty()).then(|| all.join(","))
}

/// `?ids=…` or `?all=true`, requiring one of them for changes to many objects.
fn target_query(kind: Kind, cmd: &ObjectCmd, action: &str) -> Result<String, Fail> {
    match ids_query(cmd, &[]) {
        Some(ids) => Ok(format!("?ids={}", encode(&ids))),
        None if cmd.all || kind == Kind::Cluster => Ok("?all=true".to_string()),
        None => Err(usage(format!(
            "{action} needs --ids (-i) to say which {}s, or --all",
            kind.title()
        ))),
    }
}

/// Split `key=value`; `key=@file` reads the file (for file fields, the caller uploads it).
fn split_pair(p: &str) -> Result<(&str, &str), Fail> {
    p.split_once('=')
        .filter(|(k, _)| !k.trim().is_empty())
        .map(|(k, v)| (k.trim(), v))
        .ok_or_else(|| usage(format!("'{p}' is not key=value")))
}

fn read_value(v: &str) -> Result<String, Fail> {
    match v.strip_prefix('@') {
        Some(path) => {
            let s = std::fs::read_to_string(path)
                .map_err(|e| usage(format!("cannot read {path}: {e}")))?;
            Ok(s.strip_suffix('\n').unwrap_or(&s).to_string())
        }
        None => Ok(v.to_string()),
    }
}

/// Fields for create/update, and file fields to upload afterwards.
type Fields = (serde_json::Map<String, Value>, Vec<(String, PathBuf)>);

fn parse_fields(kind: Kind, pairs: &[String]) -> Result<Fields, Fail> {
    let mut fields = serde_json::Map::new();
    let mut files = Vec::new();
    for p in pairs {
        let (k, v) = split_pair(p)?;
        if field_type(kind, k) == Some(FieldType::File) {
            let path = v
                .strip_prefix('@')
                .ok_or_else(|| usage(format!("{k} is a file: give {k}=@PATH")))?;
            if !std::path::Path::new(path).is_file() {
                return Err(usage(format!("{k}: {path} is not a readable file")));
            }
            files.push((k.to_string(), PathBuf::from(path)));
            continue;
        }
        if k.starts_with('_') && has_attributes(kind) {
            return Err(usage(format!(
                "'{k}' is an attribute: use 'wulf {kind} set {k}=…'"
            )));
        }
        let value = field_value(kind, k, &read_value(v)?).map_err(|e| usage(e.to_string()))?;
        fields.insert(k.to_string(), value);
    }
    Ok((fields, files))
}

fn object(cli: &Cli, kind: Kind, cmd: &ObjectCmd) -> Result<(), Fail> {
    match &cmd.action {
        Action::Ls { names } => ls(cli, kind, cmd, names),
        Action::Create {
            from_dir: None,
            from_tar: None,
            pairs,
            count,
            macs,
        } => create(cli, kind, pairs, *count, macs.as_deref()),
        Action::Create {
            pairs,
            from_dir,
            from_tar,
            ..
        } => image::create(cli, kind, pairs, from_dir.as_deref(), from_tar.as_deref()),
        Action::Update { pairs } => {
            let (fields, files) = parse_fields(kind, pairs)?;
            let q = target_query(kind, cmd, "update")?;
            let c = client(cli)?;
            let mut objs = Vec::new();
            if !fields.is_empty() {
                let req = UpdateRequest {
                    fields,
                    ..Default::default()
                };
                objs = c.send("PATCH", &format!("/{kind}{q}{}", brief(cli)), &req)?;
            }
            if !files.is_empty() {
                let ids = ids_query(cmd, &[])
                    .ok_or_else(|| usage("uploading a file needs --ids naming one object"))?;
                for (field, path) in &files {
                    objs = vec![upload(&c, kind, &ids, field, path)?];
                }
            }
            report(cli, "Updated", kind, &objs);
            Ok(())
        }
        Action::Delete => {
            let q = target_query(kind, cmd, "delete")?;
            let d: Deleted = client(cli)?.delete(&format!("/{kind}{q}"))?;
            if cli.json {
                output::print_json(&d);
            } else {
                println!("Deleted {} {}", kind.title(), list_names(kind, &d.deleted));
            }
            Ok(())
        }
        Action::Set { pairs } => {
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
        Action::Clear { names } => {
            attrs_kind(kind)?;
            change(
                cli,
                kind,
                cmd,
                "clear",
                UpdateRequest {
                    clear_attributes: names.clone(),
                    ..Default::default()
                },
            )
        }
        Action::Join { groups } => {
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
        Action::Leave { groups } => {
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
        Action::Upload { field, file } => {
            if field_type(kind, field) != Some(FieldType::File) {
                return Err(usage(format!(
                    "{} has no file field '{field}' (boot: kernel, initramfs; image: content)",
                    kind.title()
                )));
            }
            let ids =
                ids_query(cmd, &[]).ok_or_else(|| usage("upload needs --ids naming one object"))?;
            let obj = upload(&client(cli)?, kind, &ids, field, file)?;
            report(cli, "Updated", kind, &[obj]);
            Ok(())
        }
        Action::Download { field, output } => {
            let ids = ids_query(cmd, &[])
                .ok_or_else(|| usage("download needs --ids naming one object"))?;
            download(&client(cli)?, kind, &ids, field, output)
        }
        Action::Hosts { format } => cluster_hosts(cli, kind, format),
        Action::Db {
            compact,
            defrag,
            disarm,
            recover,
        } => cluster_db(cli, kind, [*compact, *defrag, *disarm, *recover]),
        Action::Unknown => unknown_macs(cli, kind),
        Action::Status {
            refresh,
            refresh_for,
        } => node_status(cli, kind, cmd, *refresh, *refresh_for),
    }
}

/// `wulf node status`.
fn node_status(
    cli: &Cli,
    kind: Kind,
    cmd: &ObjectCmd,
    refresh: bool,
    refresh_for: Option<f64>,
) -> Result<(), Fail> {
    if kind != Kind::Node {
        return Err(usage("status is a node action: wulf node status"));
    }
    let c = client(cli)?;
    let ids = ids_query(cmd, &[]);
    let ids = ids.as_deref();
    if refresh {
        let until =
            refresh_for.map(|s| std::time::Instant::now() + std::time::Duration::from_secs_f64(s));
        return status::refresh_tui(&c, ids, until).map_err(Fail::Request);
    }
    if cli.json {
        output::print_json(&status::nodes(&c, ids, 2)?);
    } else if cli.full {
        status::print_full(&status::nodes(&c, ids, 2)?);
    } else if cli.long || cli.table {
        status::print_long(&status::nodes(&c, ids, 1)?);
    } else {
        status::print_summary(&status::summary(&c, ids, None)?);
    }
    Ok(())
}

/// `wulf head`.
fn head_cmd(cli: &Cli, h: &HeadCmd) -> Result<(), Fail> {
    let c = client(cli)?;
    let names = split_list(&h.ids);
    match h.action {
        HeadAction::Ls => {
            let mut heads: Vec<Value> = c.get("/head")?;
            if !names.is_empty() {
                heads.retain(|v| {
                    v.get("name")
                        .and_then(Value::as_str)
                        .is_some_and(|n| names.iter().any(|x| x == n))
                });
            }
            if cli.json {
                output::print_json(&heads);
                return Ok(());
            }
            let now = status::now();
            let mut t = comfy_table::Table::new();
            t.load_preset(comfy_table::presets::NOTHING)
                .set_header(["HEAD", "STATE", "API", "VERSION", "STARTED"]);
            for v in &heads {
                let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                let urls: Vec<&str> = v
                    .get("urls")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let started = v
                    .get("started")
                    .and_then(Value::as_f64)
                    .map(|t| status::ago(now - t))
                    .unwrap_or_default();
                t.add_row([s("name"), s("state"), urls.join(" "), s("version"), started]);
            }
            println!("{t}");
            Ok(())
        }
        HeadAction::Delete => {
            if names.is_empty() {
                return Err(usage("say which heads to remove: wulf head -i NAME delete"));
            }
            let d: Deleted = c.delete(&format!("/head?ids={}", encode(&names.join(","))))?;
            println!("Deleted head {}", d.deleted.join(", "));
            Ok(())
        }
    }
}

/// `wulf sim`.
fn sim_cmd(cli: &Cli, a: &SimArgs) -> Result<(), Fail> {
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

/// `wulf node unknown`: MACs the head's DHCP server saw that belong to no node.
fn unknown_macs(cli: &Cli, kind: Kind) -> Result<(), Fail> {
    if kind != Kind::Node {
        return Err(usage("unknown is a node action: wulf node unknown"));
    }
    let list: Vec<Value> = client(cli)?.get("/node/unknown")?;
    if cli.json {
        output::print_json(&list);
        return Ok(());
    }
    if list.is_empty() {
        println!("No unknown MAC addresses have asked for an address.");
        return Ok(());
    }
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING)
        .set_content_arrangement(comfy_table::ContentArrangement::Disabled)
        .set_header(["MAC", "INTERFACE", "FIRST SEEN", "LAST SEEN", "COUNT"]);
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let time = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_f64)
            .map(utc)
            .unwrap_or_default()
    };
    for u in &list {
        t.add_row([
            text(u, "mac"),
            text(u, "interface"),
            time(u, "first_seen"),
            time(u, "last_seen"),
            u.get("count")
                .and_then(Value::as_u64)
                .unwrap_or(0)
                .to_string(),
        ]);
    }
    println!("{t}");
    Ok(())
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` UTC.
fn utc(secs: f64) -> String {
    let s = secs.max(0.0) as i64;
    let (days, rem) = (s.div_euclid(86_400), s.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `wulf cluster hosts --format hosts|ethers`: the head's text, as is.
fn cluster_hosts(cli: &Cli, kind: Kind, format: &str) -> Result<(), Fail> {
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
fn cluster_db(cli: &Cli, kind: Kind, asked: [bool; 4]) -> Result<(), Fail> {
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

fn split_list(v: &[String]) -> Vec<String> {
    v.iter()
        .flat_map(|s| s.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
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
    let q = target_query(kind, cmd, action)?;
    let objs: Vec<Value> =
        client(cli)?.send("PATCH", &format!("/{kind}{q}{}", brief(cli)), &req)?;
    report(cli, "Updated", kind, &objs);
    Ok(())
}

/// Without --json only names are printed, so ask the head for just those.
fn brief(cli: &Cli) -> &'static str {
    if cli.json {
        "&"
    } else {
        "&fields=uid,name"
    }
}

fn names_of(objs: &[Value]) -> Vec<String> {
    objs.iter()
        .filter_map(|o| o.get("name").and_then(Value::as_str))
        .map(String::from)
        .collect()
}

fn list_names(kind: Kind, names: &[String]) -> String {
    if names.is_empty() {
        "nothing".to_string()
    } else if kind == Kind::Node {
        hostlist::compress(names)
    } else {
        names.join(", ")
    }
}

fn report(cli: &Cli, verb: &str, kind: Kind, objs: &[Value]) {
    if cli.json {
        output::print_json(&objs);
    } else {
        println!(
            "{verb} {} {}",
            kind.title(),
            list_names(kind, &names_of(objs))
        );
    }
}

fn read_macs(path: &std::path::Path) -> Result<Vec<String>, Fail> {
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| usage(format!("cannot read stdin: {e}")))?;
    } else {
        text = std::fs::read_to_string(path)
            .map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
    }
    let mut macs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mac: wulf_model::MacAddr = line
            .parse()
            .map_err(|e| usage(format!("{}:{}: {e}", path.display(), n + 1)))?;
        macs.push(mac.to_string());
    }
    if macs.is_empty() {
        return Err(usage(format!("{} holds no MAC addresses", path.display())));
    }
    Ok(macs)
}

fn create(
    cli: &Cli,
    kind: Kind,
    pairs: &[String],
    count: Option<u32>,
    macs: Option<&std::path::Path>,
) -> Result<(), Fail> {
    if (count.is_some() || macs.is_some()) && kind != Kind::Node {
        return Err(usage("--count and --macs create nodes only"));
    }
    let (fields, files) = parse_fields(kind, pairs)?;
    let macs = macs.map(read_macs).transpose()?;
    let n = match (&macs, count) {
        (Some(m), None) => m.len(),
        (Some(m), Some(c)) if c as usize == m.len() => m.len(),
        (Some(m), Some(c)) => {
            return Err(usage(format!(
                "--count {c} but the MAC file lists {}",
                m.len()
            )))
        }
        (None, Some(0)) => return Err(usage("--count must be at least 1")),
        (None, Some(c)) => c as usize,
        (None, None) => 1,
    };
    if n > 1 {
        for unique in ["name", "ip", "mac", "uid"] {
            if fields.contains_key(unique) {
                return Err(usage(format!(
                    "{unique}= cannot be given to {n} nodes at once"
                )));
            }
        }
        if !files.is_empty() {
            return Err(usage("files can be uploaded to one object at a time"));
        }
    }
    let first_index = fields.get("index").and_then(Value::as_u64);
    let docs: Vec<Value> = (0..n)
        .map(|i| {
            let mut doc = fields.clone();
            if let (Some(first), true) = (first_index, n > 1) {
                doc.insert("index".into(), Value::from(first + i as u64));
            }
            if let Some(m) = &macs {
                doc.insert("mac".into(), Value::String(m[i].clone()));
            }
            Value::Object(doc)
        })
        .collect();
    let c = client(cli)?;
    let body = if docs.len() == 1 {
        docs.into_iter().next().unwrap_or(Value::Null)
    } else {
        Value::Array(docs)
    };
    let mut objs: Vec<Value> = c.send("POST", &format!("/{kind}?{}", &brief(cli)[1..]), &body)?;
    if let [obj] = objs.as_mut_slice() {
        let uid = obj
            .get("uid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        for (field, path) in &files {
            *obj = upload(&c, kind, &uid, field, path)?;
        }
    }
    report(cli, "Created", kind, &objs);
    Ok(())
}

fn upload(
    c: &Client,
    kind: Kind,
    id: &str,
    field: &str,
    path: &std::path::Path,
) -> Result<Value, Fail> {
    let file = std::fs::File::open(path)
        .map_err(|e| usage(format!("cannot open {}: {e}", path.display())))?;
    let len = file
        .metadata()
        .map(|m| m.len())
        .map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
    // Check first, so a refusal is reported before the whole file is sent (the head answers a
    // refused upload without reading it, which a sender sees as a broken connection).
    let target: Vec<Value> = c.get(&format!("/{kind}?ids={}&fields=name,frozen", encode(id)))?;
    match target.as_slice() {
        [one] if one.get("frozen").and_then(Value::as_bool) == Some(true) => {
            let name = one.get("name").and_then(Value::as_str).unwrap_or(id);
            return Err(Fail::Request(anyhow::anyhow!(
                "{} '{name}' is frozen; set frozen=false first",
                kind.title()
            )));
        }
        [_] => {}
        many => {
            return Err(usage(format!(
                "'{id}' names {} objects; name one",
                many.len()
            )))
        }
    }
    let filename = path
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_default();
    let bar = output::bytes_bar(len, &format!("{field} {filename}"));
    let reader = bar.wrap_read(file);
    let objs: Vec<Value> = c.upload(
        &format!(
            "/{kind}/{}/files/{field}?filename={}",
            encode(id),
            encode(&filename)
        ),
        reader,
        len,
    )?;
    bar.finish_and_clear();
    objs.into_iter()
        .next()
        .ok_or_else(|| Fail::Request(anyhow::anyhow!("the head returned no object")))
}

fn download(
    c: &Client,
    kind: Kind,
    id: &str,
    field: &str,
    out: &std::path::Path,
) -> Result<(), Fail> {
    let (len, reader) = c.download(&format!("/{kind}/{}/files/{field}", encode(id)))?;
    if out.as_os_str() == "-" {
        let mut r = reader;
        std::io::copy(&mut r, &mut std::io::stdout().lock())
            .map_err(|e| Fail::Request(anyhow::anyhow!("download failed: {e}")))?;
        return Ok(());
    }
    let tmp = out.with_extension("part");
    let mut f = std::fs::File::create(&tmp)
        .map_err(|e| usage(format!("cannot create {}: {e}", tmp.display())))?;
    let bar = output::bytes_bar(len.unwrap_or(0), &format!("{field} → {}", out.display()));
    let mut r = bar.wrap_read(reader);
    let copied = std::io::copy(&mut r, &mut f);
    bar.finish_and_clear();
    match copied {
        Ok(n) if len.is_none_or(|l| l == n) => {
            std::fs::rename(&tmp, out).map_err(|e| {
                Fail::Request(anyhow::anyhow!("cannot write {}: {e}", out.display()))
            })?;
            eprintln!("wrote {n} bytes to {}", out.display());
            Ok(())
        }
        Ok(n) => {
            let _ = std::fs::remove_file(&tmp);
            Err(Fail::Request(anyhow::anyhow!(
                "download ended after {n} of {} bytes",
                len.unwrap_or(0)
            )))
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(Fail::Request(anyhow::anyhow!("download failed: {e}")))
        }
    }
}

fn ls(cli: &Cli, kind: Kind, cmd: &ObjectCmd, names: &[String]) -> Result<(), Fail> {
    let c = client(cli)?;
    let mut q = Vec::new();
    if let Some(ids) = ids_query(cmd, names) {
        q.push(format!("ids={}", encode(&ids)));
    }
    let plain = !cli.json && !cli.long && !cli.full && !cli.table;
    if plain {
        q.push("fields=name".to_string());
    }
    let path = if q.is_empty() {
        format!("/{kind}")
    } else {
        format!("/{kind}?{}", q.join("&"))
    };
    let objs: Vec<Value> = c.get(&path)?;
    let attrs: Option<Vec<NodeAttributes>> = if kind == Kind::Node && (cli.full || cli.long) {
        let uids: Vec<&str> = objs
            .iter()
            .filter_map(|o| o.get("uid").and_then(Value::as_str))
            .collect();
        let ids = encode(&uids.join(","));
        if objs.is_empty() {
            Some(Vec::new())
        } else {
            Some(c.get(&format!("/node/attributes?ids={ids}"))?)
        }
    } else {
        None
    };
    if cli.json {
        match attrs {
            Some(a) => output::print_json(&output::with_effective(objs, a)),
            None => output::print_json(&objs),
        }
    } else if cli.table {
        output::print_table(kind, &objs);
    } else if cli.full || cli.long {
        output::print_full(kind, &objs, attrs.as_deref(), cli.full);
    } else {
        output::print_names(kind, &objs);
    }
    Ok(())
}
