//! Installer boots: the kickstart a boot config carries, rendered for the node that asks
//! (`GET /boot/ks`, the node known by its address), and repos (`wulf repo`) served over
//! plain HTTP at `/boot/repo/NAME/PATH`: the files of an uploaded ISO image (ISO 9660 with
//! Rock Ridge or Joliet names, see [`iso`]), or a redirect to a repo's URL.
//!
//! Templates name `{{name}}`, `{{ip}}`, `{{mac}}`, `{{index}}`, `{{uid}}`, `{{head}}`,
//! `{{ks}}`, `{{attr.NAME}}` and `{{repo.NAME}}`; anything else is refused when the template
//! is uploaded, and an attribute or repo that does not exist when it is rendered is a 409
//! with a WARNING line.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use wulf_model::{Kind, Node};

use crate::app::App;
use crate::objects::AnyObj;
use crate::web::ApiErr;

pub mod iso;

/// Paths of an installer's second stage: a 404 for one of them is the "failed to fetch
/// stage2" case and says so.
const STAGE2: [&str; 2] = ["images/install.img", "LiveOS/squashfs.img"];

/// Bytes read from an ISO at a time when serving one of its files.
const CHUNK: usize = 256 * 1024;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/boot/ks", get(kickstart))
        .route("/boot/repo/{name}/{*path}", get(repo_file))
}

/// The URL a node's kickstart is fetched from.
pub fn ks_url(base: &str) -> String {
    format!("{base}/boot/ks")
}

/// The URL a repo is served at.
pub fn repo_url(base: &str, name: &str) -> String {
    format!("{base}/boot/repo/{name}")
}

/// One piece of a template.
#[derive(Debug, PartialEq)]
enum Piece<'a> {
    Text(&'a str),
    /// A placeholder's name, trimmed (`attr.rootpw`).
    Field(&'a str),
}

/// A template's error, with its line.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("line {line}: {msg}")]
pub struct TemplateError {
    pub line: usize,
    pub msg: String,
}

fn known(field: &str) -> bool {
    let named = |rest: &str| !rest.is_empty() && !rest.contains(char::is_whitespace);
    matches!(
        field,
        "name" | "ip" | "mac" | "index" | "uid" | "head" | "ks"
    ) || field.strip_prefix("attr.").is_some_and(named)
        || field.strip_prefix("repo.").is_some_and(named)
}

fn parse(text: &str) -> Result<Vec<Piece<'_>>, TemplateError> {
    let mut out = Vec::new();
    let mut rest = text;
    let line_of = |r: &str| text[..text.len() - r.len()].matches('\n').count() + 1;
    while let Some(start) = rest.find("{{") {
        out.push(Piece::Text(&rest[..start]));
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(TemplateError {
                line: line_of(&rest[start..]),
                msg: "'{{' without a closing '}}'".into(),
            });
        };
        let field = after[..end].trim();
        if !known(field) {
            return Err(TemplateError {
                line: line_of(&rest[start..]),
                msg: format!(
                    "unknown placeholder '{{{{{field}}}}}' (known: name, ip, mac, index, uid, \
                     head, ks, attr.NAME, repo.NAME)"
                ),
            });
        }
        out.push(Piece::Field(field));
        rest = &after[end + 2..];
    }
    out.push(Piece::Text(rest));
    Ok(out)
}

/// Check a template when it is uploaded.
pub fn check(text: &str) -> Result<(), TemplateError> {
    parse(text).map(|_| ())
}

/// What a template is rendered with.
pub struct Values<'a> {
    pub node: &'a Node,
    pub name: &'a str,
    pub base: &'a str,
    pub attrs: BTreeMap<String, String>,
    pub repos: Vec<String>,
}

/// Render a template for one node.
pub fn render(text: &str, v: &Values) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(text.len() + 256);
    let mut line = 1;
    for p in parse(text)? {
        match p {
            Piece::Text(t) => {
                line += t.matches('\n').count();
                out += t;
            }
            Piece::Field(f) => {
                let missing = |what: &str| TemplateError {
                    line,
                    msg: format!("{{{{{f}}}}}: {} {what}", v.name),
                };
                let value = match f {
                    "name" => v.name.to_string(),
                    "uid" => v.node.uid.clone(),
                    "head" => v.base.to_string(),
                    "ks" => ks_url(v.base),
                    "ip" => v.node.ip.ok_or_else(|| missing("has no IP"))?.to_string(),
                    "mac" => v.node.mac.ok_or_else(|| missing("has no MAC"))?.to_string(),
                    "index" => v
                        .node
                        .index
                        .ok_or_else(|| missing("has no index"))?
                        .to_string(),
                    _ => {
                        if let Some(a) = f.strip_prefix("attr.") {
                            v.attrs
                                .get(a)
                                .cloned()
                                .ok_or_else(|| missing(&format!("has no attribute '{a}'")))?
                        } else if let Some(r) = f.strip_prefix("repo.") {
                            if !v.repos.iter().any(|n| n == r) {
                                return Err(TemplateError {
                                    line,
                                    msg: format!("{{{{{f}}}}}: there is no repo '{r}'"),
                                });
                            }
                            repo_url(v.base, r)
                        } else {
                            return Err(missing("cannot be rendered"));
                        }
                    }
                };
                out += &value;
            }
        }
    }
    Ok(out)
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// `GET /boot/ks`: the kickstart of the node whose address asks, from its boot config.
async fn kickstart(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
) -> Result<Response, ApiErr> {
    let peer = crate::enroll::peer_ip(&ext);
    let base = crate::boot::request_base(&app, &headers);
    let (template, values_of) = {
        let st = app.cache.read();
        let node = match peer {
            Some(IpAddr::V4(ip)) => match st.ips.get(&ip) {
                Some((Kind::Node, uid)) => st.get(Kind::Node, uid).and_then(|e| e.obj.as_node()),
                _ => None,
            },
            _ => None,
        };
        let Some(node) = node else {
            let who = crate::enroll::source(peer);
            tracing::warn!(peer = %who, "kickstart asked for by {who}, which is no node's address");
            return Err(ApiErr::new(
                StatusCode::NOT_FOUND,
                format!("{who} is not the address of a node of this cluster"),
            ));
        };
        let attrs: BTreeMap<String, String> = st
            .effective_attributes(node)
            .into_iter()
            .map(|(k, a)| (k, a.value))
            .collect();
        let name = attrs
            .get("_hostname")
            .cloned()
            .unwrap_or_else(|| node.name.clone());
        let boot = attrs
            .get("_boot_config")
            .and_then(|b| st.by_name(Kind::Boot, b))
            .and_then(|e| match e.obj.as_ref() {
                AnyObj::Boot(b) => Some(b.clone()),
                _ => None,
            });
        let Some(ks) = boot.as_ref().and_then(|b| b.kickstart.clone()) else {
            tracing::warn!(node = %name, "kickstart asked for by {name}, whose boot config has none");
            return Err(ApiErr::new(
                StatusCode::NOT_FOUND,
                format!(
                    "{name}'s boot config ({}) has no kickstart (wulf boot -i NAME update kickstart=@FILE)",
                    attrs.get("_boot_config").map_or("none", String::as_str)
                ),
            ));
        };
        let repos: Vec<String> = st
            .objects(Kind::Repo)
            .map(|o| o.name().to_string())
            .collect();
        (ks, (node.clone(), name, attrs, repos))
    };
    crate::peers::ensure_local(&app, &template.sha256).await;
    let path = app.blobs.path(&template.sha256).ok_or_else(|| {
        ApiErr::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the kickstart template is not on this head yet",
        )
    })?;
    let raw = tokio::fs::read(&path)
        .await
        .map_err(|e| ApiErr::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let (node, name, attrs, repos) = values_of;
    let body = String::from_utf8_lossy(&raw);
    let values = Values {
        node: &node,
        name: &name,
        base: &base,
        attrs,
        repos,
    };
    match render(&body, &values) {
        Ok(s) => {
            tracing::info!(node = %name, "kickstart rendered for {name}");
            Ok(text(StatusCode::OK, s))
        }
        Err(e) => {
            tracing::warn!(node = %name, "cannot render the kickstart for {name}: {e}");
            Err(ApiErr::new(
                StatusCode::CONFLICT,
                format!("cannot render the kickstart for {name}: {e}"),
            ))
        }
    }
}

/// A path inside a repo, checked: no `..`, no empty or `.` parts.
fn clean_path(path: &str) -> Option<String> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() || parts.iter().any(|p| *p == "." || *p == "..") {
        return None;
    }
    Some(parts.join("/"))
}

fn missing(repo: &str, path: &str, why: &str) -> ApiErr {
    if STAGE2.contains(&path) {
        tracing::warn!(repo = %repo, path = %path, "repo {repo} has no {path}: the installer's stage2 is missing from the ISO (the installer reports \"failed to fetch stage2\"); upload a full install ISO (a DVD or boot ISO, not a netinstall without stage2) or use url=");
    } else {
        tracing::warn!(repo = %repo, path = %path, "repo {repo} has no {path}: {why}");
    }
    ApiErr::new(
        StatusCode::NOT_FOUND,
        format!("repo {repo} has no {path}: {why}"),
    )
}

/// `GET /boot/repo/NAME/PATH`: a file of the repo's ISO, or a redirect to its URL.
async fn repo_file(
    State(app): State<Arc<App>>,
    Path((name, path)): Path<(String, String)>,
) -> Result<Response, ApiErr> {
    let repo = match app
        .cache
        .read()
        .by_name(Kind::Repo, &name)
        .map(|e| e.obj.as_ref())
    {
        Some(AnyObj::Repo(r)) => r.clone(),
        _ => {
            tracing::warn!(repo = %name, path = %path, "no repo {name} (asked for {path})");
            return Err(ApiErr::new(
                StatusCode::NOT_FOUND,
                format!("there is no repo '{name}'"),
            ));
        }
    };
    let Some(clean) = clean_path(&path) else {
        return Err(ApiErr::bad(format!("'{path}' is not a path inside a repo")));
    };
    if let Some(url) = &repo.url {
        let target = format!("{}/{clean}", url.trim_end_matches('/'));
        return Ok((StatusCode::FOUND, [(header::LOCATION, target)]).into_response());
    }
    let Some(iso) = repo.iso else {
        return Err(missing(
            &name,
            &clean,
            "the repo has no iso uploaded and no url",
        ));
    };
    crate::peers::ensure_local(&app, &iso.sha256).await;
    let Some(file) = app.blobs.path(&iso.sha256) else {
        return Err(ApiErr::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the ISO of repo {name} is not on this head yet"),
        ));
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<Result<u64, (bool, String)>>();
    let p = clean.clone();
    tokio::task::spawn_blocking(move || stream_iso_file(file, &p, first_tx, tx));
    match first_rx.await {
        Ok(Ok(size)) => {
            let stream = tokio_stream_from(rx);
            Ok(Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::CONTENT_LENGTH, size)
                .body(Body::from_stream(stream))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
        }
        Ok(Err((true, why))) => Err(missing(&name, &clean, &why)),
        Ok(Err((false, why))) => {
            tracing::error!(repo = %name, path = %clean, "cannot read the ISO of repo {name}: {why}");
            Err(ApiErr::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot read the ISO of repo {name}: {why}"),
            ))
        }
        Err(_) => Err(ApiErr::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the ISO reader stopped",
        )),
    }
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
) -> impl futures_util::Stream<Item = std::io::Result<Vec<u8>>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Open `path` in the ISO at `file`; tell its size (or why not: (true, _) when it is not
/// there) through `first`, then send its content in chunks.
fn stream_iso_file(
    file: PathBuf,
    path: &str,
    first: tokio::sync::oneshot::Sender<Result<u64, (bool, String)>>,
    tx: tokio::sync::mpsc::Sender<std::io::Result<Vec<u8>>>,
) {
    let opened = std::fs::File::open(&file)
        .map_err(iso::IsoError::from)
        .and_then(iso::Iso::open)
        .and_then(|mut img| Ok((img.find(path)?, img)));
    let (extent, img) = match opened {
        Ok((iso::Found::File(e), img)) => (e, img),
        Ok((iso::Found::Dir, _)) => {
            let _ = first.send(Err((true, "it is a directory, not a file".into())));
            return;
        }
        Ok((iso::Found::Missing, _)) => {
            let _ = first.send(Err((true, "no such file in the ISO".into())));
            return;
        }
        Err(e) => {
            let _ = first.send(Err((false, e.to_string())));
            return;
        }
    };
    if first.send(Ok(extent.size)).is_err() {
        return;
    }
    let mut f = img.into_file();
    if let Err(e) = f.seek(SeekFrom::Start(extent.offset)) {
        let _ = tx.blocking_send(Err(e));
        return;
    }
    let mut r = f.take(extent.size);
    loop {
        let mut buf = vec![0u8; CHUNK];
        match r.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                buf.truncate(n);
                if tx.blocking_send(Ok(buf)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Node {
        serde_json::from_value(serde_json::json!({
            "uid": "0123456789abcdef0123456789abcdef", "name": "n3", "index": 3,
            "mac": "52:54:00:00:00:03", "ip": "10.0.0.13"
        }))
        .unwrap()
    }

    #[test]
    fn renders_every_placeholder() {
        let n = node();
        let mut attrs = BTreeMap::new();
        attrs.insert("rootpw".to_string(), "$6$x".to_string());
        let v = Values {
            node: &n,
            name: "n3",
            base: "http://10.0.0.1:8740",
            attrs,
            repos: vec!["rocky9".into()],
        };
        let t = "network --hostname={{name}} --ip={{ ip }}\n# {{mac}} {{index}} {{uid}}\n\
                 url --url={{repo.rocky9}}\nrootpw --iscrypted {{attr.rootpw}}\n{{head}} {{ks}}\n";
        let out = render(t, &v).unwrap();
        assert_eq!(
            out,
            "network --hostname=n3 --ip=10.0.0.13\n# 52:54:00:00:00:03 3 0123456789abcdef0123456789abcdef\n\
             url --url=http://10.0.0.1:8740/boot/repo/rocky9\nrootpw --iscrypted $6$x\n\
             http://10.0.0.1:8740 http://10.0.0.1:8740/boot/ks\n"
        );
        let e = render("a\n{{attr.nope}}", &v).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.msg.contains("no attribute 'nope'"), "{e}");
        assert!(render("{{repo.other}}", &v)
            .unwrap_err()
            .msg
            .contains("no repo 'other'"));
    }

    #[test]
    fn refuses_unknown_placeholders() {
        assert!(check("plain text, no placeholders").is_ok());
        let e = check("x\ny {{hostname}}").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.msg.contains("unknown placeholder '{{hostname}}'"), "{e}");
        assert!(check("{{name")
            .unwrap_err()
            .msg
            .contains("without a closing"));
        assert!(check("{{attr.}}").is_err());
    }

    #[test]
    fn repo_paths_stay_inside() {
        assert_eq!(
            clean_path("/images//install.img").as_deref(),
            Some("images/install.img")
        );
        assert_eq!(clean_path("a/../b"), None);
        assert_eq!(clean_path(""), None);
    }
}
