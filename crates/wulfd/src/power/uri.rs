//! `power_uri`: where a node's BMC is and how to log in to it.
//!
//! A node's own `power_uri` field wins, else its effective `_power_uri` attribute (so one
//! group sets it for a rack). `{…}` references are filled in from the node: `{name}`,
//! `{uid}`, `{index}`, `{mac}`, `{ip}`, any effective attribute `{_bmc_pass}`, and one entry
//! of a `name=value` list attribute `{_ips.bmc}`. Filled-in values are percent-encoded, so a
//! password with `@` or `:` in it works. Then the URI is parsed:
//!
//! - `ipmi://USER:PASS@HOST[:PORT][?cipher=N]`: IPMI 2.0 (lanplus), port 623, cipher suite 3.
//! - `redfish://USER:PASS@HOST[:PORT][/SYSTEM_ID][?insecure=1][&ca=/path.pem]`: HTTPS,
//!   port 443, certificates checked unless `insecure=1`, against `ca` when given.
//! - `none`: the node has no BMC.
//!
//! USER and PASS are percent-decoded. The password is a [`Secret`]: it never shows in
//! `Debug`, `Display` or an error.

use std::fmt;
use std::path::PathBuf;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use wulf_model::secret::{masked_uri, MASK, POWER_URI_ATTR, POWER_URI_FORMS};
use wulf_model::Node;

use super::PowerError;
use crate::cache::State as CacheState;

/// A password: shown as `****` by `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The password itself, for the one place that sends it to the BMC.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

/// An IPMI 2.0 (lanplus) BMC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpmiTarget {
    pub user: String,
    pub password: Secret,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// The RMCP+ cipher suite (`-C`).
    pub cipher: u8,
}

/// A Redfish service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedfishTarget {
    pub user: String,
    pub password: Secret,
    /// Host name or address, as it goes in a URL (IPv6 in brackets).
    pub host: String,
    pub port: u16,
    /// The member of `/redfish/v1/Systems`; `None`: the only one there is.
    pub system: Option<String>,
    /// Do not check the certificate.
    pub insecure: bool,
    /// Check the certificate against this CA (PEM) instead of the system's.
    pub ca: Option<PathBuf>,
}

/// A parsed `power_uri`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PowerUri {
    None,
    Ipmi(IpmiTarget),
    Redfish(RedfishTarget),
}

/// The masked form: `ipmi://admin:****@10.0.0.5:623`.
impl fmt::Display for PowerUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PowerUri::None => f.write_str("none"),
            PowerUri::Ipmi(t) => {
                let host = if t.host.contains(':') {
                    format!("[{}]", t.host)
                } else {
                    t.host.clone()
                };
                write!(f, "ipmi://{}:{MASK}@{host}:{}", t.user, t.port)
            }
            PowerUri::Redfish(t) => {
                write!(f, "redfish://{}:{MASK}@{}:{}", t.user, t.host, t.port)?;
                if let Some(s) = &t.system {
                    write!(f, "/{s}")?;
                }
                Ok(())
            }
        }
    }
}

/// Characters a filled-in value keeps as they are; the rest are percent-encoded.
const FILL: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Fill in the `{…}` references of `template` with `lookup`, which names what is missing
/// when it cannot.
pub fn fill(
    template: &str,
    lookup: impl Fn(&str) -> Result<String, String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            return Err("'}' without '{'".into());
        }
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after
            .find(['{', '}'])
            .filter(|&i| after.as_bytes()[i] == b'}')
            .ok_or_else(|| "'{' without its '}'".to_string())?;
        let key = &after[..close];
        let value = lookup(key)?;
        out.extend(utf8_percent_encode(&value, FILL));
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The value of `{key}` for `node`.
pub fn lookup(st: &CacheState, node: &Node, key: &str) -> Result<String, String> {
    let missing = |what: String| {
        Err(format!(
            "{{{key}}} needs {what}, which the node does not have"
        ))
    };
    match key {
        "name" => return Ok(node.name.clone()),
        "uid" => return Ok(node.uid.clone()),
        "index" => {
            return node
                .index
                .map(|i| i.to_string())
                .map_or_else(|| missing("an index".into()), Ok)
        }
        "mac" => {
            return node
                .mac
                .map(|m| m.to_string())
                .map_or_else(|| missing("a MAC".into()), Ok)
        }
        "ip" => {
            let ip = node
                .ip
                .or_else(|| node.index.and_then(|i| crate::db::derive_ip(st, i)));
            return ip
                .map(|i| i.to_string())
                .map_or_else(|| missing("an IP address".into()), Ok);
        }
        _ => {}
    }
    if let Some(v) = st.attr(node, key) {
        return Ok(v.to_string());
    }
    // `{_ips.bmc}`: the `bmc` entry of the `_ips` list.
    if let Some((attr, entry)) = key.split_once('.') {
        return match st.attr(node, attr) {
            None => missing(format!("attribute {attr}")),
            Some(list) => wulf_model::attributes::parse_assignments(list)
                .unwrap_or_default()
                .into_iter()
                .find(|(k, _)| *k == entry)
                .map(|(_, v)| v.to_string())
                .map_or_else(
                    || missing(format!("an entry {entry}= in attribute {attr}")),
                    Ok,
                ),
        };
    }
    missing(format!("attribute {key}"))
}

fn decode(part: &str, what: &str) -> Result<String, String> {
    percent_decode_str(part)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| format!("the {what} is not UTF-8 once percent-decoded"))
}

/// Parse a filled-in power URI. Errors show the URI masked.
pub fn parse(s: &str) -> Result<PowerUri, String> {
    let shown = masked_uri(s);
    let t = s.trim();
    if t.eq_ignore_ascii_case("none") {
        return Ok(PowerUri::None);
    }
    let Some((scheme, _)) = t.split_once("://") else {
        return Err(format!(
            "'{shown}' is not a power URI; give {POWER_URI_FORMS}"
        ));
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "ipmi" && scheme != "redfish" {
        return Err(format!(
            "unknown scheme '{scheme}' in '{shown}'; give {POWER_URI_FORMS}"
        ));
    }
    let url = url::Url::parse(t).map_err(|e| format!("'{shown}' is malformed: {e}"))?;
    let user = decode(url.username(), "user")?;
    let password = decode(url.password().unwrap_or(""), "password")?;
    if user.is_empty() || password.is_empty() {
        return Err(format!(
            "'{shown}' needs both a user and a password (USER:PASS@HOST)"
        ));
    }
    if password == MASK {
        return Err(format!(
            "the password in '{shown}' is the '{MASK}' listings show, not a password"
        ));
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("'{shown}' has no host"))?
        .to_string();
    if url.fragment().is_some() {
        return Err(format!(
            "'{shown}' has a '#' part, which means nothing here"
        ));
    }
    let path = url.path().trim_matches('/');
    let mut opts: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let mut take = |name: &str| {
        let i = opts.iter().position(|(k, _)| k == name)?;
        Some(opts.remove(i).1)
    };
    let uri = if scheme == "ipmi" {
        if !path.is_empty() {
            return Err(format!(
                "'{shown}' has a path '/{path}'; an ipmi:// URI ends at the host and port"
            ));
        }
        let cipher =
            match take("cipher") {
                None => 3,
                Some(c) => c.parse::<u8>().ok().filter(|c| *c <= 17).ok_or_else(|| {
                    format!("cipher={c} in '{shown}' is not a cipher suite 0 to 17")
                })?,
            };
        PowerUri::Ipmi(IpmiTarget {
            user,
            password: Secret(password),
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port: url.port().unwrap_or(623),
            cipher,
        })
    } else {
        let insecure = match take("insecure") {
            None => false,
            Some(v) => wulf_model::parse_bool(&v)
                .ok_or_else(|| format!("insecure={v} in '{shown}' is not 1 or 0"))?,
        };
        let ca = match take("ca") {
            None => None,
            Some(p) if p.starts_with('/') => Some(PathBuf::from(p)),
            Some(p) => return Err(format!("ca={p} in '{shown}' is not an absolute path")),
        };
        let system = match path {
            "" => None,
            p => {
                let id = p.strip_prefix("redfish/v1/Systems/").unwrap_or(p);
                if id.is_empty() || id.contains('/') {
                    return Err(format!(
                        "'{shown}': the path is the system id (/SYSTEM_ID or \
                         /redfish/v1/Systems/SYSTEM_ID), not '/{p}'"
                    ));
                }
                Some(decode(id, "system id")?)
            }
        };
        PowerUri::Redfish(RedfishTarget {
            user,
            password: Secret(password),
            host,
            port: url.port().unwrap_or(443),
            system,
            insecure,
            ca,
        })
    };
    if let Some((k, _)) = opts.first() {
        let known = if scheme == "ipmi" {
            "cipher"
        } else {
            "insecure, ca"
        };
        return Err(format!(
            "unknown option '{k}' in '{shown}' ({scheme}:// takes {known})"
        ));
    }
    Ok(uri)
}

/// The BMC of `node`: its `power_uri`, else its effective `_power_uri`, filled in and parsed.
pub fn resolve(st: &CacheState, node: &Node) -> Result<PowerUri, PowerError> {
    let (raw, from) = match node.power_uri.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(u) => (u, "power_uri"),
        None => match st.attr(node, POWER_URI_ATTR) {
            Some(u) => (u, POWER_URI_ATTR),
            None => return Err(PowerError::NoUri),
        },
    };
    let filled = fill(raw, |k| lookup(st, node, k))
        .map_err(|m| PowerError::BadUri(format!("{from} '{}': {m}", masked_uri(raw))))?;
    parse(&filled).map_err(|m| PowerError::BadUri(format!("{from}: {m}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipmi(s: &str) -> IpmiTarget {
        match parse(s) {
            Ok(PowerUri::Ipmi(t)) => t,
            other => panic!("{s}: {other:?}"),
        }
    }

    fn redfish(s: &str) -> RedfishTarget {
        match parse(s) {
            Ok(PowerUri::Redfish(t)) => t,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn ipmi_uris() {
        let t = ipmi("ipmi://admin:s3cret@10.0.0.5");
        assert_eq!(
            (
                t.user.as_str(),
                t.password.expose(),
                t.host.as_str(),
                t.port,
                t.cipher
            ),
            ("admin", "s3cret", "10.0.0.5", 623, 3)
        );
        let t = ipmi("IPMI://ad%40min:p%3Aw%40rd@bmc-n1.cluster:6230?cipher=17");
        assert_eq!(
            (
                t.user.as_str(),
                t.password.expose(),
                t.host.as_str(),
                t.port,
                t.cipher
            ),
            ("ad@min", "p:w@rd", "bmc-n1.cluster", 6230, 17)
        );
        assert_eq!(ipmi("ipmi://a:b@[fd00::5]:623").host, "fd00::5");
        assert!(matches!(parse("none"), Ok(PowerUri::None)));
        assert!(matches!(parse(" None "), Ok(PowerUri::None)));
    }

    #[test]
    fn redfish_uris() {
        let t = redfish("redfish://root:pw@10.0.0.9");
        assert_eq!(
            (t.port, t.system.as_deref(), t.insecure, t.ca.as_ref()),
            (443, None, false, None)
        );
        let t = redfish("redfish://root:pw@10.0.0.9:8443/System.Embedded.1?insecure=1");
        assert_eq!(
            (t.port, t.system.as_deref(), t.insecure),
            (8443, Some("System.Embedded.1"), true)
        );
        let t = redfish("redfish://root:pw@h/redfish/v1/Systems/1?ca=/etc/bmc-ca.pem");
        assert_eq!(t.system.as_deref(), Some("1"));
        assert_eq!(t.ca, Some(PathBuf::from("/etc/bmc-ca.pem")));
    }

    #[test]
    fn bad_uris_say_why_and_never_show_the_password() {
        for (bad, why) in [
            ("10.0.0.5", "not a power URI"),
            ("snmp://a:hunter2@c", "unknown scheme 'snmp'"),
            ("ipmi://admin@10.0.0.5", "user and a password"),
            ("ipmi://admin:hunter2@10.0.0.5/x", "has a path"),
            ("ipmi://admin:hunter2@10.0.0.5:99999", "malformed"),
            ("ipmi://admin:hunter2@10.0.0.5?cipher=99", "cipher=99"),
            (
                "ipmi://admin:hunter2@10.0.0.5?colour=red",
                "unknown option 'colour'",
            ),
            ("redfish://a:hunter2@h?insecure=maybe", "insecure=maybe"),
            ("redfish://a:hunter2@h?ca=rel.pem", "not an absolute path"),
            ("redfish://a:hunter2@h/a/b", "the path is the system id"),
            ("ipmi://a:****@h", "listings show"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(!e.contains("hunter2"), "{bad}: the password leaked: {e}");
        }
    }

    #[test]
    fn masked_in_debug_and_display() {
        let u = parse("ipmi://admin:hunter2@10.0.0.5").unwrap();
        assert_eq!(u.to_string(), "ipmi://admin:****@10.0.0.5:623");
        assert!(!format!("{u:?}").contains("hunter2"), "{u:?}");
        let u = parse("redfish://root:hunter2@h:8443/1").unwrap();
        assert_eq!(u.to_string(), "redfish://root:****@h:8443/1");
        assert!(!format!("{u:?}").contains("hunter2"));
    }

    #[test]
    fn templates_are_filled_and_encoded() {
        let look = |k: &str| match k {
            "_bmc_pass" => Ok("p@ss:w/rd".to_string()),
            "_ips.bmc" => Ok("10.0.0.5".to_string()),
            other => Err(format!(
                "{{{other}}} needs attribute {other}, which the node does not have"
            )),
        };
        let f = fill("ipmi://admin:{_bmc_pass}@{_ips.bmc}", look).unwrap();
        assert_eq!(f, "ipmi://admin:p%40ss%3Aw%2Frd@10.0.0.5");
        let t = ipmi(&f);
        assert_eq!(
            (t.password.expose(), t.host.as_str()),
            ("p@ss:w/rd", "10.0.0.5")
        );
        let e = fill("ipmi://admin:x@{_ips.ib0}", look).unwrap_err();
        assert!(e.contains("_ips.ib0"), "{e}");
        assert!(fill("ipmi://a:b@{x", look).is_err());
        assert!(fill("ipmi://a:b@x}", look).is_err());
        assert_eq!(fill("none", look).unwrap(), "none");
    }
}
