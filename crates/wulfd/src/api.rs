//! The REST API under `/api/v1` (see the `wulf-api` crate for the list of paths).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::Value;
use tower::ServiceExt;
use wulf_api::{Deleted, ErrorBody, Info, NodeAttributes, UpdateRequest};
use wulf_model::{FileRef, Kind};
use wulf_store::{Store, StoreError};

use crate::auth::Tokens;
use crate::blobs::{BlobError, Blobs};
use crate::cache::{Cache, SelectError, State as CacheState};
use crate::db::{Db, DbError};
use crate::objects::AnyObj;

pub struct App {
    pub db: Db,
    pub cache: Arc<Cache>,
    pub store: Arc<dyn Store>,
    pub blobs: Blobs,
    pub tokens: Tokens,
    pub head: String,
    pub max_body: usize,
    /// The settled configuration (service sections, API port).
    pub cfg: crate::config::Config,
    /// Secret the per-node boot credentials are derived from (shared by all heads).
    pub node_secret: Vec<u8>,
    /// Node status as this head sees it.
    pub status: Arc<crate::status::Status>,
    /// The heads that are up (for agents to fall back on).
    pub live_heads: crate::heads::LiveHeads,
    /// Files being fetched from peer heads.
    pub fetches: crate::peers::Fetches,
}

type AppState = State<Arc<App>>;

/// An error answer: status and a JSON body naming what was wrong.
pub struct ApiErr {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiErr {
    pub fn new(status: StatusCode, msg: impl Into<String>) -> ApiErr {
        ApiErr {
            status,
            body: ErrorBody {
                error: msg.into(),
                field: None,
            },
        }
    }
    fn bad(msg: impl Into<String>) -> ApiErr {
        ApiErr::new(StatusCode::BAD_REQUEST, msg)
    }
}

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

impl From<DbError> for ApiErr {
    fn from(e: DbError) -> ApiErr {
        let status = match &e {
            DbError::Invalid(_) | DbError::BadRequest(_) => StatusCode::BAD_REQUEST,
            DbError::Select(s) => return s.into(),
            DbError::NotFound(_) => StatusCode::NOT_FOUND,
            DbError::Conflict(_) => StatusCode::CONFLICT,
            DbError::Store(s) => return s.into(),
        };
        let field = match &e {
            DbError::Invalid(m) => Some(m.field.clone()),
            _ => None,
        };
        ApiErr {
            status,
            body: ErrorBody {
                error: e.to_string(),
                field,
            },
        }
    }
}

impl From<&SelectError> for ApiErr {
    fn from(e: &SelectError) -> ApiErr {
        let status = match e {
            SelectError::Missing { .. } => StatusCode::NOT_FOUND,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiErr::new(status, e.to_string())
    }
}

impl From<SelectError> for ApiErr {
    fn from(e: SelectError) -> ApiErr {
        (&e).into()
    }
}

impl From<&StoreError> for ApiErr {
    fn from(e: &StoreError) -> ApiErr {
        if let StoreError::NoSpace(why) = e {
            tracing::error!(
                "write refused: {why}. Run `wulf cluster db --recover`, and raise etcd's \
                 --quota-backend-bytes if it fills again"
            );
            return ApiErr::new(
                StatusCode::INSUFFICIENT_STORAGE,
                format!(
                    "database out of space, nothing was written: {why}. Run `wulf cluster db \
                     --recover` (compact, defragment, disarm the alarm)"
                ),
            );
        }
        if let StoreError::TooBig(why) = e {
            tracing::warn!("request refused by the database: {why}");
            return ApiErr::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "too large for one database transaction, nothing was written: {why}; \
                     or change fewer objects per request"
                ),
            );
        }
        tracing::error!(error = %e, "store error");
        ApiErr::new(StatusCode::SERVICE_UNAVAILABLE, format!("database: {e}"))
    }
}

impl From<StoreError> for ApiErr {
    fn from(e: StoreError) -> ApiErr {
        (&e).into()
    }
}

pub fn router(app: Arc<App>) -> Router {
    let files = Router::new()
        .route(
            "/api/v1/{kind}/{id}/files/{field}",
            get(download).put(upload),
        )
        .layer(DefaultBodyLimit::disable());
    let api = Router::new()
        .route("/api/v1/info", get(info))
        .route("/api/v1/node/attributes", get(node_attributes))
        .route("/api/v1/node/unknown", get(node_unknown))
        .route(
            "/api/v1/node/status",
            get(node_status).post(node_status_report),
        )
        .route("/api/v1/node/status/summary", get(node_status_summary))
        .route("/api/v1/head", get(head_list).delete(head_remove))
        .route("/api/v1/cluster/hosts", get(crate::dns::cluster_hosts))
        .route("/api/v1/cluster/db", get(cluster_db).post(cluster_db_act))
        .route(
            "/api/v1/{kind}",
            get(list).post(create).patch(update).delete(remove),
        )
        .layer(DefaultBodyLimit::disable())
        .merge(files)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            authenticate,
        ));
    // Boot scripts and boot files are fetched by firmware, which has no token.
    Router::new()
        .merge(api)
        .merge(crate::boot::routes())
        .fallback(|| async { ApiErr::new(StatusCode::NOT_FOUND, "no such API path") })
        .with_state(app)
}

/// The token of an `Authorization: Bearer TOKEN` header.
fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

async fn authenticate(State(app): AppState, req: Request, next: Next) -> Response {
    // Nodes send their reports with their own credential, checked by the handler.
    if req.method() == axum::http::Method::POST && req.uri().path() == "/api/v1/node/status" {
        return next.run(req).await;
    }
    let presented = bearer(req.headers());
    match presented {
        Some(t) if app.tokens.is_admin(t) => next.run(req).await,
        Some(_) => {
            tracing::warn!(target: "audit", path = %req.uri().path(), "refused a request with a wrong token");
            ApiErr::new(StatusCode::UNAUTHORIZED, "the token is not valid").into_response()
        }
        None => ApiErr::new(
            StatusCode::UNAUTHORIZED,
            "authentication required: send 'Authorization: Bearer TOKEN'",
        )
        .into_response(),
    }
}

fn parse_kind(s: &str) -> Result<Kind, ApiErr> {
    s.parse::<Kind>().map_err(|_| {
        let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        ApiErr::new(
            StatusCode::NOT_FOUND,
            format!("unknown object kind '{s}' (kinds: {})", kinds.join(", ")),
        )
    })
}

async fn read_json(app: &App, body: Body) -> Result<Value, ApiErr> {
    let bytes = axum::body::to_bytes(body, app.max_body)
        .await
        .map_err(|_| {
            ApiErr::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request body is larger than {} MiB (max_body_mib in the config file)",
                    app.max_body >> 20
                ),
            )
        })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiErr::bad(format!("malformed JSON in request body: {e}")))
}

/// The uids a request selects: `ids=SEL`, or everything with `all=true` (or no `ids` when
/// `default_all`).
fn selection(
    st: &CacheState,
    kind: Kind,
    q: &HashMap<String, String>,
    default_all: bool,
) -> Result<Vec<String>, ApiErr> {
    let all = q
        .get("all")
        .is_some_and(|v| wulf_model::parse_bool(v) == Some(true));
    match q.get("ids").map(|s| s.trim()) {
        Some(ids) if !ids.is_empty() => Ok(st.select(kind, ids)?),
        _ if all || default_all || kind == Kind::Cluster => Ok(st
            .list(kind)
            .iter()
            .map(|e| e.obj.uid().to_string())
            .collect()),
        _ => Err(ApiErr::bad(format!(
            "say which {}s: give ids or all=true",
            kind.title()
        ))),
    }
}

fn json_response(bytes: Vec<u8>, status: StatusCode) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        bytes,
    )
        .into_response()
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

/// An object's JSON, or only the named fields of it.
fn object_bytes(obj: &AnyObj, fields: Option<&[String]>) -> Vec<u8> {
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

async fn info(State(app): AppState) -> Result<axum::Json<Info>, ApiErr> {
    Ok(axum::Json(Info {
        version: env!("CARGO_PKG_VERSION").to_string(),
        store: app.store.backend().to_string(),
        revision: app.store.revision().await?,
        head: app.head.clone(),
        store_url: app.cfg.store.shareable(),
    }))
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
    let objs = app.db.create(kind, docs).await?;
    let names: Vec<&str> = objs.iter().map(AnyObj::name).collect();
    tracing::info!(target: "audit", kind = %kind, count = objs.len(), "created {}", summarize(kind, &names));
    Ok(json_response(
        objects_json(&objs, requested_fields(&q).as_deref()),
        StatusCode::CREATED,
    ))
}

fn summarize(kind: Kind, names: &[&str]) -> String {
    if kind == Kind::Node {
        wulf_model::hostlist::compress(names)
    } else {
        names.join(",")
    }
}

async fn update(
    State(app): AppState,
    Path(kind): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: Body,
) -> Result<Response, ApiErr> {
    let kind = parse_kind(&kind)?;
    let req: UpdateRequest = serde_json::from_value(read_json(&app, body).await?)
        .map_err(|e| ApiErr::bad(format!("malformed update request: {e}")))?;
    let uids = selection(&app.cache.read(), kind, &q, false)?;
    let objs = app.db.update(kind, &uids, &req).await?;
    let names: Vec<&str> = objs.iter().map(AnyObj::name).collect();
    tracing::info!(target: "audit", kind = %kind, count = objs.len(), "updated {}", summarize(kind, &names));
    Ok(json_response(
        objects_json(&objs, requested_fields(&q).as_deref()),
        StatusCode::OK,
    ))
}

async fn remove(
    State(app): AppState,
    Path(kind): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<axum::Json<Deleted>, ApiErr> {
    let kind = parse_kind(&kind)?;
    let uids = selection(&app.cache.read(), kind, &q, false)?;
    let objs = app.db.delete(kind, &uids).await?;
    let names: Vec<String> = objs.iter().map(|o| o.name().to_string()).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    tracing::info!(target: "audit", kind = %kind, count = objs.len(), "deleted {}", summarize(kind, &refs));
    Ok(axum::Json(Deleted { deleted: names }))
}

/// MACs the DHCP server saw that belong to no node (while new nodes are not accepted).
async fn node_unknown(State(app): AppState) -> axum::Json<Vec<crate::dhcp::UnknownMac>> {
    let st = app.cache.read();
    axum::Json(crate::dhcp::unknown_macs(|m| st.macs.contains_key(m)))
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
            attributes: st.effective_attributes(n),
        })
        .collect();
    Ok(axum::Json(out))
}

/// `GET /api/v1/head`: every known head, up or down.
async fn head_list(
    State(app): AppState,
) -> Result<axum::Json<Vec<crate::heads::HeadView>>, ApiErr> {
    Ok(axum::Json(crate::heads::list(app.store.as_ref()).await?))
}

/// `GET /api/v1/cluster/db`: the store's size and health, member by member.
async fn cluster_db(State(app): AppState) -> Result<axum::Json<wulf_model::db::DbStatus>, ApiErr> {
    Ok(axum::Json(crate::maint::db_status(&app).await?))
}

/// What `POST /api/v1/cluster/db` did, and the status after it.
#[derive(serde::Serialize)]
struct DbActed {
    done: Vec<String>,
    status: wulf_model::db::DbStatus,
}

/// `POST /api/v1/cluster/db` `{"action": "compact"|"defrag"|"disarm"|"recover"}`.
async fn cluster_db_act(State(app): AppState, body: Body) -> Result<axum::Json<DbActed>, ApiErr> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Ask {
        action: crate::maint::DbAction,
    }
    let ask: Ask = serde_json::from_value(read_json(&app, body).await?).map_err(|e| {
        ApiErr::bad(format!(
            "expected {{\"action\": \"compact\"|\"defrag\"|\"disarm\"|\"recover\"}}: {e}"
        ))
    })?;
    let done = crate::maint::act(&app, ask.action).await?;
    tracing::info!(action = ?ask.action, steps = ?done, "database maintenance on request");
    Ok(axum::Json(DbActed {
        done,
        status: crate::maint::db_status(&app).await?,
    }))
}

/// `DELETE /api/v1/head?ids=NAME,…`: remove down heads' records.
async fn head_remove(
    State(app): AppState,
    Query(q): Query<HashMap<String, String>>,
) -> Result<axum::Json<Deleted>, ApiErr> {
    use crate::heads::HeadError;
    let names: Vec<&str> = q
        .get("ids")
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        return Err(ApiErr::bad("say which heads: ids=NAME[,NAME…]"));
    }
    let mut deleted = Vec::new();
    for name in names {
        match crate::heads::remove(app.store.as_ref(), name).await {
            Ok(()) => {
                tracing::info!(target: "audit", head = %name, "removed a down head");
                deleted.push(name.to_string());
            }
            Err(HeadError::NotFound(n)) => {
                return Err(ApiErr::new(
                    StatusCode::NOT_FOUND,
                    format!("no head named '{n}'"),
                ))
            }
            Err(e @ (HeadError::StillUp(_) | HeadError::AlreadyRunning(_))) => {
                return Err(ApiErr::new(StatusCode::CONFLICT, e.to_string()))
            }
            Err(HeadError::Store(e)) => return Err(e.into()),
        }
    }
    Ok(axum::Json(Deleted { deleted }))
}

/// Nodes of a selection in index order.
fn by_index(st: &CacheState, mut uids: Vec<String>) -> Vec<String> {
    uids.sort_by_cached_key(|u| {
        st.get(Kind::Node, u)
            .and_then(|e| e.obj.as_node())
            .and_then(|n| n.index)
            .unwrap_or(u32::MAX)
    });
    uids
}

/// `GET /api/v1/node/status?ids=SEL&detail=0|1|2`.
async fn node_status(
    State(app): AppState,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiErr> {
    use crate::status::Detail;
    let detail = match q.get("detail").map(String::as_str) {
        None | Some("2") | Some("full") => Detail::Full,
        Some("1") | Some("heartbeat") => Detail::Heartbeat,
        Some("0") | Some("state") => Detail::State,
        Some(other) => {
            return Err(ApiErr::bad(format!(
                "detail must be 0 (state), 1 (heartbeat) or 2 (full), not '{other}'"
            )))
        }
    };
    let view = {
        let st = app.cache.read();
        let uids = by_index(&st, selection(&st, Kind::Node, &q, true)?);
        app.status.view(&st, &uids, detail)
    };
    let bytes = serde_json::to_vec(&view)
        .map_err(|e| ApiErr::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(json_response(bytes, StatusCode::OK))
}

/// `GET /api/v1/node/status/summary?ids=SEL[&since=N]`.
async fn node_status_summary(
    State(app): AppState,
    Query(q): Query<HashMap<String, String>>,
) -> Result<axum::Json<wulf_api::status::StatusSummary>, ApiErr> {
    use wulf_api::status::{StateGroup, StatusSummary};
    use wulf_model::NodeState;
    if let Some(since) = q.get("since") {
        let since: u64 = since
            .parse()
            .map_err(|_| ApiErr::bad(format!("since must be a number, not '{since}'")))?;
        let mut rx = app.status.subscribe();
        let wait = rx.wait_for(|n| *n > since);
        // No change for a while: answer anyway (states also change with time alone).
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), wait).await;
    }
    let changes = *app.status.subscribe().borrow();
    let states = {
        let st = app.cache.read();
        let uids = by_index(&st, selection(&st, Kind::Node, &q, true)?);
        app.status.states(&st, &uids)
    };
    let total = states.len();
    type Group = ((NodeState, Option<&'static str>), Vec<String>);
    let mut groups: Vec<Group> = Vec::new();
    for (state, reason, name) in states {
        let key = (state, reason.map(|r| r.as_str()));
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, names)) => names.push(name),
            None => groups.push((key, vec![name])),
        }
    }
    let order = |s: NodeState| match s {
        NodeState::Up => 0,
        NodeState::Booting => 1,
        NodeState::Down => 2,
        NodeState::New => 3,
    };
    groups.sort_by_key(|((s, r), _)| (order(*s), *r));
    Ok(axum::Json(StatusSummary {
        changes,
        total,
        groups: groups
            .into_iter()
            .map(|((s, r), names)| StateGroup {
                state: s.as_str().to_string(),
                down_reason: r.map(str::to_string),
                count: names.len(),
                nodes: wulf_model::hostlist::compress(&names),
            })
            .collect(),
    }))
}

/// `POST /api/v1/node/status`: a node's report, with its own credential.
async fn node_status_report(
    State(app): AppState,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<axum::Json<wulf_api::status::ReportReply>, ApiErr> {
    use subtle::ConstantTimeEq;
    let token = bearer(&headers).ok_or_else(|| {
        ApiErr::new(
            StatusCode::UNAUTHORIZED,
            "authentication required: send 'Authorization: Bearer node:UID:CREDENTIAL'",
        )
    })?;
    let Some((uid, cred)) = wulf_api::status::parse_node_token(token) else {
        return Err(ApiErr::new(
            StatusCode::UNAUTHORIZED,
            "a status report needs the node's token 'node:UID:CREDENTIAL'",
        ));
    };
    let expected = crate::boot::node_credential(&app.node_secret, uid);
    if !bool::from(expected.as_bytes().ct_eq(cred.as_bytes())) {
        tracing::warn!(target: "audit", node = %uid, "refused a status report with a wrong node credential");
        return Err(ApiErr::new(
            StatusCode::UNAUTHORIZED,
            "the node credential is not valid",
        ));
    }
    let bytes = axum::body::to_bytes(body, 1 << 20).await.map_err(|_| {
        ApiErr::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "a status report is at most 1 MiB",
        )
    })?;
    let report: wulf_api::status::StatusReport = serde_json::from_slice(&bytes)
        .map_err(|e| ApiErr::bad(format!("malformed status report: {e}")))?;
    if report.node != uid {
        tracing::warn!(target: "audit", node = %uid, claimed = %report.node, "refused a status report for another node");
        return Err(ApiErr::new(
            StatusCode::FORBIDDEN,
            format!(
                "this credential belongs to node {uid}, not to {}",
                report.node
            ),
        ));
    }
    let reply = {
        let st = app.cache.read();
        let node = st
            .get(Kind::Node, uid)
            .and_then(|e| e.obj.as_node())
            .ok_or_else(|| ApiErr::new(StatusCode::NOT_FOUND, format!("no node {uid}")))?;
        wulf_api::status::ReportReply {
            name: node.name.clone(),
            attributes: crate::status::reply_attributes(&st, node),
            heads: {
                // This head as the node reached it, then every other head that is up.
                let mine = crate::boot::request_base(&app, &headers);
                let mut heads = vec![mine.clone()];
                if let Ok(live) = app.live_heads.read() {
                    for h in live.iter().filter(|h| h.name != app.head) {
                        heads.extend(h.urls.iter().filter(|u| **u != mine).cloned());
                    }
                }
                heads
            },
        }
    };
    app.status.report(uid, report);
    Ok(axum::Json(reply))
}

/// The kinds and fields that hold files.
fn file_field(kind: Kind, field: &str) -> Result<(), ApiErr> {
    match (kind, field) {
        (Kind::Boot, "kernel" | "initramfs") | (Kind::Image, "content") => Ok(()),
        _ => Err(ApiErr::new(
            StatusCode::NOT_FOUND,
            format!(
                "{} has no file field '{field}' (boot: kernel, initramfs; image: content)",
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

async fn upload(
    State(app): AppState,
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
    let expected = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let stream = req.into_body().into_data_stream();
    let (sha256, size) = app
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
    let file = FileRef {
        sha256,
        size,
        filename: q.get("filename").cloned().unwrap_or_default(),
    };
    let value = serde_json::to_value(&file).unwrap_or(Value::Null);
    let updated = app.db.set_field(kind, obj.uid(), &field, value).await?;
    tracing::info!(target: "audit", kind = %kind, sha256 = %file.sha256, size, "uploaded {field} of {}", obj.name());
    Ok(json_response(
        objects_json(&[updated], None),
        StatusCode::OK,
    ))
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

/// Serve a stored file with Range, Last-Modified and an ETag of its sha256.
pub async fn serve_blob(blobs: &Blobs, file: &FileRef, req: Request) -> Result<Response, ApiErr> {
    let path = blobs
        .path(&file.sha256)
        .filter(|p| p.exists())
        .ok_or_else(|| {
            ApiErr::new(
                StatusCode::NOT_FOUND,
                format!("file {} is missing on this head", file.sha256),
            )
        })?;
    let etag = format!("\"{}\"", file.sha256);
    if req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let mut resp = tower_http::services::ServeFile::new(&path)
        .oneshot(req)
        .await
        .map_err(|e| ApiErr::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map(Body::new);
    if let Ok(v) = HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(resp)
}
