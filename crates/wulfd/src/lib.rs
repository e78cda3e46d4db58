//! wulfd: the wulf head node daemon. The binary's `main` calls [`main`]; the services are
//! modules of this library so fuzz targets and benchmarks can reach their parsers.

pub mod api;
pub mod app;
pub mod auth;
pub mod backup;
pub mod blobs;
pub mod boot;
pub mod cache;
pub mod chainload;
pub mod config;
pub mod db;
pub mod dhcp;
pub mod dns;
pub mod enroll;
pub mod exec;
mod generate;
pub mod gui;
pub mod heads;
pub mod import;
pub mod kickstart;
pub mod limits;
pub mod log;
pub mod maint;
pub mod metrics;
pub mod migrate;
pub mod netif;
pub mod objects;
pub mod peers;
pub mod placement;
pub mod power;
pub mod replace;
pub mod sendfile;
pub mod status;
pub mod swarm;
pub mod tftp;
pub mod tls;
pub mod web;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use wulf_store::{EmbeddedStore, Store};

use crate::config::{Config, FileConfig, DEFAULT_CONFIG};

/// Ask the head at `url` which store its cluster uses (`--join`).
fn ask_store(
    url: &str,
    token: Option<&str>,
    ca: Option<&std::path::Path>,
    data_dir: &std::path::Path,
) -> anyhow::Result<String> {
    let token = match token {
        Some(t) => t.trim().to_string(),
        None => {
            let path = data_dir.join("admin.token");
            std::fs::read_to_string(&path)
                .with_context(|| {
                    format!(
                        "no admin token: give --token (or WULF_TOKEN), or put the cluster's \
                         token in {}",
                        path.display()
                    )
                })?
                .trim()
                .to_string()
        }
    };
    // The token goes only to a head that proves it belongs to the cluster.
    let local_ca = data_dir.join(tls::TLS_DIR).join("ca.pem");
    let ca = match ca {
        Some(p) => p.to_path_buf(),
        None if local_ca.exists() => local_ca,
        None => anyhow::bail!(
            "no cluster CA to check {url} against: copy DATA_DIR/tls/ca.pem from that head and \
             give --ca FILE (or put it in {})",
            local_ca.display()
        ),
    };
    let pem = std::fs::read(&ca).with_context(|| format!("cannot read {}", ca.display()))?;
    let client = wulf_api::Client::with_ca(url, Some(token), &pem)
        .with_context(|| format!("{}", ca.display()))?;
    let info: wulf_api::Info = client.get("/info").map_err(|e| anyhow::anyhow!("{e}"))?;
    info.store_url.with_context(|| {
        format!(
            "head {} uses the embedded store, which one head alone can use; move its cluster \
             to etcd first (wulfd migrate-store)",
            info.head
        )
    })
}

/// The wulf head node daemon: REST API, cluster database, DHCP, TFTP, HTTP boot and file
/// serving, DNS and node status intake in one process.
///
/// With no config file and no flags it keeps its data in /var/lib/wulf (as root) or
/// ./wulf-data, and serves the API on 0.0.0.0:8740. On first start it creates the cluster and
/// an admin token in DATA_DIR/admin.token that the `wulf` CLI finds by itself. Several heads
/// share one cluster with --store etcd://….
#[derive(Parser, Debug)]
#[command(name = "wulfd", version)]
struct Args {
    /// TOML config file [default: /etc/wulf/wulfd.toml if it exists]
    #[arg(long, short = 'c', env = "WULFD_CONFIG")]
    config: Option<PathBuf>,
    /// Directory for the database, files and the admin token (overrides the config file)
    #[arg(long, env = "WULFD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// API address and port, like 0.0.0.0:8740 (overrides the config file)
    #[arg(long, env = "WULFD_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// Standard error's log filter: error, warn, info, debug, or a tracing filter like
    /// "info,wulfd=debug" (the log files' level is `[logs] level` in the config file, or the
    /// cluster's log_level)
    #[arg(long, env = "WULFD_LOG")]
    log: Option<String>,
    /// This head's name among the cluster's heads (overrides the config file's head_name)
    /// [default: the host name]
    #[arg(long, value_name = "NAME", env = "WULFD_HEAD_NAME")]
    head_name: Option<String>,
    /// The cluster database: "embedded" (default, in the data directory) or
    /// "etcd://host:port[,host:port…]" / "etcd+https://…" (shared by several heads; TLS files
    /// in the config file's [etcd] section)
    #[arg(long, env = "WULFD_STORE")]
    store: Option<String>,
    /// Join the cluster of the head at this URL (https://head1:8740): ask it which etcd it
    /// uses and use the same (instead of --store; TLS files still come from the config file).
    /// Needs the cluster's admin token: --token, WULF_TOKEN, or DATA_DIR/admin.token
    #[arg(long, value_name = "URL", env = "WULFD_JOIN", conflicts_with = "store")]
    join: Option<String>,
    /// The admin token for --join
    #[arg(long, env = "WULF_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The cluster CA certificate to check the --join head's certificate against (that
    /// head's DATA_DIR/tls/ca.pem) [default: DATA_DIR/tls/ca.pem]
    #[arg(long, value_name = "FILE", env = "WULFD_CA")]
    ca: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Write the man page and bash, zsh and fish completions into DIR (for the packages)
    #[command(hide = true)]
    Generate {
        /// Where man/, bash/, zsh/ and fish/ go
        dir: PathBuf,
    },
    /// Copy this head's embedded database (in --data-dir) into an empty etcd, so the cluster
    /// can run on etcd with several heads. Stop wulfd first. Files stay in the data directory;
    /// start wulfd afterwards with --store set to the same etcd and the same --data-dir.
    MigrateStore {
        /// The etcd to copy into: etcd://host:port[,host:port…] or etcd+https://…
        #[arg(long, value_name = "STORE")]
        to: String,
    },
    /// Replace the cluster CA in the store: with a new one, or with --cert and --key (PEM
    /// files of a CA of your own). Every head issues itself a certificate from it at its next
    /// start; restart them all, then give CLIs the new DATA_DIR/tls/ca.pem (`wulf trust`) and
    /// reboot the nodes (they learn the CA's fingerprint at boot). With the embedded store,
    /// stop wulfd first. See docs/admin/tls.md.
    ReplaceCa {
        /// The CA certificate (PEM); needs --key
        #[arg(long, value_name = "FILE", requires = "key")]
        cert: Option<PathBuf>,
        /// The CA's private key (PEM, PKCS#8); needs --cert
        #[arg(long, value_name = "FILE", requires = "cert")]
        key: Option<PathBuf>,
    },
    /// Restore a backup (`wulf cluster backup`) into an empty store: the embedded one in
    /// --data-dir, or the etcd of --store. Stop wulfd first. Everything is checked before
    /// anything is written; a store that holds wulf keys is refused. Files (kernels,
    /// initramfs, images) come from a backup made with --files, or --files DIR|TAR, and go
    /// into --data-dir's file store, each checked against its sha256; files missing are
    /// named with the objects that use them. Exit 2 for a damaged or malformed backup, 1 for
    /// other failures; nothing is written either way. See docs/admin/backup.md.
    Restore {
        /// The backup: JSON lines, or the tar of `wulf cluster backup --files`
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Where the backup's files are: a directory (files named by their sha256) or a tar
        #[arg(long, value_name = "DIR|TAR")]
        files: Option<PathBuf>,
    },
}

/// `mi_option_purge_delay` in mimalloc.h's `mi_option_t` (v2.1 and later).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// wulfd's command line: parse the arguments and run the head (or a subcommand).
pub fn main() -> std::process::ExitCode {
    // Give freed pages back to the system at once rather than after a delay, so the head's
    // footprint after a bulk operation is what it holds, not what it once held.
    // SAFETY: setting an allocator option has no preconditions.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    let args = Args::parse();
    if let Some(Command::Generate { dir }) = &args.command {
        use clap::CommandFactory;
        // Section 8: a system daemon.
        return match generate::write_docs("wulfd", Args::command(), "8", dir) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("wulfd: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let config_file = args.config.clone().or_else(|| {
        let p = PathBuf::from(DEFAULT_CONFIG);
        p.exists().then_some(p)
    });
    let file = match load_file_config(args.config.as_deref()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("wulfd: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let file_store = file.store.clone();
    let mut cfg = Config::settle(file, args.data_dir.clone(), args.listen, args.log.clone());
    cfg.config_file = config_file;
    if let Some(name) = &args.head_name {
        cfg.head_name = Some(name.clone());
    }
    let joined = match &args.join {
        Some(url) => match ask_store(
            url,
            args.token.as_deref(),
            args.ca.as_deref(),
            &cfg.data_dir,
        ) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("wulfd: cannot join through {url}: {e:#}");
                return std::process::ExitCode::from(1);
            }
        },
        None => None,
    };
    let store_spec = joined.or(args.store.clone()).or(file_store);
    let store_url = match store_spec.as_deref().unwrap_or("embedded").parse() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("wulfd: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    cfg.store = store_url;
    if let Err(e) = log::init(&cfg) {
        eprintln!("wulfd: {e:#}");
        return std::process::ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wulfd: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let job = async {
        match &args.command {
            // Answered before the configuration is read.
            Some(Command::Generate { .. }) => Ok(()),
            Some(Command::MigrateStore { to }) => migrate::run(&cfg, to).await,
            Some(Command::ReplaceCa { cert, key }) => {
                tls::replace_ca_command(&cfg, cert.as_deref().zip(key.as_deref())).await
            }
            Some(Command::Restore { file, files }) => {
                backup::restore::run(&cfg, file, files.as_deref()).await
            }
            None => run(cfg.clone()).await,
        }
    };
    match rt.block_on(job) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("wulfd: {e:#}");
            if e.downcast_ref::<backup::restore::BadBackup>().is_some() {
                return std::process::ExitCode::from(2);
            }
            std::process::ExitCode::FAILURE
        }
    }
}

fn load_file_config(path: Option<&std::path::Path>) -> anyhow::Result<FileConfig> {
    match path {
        Some(p) => FileConfig::load(p),
        None if std::path::Path::new(DEFAULT_CONFIG).exists() => {
            FileConfig::load(std::path::Path::new(DEFAULT_CONFIG))
        }
        None => Ok(FileConfig::default()),
    }
}

async fn run(cfg: Config) -> anyhow::Result<()> {
    start_limits(&cfg);
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create data directory {}", cfg.data_dir.display()))?;
    let data_dir = cfg.data_dir.canonicalize().unwrap_or(cfg.data_dir.clone());
    tracing::info!(data_dir = %data_dir.display(), listen = %cfg.listen, "wulfd {} starting", env!("CARGO_PKG_VERSION"));

    let store = patiently(|| open_store(&cfg, &data_dir)).await?;
    // Every store operation timed for /metrics.
    let store = metrics::store::timed(store);
    tracing::info!(backend = store.backend(), "database open");
    backup::refuse_unfinished(store.as_ref()).await?;
    let cancel = CancellationToken::new();
    let cache = cache::Cache::new();
    patiently(|| async {
        cache
            .load(store.as_ref())
            .await
            .context("cannot read the database")
    })
    .await?;
    let follower = tokio::spawn(cache.clone().follow(store.clone(), cancel.clone()));
    let db = db::Db::new(store.clone(), cache.clone());
    patiently(|| async {
        db.bootstrap(&cfg.cluster_name)
            .await
            .context("cannot create the cluster")
    })
    .await?;

    let token = patiently(|| async {
        auth::cluster_admin_token(store.as_ref(), &data_dir)
            .await
            .context("cannot set up the admin token")
    })
    .await?;
    let auth = patiently(|| async {
        auth::Auth::load(store.as_ref(), vec![token.clone()], &cfg.auth)
            .await
            .context("cannot read the token signing key")
    })
    .await?;
    let node_secret = patiently(|| async {
        boot::node_secret(store.as_ref())
            .await
            .context("cannot read the node credential secret")
    })
    .await?;
    let head_name = cfg.head_name.clone().unwrap_or_else(hostname);
    let tls = patiently(|| async {
        let hosts = [head_name.clone(), hostname()];
        tls::setup(
            store.as_ref(),
            &data_dir,
            &cfg.cluster_name,
            &hosts,
            &cfg.tls.names,
        )
        .await
        .context("cannot set up HTTPS")
    })
    .await?;
    let blobs = blobs::Blobs::open(&data_dir).context("cannot prepare the file store")?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (is another wulfd running? use --listen)",
                cfg.listen
            )
        })?;
    let local = listener.local_addr()?;
    let url = local_url(local);
    // The CLI on this machine reads this to find its head.
    std::fs::write(data_dir.join("wulfd.url"), format!("{url}\n"))
        .with_context(|| format!("cannot write {}", data_dir.join("wulfd.url").display()))?;

    let record = heads::HeadRecord {
        name: head_name.clone(),
        urls: heads::urls(local, cfg.boot.url.as_deref()),
        version: env!("CARGO_PKG_VERSION").to_string(),
        started: db::now(),
    };
    let registered = patiently(|| async {
        heads::register_or_wait(store.as_ref(), &record)
            .await
            .context("cannot register this head")
    })
    .await;
    let lease = match registered {
        Ok(lease) => lease,
        // etcd refuses every write until space is made; this head can still serve and run
        // the recovery. It registers once writes work again.
        Err(e) if store_out_of_space(&e) => {
            tracing::error!(
                "{e:#}. Starting unregistered: run `wulf cluster db --recover` through this \
                 head; it registers once the store takes writes again"
            );
            0
        }
        Err(e) => return Err(e),
    };
    let live_heads: heads::LiveHeads = Arc::new(std::sync::RwLock::new(vec![record.clone()]));
    let registration = tokio::spawn(heads::keep_alive(
        store.clone(),
        record,
        lease,
        live_heads.clone(),
        cancel.clone(),
    ));
    let status = status::Status::new(
        head_name.clone(),
        u32::try_from(cfg.boot.timeout_secs).unwrap_or(u32::MAX),
    );
    let (loaded, loaded_at) = patiently(|| async {
        status
            .load(store.as_ref())
            .await
            .context("cannot read node status")
    })
    .await?;
    tracing::debug!(nodes = loaded, "node status loaded");
    let app = Arc::new(app::App {
        db,
        cache: cache.clone(),
        store: store.clone(),
        blobs,
        auth,
        head: head_name,
        max_body: cfg.max_body_bytes,
        cfg: Config {
            listen: local,
            ..cfg.clone()
        },
        node_secret,
        tls,
        status: status.clone(),
        live_heads,
        fetches: Default::default(),
        commands: Default::default(),
        enroll: Default::default(),
        swarm: crate::swarm::Swarms::new(crate::swarm::Shape {
            direct: cfg.boot.peers_from_head,
            fanout: cfg.boot.peers_per_node,
        }),
    });
    // Other heads write status too only when the store is shared.
    let follower_status = if !store.shared() {
        None
    } else {
        // Their routine heartbeats arrive as often as they store them.
        status.set_remote_slack(
            std::time::Duration::from_secs(cfg.status.persist_secs)
                + std::time::Duration::from_millis(2 * cfg.status.flush_ms),
        );
        Some(tokio::spawn(status::follow(
            status.clone(),
            store.clone(),
            loaded_at,
            cancel.clone(),
        )))
    };
    let flusher = tokio::spawn(status::run_flusher(
        status.clone(),
        store.clone(),
        cache.clone(),
        std::time::Duration::from_millis(cfg.status.flush_ms),
        std::time::Duration::from_secs(cfg.status.persist_secs),
        cancel.clone(),
    ));
    let maint = tokio::spawn(maint::run(
        app.clone(),
        cfg.history_revisions,
        std::time::Duration::from_secs(cfg.history_secs),
        cancel.clone(),
    ));
    // Node credentials other heads rotate (with a shared store).
    let mut services = vec![tokio::spawn(enroll::follow(app.clone(), cancel.clone()))];
    // The shared log: this head's lines into the store, every head's into head_NAME.log.
    let log_writer = tokio::spawn(log::shared::run_writer(
        store.clone(),
        app.head.clone(),
        cancel.clone(),
    ));
    services.push(tokio::spawn(log::shared::run_follower(
        store.clone(),
        cancel.clone(),
    )));
    services.push(tokio::spawn(log::run_controls(app.clone(), cancel.clone())));
    if cfg.dhcp.enabled {
        services.push(tokio::spawn(dhcp::run(app.clone(), cancel.clone())));
    }
    if cfg.tftp.enabled {
        services.push(tokio::spawn(tftp::run(app.clone(), cancel.clone())));
    }
    if cfg.dns.enabled {
        services.push(tokio::spawn(dns::run(app.clone(), cancel.clone())));
    }
    tracing::info!(%url, "API ready");

    let router = api::router(app.clone());
    let shutdown = cancel.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        shutdown.cancel();
    });
    let c = cancel.clone();
    let listener = sendfile::split(listener, app.clone(), cancel.clone())?;
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<web::Conn>(),
    )
    .with_graceful_shutdown(async move { c.cancelled().await })
    .await
    .context("API server failed")?;
    cancel.cancel();
    let _ = follower.await;
    let _ = maint.await;
    let _ = flusher.await;
    if let Some(f) = follower_status {
        let _ = f.await;
    }
    // The last lines reach the shared log before the head lets go of the store.
    let _ = log_writer.await;
    let _ = registration.await;
    for s in services {
        let _ = s.await;
    }
    tracing::info!("stopped");
    if let Some(l) = log::logs() {
        l.access.flush();
        l.heads.flush();
    }
    Ok(())
}

/// Raise the open-file limit and cap the API port's connections below it.
fn start_limits(cfg: &Config) {
    let soft = match limits::raise_nofile() {
        Ok(n) => {
            tracing::info!(
                soft_before = n.soft_before,
                soft = n.soft,
                hard = n.hard,
                "open-file limit: soft {} (was {}), hard {}",
                n.soft,
                n.soft_before,
                n.hard
            );
            n.soft
        }
        Err(e) => {
            tracing::warn!("cannot raise the open-file limit: {e}");
            let mut r = libc::rlimit {
                rlim_cur: 1024,
                rlim_max: 1024,
            };
            // SAFETY: getrlimit writes into the struct we pass.
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
            r.rlim_cur
        }
    };
    let l = &cfg.limits;
    let cap = limits::connection_cap(l.max_connections, soft);
    if l.max_connections > cap {
        tracing::warn!(
            "[limits] max_connections = {} is more than the open-file limit {soft} allows; \
             using {cap}",
            l.max_connections
        );
    }
    tracing::info!(
        max_connections = cap,
        head_timeout_secs = l.head_timeout_secs,
        idle_timeout_secs = l.idle_timeout_secs,
        "HTTP connections capped at {cap} ({} open files kept for the store, files and other \
         sockets)",
        soft.saturating_sub(cap as u64)
    );
    limits::install(limits::Limits::new(
        limits::Settings {
            max_connections: cap,
            head_timeout: std::time::Duration::from_secs(l.head_timeout_secs),
            idle_timeout: std::time::Duration::from_secs(l.idle_timeout_secs),
        },
        soft,
    ));
}

/// How long a head keeps trying to start while its store is unavailable.
const STARTUP_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// Whether `e` comes from a store that cannot answer now (etcd starting, electing a leader,
/// unreachable), rather than from something that trying again will not change.
fn store_unavailable(e: &anyhow::Error) -> bool {
    use wulf_store::StoreError::Unavailable;
    e.chain().any(|c| {
        matches!(c.downcast_ref(), Some(Unavailable(_)))
            || matches!(c.downcast_ref(), Some(db::DbError::Store(Unavailable(_))))
            || matches!(
                c.downcast_ref(),
                Some(heads::HeadError::Store(Unavailable(_)))
            )
            || matches!(c.downcast_ref(), Some(tls::TlsError::Store(Unavailable(_))))
    })
}

/// Whether `e` comes from a store refusing writes for lack of space (etcd's NOSPACE alarm).
fn store_out_of_space(e: &anyhow::Error) -> bool {
    use wulf_store::StoreError::NoSpace;
    e.chain().any(|c| {
        matches!(c.downcast_ref(), Some(NoSpace(_)))
            || matches!(c.downcast_ref(), Some(heads::HeadError::Store(NoSpace(_))))
    })
}

/// Run a start-up step again while the store is unavailable, for up to [`STARTUP_PATIENCE`].
async fn patiently<T, F, Fut>(mut step: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let deadline = tokio::time::Instant::now() + STARTUP_PATIENCE;
    let mut pause = std::time::Duration::from_millis(250);
    loop {
        match step().await {
            Err(e) if store_unavailable(&e) && tokio::time::Instant::now() + pause < deadline => {
                tracing::warn!("{e:#}; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// Open the configured store.
pub(crate) async fn open_store(
    cfg: &Config,
    data_dir: &std::path::Path,
) -> anyhow::Result<Arc<dyn Store>> {
    match &cfg.store {
        config::StoreUrl::Embedded => {
            let s: Arc<dyn Store> = EmbeddedStore::open(&data_dir.join("wulf.redb"))
                .with_context(|| format!("cannot open the database in {}", data_dir.display()))?;
            Ok(s)
        }
        config::StoreUrl::Etcd(endpoints) => {
            use wulf_store::etcd::{EtcdOptions, EtcdStore, EtcdTls};
            let e = &cfg.etcd;
            let https = endpoints.iter().any(|u| u.starts_with("https://"));
            let tls = match (&e.ca_file, https) {
                (Some(ca), _) => Some(EtcdTls {
                    ca_file: ca.clone(),
                    cert_file: e.cert_file.clone(),
                    key_file: e.key_file.clone(),
                    domain: None,
                }),
                (None, true) => anyhow::bail!(
                    "etcd+https:// needs the CA certificate: ca_file in the config file's [etcd] section"
                ),
                (None, false) => None,
            };
            let options = EtcdOptions {
                tls,
                user: e.user.clone().zip(e.password.clone()),
                ..EtcdOptions::default()
            };
            let etcd = EtcdStore::connect(endpoints, options)
                .await
                .with_context(|| format!("cannot reach etcd at {}", endpoints.join(",")))?;
            // Bulk creates are one transaction each: say early when etcd's limit is low.
            if let Ok(false) = etcd.accepts_txn_ops(BULK_TXN_OPS).await {
                tracing::warn!(
                    "etcd takes fewer than {BULK_TXN_OPS} operations per transaction: creating \
                     or changing more than a few dozen objects in one request will be refused \
                     (status writes adapt). Start every etcd member with --max-txn-ops 65536 \
                     --max-request-bytes 16777216"
                );
            }
            let s: Arc<dyn Store> = etcd;
            Ok(s)
        }
    }
}

/// Operations in one transaction etcd should take: 10,000 nodes created at once need this
/// many (each node's object and its uniqueness keys: name, index, MAC, IP).
const BULK_TXN_OPS: usize = 50_000;

fn local_url(addr: std::net::SocketAddr) -> String {
    let ip = if addr.ip().is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        addr.ip()
    };
    format!("https://{}", std::net::SocketAddr::new(ip, addr.port()))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "head".to_string())
}

async fn wait_for_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
