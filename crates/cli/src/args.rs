//! The command line's shape (clap types) and the helpers every verb uses to read its
//! selection: `-i/--ids`, `--all`, comma-separated lists.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use wulf_api::client::encode;
use wulf_model::Kind;

use crate::fail::{usage, Fail};

/// wulf: manage a Beowulf-style cluster from its head node.
///
/// Objects: node, attrib (attribute groups), boot (boot configs), image, pool (naming pools),
/// net (networks), host (non-cluster devices), cluster (settings), admin (accounts).
///
/// Log in with `wulf login NAME`; on the head itself, the user who runs wulfd needs no login
/// (the CLI finds the bootstrap token in the data directory).
///
/// Name objects with -i/--ids: names, UIDs, UID prefixes (5+ characters); nodes also by MAC,
/// IP, index, hostlist ranges like n[0-15,20] and %group.
///
/// Chain node actions with `then`: each later action acts on the same nodes, with the same
/// flags, and runs only if the one before succeeded, as in
/// `wulf node -i n[0-15] reboot then waitfor up then exec uptime`.
///
/// Exit codes: 0 ok, 1 the request failed, 2 bad usage.
#[derive(Parser, Debug)]
#[command(name = "wulf", version, propagate_version = true)]
pub(crate) struct Cli {
    /// Head URL [default: $WULF_URL, the config file, the local head, https://127.0.0.1:8740]
    #[arg(long, env = "WULF_URL", global = true)]
    pub(crate) url: Option<String>,
    /// The cluster CA certificate (PEM) to check the head against [default: the config
    /// file's ca, ~/.config/wulf/ca.pem (see `wulf trust`), the local head's DATA_DIR/tls/ca.pem]
    #[arg(long, value_name = "FILE", env = "WULF_CA", global = true)]
    pub(crate) ca: Option<PathBuf>,
    /// Do not check the head's certificate. Anyone on the path can then read and change the
    /// session, token included: use `wulf trust` instead
    #[arg(long, env = "WULF_INSECURE", global = true, value_parser = clap::builder::FalseyValueParser::new())]
    pub(crate) insecure: bool,
    /// API token [default: $WULF_TOKEN, the config file, the session of `wulf login`, the
    /// local head's admin.token]
    #[arg(long, env = "WULF_TOKEN", global = true, hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Print JSON for scripts instead of tables
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Long listing: main fields, and for nodes their effective attributes with the layer
    /// each came from (default group, a group, or the node)
    #[arg(short = 'l', long = "long", global = true)]
    pub(crate) long: bool,
    /// Longest listing: every field, and effective attributes with their layers
    #[arg(short = 'L', long = "full", global = true)]
    pub(crate) full: bool,
    /// One table row per object
    #[arg(short = 't', long = "table", global = true)]
    pub(crate) table: bool,
    #[command(subcommand)]
    pub(crate) command: Top,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Top {
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
    /// Installer repositories: an ISO the head serves at /boot/repo/NAME/ (iso=@FILE), or a URL
    /// it redirects there to (url=)
    Repo(ObjectCmd),
    /// Cluster settings
    Cluster(ObjectCmd),
    /// Admin accounts: name, role (viewer, operator, admin), SSH public keys, a password
    ///
    /// viewer reads everything but secrets; operator also acts on nodes (power, reboot,
    /// shutdown, exec, orphan); admin changes anything, accounts included. Passwords come from
    /// standard input (--password-stdin) or the terminal (--password), never from the command
    /// line. A new password or role, and `revoke`, end the account's sessions.
    #[command(after_help = "Examples:\n  \
        echo \"$PW\" | wulf admin create name=alice role=operator --password-stdin\n  \
        wulf admin create name=bob role=viewer ssh_keys=@/home/bob/.ssh/id_ed25519.pub --password\n  \
        wulf admin ls -l\n  \
        wulf admin -i alice update role=admin\n  \
        wulf admin -i alice update --password\n  \
        wulf admin -i alice revoke\n  \
        wulf admin -i alice delete")]
    Admin(ObjectCmd),
    /// Log in to the head: ask for the password (or read it with --password-stdin) and keep
    /// the session's tokens in ~/.config/wulf/session.json (mode 0600)
    ///
    /// The access token lasts an hour and is renewed as needed; the session lasts a week (the
    /// head's [auth] settings), until `wulf logout`, or until an admin revokes the account's
    /// tokens. A token given with --token, WULF_TOKEN or the config file is used instead of the
    /// session; without a session, the local head's bootstrap token is.
    #[command(after_help = "Examples:\n  wulf login alice\n  \
        wulf --url https://head1:8740 login alice --password-stdin < ~/.wulf-password")]
    Login(crate::login::LoginArgs),
    /// End the session `wulf login` started: on the head, and the session file
    Logout,
    /// Show the account and role the head sees for this command line, and until when
    Whoami,
    /// Expand or compress hostlists like n[0-15,20]
    Hostlist {
        #[command(subcommand)]
        action: HostlistCmd,
    },
    /// Show the head's version, store backend and revision
    Info,
    /// Trust a cluster's CA: fetch it from the head (http://HOST:PORT/boot/ca.pem), show its
    /// subject and SHA-256 fingerprint, and once confirmed keep it in ~/.config/wulf/ca.pem
    Trust(crate::trust::TrustArgs),
    /// The cluster's head nodes: which are up, which are down; remove down ones
    Head(HeadCmd),
    /// The heads' shared log: every head's AUDIT, ERROR and WARNING lines (by default), as
    /// LOG_DIR/head_NAME.log on each head keeps them
    ///
    /// Lines print oldest first: time (UTC), head, level, where in wulfd, message. The head's
    /// full logs are its files: /var/log/wulf/error.log (at its log level), access.log.
    #[command(after_help = "Examples:\n  wulf log --since 1h\n  \
        wulf log --level audit --node n[0-15]\n  wulf log --head head2 -f")]
    Log(crate::log::LogArgs),
    /// Build the initramfs nodes boot into (busybox, NIC drivers, wulf-agent, an init that
    /// fetches the node's image into RAM)
    Initramfs {
        #[command(subcommand)]
        action: crate::initramfs::InitramfsCmd,
    },
    /// Collect a support snapshot (as scyld-sysinfo does): versions, the head's config
    /// (secrets masked), heads, store health, object counts, node status, recent logs,
    /// interfaces, listening sockets and disk use, in a .tar.gz
    ///
    /// Each part that cannot be collected is noted in errors.txt instead. Tokens, keys and
    /// password hashes are never included. Run it on the head (as root to see everything).
    #[command(
        after_help = "Examples:\n  wulf sysinfo\n  wulf sysinfo -o /tmp/head1.tar.gz\n  \
        wulf sysinfo --no-tar -o /tmp/head1-sysinfo"
    )]
    Sysinfo(crate::sysinfo::SysinfoArgs),
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
    /// Write man pages and bash, zsh and fish completions into DIR (for the packages)
    #[command(hide = true)]
    Generate {
        /// Where man/, bash/, zsh/ and fish/ go
        dir: PathBuf,
    },
}

#[derive(Args, Debug)]
pub(crate) struct HeadCmd {
    /// Which heads, by name (repeatable; comma-separated)
    #[arg(short = 'i', long = "ids", global = true, value_name = "NAMES")]
    pub(crate) ids: Vec<String>,
    #[command(subcommand)]
    pub(crate) action: HeadAction,
}

#[derive(Subcommand, Debug)]
pub(crate) enum HeadAction {
    /// List heads: name, up or down, API URLs, version, when it started
    Ls,
    /// Remove down heads, all or none (a head that is up refuses: stop it first)
    Delete,
}

#[derive(Args, Debug)]
pub(crate) struct SimArgs {
    /// How many simulated nodes to run
    #[arg(long, short = 'n', default_value_t = 8)]
    pub(crate) nodes: usize,
    /// Stop after this many seconds (default: run until Ctrl-C)
    #[arg(long, value_name = "SECS")]
    pub(crate) duration: Option<f64>,
    /// Simulated boot time: each node first reports after a random delay up to this
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    pub(crate) boot_secs: f64,
    /// Heads to spread the nodes over: base URLs, comma-separated or repeated (default: the
    /// head of --url). Node i reports to head i mod H. Missing nodes are created through
    /// --url, else the first of these
    #[arg(long, value_name = "URLS", value_delimiter = ',')]
    pub(crate) heads: Vec<String>,
    /// Parallel reporting threads; like wulf-agent, each report goes over a new connection
    /// (TLS resumed with a session ticket). Latency counts from when a report was due
    #[arg(long, default_value_t = 32)]
    pub(crate) connections: usize,
    /// How many nodes poll for commands (the first N by index; default: all). Each keeps a
    /// long poll open, as wulf-agent does: one open file per polling node here and at the
    /// head. Fewer are polled when this process's open-file limit does not allow them all
    #[arg(long, value_name = "N")]
    pub(crate) polls: Option<usize>,
    /// Stop without clean-shutdown reports (the head sees the nodes stop sending status)
    #[arg(long)]
    pub(crate) crash: bool,
    /// Print reports/s and latency every this many seconds (0: only at the end)
    #[arg(long, value_name = "SECS", default_value_t = 0.0)]
    pub(crate) stats: f64,
    /// Do not create missing simulated nodes
    #[arg(long)]
    pub(crate) no_create: bool,
    /// Start a head (wulfd beside this wulf binary, on embedded defaults) for the simulation
    /// and stop it afterwards; print the node status once the nodes are up
    #[arg(long)]
    pub(crate) local_head: bool,
    /// Nodes (a hostlist, like n[0-9]) that accept a soft reboot or shutdown but do not act
    /// on it, as if their shutdown hung (the head then falls back to the BMC). Simulated
    /// nodes otherwise answer exec (hostname, uptime, true, false, sleep N, echo, cat),
    /// reboot, shutdown and orphan like wulf-agent
    #[arg(long, value_name = "NODES")]
    pub(crate) ignore_soft: Option<String>,
    /// Boot storm: N normal nodes (MACs 02:53:…) power on at once and boot as real ones do
    /// against the head: DHCP as PXE firmware, the loader over TFTP, DHCP as iPXE, the boot
    /// script, kernel, initramfs and image in full (each checked against its SHA-256), then
    /// enrollment and a status report. Run it as root inside a network namespace whose
    /// interface (--iface) is on the head's cluster network with an address of its own (for
    /// the admin API); each node's address is added to that interface and its requests come
    /// from it. Prints time to all up, per-node boot
    /// times, failed boots and bytes (--json: as JSON); exit 1 when a boot failed
    #[arg(long, value_name = "N")]
    pub(crate) boot_storm: Option<usize>,
    /// Boot storm: every node powers on at a random moment within this many seconds
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 1.0,
        requires = "boot_storm"
    )]
    pub(crate) spread: f64,
    /// Boot storm: a node not up this many seconds after its power-on has failed
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 300.0,
        requires = "boot_storm"
    )]
    pub(crate) node_timeout: f64,
    /// Boot storm: nodes booting at the same time, at most (the others power on when one
    /// is done; their boot time still counts from their power-on moment)
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1024,
        requires = "boot_storm"
    )]
    pub(crate) concurrency: usize,
    /// Boot storm: the interface on the head's cluster network
    #[arg(
        long,
        value_name = "NAME",
        default_value = "eth0",
        requires = "boot_storm"
    )]
    pub(crate) iface: String,
    /// Boot storm: the `_boot_config` of the storm nodes this creates (nodes that exist
    /// keep theirs); needed when some do not exist yet
    #[arg(long, value_name = "NAME", requires = "boot_storm")]
    pub(crate) boot_config: Option<String>,
}

#[derive(Subcommand, Debug)]
pub(crate) enum HostlistCmd {
    /// Print each name of a hostlist, one per line
    Expand { hostlist: Vec<String> },
    /// Print names (arguments, or stdin lines) as the shortest hostlist
    Compress { names: Vec<String> },
}

#[derive(Args, Debug)]
pub(crate) struct ObjectCmd {
    /// Which objects (repeatable; comma-separated; hostlists and %group for nodes)
    #[arg(short = 'i', long = "ids", global = true, value_name = "IDS")]
    pub(crate) ids: Vec<String>,
    /// Every object of this kind (needed to update or delete without --ids)
    #[arg(short = 'a', long, global = true)]
    pub(crate) all: bool,
    #[command(subcommand)]
    pub(crate) action: Action,
}

// Every object's actions. An action some objects take starts its help with whose it is
// ("Nodes only: …", "Cluster only: …"; the phrases are in actions.rs): each object's --help
// then lists only its own actions, and the others refuse it.
#[derive(Subcommand, Debug)]
pub(crate) enum Action {
    /// List objects (-l table, -L everything, --json)
    Ls {
        /// Names of objects to list (same as --ids)
        names: Vec<String>,
    },
    /// Create objects: key=value fields, key=@file to upload a file field
    #[command(after_help = "Examples:\n  wulf node create --count 4 index=0\n  \
        wulf image create name=rocky9 --from-dir /srv/images/rocky9\n  \
        wulf boot create DefaultBoot --from-image bookworm cmdline=console=ttyS0,115200")]
    Create {
        /// Fields: name=… and the kind's other fields; FILE fields take @PATH. Nodes and
        /// attribute groups also take reserved attributes: _status_secs=2. With --from-image
        /// the boot config's name may come first, bare: NAME
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
        /// Boot configs: take the kernel (/boot/vmlinuz-VER) from this image, build an
        /// initramfs from the image's own lib/modules/VER (as `wulf initramfs build` does) and
        /// create the boot config with image, kernel and initramfs (`wulf boot create NAME
        /// --from-image IMAGE`)
        #[arg(long, value_name = "IMAGE", conflicts_with_all = ["from_dir", "from_tar", "count", "macs"])]
        from_image: Option<String>,
        /// With --from-image: which of the image's kernels, when it has several
        #[arg(long, value_name = "VER", requires = "from_image")]
        kernel_version: Option<String>,
        /// With --from-image: more kernel modules for the initramfs, comma-separated (besides
        /// the default NIC drivers)
        #[arg(
            long,
            value_name = "M1,M2",
            value_delimiter = ',',
            requires = "from_image"
        )]
        drivers: Vec<String>,
        /// Admin accounts: read the password from the first line of standard input
        #[arg(long)]
        password_stdin: bool,
        /// Admin accounts: ask for the password on the terminal (twice, not shown)
        #[arg(long, conflicts_with = "password_stdin")]
        password: bool,
        /// Nodes: create one node of type standalone (a server wulf does not boot) and print
        /// its one-time enrollment token for `wulf-agent --standalone` (shown only now)
        #[arg(long, conflicts_with_all = ["count", "macs"])]
        enroll_token: bool,
        /// With --enroll-token: how long the token is good for (3600, 90m, 24h, 7d)
        #[arg(long, value_name = "DURATION", requires = "enroll_token",
            value_parser = crate::standalone::parse_ttl)]
        enroll_token_ttl: Option<u64>,
    },
    /// Change fields of the selected objects (and reserved _attributes of nodes and groups)
    Update {
        #[arg(value_name = "KEY=VALUE", required_unless_present_any = ["password_stdin", "password"])]
        pairs: Vec<String>,
        /// Admin accounts: read the new password from the first line of standard input (the
        /// account's sessions end)
        #[arg(long)]
        password_stdin: bool,
        /// Admin accounts: ask for the new password on the terminal (twice, not shown)
        #[arg(long, conflicts_with = "password_stdin")]
        password: bool,
    },
    /// Delete the selected objects
    Delete,
    /// Admin accounts only: end every session and token of the selected accounts (they log
    /// in again; the bootstrap token is not affected)
    Revoke,
    /// Nodes and attribute groups only: set attributes, name=value or name=@file
    Set {
        #[arg(value_name = "NAME=VALUE", required = true)]
        pairs: Vec<String>,
    },
    /// Nodes and attribute groups only: remove attributes
    Clear {
        #[arg(value_name = "NAME", required = true)]
        names: Vec<String>,
    },
    /// Nodes only: add nodes to attribute groups (appended, in order)
    Join {
        #[arg(value_name = "GROUP", required = true)]
        groups: Vec<String>,
    },
    /// Nodes only: remove nodes from attribute groups
    Leave {
        #[arg(value_name = "GROUP", required = true)]
        groups: Vec<String>,
    },
    /// Boot configs and images only: upload a file field (boot: kernel, initramfs; image:
    /// content)
    Upload { field: String, file: PathBuf },
    /// Boot configs and images only: download a file field to a file (or stdout with -o -)
    Download {
        field: String,
        #[arg(short = 'o', long, value_name = "FILE")]
        output: PathBuf,
    },
    /// Nodes only: MAC addresses that asked the head's DHCP server for an address but belong
    /// to no node (while the cluster does not accept new nodes). Create nodes from them with
    /// `wulf node unknown --json | jq -r '.[].mac' | wulf node create --macs -`
    Unknown,
    /// Nodes only: a node's box was replaced: give the node the new box's MAC
    ///
    /// Exactly one node. It keeps its name, index, IP, attributes and groups; the old MAC
    /// and its _altmacs are dropped (give _altmacs=… for the new box's others); a pxe+local
    /// node boots PXE again; its credential is revoked (the new box enrolls when it boots)
    /// and the old box's status is forgotten. A MAC another node, host or BMC has is refused.
    #[command(after_help = "Example:\n  wulf node -i n5 replace mac=52:54:00:12:34:56")]
    Replace {
        #[arg(value_name = "mac=NEW", required = true)]
        pairs: Vec<String>,
    },
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
    /// Cluster only: write a backup of the whole cluster to a file
    ///
    /// One consistent snapshot of every object (admin accounts with their password hashes),
    /// the cluster's secrets (token signing key, admin token, node secret, TLS CA) and the
    /// list of files the objects use (sha256, size). The backup is a secret: keep it like
    /// the head's data directory. With --files, FILE is a tar that also carries the files,
    /// each checked against its sha256. Restore with `wulfd restore FILE` into an empty
    /// store (docs/admin/backup.md).
    #[command(after_help = "Examples:\n  wulf cluster backup -o cluster.jsonl\n  \
        wulf cluster backup -o cluster.tar --files\n  \
        wulfd --data-dir /var/lib/wulf restore cluster.tar")]
    Backup {
        /// The file to write (refused if it exists, unless --force)
        #[arg(short = 'o', long, value_name = "FILE")]
        output: PathBuf,
        /// Also carry the files (kernels, initramfs, images): FILE becomes a tar
        #[arg(long)]
        files: bool,
        /// Overwrite FILE if it exists
        #[arg(long)]
        force: bool,
    },
    /// Cluster only: import a ClusterWare/Scyld /etc/beowulf/config (net, hosts, boot
    /// configs, nodes) in one transaction
    ///
    /// Kernel and initrd files the config names are uploaded, then every object is created
    /// at once or none is. Errors name the line; exit 2 for a bad file. See
    /// docs/admin/migrate.md.
    #[command(
        after_help = "Examples:\n  wulf cluster import-config /etc/beowulf/config --dry-run\n  \
        wulf cluster import-config /etc/beowulf/config"
    )]
    ImportConfig {
        file: PathBuf,
        /// Check everything with the head and print what would be created; write nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Cluster only: write the cluster as a ClusterWare/Scyld /etc/beowulf/config
    #[command(
        after_help = "Examples:\n  wulf cluster export-config -o beowulf.config   \
        # also writes beowulf.config.d/ with the kernels and initrds"
    )]
    ExportConfig {
        /// The file to write (and FILE.d/ with the boot files); stdout without
        #[arg(short = 'o', long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Nodes only: node status as the head sees it now
    ///
    /// Without options: one row per state (up, booting, down with its reason, new) listing
    /// the nodes as hostlist ranges, pasteable into --ids. -l: one row per node (the IP it
    /// reported, state, last change, uptime, load, RAM, busy). -L: everything each node
    /// reported (IP, hostname, kernel, cmdline, modules, SELinux, hardware, agent cost).
    /// --json: the same as JSON.
    Status {
        /// A live full-screen view that updates as reports arrive (q quits); without a
        /// terminal, prints the summary again each time it changes
        #[arg(long, short = 'r')]
        refresh: bool,
        /// With --refresh: stop after this many seconds
        #[arg(long, value_name = "SECS", requires = "refresh")]
        refresh_for: Option<f64>,
    },
    /// Nodes only: power through each node's BMC (its power_uri): status, on, off, cycle,
    /// reset
    ///
    /// Prints one line per outcome with its nodes as a hostlist (`ok (on) n[0-99]`,
    /// `failed (BMC timeout) n[100-103]`); -l one row per node with the path taken, the time
    /// and the BMC's message; --json the head's reply. Exit 1 if any node failed.
    Power(PowerArgs),
    /// Nodes only: reboot cleanly through each node's agent, power-cycling through the BMC
    /// any node that has not gone down within --timeout
    ///
    /// A node whose agent is not up goes straight to the BMC (its result says so). --soft
    /// never touches the BMC; --hard goes straight to it. Output and exit code as for power.
    Reboot(SoftArgs),
    /// Nodes only: power off cleanly through each node's agent, powering off through the BMC
    /// any node that has not gone down within --timeout
    ///
    /// A node whose agent is not up goes straight to the BMC (its result says so). --soft
    /// never touches the BMC; --hard goes straight to it. Output and exit code as for power.
    Shutdown(SoftArgs),
    /// Nodes only: make nodes orphans now, as before head maintenance: each agent stops
    /// reporting and follows its _orphan_policy (reboot, idle or run)
    ///
    /// Output and exit code as for power.
    Orphan,
    /// Nodes and images only: run a command on every selected node, output grouped like
    /// clush -b (images: in the image, saved as a new version when it exits 0)
    ///
    /// Images: `wulf image exec NAME -- CMD…` unpacks the image into a temporary directory
    /// and runs CMD chrooted there (own mount and PID namespaces; /proc, /dev, /sys mounted;
    /// the host's resolv.conf). Exit 0 uploads the result as the image's new content, with
    /// the old content's sha256 as parent_sha256; any other exit changes nothing. See
    /// docs/admin/images.md.
    ///
    /// Nodes with identical output and exit code are printed once, under a line naming them
    /// as a hostlist (`---------------- n[0-3] (exit 0)`). -l: each node's raw output, every
    /// line prefixed `node: `. --json: stdout, stderr and exit code per node. Exit 1 if the
    /// command failed (or could not run) on any node; the failed nodes are named on stderr.
    ///
    /// The command runs without a shell (use sh -c '…' for pipes). Everything after `--`
    /// belongs to the command, `then` included; without `--`, `then` starts the next action.
    #[command(after_help = "Examples:\n  wulf node -i n[0-15] exec uptime\n  \
        wulf node -i n[0-15] exec --up -- df -h /tmp\n  \
        echo hello | wulf node -i n[0-3] exec --stdin -- cat\n  \
        wulf image exec rocky9 -- dnf -y install vim")]
    Exec(ExecArgs),
    /// Images only: build an image's root filesystem here and upload it as its content
    ///
    /// Debian (`--debian SUITE`) with mmdebstrap, or debootstrap when mmdebstrap is missing,
    /// a RHEL-like release (`--rpm RELEASEVER`) with dnf, or an OCI container image
    /// (`--from-container`): an OCI layout directory or a tarball
    /// of one (`skopeo copy … oci-archive:`, `docker save`). The image is created if absent;
    /// its content is replaced as with `create --from-dir`. Needs root. See
    /// docs/admin/images.md.
    #[command(
        after_help = "Examples:\n  wulf image build bookworm --debian bookworm \
        --packages openssh-server,iproute2 --include-agent\n  \
        wulf image build alpine --from-container alpine-oci.tar\n  \
        wulf image build rocky9 --rpm 9 --packages @core,kernel-modules --include-agent"
    )]
    Build(BuildArgs),
    /// Images only: an interactive shell in the image, saved as a new version when the shell
    /// exits 0 (`exit 1` leaves the image as it was)
    Shell {
        /// The image
        name: String,
    },
    /// Nodes only: wait until every selected node is up, down or booting
    ///
    /// Wakes on each status change the head sees. Prints `ok (STATE) NODES` when every
    /// node is in the state; exit 1 at --timeout, naming the nodes that are not and the
    /// state each is in.
    Waitfor(WaitforArgs),
    /// Nodes only: issue a fresh one-time enrollment token for one standalone node (type
    /// standalone: a server wulf did not boot) for `wulf-agent --standalone`; the earlier
    /// token stops working
    EnrollToken {
        /// How long the token is good for (3600, 90m, 24h, 7d)
        #[arg(long, value_name = "DURATION", value_parser = crate::standalone::parse_ttl)]
        ttl: Option<u64>,
    },
}

/// `power status|on|off|cycle|reset`.
#[derive(Args, Debug)]
pub(crate) struct PowerArgs {
    /// What to do: status, on, off, cycle (off, then on) or reset
    #[arg(value_enum)]
    pub(crate) action: PowerVerb,
    /// Seconds each BMC call may take
    #[arg(long, value_name = "SECS", default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) timeout: u64,
    /// How many nodes are acted on at once
    #[arg(long, value_name = "N", default_value_t = 64,
        value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub(crate) fanout: u64,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PowerVerb {
    Status,
    On,
    Off,
    Cycle,
    Reset,
}

/// `reboot` and `shutdown`.
#[derive(Args, Debug)]
pub(crate) struct SoftArgs {
    /// Straight to the BMC, without asking the agent
    #[arg(long, conflicts_with = "soft")]
    pub(crate) hard: bool,
    /// Only ask the agent; never fall back to the BMC
    #[arg(long)]
    pub(crate) soft: bool,
    /// Seconds a node has to go down after the agent is asked, before the BMC fallback
    /// (and the bound on each BMC call)
    #[arg(long, value_name = "SECS", default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) timeout: u64,
    /// How many nodes are acted on at once
    #[arg(long, value_name = "N", default_value_t = 64,
        value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub(crate) fanout: u64,
}

/// `exec [--up] [--stdin] [--timeout S] [--fanout N] -- CMD…`.
#[derive(Args, Debug)]
pub(crate) struct ExecArgs {
    /// Skip nodes that are not up (named on stderr) instead of failing them
    #[arg(long)]
    pub(crate) up: bool,
    /// Read all of standard input and send it to the command on every node
    #[arg(long)]
    pub(crate) stdin: bool,
    /// Seconds the command may run on a node before it is killed
    #[arg(long, value_name = "SECS", default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub(crate) timeout: u64,
    /// How many nodes run it at once
    #[arg(long, value_name = "N", default_value_t = 64,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) fanout: u64,
    /// The program and its arguments
    #[arg(
        value_name = "CMD",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub(crate) command: Vec<String>,
}

/// `image build NAME --debian SUITE | --rpm RELEASEVER | --from-container PATH`.
#[derive(Args, Debug)]
pub(crate) struct BuildArgs {
    /// The image (created if it does not exist)
    pub(crate) name: String,
    /// Build Debian SUITE (bookworm or trixie), variant minbase
    #[arg(
        long,
        value_name = "SUITE",
        required_unless_present_any = ["from_container", "rpm"],
        conflicts_with_all = ["from_container", "rpm"]
    )]
    pub(crate) debian: Option<String>,
    /// Build a RHEL-like image of release RELEASEVER (e.g. 9) with dnf --installroot from
    /// --repo (default: Rocky Linux's BaseOS and AppStream), installing --packages
    #[arg(long, value_name = "RELEASEVER", conflicts_with = "from_container")]
    pub(crate) rpm: Option<String>,
    /// RPM: a repository's base URL (http://, https://, file:/; $releasever and $basearch
    /// are expanded), repeated for several
    #[arg(long, value_name = "URL", requires = "rpm")]
    pub(crate) repo: Vec<String>,
    /// RPM: a key the packages must be signed with (URL or file:/), repeated for several
    /// [default with the default repositories: Rocky Linux's key]
    #[arg(long, value_name = "URL", requires = "rpm")]
    pub(crate) gpgkey: Vec<String>,
    /// RPM: install packages that are not signed (a local repository of your own)
    #[arg(long, requires = "rpm")]
    pub(crate) no_gpgcheck: bool,
    /// Debian: more packages to install; RPM: the packages to install (required; groups as
    /// @core). Comma-separated (or repeated)
    #[arg(long, value_name = "PKG,PKG", value_delimiter = ',')]
    pub(crate) packages: Vec<String>,
    /// Debian: the mirror to install from
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://deb.debian.org/debian"
    )]
    pub(crate) mirror: String,
    /// Unpack this OCI image (layout directory or tarball of one) instead
    #[arg(long, value_name = "PATH")]
    pub(crate) from_container: Option<PathBuf>,
    /// Put wulf-agent into the image as /usr/sbin/wulf-agent
    #[arg(long)]
    pub(crate) include_agent: bool,
    /// The wulf-agent to include [default: beside this wulf, then on $PATH]
    #[arg(long, value_name = "PATH", requires = "include_agent")]
    pub(crate) agent: Option<PathBuf>,
}

/// `waitfor up|down|booting [--timeout S]`.
#[derive(Args, Debug)]
pub(crate) struct WaitforArgs {
    /// The state to wait for
    #[arg(value_enum)]
    pub(crate) state: WaitState,
    /// Give up after this many seconds
    #[arg(long, value_name = "SECS", default_value_t = 300.0)]
    pub(crate) timeout: f64,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WaitState {
    Up,
    Down,
    Booting,
}

impl WaitState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            WaitState::Up => "up",
            WaitState::Down => "down",
            WaitState::Booting => "booting",
        }
    }
}

impl ObjectCmd {
    /// The `ids` query for the selection, or None for "not given".
    pub(crate) fn ids_query(&self, extra: &[String]) -> Option<String> {
        let all: Vec<&str> = self
            .ids
            .iter()
            .chain(extra)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .collect();
        (!all.is_empty()).then(|| all.join(","))
    }

    /// `?ids=…` or `?all=true`, requiring one of them for changes to many objects.
    pub(crate) fn target_query(&self, kind: Kind, action: &str) -> Result<String, Fail> {
        match self.ids_query(&[]) {
            Some(ids) => Ok(format!("?ids={}", encode(&ids))),
            None if self.all || kind == Kind::Cluster => Ok("?all=true".to_string()),
            None => Err(usage(format!(
                "{action} needs --ids (-i) to say which {}s, or --all",
                kind.title()
            ))),
        }
    }
}

/// Comma-separated and repeated values as one list, blanks dropped.
pub(crate) fn split_list(v: &[String]) -> Vec<String> {
    v.iter()
        .flat_map(|s| s.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}
