//! Node credentials: how a request proves it comes from a node.

use subtle::ConstantTimeEq;

/// The node a request comes from, by its `Authorization: Bearer node:UID:CREDENTIAL`
/// (the credential checked in constant time). `what` names the request in errors.
pub fn node_uid(
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
    let expected = crate::boot::node_credential(&app.node_secret, uid);
    if !bool::from(expected.as_bytes().ct_eq(cred.as_bytes())) {
        tracing::warn!(target: "audit", node = %uid, "refused {what} with a wrong node credential");
        return Err(ApiErr::new(
            StatusCode::UNAUTHORIZED,
            "the node credential is not valid",
        ));
    }
    Ok(uid.to_string())
}
