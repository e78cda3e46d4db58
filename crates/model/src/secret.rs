//! Secrets in objects: the password of a `power_uri` (node field or `_power_uri` attribute)
//! and attributes named `*_pass`, `*_password` or `*_secret`. Every answer that shows an
//! object or an attribute shows them as [`MASK`]; a write that sends [`MASK`] back as a
//! value is refused, so a listing pasted back cannot overwrite a stored secret.

use std::collections::BTreeMap;

use crate::objects::{AttribGroup, Node};

/// What a secret looks like in listings.
pub const MASK: &str = "****";

/// The attribute that gives a node its `power_uri` when the node has none of its own.
pub const POWER_URI_ATTR: &str = "_power_uri";

/// The forms a power URI takes, for error messages.
pub const POWER_URI_FORMS: &str =
    "ipmi://USER:PASS@HOST[:PORT], redfish://USER:PASS@HOST[:PORT][/SYSTEM_ID] or none";

/// True for attributes whose value is a secret: names ending in `_pass`, `_password` or
/// `_secret` (any case).
pub fn is_secret_attr(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.ends_with("_pass") || n.ends_with("_password") || n.ends_with("_secret")
}

/// True when a password (after templating) is a template reference only, like
/// `{_bmc_pass}`: no secret in the value itself.
fn is_reference(pass: &str) -> bool {
    pass.starts_with('{')
        && pass.ends_with('}')
        && pass[1..pass.len() - 1].find(['{', '}']).is_none()
}

/// The `USER:PASS` of a URI and where PASS sits in it, if it has one.
fn password_span(uri: &str) -> Option<(usize, usize)> {
    let start = uri.find("://")? + 3;
    let rest = &uri[start..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest[..end].rfind('@')?;
    let colon = rest[..at].find(':')?;
    Some((start + colon + 1, start + at))
}

/// `uri` with its password shown as [`MASK`], when it holds one (a password that is only a
/// template reference like `{_bmc_pass}` is no secret and is kept).
pub fn mask_uri(uri: &str) -> Option<String> {
    let (a, b) = password_span(uri)?;
    let pass = &uri[a..b];
    if pass.is_empty() || pass == MASK || is_reference(pass) {
        return None;
    }
    Some(format!("{}{MASK}{}", &uri[..a], &uri[b..]))
}

/// `uri` with its password masked, for messages.
pub fn masked_uri(uri: &str) -> String {
    mask_uri(uri).unwrap_or_else(|| uri.to_string())
}

/// The value to show for attribute `name`: masked when it is a secret.
pub fn mask_attr(name: &str, value: &str) -> Option<String> {
    if name == POWER_URI_ATTR {
        mask_uri(value)
    } else if is_secret_attr(name) && !value.is_empty() && value != MASK {
        Some(MASK.to_string())
    } else {
        None
    }
}

/// Mask the secrets of an attribute map in place; true when something was masked.
pub fn mask_attributes(attrs: &mut BTreeMap<String, String>) -> bool {
    let mut changed = false;
    for (k, v) in attrs.iter_mut() {
        if let Some(m) = mask_attr(k, v) {
            *v = m;
            changed = true;
        }
    }
    changed
}

/// True when `attrs` holds a secret that [`mask_attributes`] would hide.
fn has_secret(attrs: &BTreeMap<String, String>) -> bool {
    attrs.iter().any(|(k, v)| mask_attr(k, v).is_some())
}

/// A copy of `node` with its secrets masked, or `None` when it holds none.
pub fn mask_node(node: &Node) -> Option<Node> {
    let uri = node.power_uri.as_deref().and_then(mask_uri);
    if uri.is_none() && !has_secret(&node.attributes) {
        return None;
    }
    let mut n = node.clone();
    if uri.is_some() {
        n.power_uri = uri;
    }
    mask_attributes(&mut n.attributes);
    Some(n)
}

/// A copy of `group` with its secrets masked, or `None` when it holds none.
pub fn mask_group(group: &AttribGroup) -> Option<AttribGroup> {
    if !has_secret(&group.attributes) {
        return None;
    }
    let mut g = group.clone();
    mask_attributes(&mut g.attributes);
    Some(g)
}

/// Check a secret attribute's value on write: the mask itself is refused.
pub fn check_secret_value(name: &str, value: &str) -> Result<(), String> {
    if is_secret_attr(name) && value == MASK {
        return Err(format!(
            "'{MASK}' is how listings show a secret, not a value: give the real one (the \
             stored value is unchanged)"
        ));
    }
    Ok(())
}

/// The checks a power URI can have before it is filled in for a node: a known scheme, a
/// user and password, template references that are well formed, and no masked password.
/// What only the node can tell (template values, the host) is checked when it is used.
pub fn check_power_uri(uri: &str) -> Result<(), String> {
    let shown = masked_uri(uri);
    let u = uri.trim();
    if u.is_empty() {
        return Err(format!("empty; give {POWER_URI_FORMS}"));
    }
    if u.eq_ignore_ascii_case("none") {
        return Ok(());
    }
    let Some((scheme, rest)) = u.split_once("://") else {
        return Err(format!(
            "'{shown}' is not a power URI; give {POWER_URI_FORMS}"
        ));
    };
    if !matches!(scheme.to_ascii_lowercase().as_str(), "ipmi" | "redfish") {
        return Err(format!(
            "unknown scheme '{scheme}' in '{shown}'; give {POWER_URI_FORMS}"
        ));
    }
    check_templates(u).map_err(|m| format!("'{shown}': {m}"))?;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return Err(format!(
            "'{shown}' has no USER:PASS@ before the host; give {POWER_URI_FORMS}"
        ));
    };
    match userinfo.split_once(':') {
        Some((user, pass)) if !user.is_empty() && !pass.is_empty() => {
            if pass == MASK {
                return Err(format!(
                    "the password in '{shown}' is the '{MASK}' listings show, not a password: \
                     give the real one (the stored value is unchanged)"
                ));
            }
        }
        _ => {
            return Err(format!(
                "'{shown}' needs both a user and a password (USER:PASS@HOST)"
            ))
        }
    }
    if host.is_empty() {
        return Err(format!("'{shown}' has no host after '@'"));
    }
    Ok(())
}

/// Template references `{name}`: balanced, not nested, each naming a field or attribute.
fn check_templates(s: &str) -> Result<(), String> {
    let mut rest = s;
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            return Err("'}' without '{'".into());
        }
        let after = &rest[open + 1..];
        let close = after
            .find(['{', '}'])
            .filter(|&i| after.as_bytes()[i] == b'}')
            .ok_or_else(|| "'{' without its '}' (write {name} or {_attribute})".to_string())?;
        let name = &after[..close];
        if !crate::attributes::valid_name(name) {
            return Err(format!(
                "'{{{name}}}' does not name a field or attribute (letters, digits, '_', '-', '.')"
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_masked_but_references_kept() {
        assert_eq!(
            mask_uri("ipmi://admin:s3cret@10.0.0.5").as_deref(),
            Some("ipmi://admin:****@10.0.0.5")
        );
        assert_eq!(
            mask_uri("redfish://root:p@ss@bmc:8443/1?insecure=1").as_deref(),
            Some("redfish://root:****@bmc:8443/1?insecure=1")
        );
        assert_eq!(mask_uri("ipmi://admin:{_bmc_pass}@{_ips.bmc}"), None);
        assert_eq!(mask_uri("ipmi://admin@10.0.0.5"), None);
        assert_eq!(mask_uri("none"), None);
        assert_eq!(mask_uri("ipmi://admin:****@h"), None);
        assert_eq!(
            mask_uri("ipmi://admin:x{_a}@h").as_deref(),
            Some("ipmi://admin:****@h")
        );
    }

    #[test]
    fn secret_attributes() {
        for n in ["_bmc_pass", "db_password", "API_SECRET"] {
            assert!(is_secret_attr(n), "{n}");
        }
        for n in ["_ips", "passes", "_boot_config"] {
            assert!(!is_secret_attr(n), "{n}");
        }
        let mut a: BTreeMap<String, String> = [
            ("_bmc_pass", "hunter2"),
            ("rack", "r1"),
            ("_power_uri", "ipmi://a:b@c"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert!(mask_attributes(&mut a));
        assert_eq!(a["_bmc_pass"], MASK);
        assert_eq!(a["rack"], "r1");
        assert_eq!(a["_power_uri"], "ipmi://a:****@c");
        assert!(!mask_attributes(&mut a), "masking twice changes nothing");
    }

    #[test]
    fn masked_values_are_refused_on_write() {
        assert!(check_secret_value("_bmc_pass", MASK).is_err());
        assert!(check_secret_value("_bmc_pass", "real").is_ok());
        assert!(check_secret_value("rack", MASK).is_ok());
        let e = check_power_uri("ipmi://admin:****@10.0.0.5").unwrap_err();
        assert!(e.contains("listings show"), "{e}");
    }

    #[test]
    fn power_uri_checks() {
        for ok in [
            "none",
            "NONE",
            "ipmi://admin:pw@10.0.0.5",
            "ipmi://admin:{_bmc_pass}@{_ips.bmc}",
            "redfish://root:pw@bmc:8443/System.Embedded.1?insecure=1",
            "ipmi://admin:pw@{_ips.bmc}:{bmc_port}",
        ] {
            assert!(
                check_power_uri(ok).is_ok(),
                "{ok}: {:?}",
                check_power_uri(ok)
            );
        }
        for (bad, why) in [
            ("", "empty"),
            ("10.0.0.5", "not a power URI"),
            ("snmp://a:b@c", "unknown scheme 'snmp'"),
            ("ipmi://10.0.0.5", "no USER:PASS@"),
            ("ipmi://admin@10.0.0.5", "user and a password"),
            ("ipmi://admin:pw@", "no host"),
            ("ipmi://admin:pw@{_ips.bmc", "without its '}'"),
            ("ipmi://admin:pw@_ips.bmc}", "without '{'"),
            ("ipmi://admin:pw@{a b}", "does not name"),
        ] {
            let e = check_power_uri(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(!e.contains(":pw@"), "the password leaked: {e}");
        }
    }
}
