//! Node credentials: how a request proves it comes from a node.
//!
//! A node presents `Authorization: Bearer node:UID:CREDENTIAL`, where the credential is the
//! one its last enrollment gave it (see [`crate::enroll`]): HMAC-SHA256 of `UID:NONCE` under
//! the cluster's node secret, the nonce being the node's current one in the store. An older
//! credential of the node (from before its last enrollment) is refused.

/// The node a request comes from, by its `Authorization: Bearer node:UID:CREDENTIAL`
/// (the credential checked in constant time against the node's current one). `what` names
/// the request in errors.
pub async fn node_uid(
    app: &crate::app::App,
    headers: &axum::http::HeaderMap,
    what: &str,
) -> Result<String, crate::web::ApiErr> {
    use crate::web::ApiErr;
    use axum::http::StatusCode;
    let token = crate::web::bearer(headers).ok_or_else(|| {
        ApiErr::new(
            StatusCode::UNAUTHORIZED,
            "authentication required: send 'Authorization: Bearer node:UID:CREDENTIAL'",
        )
    })?;
    let Some((uid, cred)) = wulf_api::status::parse_node_token(token) else {
        return Err(ApiErr::new(
            StatusCode::UNAUTHORIZED,
            format!("{what} needs the node's token 'node:UID:CREDENTIAL'"),
        ));
    };
    if !crate::enroll::verify(app, uid, cred).await {
        tracing::warn!(target: "audit", node = %uid, "refused {what} with a wrong node credential");
        return Err(ApiErr::new(
            StatusCode::UNAUTHORIZED,
            "the node credential is not valid (not this node's, or from before its last \
             enrollment: a node gets a new one each boot)",
        ));
    }
    Ok(uid.to_string())
}
