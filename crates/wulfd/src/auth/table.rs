//! Who may call each route: one table for the whole head. The guard looks every request up
//! here by method and route pattern; a route missing from the table is refused (and a test
//! fails when a route in the code has no row, or a row names no route).

use axum::http::Method;
use wulf_api::auth::Role;

/// What a route needs from its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Firmware fetches it: no token, plain HTTP allowed (the handler decides what it answers).
    Firmware,
    /// Anyone, over HTTPS (logging in).
    Public,
    /// A node's own credential (`node:UID:CRED`), checked by the handler.
    Node,
    /// An account (or the bootstrap token) with at least this role.
    Account(Role),
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub method: &'static str,
    /// The route as axum matches it (`/api/v1/{kind}`).
    pub path: &'static str,
    pub access: Access,
    /// What the route does, for the roles table in docs/security.md.
    pub what: &'static str,
}

use Access::{Account, Firmware, Node, Public};
use Role::{Admin, Operator, Viewer};

const fn rule(
    method: &'static str,
    path: &'static str,
    access: Access,
    what: &'static str,
) -> Rule {
    Rule {
        method,
        path,
        access,
        what,
    }
}

/// Every route of the head and who may call it.
pub const RULES: &[Rule] = &[
    // Firmware and booting nodes.
    rule("GET", "/boot/ipxe", Firmware, "a node's iPXE boot script"),
    rule("GET", "/boot/ipxe.efi", Firmware, "the iPXE EFI binary"),
    rule(
        "GET",
        "/boot/file/{sha256}",
        Firmware,
        "kernels, initramfs files, images (images only to their nodes)",
    ),
    rule(
        "GET",
        "/boot/swarm/{sha256}",
        Firmware,
        "a booting node's plan for its image's pieces (the image's own check, by the handler)",
    ),
    rule(
        "GET",
        "/boot/ca.pem",
        Firmware,
        "the cluster CA certificate",
    ),
    rule(
        "POST",
        "/boot/installed",
        Firmware,
        "a disked node records the image it installed (its enrollment token, checked by the handler)",
    ),
    rule(
        "GET",
        "/boot/ks",
        Firmware,
        "the kickstart of the node at the asking address",
    ),
    rule(
        "GET",
        "/boot/repo/{name}/{*path}",
        Firmware,
        "a file of a repo's ISO, or a redirect to its URL",
    ),
    // The web page (static files; its data comes from the account routes below).
    rule("GET", "/", Public, "the web page"),
    rule(
        "GET",
        "/ui/{file}",
        Public,
        "the web page's scripts, styles and icon",
    ),
    // Accounts and sessions.
    rule(
        "POST",
        "/api/v1/login",
        Public,
        "log in with a name and password",
    ),
    rule(
        "POST",
        "/api/v1/login/refresh",
        Public,
        "trade a refresh token for an access token",
    ),
    rule(
        "POST",
        "/api/v1/logout",
        Account(Viewer),
        "end the caller's session",
    ),
    rule(
        "GET",
        "/api/v1/whoami",
        Account(Viewer),
        "the caller's account and role",
    ),
    rule(
        "POST",
        "/api/v1/admin/revoke",
        Account(Admin),
        "end every token of accounts",
    ),
    // Nodes' own traffic.
    rule(
        "POST",
        "/api/v1/node/status",
        Node,
        "a node's status report",
    ),
    rule(
        "POST",
        "/api/v1/node/enroll",
        Node,
        "a booting node trades its enrollment token for its credential",
    ),
    rule(
        "POST",
        "/api/v1/node/enroll-token",
        Account(Admin),
        "issue a standalone node's one-time enrollment token",
    ),
    rule(
        "GET",
        "/api/v1/node/commands",
        Node,
        "an agent's long poll for commands",
    ),
    rule(
        "POST",
        "/api/v1/node/commands/result",
        Node,
        "an agent's result of a command",
    ),
    // Reading.
    rule(
        "GET",
        "/api/v1/info",
        Account(Viewer),
        "head version and store",
    ),
    rule(
        "GET",
        "/api/v1/{kind}",
        Account(Viewer),
        "list objects (secrets masked)",
    ),
    rule(
        "GET",
        "/api/v1/node/attributes",
        Account(Viewer),
        "effective attributes (secrets masked)",
    ),
    rule(
        "GET",
        "/api/v1/node/unknown",
        Account(Viewer),
        "MACs seen that belong to no node",
    ),
    rule("GET", "/api/v1/node/status", Account(Viewer), "node status"),
    rule(
        "GET",
        "/api/v1/node/status/summary",
        Account(Viewer),
        "status summary",
    ),
    rule(
        "GET",
        "/api/v1/cluster/hosts",
        Account(Viewer),
        "the cluster's hosts file",
    ),
    rule(
        "GET",
        "/api/v1/cluster/db",
        Account(Viewer),
        "database size and health",
    ),
    rule("GET", "/api/v1/head", Account(Viewer), "the heads"),
    rule(
        "GET",
        "/metrics",
        Account(Viewer),
        "Prometheus metrics (checked by the handler: also the [metrics] token_file's token, or anyone with [metrics] public)",
    ),
    rule("GET", "/api/v1/log", Account(Viewer), "the heads' shared log lines"),
    // Acting on nodes.
    rule(
        "POST",
        "/api/v1/node/power",
        Account(Operator),
        "power, reboot, shutdown",
    ),
    rule(
        "POST",
        "/api/v1/node/exec",
        Account(Operator),
        "run a command on nodes",
    ),
    rule(
        "POST",
        "/api/v1/node/orphan",
        Account(Operator),
        "make nodes orphans",
    ),
    // Changing the cluster.
    rule("POST", "/api/v1/{kind}", Account(Admin), "create objects"),
    rule("PATCH", "/api/v1/{kind}", Account(Admin), "update objects"),
    rule("DELETE", "/api/v1/{kind}", Account(Admin), "delete objects"),
    rule(
        "POST",
        "/api/v1/node/replace",
        Account(Admin),
        "give a node a new box's MAC",
    ),
    rule(
        "GET",
        "/api/v1/{kind}/{id}/files/{field}",
        Account(Admin),
        "download a stored file (images hold secrets)",
    ),
    rule(
        "PUT",
        "/api/v1/{kind}/{id}/files/{field}",
        Account(Admin),
        "upload a file",
    ),
    rule(
        "POST",
        "/api/v1/cluster/db",
        Account(Admin),
        "compact or defragment the database",
    ),
    rule("DELETE", "/api/v1/head", Account(Admin), "forget a head"),
    rule(
        "GET",
        "/api/v1/cluster/backup",
        Account(Admin),
        "a backup of every object and the cluster's secrets",
    ),
    rule(
        "POST",
        "/api/v1/cluster/import",
        Account(Admin),
        "create and update many objects in one transaction (import-config)",
    ),
    rule(
        "PUT",
        "/api/v1/cluster/import/files",
        Account(Admin),
        "store a file for an import to name by sha256",
    ),
];

/// The rule for a request: by method (HEAD as GET) and the route axum matched.
pub fn lookup(method: &Method, path: &str) -> Option<&'static Rule> {
    let m = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    RULES.iter().find(|r| r.method == m && r.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(method, path)` of every `.route("PATH", get(..).post(..))` in the head's sources.
    fn routes_in_code() -> Vec<(String, String)> {
        let mut files = Vec::new();
        let mut dirs = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src"
        ))];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    files.push(p);
                }
            }
        }
        let mut out = Vec::new();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            let mut rest = text.as_str();
            while let Some(i) = rest.find(".route(") {
                rest = &rest[i + ".route(".len()..];
                // The arguments, up to the matching parenthesis.
                let mut depth = 1;
                let mut end = rest.len();
                for (j, c) in rest.char_indices() {
                    match c {
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                end = j;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let args = &rest[..end];
                let Some(q1) = args.find('"') else { continue };
                let Some(q2) = args[q1 + 1..].find('"') else {
                    continue;
                };
                let path = &args[q1 + 1..q1 + 1 + q2];
                if !path.starts_with('/') {
                    // Not a route definition (this test's own text, say).
                    continue;
                }
                let methods = &args[q1 + 2 + q2..];
                let mut found = false;
                for m in ["get", "post", "put", "patch", "delete"] {
                    let pat = format!("{m}(");
                    let mut s = methods;
                    while let Some(k) = s.find(&pat) {
                        let before = s[..k].chars().last();
                        if matches!(before, None | Some('.' | ':' | ' ' | '\n' | ',')) {
                            out.push((m.to_uppercase(), path.to_string()));
                            found = true;
                            break;
                        }
                        s = &s[k + pat.len()..];
                    }
                }
                assert!(found, "{}: no method found for route {path}", f.display());
            }
        }
        out.sort();
        out.dedup();
        out
    }

    #[test]
    fn every_route_has_a_rule_and_every_rule_a_route() {
        let code = routes_in_code();
        assert!(code.len() >= 20, "found only {code:?}");
        let missing: Vec<_> = code
            .iter()
            .filter(|(m, p)| !RULES.iter().any(|r| r.method == m && r.path == p))
            .collect();
        assert!(
            missing.is_empty(),
            "routes with no row in auth/table.rs RULES (give each a role): {missing:?}"
        );
        let stale: Vec<_> = RULES
            .iter()
            .filter(|r| !code.iter().any(|(m, p)| r.method == m && r.path == p))
            .map(|r| (r.method, r.path))
            .collect();
        assert!(stale.is_empty(), "rows naming no route: {stale:?}");
    }

    #[test]
    fn rows_are_unique_and_lookup_finds_them() {
        for (i, r) in RULES.iter().enumerate() {
            assert!(
                !RULES[..i]
                    .iter()
                    .any(|o| o.method == r.method && o.path == r.path),
                "{} {} twice",
                r.method,
                r.path
            );
            let m: Method = r.method.parse().unwrap();
            assert_eq!(lookup(&m, r.path).unwrap().path, r.path);
        }
        assert_eq!(
            lookup(&Method::HEAD, "/boot/file/{sha256}").unwrap().access,
            Firmware
        );
        assert!(lookup(&Method::PUT, "/api/v1/info").is_none());
    }
}
