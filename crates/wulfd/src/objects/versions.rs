//! Image versions: an upload of an image's content either replaces it (the earlier content is
//! forgotten) or, with `?parent_sha256=SHA` (`wulf image exec`), commits a new version made
//! from the content whose sha256 is SHA. The commit is refused (409) unless SHA is still the
//! image's content, so two changes made from the same version cannot both land; the image
//! then names SHA as its `parent_sha256`, which keeps that file in the store
//! (crates/wulfd/src/maint.rs counts it as referenced) until a later version replaces it.

use serde_json::Value;
use wulf_model::{is_sha256, Kind};

use crate::app::App;
use crate::db::DbError;
use crate::objects::AnyObj;
use crate::web::ApiErr;

/// Set image `uid`'s content to `file` (a `FileRef` as JSON), as a new version of
/// `parent_sha256` when given.
pub async fn set_content(
    app: &App,
    uid: &str,
    file: Value,
    parent_sha256: Option<&String>,
) -> Result<AnyObj, ApiErr> {
    if let Some(p) = parent_sha256 {
        if !is_sha256(p) {
            return Err(ApiErr::bad(format!(
                "parent_sha256 '{p}' is not a sha256 (64 lowercase hex digits)"
            )));
        }
    }
    let uids = [uid.to_string()];
    let mut objs = app
        .db
        .modify(Kind::Image, &uids, |json, _| {
            let current = json
                .get("content")
                .and_then(|c| c.get("sha256"))
                .and_then(Value::as_str);
            match parent_sha256 {
                Some(p) if current != Some(p.as_str()) => {
                    return Err(DbError::Conflict(format!(
                        "image '{}' changed while this version was made from {}: its content is now {}; make the change again",
                        json.get("name").and_then(Value::as_str).unwrap_or(uid),
                        &p[..12],
                        current.map(|c| &c[..c.len().min(12)]).unwrap_or("nothing")
                    )))
                }
                // The same content again is no new version.
                Some(p) if file.get("sha256").and_then(Value::as_str) == Some(p.as_str()) => {}
                Some(p) => json["parent_sha256"] = Value::String(p.clone()),
                None => json["parent_sha256"] = Value::Null,
            }
            json["content"] = file.clone();
            Ok(())
        })
        .await?;
    objs.pop()
        .ok_or_else(|| ApiErr::bad(format!("image {uid} vanished")))
}
