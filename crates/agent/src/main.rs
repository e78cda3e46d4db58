//! wulf-agent: reports this node's status to its head and carries out its commands.

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
    /// agent keeps reporting.
    #[arg(long, value_name = "FILE", default_value = enroll::CRED_FILE)]
    cred_file: PathBuf,

    /// SHA-256 fingerprint of the cluster CA certificate (wulf.ca= on the kernel command line,
    /// ca= in agent.conf). Needed for https:// heads: the agent fetches the CA from the head's
    /// /boot/ca.pem, keeps it only if it has this fingerprint, and checks every head's
    /// certificate against it.
    #[arg(long, value_name = "HEX")]
    ca: Option<String>,

    /// What a soft reboot (and an orphan's reboot) runs: a program and its arguments, no
    /// shell (wulf.reboot_cmd= on the kernel command line, commas for spaces; reboot_cmd= in
    /// agent.conf). Default: reboot
    #[arg(long, value_name = "COMMAND")]
    reboot_cmd: Option<String>,

    /// What a soft shutdown runs (wulf.poweroff_cmd=, poweroff_cmd=). Default: poweroff
    #[arg(long, value_name = "COMMAND")]
    poweroff_cmd: Option<String>,

    /// Where agent.conf, busy.flag and attributes.ini live.
    #[arg(long, value_name = "DIR", default_value = "/etc/wulf")]
    state_dir: PathBuf,

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

/// Flags, then the kernel command line, then agent.conf.
fn settings(cli: &Cli) -> anyhow::Result<config::Settings> {
    let flags = Partial {
        heads: cli
            .heads
            .iter()
            .flat_map(|h| config::split_heads(h))
            .collect(),
        node: cli.node.clone(),
        cred: cli.cred.clone(),
        enroll: cli.enroll.clone(),
        ca: cli.ca.clone(),
        reboot_cmd: cli.reboot_cmd.as_deref().map(config::split_command),
        poweroff_cmd: cli.poweroff_cmd.as_deref().map(config::split_command),
    };
    let cmdline = std::fs::read_to_string("/proc/cmdline")
        .map(|t| config::from_cmdline(&t))
        .unwrap_or_default();
    let booted_by_head = cmdline.node.is_some();
    let conf_path = cli.state_dir.join(config::CONF_FILE);
    let conf = match std::fs::read_to_string(&conf_path) {
        Ok(t) => config::from_conf(&t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Partial::default(),
        Err(e) => {
            tracing::warn!("cannot read {}: {e}", conf_path.display());
            Partial::default()
        }
    };
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

fn run(cli: Cli, mut settings: config::Settings) -> anyhow::Result<ExitCode> {
    wulf_agent::tls::init(settings.ca.clone());
    let boot_id = enroll::boot_id(std::path::Path::new(enroll::BOOT_ID));
    if cli.once {
        settings.cred = enroll::obtain(&settings, &cli.cred_file, boot_id.as_deref(), &mut Once)?;
        let mut agent = Agent::new(settings, cli.state_dir, Paths::default());
        let reply = agent.cycle()?;
        let json = serde_json::to_string_pretty(&reply).context("encoding the answer")?;
        println!("{json}");
        return Ok(ExitCode::SUCCESS);
    }
    let stop = Stop::install().context("installing the signal handlers")?;
    let mut pause = UntilStopped(&stop);
    match enroll::obtain(&settings, &cli.cred_file, boot_id.as_deref(), &mut pause) {
        Ok(cred) => settings.cred = cred,
        // Stopped before it could enroll: nothing to report.
        Err(_) => return Ok(ExitCode::SUCCESS),
    }
    let mut agent = Agent::new(settings, cli.state_dir, Paths::default());
    agent.run(&stop);
    Ok(ExitCode::SUCCESS)
}
