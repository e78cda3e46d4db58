//! `POST /api/v1/cluster/import`: many creates and updates of several kinds in one
//! transaction (`Db::apply`), or checked and not written with `"dry_run": true`; and
//! `PUT /api/v1/cluster/import/files`, which stores a file (a kernel, an initramfs) for
//! a later import to refer to by sha256. `wulf cluster import-config` uses both.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::{header, StatusCode};
use axum::routing::{post, put};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wulf_api::UpdateRequest;
use wulf_model::{FileRef, Kind};

use crate::app::{App, AppState};
use crate::auth::Principal;
use crate::db::Change;
use crate::web::ApiErr;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/v1/cluster/import", post(import))
        .route("/api/v1/cluster/import/files", put(file))
}

/// One step: `{"create": KIND, "docs": [...]}` or `{"update": KIND, "uids": [...],
/// "request": UpdateRequest}`.
#[derive(Debug, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum Step {
    Create {
        create: String,
        docs: Vec<Value>,
    },
    Update {
        update: String,
        uids: Vec<String>,
        request: UpdateRequest,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    pub steps: Vec<Step>,
    #[serde(default)]
    pub dry_run: bool,
}

/// What an import created or changed (or would have, on a dry run).
#[derive(Debug, Serialize)]
pub struct ImportReply {
    pub dry_run: bool,
    /// Objects per kind.
    pub counts: HashMap<String, usize>,
    /// Names per kind, in the order the steps gave them.
    pub names: HashMap<String, Vec<String>>,
}

fn kind(s: &str) -> Result<Kind, ApiErr> {
    s.parse()
        .map_err(|_| ApiErr::bad(format!("unknown kind '{s}'")))
}

/// Every file a boot config document names must be stored here already.
fn check_files(app: &App, doc: &Value) -> Result<(), ApiErr> {
    for field in ["kernel", "initramfs"] {
        let Some(f) = doc.get(field).filter(|v| !v.is_null()) else {
            continue;
        };
        let f: FileRef =
            serde_json::from_value(f.clone()).map_err(|e| ApiErr::bad(format!("{field}: {e}")))?;
        let there = app.blobs.path(&f.sha256).is_some_and(|p| p.exists());
        if !there {
            return Err(ApiErr::bad(format!(
                "{field}: no file with sha256 {} is stored (upload it to \
                 /api/v1/cluster/import/files first)",
                f.sha256
            )));
        }
    }
    Ok(())
}

async fn import(
    State(app): AppState,
    Extension(who): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<Json<ImportReply>, ApiErr> {
    let req: ImportRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiErr::bad(format!("the import request is not valid: {e}")))?;
    let mut changes = Vec::with_capacity(req.steps.len());
    for s in req.steps {
        changes.push(match s {
            Step::Create { create, docs } => {
                let k = kind(&create)?;
                if k == Kind::Boot {
                    for d in &docs {
                        check_files(&app, d)?;
                    }
                }
                Change::Create(k, docs)
            }
            Step::Update {
                update,
                uids,
                request,
            } => Change::Update(kind(&update)?, uids, request),
        });
    }
    let objs = if req.dry_run {
        app.db.check_apply(&changes).await?
    } else {
        app.db.apply(&changes).await?
    };
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut names: HashMap<String, Vec<String>> = HashMap::new();
    for o in &objs {
        *counts.entry(o.kind().to_string()).or_default() += 1;
        names
            .entry(o.kind().to_string())
            .or_default()
            .push(o.name().to_string());
    }
    if !req.dry_run {
        tracing::info!(target: "audit", account = %who.name, source = %who.source, objects = objs.len(), "imported a cluster configuration");
    }
    Ok(Json(ImportReply {
        dry_run: req.dry_run,
        counts,
        names,
    }))
}

/// `PUT /api/v1/cluster/import/files?filename=NAME`: store the body, answer its FileRef.
async fn file(
    State(app): AppState,
    Extension(who): Extension<Principal>,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Result<(StatusCode, Json<FileRef>), ApiErr> {
    if req
        .headers()
        .get(header::CONTENT_LENGTH)
        .map(|v| v.as_bytes())
        == Some(b"0")
    {
        return Err(ApiErr::bad("no file in the request body"));
    }
    let stored = crate::objects::routes::store_body(&app, req, &q).await?;
    if stored.file.size == 0 {
        stored.discard(&app);
        return Err(ApiErr::bad("no file in the request body"));
    }
    let file = stored.file;
    tracing::info!(target: "audit", account = %who.name, source = %who.source, sha256 = %file.sha256, size = file.size, "stored a file for an import");
    Ok((StatusCode::OK, Json(file)))
}
