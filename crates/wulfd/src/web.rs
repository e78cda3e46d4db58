//! HTTP helpers every service's routes share: the error answer, JSON bodies, selections.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tower::ServiceExt;
use wulf_api::ErrorBody;
use wulf_model::{FileRef, Kind};
use wulf_store::StoreError;

use crate::app::App;
use crate::blobs::Blobs;
use crate::cache::{SelectError, State as CacheState};
use crate::db::DbError;

/// What a handler knows of its connection (`ConnectInfo<Conn>`): the peer's address and
/// whether the connection is TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conn {
    pub peer: std::net::SocketAddr,
    pub tls: bool,
}

impl
    axum::extract::connect_info::Connected<
        axum::serve::IncomingStream<'_, crate::sendfile::SplitListener>,
    > for Conn
{
    fn connect_info(s: axum::serve::IncomingStream<'_, crate::sendfile::SplitListener>) -> Conn {
        *s.remote_addr()
    }
}

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
    pub fn bad(msg: impl Into<String>) -> ApiErr {
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

/// The token of an `Authorization: Bearer TOKEN` header.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

pub fn parse_kind(s: &str) -> Result<Kind, ApiErr> {
    s.parse::<Kind>().map_err(|_| {
        let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        ApiErr::new(
            StatusCode::NOT_FOUND,
            format!("unknown object kind '{s}' (kinds: {})", kinds.join(", ")),
        )
    })
}

/// A request body of at most `limit` bytes, or a 413 saying `too_large()`.
///
/// A Content-Length over the limit is refused before the body is read: a client that waits
/// for "100 Continue" then gets the 413 instead and sends nothing, where reading part of the
/// body and closing would reset the connection under the client's upload and could lose the
/// answer.
pub async fn read_limited(
    body: Body,
    limit: usize,
    too_large: impl Fn() -> String,
) -> Result<axum::body::Bytes, ApiErr> {
    let refuse = || ApiErr::new(StatusCode::PAYLOAD_TOO_LARGE, too_large());
    if axum::body::HttpBody::size_hint(&body).lower() > limit as u64 {
        return Err(refuse());
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| refuse())
}

pub async fn read_json(app: &App, body: Body) -> Result<Value, ApiErr> {
    let bytes = read_limited(body, app.max_body, || {
        format!(
            "request body is larger than {} MiB (max_body_mib in the config file)",
            app.max_body >> 20
        )
    })
    .await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiErr::bad(format!("malformed JSON in request body: {e}")))
}

/// The uids a request selects: `ids=SEL`, or everything with `all=true` (or no `ids` when
/// `default_all`).
pub fn selection(
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

pub fn json_response(bytes: Vec<u8>, status: StatusCode) -> Response {
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

/// Nodes of a selection in index order.
pub fn by_index(st: &CacheState, mut uids: Vec<String>) -> Vec<String> {
    uids.sort_by_cached_key(|u| {
        st.get(Kind::Node, u)
            .and_then(|e| e.obj.as_node())
            .and_then(|n| n.index)
            .unwrap_or(u32::MAX)
    });
    uids
}

/// Names for an AUDIT line: nodes as a hostlist, other kinds comma-separated.
pub fn summarize(kind: Kind, names: &[&str]) -> String {
    if kind == Kind::Node {
        wulf_model::hostlist::compress(names)
    } else {
        names.join(",")
    }
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

/// The peer of a request, as audit lines name it ("-" when the listener did not say).
pub fn source(req_ext: &axum::http::Extensions) -> String {
    req_ext
        .get::<axum::extract::ConnectInfo<Conn>>()
        .map(|c| c.0.peer.ip().to_string())
        .unwrap_or_else(|| "-".to_string())
}
