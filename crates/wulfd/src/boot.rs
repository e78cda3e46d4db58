//! HTTP boot: the URLs nodes are sent to, iPXE scripts rendered from boot configs and
//! effective attributes, and the files they download. These routes need no token (firmware
//! has none); they serve only what a booting node needs: a script carries a one-time
//! enrollment token only for a node that is not up (see [`crate::enroll`]), and an image goes
//! only to a node that boots it.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use wulf_model::{parse_bool, FileRef, Kind, MacAddr};
use wulf_store::{Expect, Store, StoreError};

use crate::app::App;
use crate::objects::AnyObj;
use crate::web::{serve_blob, ApiErr};

/// Store key of the secret node credentials are derived from.
const SECRET_KEY: &str = "/wulf/secret/node-credential";

/// Seconds a node waits before asking again when it cannot boot yet.
const RETRY_SECS: u32 = 20;

/// The base URL nodes reach this head's HTTP server at, as seen from `local_ip` (the head's
/// address on the interface the node's request came in on): `[boot] url` if configured.
pub fn base_url(app: &App, local_ip: Ipv4Addr) -> String {
    match &app.cfg.boot.url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => format!("http://{}:{}", local_ip, app.cfg.listen.port()),
    }
}

/// The URL of a node's iPXE boot script (what DHCP hands to iPXE as its boot file).
pub fn script_url(app: &App, local_ip: Ipv4Addr, mac: MacAddr) -> String {
    format!("{}/boot/ipxe?mac={}", base_url(app, local_ip), mac)
}

/// The URL of the iPXE EFI binary over HTTP (for UEFI HTTP boot clients).
pub fn efi_url(app: &App, local_ip: Ipv4Addr) -> String {
    format!("{}/boot/ipxe.efi", base_url(app, local_ip))
}

/// The HTTPS base of the API on the same host and port as the HTTP base `base` (the
/// one port serves both): what nodes report to (`wulf.head=`).
pub fn api_base(base: &str) -> String {
    match base.strip_prefix("http://") {
        Some(rest) => format!("https://{rest}"),
        None => base.to_string(),
    }
}

/// Read the shared node-credential secret, creating it on a new cluster (safe to race).
pub async fn node_secret(store: &dyn Store) -> Result<Vec<u8>, StoreError> {
    if let Some(kv) = store.get(SECRET_KEY).await? {
        return Ok(kv.value);
    }
    let fresh = rand::random::<[u8; 32]>().to_vec();
    match store.put(SECRET_KEY, fresh.clone(), Expect::Absent).await {
        Ok(_) => Ok(fresh),
        Err(StoreError::Conflict { .. }) => store
            .get(SECRET_KEY)
            .await?
            .map(|kv| kv.value)
            .ok_or_else(|| StoreError::Backend("node credential secret vanished".into())),
        Err(e) => Err(e),
    }
}

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/boot/ipxe", get(script))
        .route("/boot/ipxe.efi", get(ipxe_efi))
        // The cluster CA certificate: public, so a node (checking it against its wulf.ca=
        // pin) or an admin (`wulf trust`) can fetch it before any TLS.
        .route("/boot/ca.pem", get(ca_pem))
        .route("/boot/file/{sha256}", get(file))
}

/// The URL base for answers: `[boot] url`, else the Host the node asked for.
pub(crate) fn request_base(app: &App, headers: &HeaderMap) -> String {
    if let Some(u) = &app.cfg.boot.url {
        return u.trim_end_matches('/').to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| format!("127.0.0.1:{}", app.cfg.listen.port()));
    format!("http://{host}")
}

fn ipxe(text: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

/// A script that says why the node cannot boot yet and asks again after a pause.
fn retry_script(base: &str, mac: &str, why: &str) -> String {
    format!(
        "#!ipxe\necho wulf: {why}\necho wulf: asking again in {RETRY_SECS} seconds\nsleep {RETRY_SECS}\nchain --autofree {base}/boot/ipxe?mac={mac}\n"
    )
}

/// A script that hands the machine to its next boot device.
fn next_script(why: &str) -> String {
    format!("#!ipxe\necho wulf: {why}\nexit\n")
}

/// What a node's boot script is built from.
struct Plan {
    node_uid: String,
    name: String,
    style: String,
    boot_uid: String,
    boot_name: String,
    kernel: FileRef,
    initramfs: Option<FileRef>,
    cmdline: String,
    image: Option<FileRef>,
    pxe_once: bool,
    /// The boot config has a kickstart: the kernel is told where (`inst.ks= ks=`).
    kickstart: bool,
    /// `wulf.disk_cache=` / `wulf.disk_root=` / `wulf.disk_wipe=` from `_disk_cache` /
    /// `_disk_root` / `_disk_wipe`.
    disk: Vec<String>,
    /// Boot style `disked` (an install): the init is also told where the kernel and the
    /// initramfs are (`wulf.kernel=` `wulf.initrd=`), to put them on the disk.
    disked: bool,
    /// `_image_peers`: the image comes through the swarm (`wulf.swarm=PORT`).
    swarm: bool,
}

enum Decision {
    Boot(Box<Plan>),
    /// A simulated node (`type=simulated`) without a boot config: no kernel to load, only the
    /// parameters a real kernel would get, for `wulf sim`.
    Simulated {
        node_uid: String,
        name: String,
    },
    Next(String),
    /// A `disked` node whose disk holds its image: it boots from the disk, and its init
    /// there fetches this script again for its enrollment token.
    Disk {
        node_uid: String,
        why: String,
    },
    Retry(String),
}

fn decide(app: &App, mac: MacAddr) -> Decision {
    let st = app.cache.read();
    let Some((Kind::Node, uid)) = st.macs.get(&mac).cloned() else {
        return Decision::Retry(format!(
            "{mac} is not a node of this cluster (see 'wulf node unknown')"
        ));
    };
    let Some(node) = st.get(Kind::Node, &uid).and_then(|e| e.obj.as_node()) else {
        return Decision::Retry(format!("{mac} is not a node of this cluster"));
    };
    let attrs = st.effective_attributes(node);
    let attr = |k: &str| attrs.get(k).map(|a| a.value.as_str());
    if attr("_no_boot").and_then(parse_bool) == Some(true) {
        return Decision::Next(format!(
            "{} has _no_boot set; booting the next device",
            node.name
        ));
    }
    let pxe_once = node.boot_sequence == "pxe+local";
    if node.boot_sequence == "local" || (pxe_once && node.boot_stage.as_deref() == Some("local")) {
        return Decision::Next(format!("{} boots from its local disk", node.name));
    }
    let Some(boot_name) = attr("_boot_config") else {
        if node.node_type == "simulated" {
            return Decision::Simulated {
                node_uid: node.uid.clone(),
                name: attr("_hostname").unwrap_or(&node.name).to_string(),
            };
        }
        return Decision::Retry(format!(
            "{} has no _boot_config (wulf node -i {} set _boot_config=NAME)",
            node.name, node.name
        ));
    };
    let Some(AnyObj::Boot(bc)) = st.by_name(Kind::Boot, boot_name).map(|e| e.obj.as_ref()) else {
        return Decision::Retry(format!("boot config '{boot_name}' does not exist"));
    };
    let style = attr("_boot_style").unwrap_or(&bc.boot_style).to_string();
    if style == "next" {
        return Decision::Next(format!(
            "{} boots the next device (boot style next)",
            node.name
        ));
    }
    let Some(kernel) = bc.kernel.clone() else {
        return Decision::Retry(format!("boot config '{}' has no kernel uploaded", bc.name));
    };
    let image = bc.image.as_deref().and_then(|i| {
        match st.by_name(Kind::Image, i).map(|e| e.obj.as_ref()) {
            Some(AnyObj::Image(img)) => img.content.clone(),
            _ => None,
        }
    });
    let disked = style == "disked";
    if disked {
        if let Some(img) = image.as_ref().filter(|i| {
            node.boot_stage.as_deref() == Some("local")
                && node.disk_image.as_deref() == Some(i.sha256.as_str())
        }) {
            return Decision::Disk {
                node_uid: node.uid.clone(),
                why: format!(
                    "{} boots image {} ({}) from its local disk",
                    node.name,
                    bc.image.as_deref().unwrap_or("?"),
                    &img.sha256[..12.min(img.sha256.len())]
                ),
            };
        }
    }
    let mut disk = Vec::new();
    let disk_attr = if disked { "_disk_root" } else { "_disk_cache" };
    let disk_dev = attr(disk_attr).filter(|d| wulf_model::valid_disk(d));
    if let Some(d) = disk_dev.or(disked.then_some("auto")) {
        disk.push(format!("wulf.{}={d}", &disk_attr[1..]));
        if attr("_disk_wipe").and_then(parse_bool) == Some(true) {
            disk.push("wulf.disk_wipe=yes".to_string());
        }
    }
    Decision::Boot(Box::new(Plan {
        node_uid: node.uid.clone(),
        name: attr("_hostname").unwrap_or(&node.name).to_string(),
        style,
        boot_uid: bc.uid.clone(),
        boot_name: bc.name.clone(),
        kernel,
        initramfs: bc.initramfs.clone(),
        cmdline: bc.cmdline.clone(),
        image,
        pxe_once,
        kickstart: bc.kickstart.is_some(),
        disk,
        disked,
        swarm: attr("_image_peers").and_then(parse_bool) == Some(true),
    }))
}

fn render(app: &App, base: &str, mac: MacAddr, p: &Plan, enroll: &str) -> String {
    let mut params = vec![
        format!("wulf.head={}", api_base(base)),
        format!("wulf.ca={}", app.tls.fingerprint),
        format!("wulf.node={}", p.node_uid),
        format!("wulf.name={}", p.name),
        format!("wulf.style={}", p.style),
        format!("wulf.enroll={enroll}"),
    ];
    if p.kickstart {
        let ks = crate::kickstart::ks_url(base);
        params.push(format!("inst.ks={ks} ks={ks}"));
    }
    if let Some(img) = &p.image {
        params.push(format!("wulf.image={base}/boot/file/{}", img.sha256));
        params.push(format!("wulf.image_sha256={}", img.sha256));
        if p.swarm {
            params.push(format!("wulf.swarm={}", wulf_api::swarm::PORT));
        }
    }
    params.extend(p.disk.iter().cloned());
    if p.disked {
        params.push(format!("wulf.kernel={base}/boot/file/{}", p.kernel.sha256));
        if let Some(i) = &p.initramfs {
            params.push(format!("wulf.initrd={base}/boot/file/{}", i.sha256));
        }
    }
    let mut s = String::from("#!ipxe\n");
    s += &format!(
        "echo wulf: booting {} ({mac}) as {} using boot config {}\n",
        p.name, p.style, p.boot_name
    );
    let initrd_arg = if p.initramfs.is_some() {
        "initrd=initramfs "
    } else {
        ""
    };
    s += &format!(
        "kernel --name vmlinuz {base}/boot/file/{} {initrd_arg}{} {}\n",
        p.kernel.sha256,
        p.cmdline.trim(),
        params.join(" ")
    );
    if let Some(i) = &p.initramfs {
        s += &format!("initrd --name initramfs {base}/boot/file/{}\n", i.sha256);
    }
    s += "boot || goto failed\n:failed\n";
    s += &format!(
        "echo wulf: boot failed; asking again in {RETRY_SECS} seconds\nsleep {RETRY_SECS}\nchain --autofree {base}/boot/ipxe?mac={mac}\n"
    );
    s
}

async fn script(
    State(app): State<Arc<App>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
) -> Response {
    let peer = crate::enroll::peer_ip(&ext);
    let base = request_base(&app, &headers);
    let Some(raw) = q.get("mac") else {
        // Firmware pointed here without a MAC: ask again with its own.
        return ipxe(format!(
            "#!ipxe\nchain --autofree {base}/boot/ipxe?mac=${{net0/mac}}\n"
        ));
    };
    let Ok(mac) = raw.parse::<MacAddr>() else {
        return (
            StatusCode::BAD_REQUEST,
            format!("'{raw}' is not a MAC address\n"),
        )
            .into_response();
    };
    if q.get("loader").map(String::as_str) != Some(crate::chainload::OWN) {
        if let Some(s) = crate::chainload::guard(&app, mac, &base) {
            tracing::debug!(%mac, "boot script: the _ipxe_chain guard");
            return ipxe(s);
        }
    }
    match decide(&app, mac) {
        Decision::Retry(why) => {
            tracing::info!(%mac, "boot script: {why}");
            ipxe(retry_script(&base, &mac.to_string(), &why))
        }
        Decision::Next(why) => {
            tracing::info!(%mac, "boot script: {why}");
            ipxe(next_script(&why))
        }
        Decision::Disk { node_uid, why } => {
            // The firmware goes on to the disk; the init there asks again, from the node's
            // address, for the token its agent enrolls with.
            if let Err(e) = crate::enroll::may_issue(&app, &node_uid, &mac.to_string(), peer) {
                tracing::info!(%mac, "boot script: {why} ({e}: no enrollment token)");
                return ipxe(next_script(&why));
            }
            tracing::info!(target: "audit", %mac, "Booting node (MAC={mac}) from its disk: {why}.");
            app.status.booted(&node_uid);
            let enroll = app.enroll.issue(&node_uid, peer);
            ipxe(format!(
                "#!ipxe\necho wulf: {why}\necho wulf.enroll={enroll}\nexit\n"
            ))
        }
        Decision::Simulated { node_uid, name } => {
            // No enrollment token (and nothing else secret) for a node that is up.
            if let Err(why) = crate::enroll::may_issue(&app, &node_uid, &mac.to_string(), peer) {
                return ipxe(retry_script(&base, &mac.to_string(), &why));
            }
            tracing::info!(
                target: "audit",
                node = %name,
                "Booting node (MAC={mac}) as simulated."
            );
            app.status.booted(&node_uid);
            let enroll = app.enroll.issue(&node_uid, peer);
            let (head, ca) = (api_base(&base), &app.tls.fingerprint);
            ipxe(format!(
                "#!ipxe\necho wulf: {name} is a simulated node; nothing to load\n\
                 echo wulf.head={head} wulf.ca={ca} wulf.node={node_uid} wulf.name={name} wulf.style=simulated wulf.enroll={enroll}\nexit\n"
            ))
        }
        Decision::Boot(plan) => {
            // No enrollment token (and nothing else secret) for a node that is up, or asked
            // from another address than the node's own.
            if let Err(why) = crate::enroll::may_issue(&app, &plan.node_uid, &mac.to_string(), peer)
            {
                return ipxe(retry_script(&base, &mac.to_string(), &why));
            }
            if plan.pxe_once {
                // pxe+local: exactly one PXE boot, even if several requests race.
                match app.db.claim_pxe_boot(&plan.node_uid).await {
                    Ok(true) => {}
                    Ok(false) => {
                        return ipxe(next_script(&format!(
                            "{} boots from its local disk",
                            plan.name
                        )))
                    }
                    Err(e) => {
                        tracing::warn!(%mac, error = %e, "cannot record the PXE boot stage");
                        return ipxe(retry_script(
                            &base,
                            &mac.to_string(),
                            "the head could not record this boot",
                        ));
                    }
                }
            }
            tracing::info!(
                target: "audit",
                node = %plan.name,
                "Booting node (MAC={mac}) as {} using boot config {}.",
                plan.style,
                plan.boot_uid
            );
            app.status.booted(&plan.node_uid);
            let enroll = app.enroll.issue(&plan.node_uid, peer);
            ipxe(render(&app, &base, mac, &plan, &enroll))
        }
    }
}

/// Files a booting node may fetch: kernels, initramfs files and images of boot configs.
pub(crate) fn referenced(app: &App, sha256: &str) -> Option<FileRef> {
    let st = app.cache.read();
    let found = st
        .objects(Kind::Boot)
        .chain(st.objects(Kind::Image))
        .find_map(|o| {
            let files: Vec<&FileRef> = match o {
                AnyObj::Boot(b) => b.kernel.iter().chain(b.initramfs.iter()).collect(),
                AnyObj::Image(i) => i.content.iter().collect(),
                _ => Vec::new(),
            };
            files.into_iter().find(|f| f.sha256 == sha256).cloned()
        });
    found
}

async fn file(
    State(app): State<Arc<App>>,
    Path(sha256): Path<String>,
    req: Request,
) -> Result<Response, ApiErr> {
    let f = referenced(&app, &sha256)
        .ok_or_else(|| ApiErr::new(StatusCode::NOT_FOUND, format!("no boot file {sha256}")))?;
    // Kernels and initramfs files go to anyone; an image only to a node that boots it.
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let peer = crate::enroll::peer_ip(req.extensions());
    crate::enroll::images::may_download(&app, &f.sha256, auth, peer)
        .await
        .map_err(|why| ApiErr::new(StatusCode::FORBIDDEN, why))?;
    if !req.headers().contains_key(crate::peers::PEER_HEADER) {
        crate::peers::ensure_local(&app, &f.sha256).await;
    }
    serve_blob(&app.blobs, &f, req).await
}

/// `GET /boot/ca.pem`: the cluster CA certificate.
async fn ca_pem(State(app): State<Arc<App>>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        app.tls.ca_pem.clone(),
    )
        .into_response()
}

/// iPXE's EFI binary from the TFTP root, for UEFI HTTP boot clients.
async fn ipxe_efi(State(app): State<Arc<App>>, req: Request) -> Result<Response, ApiErr> {
    use tower::ServiceExt;
    let path = app.cfg.tftp.root.join("ipxe.efi");
    if !path.is_file() {
        return Err(ApiErr::new(
            StatusCode::NOT_FOUND,
            format!(
                "{} is missing (install Debian's ipxe package)",
                path.display()
            ),
        ));
    }
    tower_http::services::ServeFile::new(&path)
        .oneshot(req)
        .await
        .map(|r| r.map(axum::body::Body::new))
        .map_err(|e| ApiErr::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_retry_or_exit() {
        let s = retry_script("http://10.0.0.1:8740", "52:54:00:00:00:01", "why");
        assert!(
            s.starts_with("#!ipxe\n")
                && s.contains(
                    "chain --autofree http://10.0.0.1:8740/boot/ipxe?mac=52:54:00:00:00:01"
                )
        );
        assert!(next_script("local").ends_with("exit\n"));
    }
}
