//! wulf-agent: reports this node's status to its head and carries out its commands.

mod fetch_image;
mod generate;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use wulf_agent::agent::Agent;
use wulf_agent::config::{self, Partial};
use wulf_agent::enroll::{self, Pause};
use wulf_agent::gather::Paths;
use wulf_agent::signals::Stop;

/// Report this node's status to its head every `_status_secs` seconds.
///
/// Each report carries uptime, load, RAM, busy flag and boot id; when the node is not busy
/// also host name, kernel release, kernel command line, loaded modules and SELinux status;
/// the first one after the agent starts also the hardware inventory. The head answers with
/// the node's effective attributes, which the agent writes to STATE_DIR/attributes.ini.
///
/// Head URLs, node UID and the boot's enrollment token come from the flags, else from the
/// kernel command line (wulf.head= wulf.node= wulf.enroll=), else from STATE_DIR/agent.conf
/// (head= node= enroll=). At start the agent uses the credential kept in --cred-file for this
/// node and boot (it was restarted), else trades the token at the head for the node's
/// credential of this boot and keeps it there (mode 0600). A refused enrollment is logged
/// with the head's reason and tried again every minute; a token enrolls once, from the
/// node's own address, within 10 minutes of its boot script.
///
/// The agent also long-polls the head it reports to for commands (exec, reboot, shutdown,
/// orphan), each signed by the head with the node's credential; it runs only commands for
/// this node, correctly signed, not expired and not seen before. A reboot or shutdown runs
/// the reboot or poweroff command (default `reboot` and `poweroff`).
///
/// When no head has taken a report for _orphan_secs (default 60), or a head orders it, the
/// node is an orphan and follows _orphan_policy: reboot (default), idle (reboot once the CPUs
/// have been idle for _orphan_idle_secs) or run (keep running); an orphan still running when
/// a head answers again rejoins without rebooting.
///
/// On SIGTERM or SIGINT the agent sends a last report saying the node is shutting down and
/// exits 0. Exit codes: 0 ok, 1 the report failed (--once), 2 bad usage or configuration.
#[derive(Debug, Parser)]
#[command(name = "wulf-agent", version)]
struct Cli {
    /// Head base URL, like http://10.54.0.1:8740. Repeat or separate with commas to give
    /// several: they are tried in order, moving to the next when one fails.
    #[arg(long = "head", value_name = "URL", value_delimiter = ',')]
    heads: Vec<String>,

    /// This node's UID (wulf.node= on the kernel command line).
    #[arg(long, value_name = "UID")]
    node: Option<String>,

    /// The boot's one-time enrollment token (wulf.enroll= on the kernel command line, put
    /// there by the head's boot script), traded for the node's credential at start.
    #[arg(long, value_name = "TOKEN")]
    enroll: Option<String>,

    /// Use this credential as it is, without enrolling. A flag is visible to every user in
    /// `ps`; prefer cred= in agent.conf (mode 0600).
    #[arg(long, value_name = "CREDENTIAL")]
    cred: Option<String>,

    /// Where the credential got by enrolling is kept for this boot (0600), so a restarted
    /// agent keeps reporting. Default: /run/wulf/agent.cred; with --standalone
    /// STATE_DIR/agent.cred, kept across reboots.
    #[arg(long, value_name = "FILE")]
    cred_file: Option<PathBuf>,

    /// This server was not booted by wulf (a node of type standalone): enroll once with
    /// --enroll-token (or the token in STATE_DIR/enroll.token, removed once used), keep the
    /// credential in STATE_DIR/agent.cred (default state directory /var/lib/wulf-agent) and
    /// use it on every later start. Settings come from flags, then STATE_DIR/agent.conf; the
    /// kernel command line is not read.
    #[arg(long)]
    standalone: bool,

    /// With --standalone: the one-time token printed by `wulf node create … --enroll-token`
    /// or `wulf node -i NODE enroll-token` (UID.SECRET; it names the node). Needed only
    /// until the agent has enrolled. A flag is visible in `ps`: prefer --enroll-token-file.
    #[arg(
        long,
        value_name = "TOKEN",
        requires = "standalone",
        conflicts_with = "enroll_token_file"
    )]
    enroll_token: Option<String>,

    /// With --standalone: read the enrollment token from this file.
    #[arg(long, value_name = "FILE", requires = "standalone")]
    enroll_token_file: Option<PathBuf>,

    /// The cluster CA's SHA-256 fingerprint, like --ca (`wulf trust` or the head's
    /// /boot/ca.pem give it).
    #[arg(long, value_name = "SHA256", conflicts_with = "ca")]
    pin: Option<String>,

    /// SHA-256 fingerprint of the cluster CA certificate (wulf.ca= on the kernel command line,
    /// ca= in agent.conf). Needed for https:// heads: the agent fetches the CA from the head's
    /// /boot/ca.pem, keeps it only if it has this fingerprint, and checks every head's
    /// certificate against it. Also a FILE: the cluster CA certificate (PEM), whose
    /// fingerprint is pinned.
    #[arg(long, value_name = "HEX|FILE")]
    ca: Option<String>,

    /// What a soft reboot (and an orphan's reboot) runs: a program and its arguments, no
    /// shell (wulf.reboot_cmd= on the kernel command line, commas for spaces; reboot_cmd= in
    /// agent.conf). Default: reboot
    #[arg(long, value_name = "COMMAND")]
    reboot_cmd: Option<String>,

    /// What a soft shutdown runs (wulf.poweroff_cmd=, poweroff_cmd=). Default: poweroff
    #[arg(long, value_name = "COMMAND")]
    poweroff_cmd: Option<String>,

    /// Where agent.conf, busy.flag and attributes.ini live. Default: /etc/wulf; with
    /// --standalone /var/lib/wulf-agent (also the credential).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,

    /// Send one report (with the hardware inventory), print the head's answer as JSON and
    /// exit.
    #[arg(long)]
    once: bool,

    /// Log level (error, warn, info, debug, trace) or a tracing filter like
    /// `wulf_agent=debug`. Logs go to stderr.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log: String,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Download the node's image with the help of nodes that have it, and serve it to others
    /// (the initramfs runs this when the boot has wulf.swarm=PORT)
    FetchImage(fetch_image::FetchArgs),
    /// Write the man page and bash, zsh and fish completions into DIR (for the packages)
    #[command(hide = true)]
    Generate {
        /// Where man/, bash/, zsh/ and fish/ go
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Generate { dir }) = &cli.command {
        use clap::CommandFactory;
        // Section 8: a system daemon.
        return match generate::write_docs("wulf-agent", Cli::command(), "8", dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("wulf-agent: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let filter = match tracing_subscriber::EnvFilter::try_new(&cli.log) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("wulf-agent: bad --log '{}': {e}", cli.log);
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    if let Some(Command::FetchImage(a)) = &cli.command {
        return match fetch_image::run(a) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("wulf-agent: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    let settings = match settings(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("wulf-agent: {e:#}");
            return ExitCode::from(2);
        }
    };
    match run(cli, settings) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wulf-agent: {e:#}");
            ExitCode::from(1)
        }
    }
}

impl Cli {
    /// The settings given as flags.
    fn flags(&self) -> anyhow::Result<Partial> {
        Ok(Partial {
            heads: self
                .heads
                .iter()
                .flat_map(|h| config::split_heads(h))
                .collect(),
            node: self.node.clone(),
            cred: self.cred.clone(),
            enroll: self.enroll.clone(),
            ca: self.ca_pin()?,
            reboot_cmd: self.reboot_cmd.as_deref().map(config::split_command),
            poweroff_cmd: self.poweroff_cmd.as_deref().map(config::split_command),
        })
    }

    /// Neither --enroll-token nor --enroll-token-file: a standalone agent's token, if any,
    /// is the state directory's enroll.token.
    fn no_token_flag(&self) -> bool {
        self.enroll_token.is_none() && self.enroll_token_file.is_none()
    }

    fn state_dir(&self) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(|| {
            PathBuf::from(if self.standalone {
                wulf_agent::standalone::STATE_DIR
            } else {
                "/etc/wulf"
            })
        })
    }

    fn cred_file(&self) -> PathBuf {
        self.cred_file.clone().unwrap_or_else(|| {
            if self.standalone {
                self.state_dir().join(wulf_agent::standalone::CRED_NAME)
            } else {
                PathBuf::from(enroll::CRED_FILE)
            }
        })
    }

    /// The CA pin: --pin, or --ca as a fingerprint or a PEM file's.
    fn ca_pin(&self) -> anyhow::Result<Option<String>> {
        if let Some(p) = &self.pin {
            return Ok(Some(p.clone()));
        }
        let Some(ca) = &self.ca else { return Ok(None) };
        let path = std::path::Path::new(ca);
        if !path.is_file() {
            return Ok(Some(ca.clone()));
        }
        let pem = std::fs::read(path).with_context(|| format!("reading --ca {ca}"))?;
        let certs =
            wulf_api::tls::parse_pem(&pem).map_err(|e| anyhow::anyhow!("--ca {ca}: {e}"))?;
        let first = certs
            .first()
            .with_context(|| format!("--ca {ca}: no certificate in the file"))?;
        Ok(Some(wulf_api::tls::fingerprint(first)))
    }
}

/// `--standalone`: flags, then agent.conf; the node and credential kept in the state
/// directory, else the enrollment token's.
fn standalone_settings(cli: &Cli) -> anyhow::Result<config::Settings> {
    use wulf_agent::standalone as sa;
    let cred_file = cli.cred_file();
    let kept_node = sa::kept_node(&cred_file);
    let kept = kept_node
        .as_deref()
        .and_then(|n| enroll::load(&cred_file, n, None).map(|c| (n.to_string(), c)));
    let default_token = cli.state_dir().join(sa::TOKEN_NAME);
    let token = match (&cli.enroll_token, &cli.enroll_token_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(f)) => Some(sa::read_token_file(f)?),
        (None, None) if kept.is_none() && default_token.exists() => {
            tracing::info!("enrolling with the token in {}", default_token.display());
            Some(sa::read_token_file(&default_token)?)
        }
        (None, None) => None,
    };
    let token = token
        .map(|t| sa::split_token(&t))
        .transpose()
        .with_context(|| match &cli.enroll_token_file {
            Some(f) => format!("--enroll-token-file {}", f.display()),
            None if cli.enroll_token.is_some() => "--enroll-token".to_string(),
            None => default_token.display().to_string(),
        })?;
    let (node, cred, enroll_token) = match (kept, token) {
        (Some((n, c)), t) if t.as_ref().is_none_or(|(u, _)| *u == n) => {
            if t.is_some() {
                tracing::info!(
                    "a credential of node {n} is kept in {}: using it, not the enrollment token",
                    cred_file.display()
                );
            }
            (n, Some(c), None)
        }
        (_, Some((u, t))) => (u, None, Some(t)),
        (_, None) => anyhow::bail!(
            "no credential is kept in {} and no enrollment token was given (--enroll-token, \
             --enroll-token-file, or the file {}): issue a token with \
             `wulf node -i NODE enroll-token`",
            cred_file.display(),
            default_token.display()
        ),
    };
    let mut flags = cli.flags()?;
    flags.node = Some(node);
    flags.cred = cred.or(flags.cred);
    flags.enroll = enroll_token;
    let conf_path = cli.state_dir().join(config::CONF_FILE);
    let conf = read_conf(&conf_path);
    let mut settings = config::resolve(&[flags, conf], &conf_path.display().to_string())?;
    settings.standalone = true;
    Ok(settings)
}

/// agent.conf's settings; none when it does not exist (a warning when it cannot be read).
fn read_conf(path: &std::path::Path) -> Partial {
    match std::fs::read_to_string(path) {
        Ok(t) => config::from_conf(&t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Partial::default(),
        Err(e) => {
            tracing::warn!("cannot read {}: {e}", path.display());
            Partial::default()
        }
    }
}

/// Flags, then the kernel command line, then agent.conf.
fn settings(cli: &Cli) -> anyhow::Result<config::Settings> {
    if cli.standalone {
        return standalone_settings(cli);
    }
    let flags = cli.flags()?;
    let cmdline = std::fs::read_to_string("/proc/cmdline")
        .map(|t| config::from_cmdline(&t))
        .unwrap_or_default();
    let booted_by_head = cmdline.node.is_some();
    let conf_path = cli.state_dir().join(config::CONF_FILE);
    let conf = read_conf(&conf_path);
    let mut settings = config::resolve(&[flags, cmdline, conf], &conf_path.display().to_string())?;
    settings.booted_by_head = booted_by_head;
    Ok(settings)
}

/// One try (`--once`).
struct Once;

impl Pause for Once {
    fn pause(&mut self, _: std::time::Duration) -> bool {
        true
    }
}

/// Tries until SIGTERM/SIGINT.
struct UntilStopped<'a>(&'a Stop);

impl Pause for UntilStopped<'_> {
    fn pause(&mut self, d: std::time::Duration) -> bool {
        self.0.sleep(d)
    }
}

/// A standalone agent traded the token of its default token file: the file is spent.
fn forget_token(state_dir: &std::path::Path) {
    let f = state_dir.join(wulf_agent::standalone::TOKEN_NAME);
    match std::fs::remove_file(&f) {
        Ok(()) => tracing::info!("removed the spent enrollment token {}", f.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(
            "cannot remove the spent enrollment token {}: {e}",
            f.display()
        ),
    }
}

fn run(cli: Cli, mut settings: config::Settings) -> anyhow::Result<ExitCode> {
    wulf_agent::tls::init(settings.ca.clone());
    // A standalone server's credential outlives its reboots: no boot id.
    let boot_id = if settings.standalone {
        None
    } else {
        enroll::boot_id(std::path::Path::new(enroll::BOOT_ID))
    };
    let cred_file = cli.cred_file();
    let state_dir = cli.state_dir();
    if settings.standalone {
        std::fs::create_dir_all(&state_dir)
            .with_context(|| format!("creating {}", state_dir.display()))?;
    }
    if cli.once {
        let traded = settings.enroll.is_some() && cli.no_token_flag();
        settings.cred = enroll::obtain(&settings, &cred_file, boot_id.as_deref(), &mut Once)?;
        if settings.standalone && traded {
            forget_token(&state_dir);
        }
        let mut agent = Agent::new(settings, state_dir, Paths::default());
        let reply = agent.cycle()?;
        let json = serde_json::to_string_pretty(&reply).context("encoding the answer")?;
        println!("{json}");
        return Ok(ExitCode::SUCCESS);
    }
    let stop = Stop::install().context("installing the signal handlers")?;
    let mut pause = UntilStopped(&stop);
    let traded = settings.enroll.is_some() && cli.no_token_flag();
    match enroll::obtain(&settings, &cred_file, boot_id.as_deref(), &mut pause) {
        Ok(cred) => settings.cred = cred,
        // Stopped before it could enroll: nothing to report.
        Err(_) => return Ok(ExitCode::SUCCESS),
    }
    if settings.standalone && traded {
        forget_token(&state_dir);
    }
    let mut agent = Agent::new(settings, state_dir, Paths::default());
    agent.run(&stop);
    Ok(ExitCode::SUCCESS)
}
