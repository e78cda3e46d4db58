//! Object routes: list, create, update, delete, upload and download files, effective attributes.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use serde_json::Value;
use wulf_api::{Deleted, NodeAttributes, UpdateRequest};
use wulf_model::{FileRef, Kind};

use crate::app::{App, AppState};
use crate::auth::Principal;
use crate::blobs::BlobError;
use crate::cache::State as CacheState;
use crate::objects::AnyObj;
use crate::web::{json_response, parse_kind, read_json, selection, serve_blob, summarize, ApiErr};

/// `/{kind}` and its files, and the nodes' effective attributes.
pub fn routes() -> Router<Arc<App>> {
    let files = Router::new()
        .route(
            "/api/v1/{kind}/{id}/files/{field}",
            get(download).put(upload),
        )
        .layer(DefaultBodyLimit::disable());
    Router::new()
        .route("/api/v1/node/attributes", get(node_attributes))
        .route(
            "/api/v1/{kind}",
            get(list).post(create).patch(update).delete(remove),
        )
        .layer(DefaultBodyLimit::disable())
        .merge(files)
}

/// What an update changes, for its audit line: field names (values of secrets never), attributes set and
/// cleared, groups joined and left.
fn describe_update(req: &UpdateRequest) -> String {
    let mut parts: Vec<String> = req.fields.keys().cloned().collect();
    parts.extend(req.set_attributes.keys().map(|k| format!("set {k}")));
    parts.extend(req.clear_attributes.iter().map(|k| format!("clear {k}")));
    parts.extend(req.join.iter().map(|g| format!("join {g}")));
    parts.extend(req.leave.iter().map(|g| format!("leave {g}")));
    parts.join(", ")
}

/// `fields=a,b` from a query: answer only those fields of each object.
fn requested_fields(q: &HashMap<String, String>) -> Option<Vec<String>> {
    q.get("fields").map(|f| {
        f.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    })
}

/// An object's JSON, or only the named fields of it; secrets masked (see
/// `wulf_model::secret`).
fn object_bytes(obj: &AnyObj, fields: Option<&[String]>) -> Vec<u8> {
    let masked = match obj {
        AnyObj::Node(n) => wulf_model::secret::mask_node(n).map(AnyObj::Node),
        AnyObj::Attrib(g) => wulf_model::secret::mask_group(g).map(AnyObj::Attrib),
        AnyObj::Admin(a) => Some(AnyObj::Admin(crate::auth::accounts::masked(a))),
        _ => None,
    };
    let obj = masked.as_ref().unwrap_or(obj);
    match fields {
        None => obj.to_bytes(),
        Some(fields) => {
            let full = obj.to_json();
            let picked: serde_json::Map<String, Value> = fields
                .iter()
                .filter_map(|f| full.get(f).map(|v| (f.clone(), v.clone())))
                .collect();
            serde_json::to_vec(&picked).unwrap_or_default()
        }
    }
}

fn objects_json(objs: &[AnyObj], fields: Option<&[String]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(objs.len() * 64 + 2);
    out.push(b'[');
    for (i, o) in objs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&object_bytes(o, fields));
    }
    out.push(b']');
    out
}

async fn list(
    State(app): AppState,
    Path(kind): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiErr> {
    let kind = parse_kind(&kind)?;
    let fields = requested_fields(&q);
    let st = app.cache.read();
    let uids = selection(&st, kind, &q, true)?;
    let mut out = Vec::with_capacity(uids.len() * 256 + 2);
    out.push(b'[');
    for (i, uid) in uids.iter().enumerate() {
        let Some(e) = st.get(kind, uid) else { continue };
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&object_bytes(&e.obj, fields.as_deref()));
    }
    out.push(b']');
    Ok(json_response(out, StatusCode::OK))
}

async fn create(
    State(app): AppState,
    Extension(who): Extension<Principal>,
    Path(kind): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: Body,
) -> Result<Response, ApiErr> {
    let kind = parse_kind(&kind)?;
    let docs = match read_json(&app, body).await? {
        Value::Array(a) => a,
        v @ Value::Object(_) => vec![v],
        _ => return Err(ApiErr::bad("expected a JSON object or an array of objects")),
    };
    let docs = if kind == Kind::Admin {
        crate::auth::accounts::prepare_create(docs).await?
    } else {
        docs
    };
    let objs = app.db.create(kind, docs).await?;
    let names: Vec<&str> = objs.iter().map(AnyObj::name).collect();
    tracing::info!(target: "audit", account = %who.name, source = %who.source, kind = %kind, count = objs.len(), tag.nodes = %nodes_tag(kind, &names), "created {}", summarize(kind, &names));
    Ok(json_response(
        objects_json(&objs, requested_fields(&q).as_deref()),
        StatusCode::CREATED,
    ))
}

async fn update(
    State(app): AppState,
    Extension(who): Extension<Principal>,
    Path(kind): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: Body,
) -> Result<Response, ApiErr> {
    let kind = parse_kind(&kind)?;
    let req: UpdateRequest = serde_json::from_value(read_json(&app, body).await?)
        .map_err(|e| ApiErr::bad(format!("malformed update request: {e}")))?;
    let uids = selection(&app.cache.read(), kind, &q, false)?;
    let changes = describe_update(&req);
    let objs = if kind == Kind::Admin {
        crate::auth::accounts::update(&app, &uids, req).await?
    } else {
        app.db.update(kind, &uids, &req).await?
    };
    let names: Vec<&str> = objs.iter().map(AnyObj::name).collect();
    tracing::info!(target: "audit", account = %who.name, source = %who.source, kind = %kind, count = objs.len(), changes = %changes, tag.nodes = %nodes_tag(kind, &names), "updated {}", summarize(kind, &names));
    Ok(json_response(
        objects_json(&objs, requested_fields(&q).as_deref()),
        StatusCode::OK,
    ))
}

async fn remove(
    State(app): AppState,
    Extension(who): Extension<Principal>,
    Path(kind): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<axum::Json<Deleted>, ApiErr> {
    let kind = parse_kind(&kind)?;
    let uids = selection(&app.cache.read(), kind, &q, false)?;
    let objs = app.db.delete(kind, &uids).await?;
    let names: Vec<String> = objs.iter().map(|o| o.name().to_string()).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    tracing::info!(target: "audit", account = %who.name, source = %who.source, kind = %kind, count = objs.len(), tag.nodes = %nodes_tag(kind, &refs), "deleted {}", summarize(kind, &refs));
    Ok(axum::Json(Deleted { deleted: names }))
}

async fn node_attributes(
    State(app): AppState,
    Query(q): Query<HashMap<String, String>>,
) -> Result<axum::Json<Vec<NodeAttributes>>, ApiErr> {
    let st = app.cache.read();
    let uids = selection(&st, Kind::Node, &q, true)?;
    let out = uids
        .iter()
        .filter_map(|u| st.get(Kind::Node, u)?.obj.as_node())
        .map(|n| NodeAttributes {
            uid: n.uid.clone(),
            name: n.name.clone(),
            attributes: st
                .effective_attributes(n)
                .into_iter()
                .map(|(k, mut a)| {
                    if let Some(m) = wulf_model::secret::mask_attr(&k, &a.value) {
                        a.value = m;
                    }
                    (k, a)
                })
                .collect(),
        })
        .collect();
    Ok(axum::Json(out))
}

/// The kinds and fields that hold files.
fn file_field(kind: Kind, field: &str) -> Result<(), ApiErr> {
    match (kind, field) {
        (Kind::Boot, "kernel" | "initramfs" | "kickstart")
        | (Kind::Image, "content")
        | (Kind::Repo, "iso") => Ok(()),
        _ => Err(ApiErr::new(
            StatusCode::NOT_FOUND,
            format!(
                "{} has no file field '{field}' (boot: kernel, initramfs, kickstart; image: content; repo: iso)",
                kind.title()
            ),
        )),
    }
}

fn one(st: &CacheState, kind: Kind, id: &str) -> Result<Arc<AnyObj>, ApiErr> {
    let uids = st.select(kind, id)?;
    match uids.as_slice() {
        [uid] => st
            .get(kind, uid)
            .map(|e| e.obj.clone())
            .ok_or_else(|| ApiErr::new(StatusCode::NOT_FOUND, format!("no {} {id}", kind.title()))),
        _ => Err(ApiErr::bad(format!(
            "'{id}' names {} objects; name one",
            uids.len()
        ))),
    }
}

/// A request body stored as a blob.
pub(crate) struct Stored {
    pub file: FileRef,
    /// No blob had this content before (see [`Stored::discard`]).
    pub new: bool,
}

impl Stored {
    /// The upload failed after its body was stored: remove the blob it created (one that
    /// existed before is kept) unless an object refers to it, so a refused upload leaves no
    /// file.
    pub fn discard(&self, app: &App) {
        if self.new && !crate::maint::referenced_files(app).contains(&self.file.sha256) {
            app.blobs.remove(&self.file.sha256);
        }
    }
}

/// Store a request's body as a blob (its Content-Length, when given, is checked) and describe
/// it with the `filename` query value.
pub(crate) async fn store_body(
    app: &App,
    req: Request,
    q: &HashMap<String, String>,
) -> Result<Stored, ApiErr> {
    let expected = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let stream = req.into_body().into_data_stream();
    let (sha256, size, new) = app
        .blobs
        .ingest(stream, expected)
        .await
        .map_err(|e| match e {
            BlobError::Io(_) => {
                tracing::error!(error = %e, "cannot store upload");
                ApiErr::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
            _ => ApiErr::bad(e.to_string()),
        })?;
    Ok(Stored {
        file: FileRef {
            sha256,
            size,
            filename: q.get("filename").cloned().unwrap_or_default(),
        },
        new,
    })
}

async fn upload(
    State(app): AppState,
    Extension(who): Extension<Principal>,
    Path((kind, id, field)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Result<Response, ApiErr> {
    let kind = parse_kind(&kind)?;
    file_field(kind, &field)?;
    let obj = one(&app.cache.read(), kind, &id)?;
    if obj.to_json().get("frozen").and_then(Value::as_bool) == Some(true) {
        return Err(ApiErr::new(
            StatusCode::CONFLICT,
            format!(
                "{} '{}' is frozen; set frozen=false first",
                kind.title(),
                obj.name()
            ),
        ));
    }
    let stored = store_body(&app, req, &q).await?;
    let file = &stored.file;
    let checked = if (kind, field.as_str()) == (Kind::Boot, "kickstart") {
        check_kickstart(&app, &file.sha256)
    } else {
        Ok(())
    };
    if let Err(e) = checked {
        stored.discard(&app);
        return Err(e);
    }
    let size = file.size;
    let value = serde_json::to_value(file).unwrap_or(Value::Null);
    let set = if kind == Kind::Image {
        crate::objects::versions::set_content(&app, obj.uid(), value, q.get("parent_sha256")).await
    } else {
        app.db
            .set_field(kind, obj.uid(), &field, value)
            .await
            .map_err(ApiErr::from)
    };
    let updated = match set {
        Ok(u) => u,
        Err(e) => {
            stored.discard(&app);
            return Err(e);
        }
    };
    tracing::info!(target: "audit", account = %who.name, source = %who.source, kind = %kind, sha256 = %file.sha256, size, "uploaded {field} of {}", obj.name());
    Ok(json_response(
        objects_json(&[updated], None),
        StatusCode::OK,
    ))
}

/// A kickstart template is text whose placeholders are all known.
fn check_kickstart(app: &App, sha256: &str) -> Result<(), ApiErr> {
    let text = app
        .blobs
        .path(sha256)
        .and_then(|p| std::fs::read(p).ok())
        .ok_or_else(|| ApiErr::new(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the upload"))?;
    let text = std::str::from_utf8(&text)
        .map_err(|_| ApiErr::bad("the kickstart template is not UTF-8 text"))?;
    crate::kickstart::check(text).map_err(|e| ApiErr::bad(format!("kickstart template: {e}")))
}

async fn download(
    State(app): AppState,
    Path((kind, id, field)): Path<(String, String, String)>,
    req: Request,
) -> Result<Response, ApiErr> {
    let kind = parse_kind(&kind)?;
    file_field(kind, &field)?;
    let obj = one(&app.cache.read(), kind, &id)?;
    let file: FileRef = obj
        .to_json()
        .get(&field)
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or_else(|| {
            ApiErr::new(
                StatusCode::NOT_FOUND,
                format!("{} '{}' has no {field} uploaded", kind.title(), obj.name()),
            )
        })?;
    crate::peers::ensure_local(&app, &file.sha256).await;
    serve_blob(&app.blobs, &file, req).await
}

/// The nodes an AUDIT line of a change is about (`wulf log --node`): empty for other kinds.
fn nodes_tag(kind: Kind, names: &[&str]) -> String {
    if kind == Kind::Node {
        wulf_model::hostlist::compress(names)
    } else {
        String::new()
    }
}
