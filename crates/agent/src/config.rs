//! Where the agent finds its head URLs, node UID and enrollment token (or credential).
//!
//! Each setting comes from the first source that has it: command-line flags, then the kernel
//! command line (`wulf.head=URL wulf.node=UID wulf.enroll=TOKEN`, put there by the head's
//! iPXE script), then `<state-dir>/agent.conf` (`head=`, `node=`, `enroll=` lines, written by
//! the initramfs). The enrollment token is traded for the node's credential at start (see
//! [`crate::enroll`]); a credential given outright (`--cred`, `wulf.cred=`, `cred=`) is used
//! as it is.
//!
//! The commands a soft reboot and poweroff run come the same way (`--reboot-cmd`,
//! `wulf.reboot_cmd=`, `reboot_cmd=`; `--poweroff-cmd`, `wulf.poweroff_cmd=`,
//! `poweroff_cmd=`): a program and its arguments, separated by spaces or commas (the kernel
//! command line has no spaces inside a parameter: `wulf.reboot_cmd=systemctl,reboot`), run
//! without a shell. The defaults are `reboot` and `poweroff`, which busybox and systemd both
//! provide.

/// The agent's configuration file's name in the state directory.
pub const CONF_FILE: &str = "agent.conf";

/// Settings from one source; any may be missing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Partial {
    pub heads: Vec<String>,
    pub node: Option<String>,
    pub cred: Option<String>,
    pub enroll: Option<String>,
    /// SHA-256 of the cluster CA certificate (`wulf.ca=`, `ca=`, `--ca`).
    pub ca: Option<String>,
    pub reboot_cmd: Option<Vec<String>>,
    pub poweroff_cmd: Option<Vec<String>>,
}

/// The reboot command when none is configured.
pub const DEFAULT_REBOOT: &str = "reboot";
/// The poweroff command when none is configured.
pub const DEFAULT_POWEROFF: &str = "poweroff";

/// Split a configured command into its program and arguments (spaces or commas separate).
pub fn split_command(s: &str) -> Vec<String> {
    s.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Everything the agent needs to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Head base URLs, in the order to try them.
    pub heads: Vec<String>,
    pub node: String,
    /// The node's credential: given outright, or (empty until then) got by enrolling.
    pub cred: String,
    /// The one-time enrollment token of this boot, when no credential was given.
    pub enroll: Option<String>,
    /// The pinned fingerprint of the cluster CA (see [`crate::tls`]).
    pub ca: Option<String>,
    /// What a soft reboot runs.
    pub reboot_cmd: Vec<String>,
    /// What a soft poweroff runs.
    pub poweroff_cmd: Vec<String>,
    /// True when the reboot command was configured rather than the default.
    pub reboot_cmd_set: bool,
    /// True when the machine was booted by a wulf head (`wulf.node=` on its kernel command
    /// line). An orphan reboots on its own only then, or when its reboot command is
    /// configured: an agent started by hand on some other machine never reboots it.
    pub booted_by_head: bool,
    /// True for `--standalone`: a server wulf did not boot, whose credential is kept on disk.
    pub standalone: bool,
}

impl Settings {
    /// Settings with these heads, node and credential, and the default commands.
    pub fn new(heads: Vec<String>, node: &str, cred: &str) -> Settings {
        Settings {
            heads,
            node: node.to_string(),
            cred: cred.to_string(),
            enroll: None,
            ca: None,
            reboot_cmd: vec![DEFAULT_REBOOT.to_string()],
            poweroff_cmd: vec![DEFAULT_POWEROFF.to_string()],
            reboot_cmd_set: false,
            booted_by_head: false,
            standalone: false,
        }
    }

    /// May an orphan reboot this machine on its own?
    pub fn self_reboot(&self) -> bool {
        self.booted_by_head || self.reboot_cmd_set
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("missing {missing}: give {flags}, or {cmdline} on the kernel command line, or {conf} in {conf_path}")]
    Missing {
        missing: String,
        flags: String,
        cmdline: String,
        conf: String,
        conf_path: String,
    },
    #[error("bad head URL '{0}': only https:// and http:// URLs are supported")]
    BadUrl(String),
    #[error(
        "bad cluster CA fingerprint '{0}': expected the SHA-256 of the CA certificate, 64 hex \
         digits (wulf.ca= in the head's boot script)"
    )]
    BadPin(String),
    #[error("{0}")]
    NoPin(crate::tls::TlsError),
    #[error("{0} is empty: give a program, like {0}=reboot")]
    EmptyCommand(&'static str),
}

/// Split a comma-separated list of head URLs, dropping empty items.
pub fn split_heads(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .collect()
}

/// Normalise a head URL: `https://` is added when there is no scheme, trailing `/` removed.
pub fn normalize_head(h: &str) -> Result<String, ConfigError> {
    let h = h.trim();
    let (scheme, rest) = match h.split_once("://") {
        Some((s @ ("http" | "https"), rest)) => (s, rest),
        Some(_) => return Err(ConfigError::BadUrl(h.to_string())),
        None => ("https", h),
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.starts_with('/') {
        return Err(ConfigError::BadUrl(h.to_string()));
    }
    Ok(format!("{scheme}://{rest}"))
}

fn unquote(v: &str) -> &str {
    let v = v.trim();
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|s| s.strip_suffix(q)) {
            return inner;
        }
    }
    v
}

fn set(p: &mut Partial, key: &str, value: &str) {
    let value = unquote(value);
    if value.is_empty() {
        return;
    }
    match key {
        "head" => p.heads.extend(split_heads(value)),
        "node" => p.node = Some(value.to_string()),
        "cred" => p.cred = Some(value.to_string()),
        "enroll" => p.enroll = Some(value.to_string()),
        "ca" => p.ca = Some(value.to_string()),
        "reboot_cmd" => p.reboot_cmd = Some(split_command(value)),
        "poweroff_cmd" => p.poweroff_cmd = Some(split_command(value)),
        _ => {}
    }
}

/// The `wulf.head=`, `wulf.node=`, `wulf.enroll=`, `wulf.cred=`, `wulf.reboot_cmd=` and
/// `wulf.poweroff_cmd=` parameters of a kernel command line.
/// Parameters after a lone `--` belong to init and are ignored.
pub fn from_cmdline(cmdline: &str) -> Partial {
    let mut p = Partial::default();
    for param in cmdline.split_whitespace() {
        if param == "--" {
            break;
        }
        let param = param.trim_matches('"');
        if let Some((k, v)) = param.split_once('=') {
            if let Some(key) = k.strip_prefix("wulf.") {
                set(&mut p, key, v);
            }
        }
    }
    p
}

/// `key=value` lines of `agent.conf`; `#` starts a comment, unknown keys are ignored.
pub fn from_conf(text: &str) -> Partial {
    let mut p = Partial::default();
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = t.split_once('=') {
            set(&mut p, k.trim(), v);
        }
    }
    p
}

/// Take each setting from the first source that has it. `conf_path` is only used in the
/// error message.
pub fn resolve(sources: &[Partial], conf_path: &str) -> Result<Settings, ConfigError> {
    let heads = sources
        .iter()
        .map(|s| &s.heads)
        .find(|h| !h.is_empty())
        .cloned()
        .unwrap_or_default();
    let node = sources.iter().find_map(|s| s.node.clone());
    let cred = sources.iter().find_map(|s| s.cred.clone());
    let enroll = sources.iter().find_map(|s| s.enroll.clone());
    let ca = match sources.iter().find_map(|s| s.ca.clone()) {
        Some(c) => {
            let n = wulf_api::tls::normalize_fingerprint(&c);
            if n.len() != 64 || !n.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ConfigError::BadPin(c));
            }
            Some(n)
        }
        None => None,
    };
    let reboot = sources.iter().find_map(|s| s.reboot_cmd.clone());
    let poweroff = sources.iter().find_map(|s| s.poweroff_cmd.clone());
    let mut missing = Vec::new();
    if heads.is_empty() {
        missing.push(("head URL", "--head", "wulf.head=", "head="));
    }
    if node.is_none() {
        missing.push(("node UID", "--node", "wulf.node=", "node="));
    }
    if cred.is_none() && enroll.is_none() {
        missing.push(("enrollment token", "--enroll", "wulf.enroll=", "enroll="));
    }
    let cred = match (cred, enroll) {
        (Some(c), _) => Some((c, None)),
        (None, Some(t)) => Some((String::new(), Some(t))),
        (None, None) => None,
    };
    if let (Some(node), Some((cred, enroll)), false) = (node, cred, heads.is_empty()) {
        let mut normalized: Vec<String> = Vec::with_capacity(heads.len());
        for h in &heads {
            let n = normalize_head(h)?;
            if !normalized.contains(&n) {
                normalized.push(n);
            }
        }
        if ca.is_none() {
            if let Some(h) = normalized.iter().find(|h| h.starts_with("https://")) {
                return Err(ConfigError::NoPin(crate::tls::TlsError::NoPin {
                    head: h.clone(),
                }));
            }
        }
        let mut settings = Settings::new(normalized, &node, &cred);
        settings.enroll = enroll;
        settings.ca = ca;
        if let Some(cmd) = reboot {
            if cmd.is_empty() {
                return Err(ConfigError::EmptyCommand("reboot_cmd"));
            }
            settings.reboot_cmd = cmd;
            settings.reboot_cmd_set = true;
        }
        if let Some(cmd) = poweroff {
            if cmd.is_empty() {
                return Err(ConfigError::EmptyCommand("poweroff_cmd"));
            }
            settings.poweroff_cmd = cmd;
        }
        return Ok(settings);
    }
    type Names = (&'static str, &'static str, &'static str, &'static str);
    let join = |f: fn(&Names) -> &'static str, sep: &str| {
        missing.iter().map(f).collect::<Vec<_>>().join(sep)
    };
    Err(ConfigError::Missing {
        missing: join(|m| m.0, " and "),
        flags: join(|m| m.1, " "),
        cmdline: join(|m| m.2, " "),
        conf: join(|m| m.3, " "),
        conf_path: conf_path.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_command_line() {
        let p = from_cmdline(
            "console=ttyS0 wulf.head=http://10.0.0.1:8740 wulf.node=abc wulf.name=n0 \
             wulf.style=rwram wulf.cred=s3cret quiet -- wulf.node=init",
        );
        assert_eq!(
            p,
            Partial {
                heads: vec!["http://10.0.0.1:8740".into()],
                node: Some("abc".into()),
                cred: Some("s3cret".into()),
                ..Default::default()
            }
        );
        let p = from_cmdline("wulf.head=http://a:1,http://b:2 \"wulf.node=x\"");
        assert_eq!(p.heads, vec!["http://a:1", "http://b:2"]);
        assert_eq!(p.node.as_deref(), Some("x"));
        assert_eq!(
            from_cmdline("quiet wulf.cred= notwulf.node=x"),
            Partial::default()
        );
        let p = from_cmdline("wulf.head=https://h:8740 wulf.node=u wulf.enroll=t0k3n");
        assert_eq!(p.enroll.as_deref(), Some("t0k3n"));
        assert_eq!(p.cred, None);
    }

    #[test]
    fn an_enrollment_token_stands_in_for_the_credential() {
        let conf = from_conf("head=http://h\nnode=n\nenroll=t1\n");
        let s = resolve(std::slice::from_ref(&conf), "").expect("resolve");
        assert_eq!((s.cred.as_str(), s.enroll.as_deref()), ("", Some("t1")));
        // A credential given outright is used as it is.
        let flags = Partial {
            cred: Some("c".into()),
            ..Default::default()
        };
        let s = resolve(&[flags, conf], "").expect("resolve");
        assert_eq!((s.cred.as_str(), s.enroll.as_deref()), ("c", None));
    }

    #[test]
    fn agent_conf() {
        let p = from_conf(
            "# written by the initramfs\n head = http://h1:8740 \nnode=\"u1\"\ncred='c1'\nother=x\nbad line\n",
        );
        assert_eq!(
            p,
            Partial {
                heads: vec!["http://h1:8740".into()],
                node: Some("u1".into()),
                cred: Some("c1".into()),
                ..Default::default()
            }
        );
        let p = from_conf("head=http://a\nhead=http://b,http://c\n");
        assert_eq!(p.heads, vec!["http://a", "http://b", "http://c"]);
    }

    #[test]
    fn first_source_wins_per_setting() {
        let flags = Partial {
            heads: vec![],
            node: Some("flag-node".into()),
            cred: None,
            ..Default::default()
        };
        let pin = "ab".repeat(32);
        let cmdline = from_cmdline(&format!(
            "wulf.head=10.0.0.1:8740/ wulf.cred=cmd-cred wulf.ca={}",
            pin.to_uppercase()
        ));
        let conf = from_conf("head=http://conf\nnode=conf-node\ncred=conf-cred\nca=00\n");
        let s = resolve(&[flags, cmdline, conf], "/etc/wulf/agent.conf").expect("resolve");
        assert_eq!(
            s,
            Settings {
                ca: Some(pin),
                ..Settings::new(
                    vec!["https://10.0.0.1:8740".into()],
                    "flag-node",
                    "cmd-cred"
                )
            }
        );
        assert_eq!(s.reboot_cmd, ["reboot"]);
        assert_eq!(s.poweroff_cmd, ["poweroff"]);
        assert!(!s.reboot_cmd_set);
    }

    #[test]
    fn missing_settings_are_named() {
        let e = resolve(&[Partial::default()], "/etc/wulf/agent.conf").expect_err("missing");
        assert_eq!(
            e.to_string(),
            "missing head URL and node UID and enrollment token: give --head --node --enroll, \
             or wulf.head= wulf.node= wulf.enroll= on the kernel command line, or head= node= \
             enroll= in /etc/wulf/agent.conf"
        );
        let only_cred = Partial {
            heads: vec!["http://h".into()],
            node: Some("n".into()),
            cred: None,
            ..Default::default()
        };
        let e = resolve(&[only_cred], "/x/agent.conf").expect_err("missing");
        assert_eq!(
            e.to_string(),
            "missing enrollment token: give --enroll, or wulf.enroll= on the kernel command \
             line, or enroll= in /x/agent.conf"
        );
    }

    #[test]
    fn head_urls() {
        assert_eq!(
            normalize_head("http://h:8740/").as_deref(),
            Ok("http://h:8740")
        );
        assert_eq!(
            normalize_head("10.0.0.1:8740").as_deref(),
            Ok("https://10.0.0.1:8740")
        );
        assert_eq!(normalize_head("https://h/").as_deref(), Ok("https://h"));
        assert!(normalize_head("ftp://h").is_err());
        assert!(normalize_head("http://").is_err());
        assert!(normalize_head("http:///x").is_err());
        assert!(normalize_head("").is_err());
        assert_eq!(
            normalize_head(" http://h/api/ ").as_deref(),
            Ok("http://h/api")
        );
        let s = resolve(
            &[Partial {
                heads: split_heads("http://a, http://a/ ,,http://b"),
                node: Some("n".into()),
                cred: Some("c".into()),
                ..Default::default()
            }],
            "",
        )
        .expect("resolve");
        assert_eq!(s.heads, vec!["http://a", "http://b"]);
    }

    #[test]
    fn https_heads_need_a_good_pin() {
        let conf = |extra: &str| from_conf(&format!("head=https://h:1\nnode=n\ncred=c\n{extra}"));
        let e = resolve(&[conf("")], "").expect_err("no pin");
        assert!(e.to_string().contains("no pin of the cluster CA"), "{e}");
        let e = resolve(&[conf("ca=abc")], "").expect_err("short pin");
        assert!(matches!(e, ConfigError::BadPin(_)), "{e}");
        let s = resolve(&[conf(&format!("ca={}", "0f".repeat(32)))], "").expect("pinned");
        assert_eq!(s.ca.as_deref(), Some("0f".repeat(32).as_str()));
        // A plain-HTTP head needs none.
        let p = from_conf("head=http://h:1\nnode=n\ncred=c\n");
        assert_eq!(resolve(&[p], "").expect("http").ca, None);
    }

    #[test]
    fn power_commands() {
        let cmdline = from_cmdline("wulf.reboot_cmd=systemctl,reboot wulf.poweroff_cmd=/bin/true");
        assert_eq!(
            cmdline.reboot_cmd,
            Some(vec!["systemctl".to_string(), "reboot".to_string()])
        );
        let conf = from_conf("head=http://h\nnode=n\ncred=c\nreboot_cmd = /sbin/reboot -f\n");
        assert_eq!(
            conf.reboot_cmd,
            Some(vec!["/sbin/reboot".to_string(), "-f".to_string()])
        );
        // The kernel command line comes first.
        let s = resolve(&[cmdline, conf.clone()], "").expect("resolve");
        assert_eq!(s.reboot_cmd, ["systemctl", "reboot"]);
        assert_eq!(s.poweroff_cmd, ["/bin/true"]);
        assert!(s.reboot_cmd_set);
        let s = resolve(&[conf], "").expect("resolve");
        assert_eq!(s.reboot_cmd, ["/sbin/reboot", "-f"]);
        assert_eq!(s.poweroff_cmd, ["poweroff"]);
        let blank = Partial {
            reboot_cmd: Some(vec![]),
            ..from_conf("head=http://h\nnode=n\ncred=c\n")
        };
        assert_eq!(
            resolve(&[blank], "").expect_err("empty").to_string(),
            "reboot_cmd is empty: give a program, like reboot_cmd=reboot"
        );
    }
}
