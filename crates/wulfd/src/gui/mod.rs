//! The web page at `/`: a few static files built into the binary (no bundler, no CDN). The
//! page itself is public (it holds no data); everything it shows comes from the API, which
//! needs a login, so it is only as open as the account that logs in. Over HTTPS only (plain
//! HTTP reaches `/boot/` alone, see `tls::require_tls`).
//!
//! Every answer carries a strict Content-Security-Policy (scripts and styles only from this
//! head, no inline script, no framing), an ETag (the SHA-256 of the file) for `If-None-Match`
//! revalidation, and `Cache-Control: no-cache` so a new head version is picked up at once.

use std::sync::{Arc, LazyLock};

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

use crate::app::App;
use crate::web::ApiErr;

/// What the browser may load and do on the page.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

/// One file of the page.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

/// The page's files: `index.html` at `/`, the rest at `/ui/NAME`.
pub const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("assets/index.html"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/app.js"),
    },
    Asset {
        name: "hostlist.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/hostlist.js"),
    },
    Asset {
        name: "table.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/table.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("assets/app.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("assets/favicon.svg"),
    },
];

/// Each asset's ETag (`"sha256-HEX"`), computed once.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| format!("\"{}\"", hex::encode(&Sha256::digest(a.body)[..16])))
        .collect()
});

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(index))
        .route("/ui/{file}", get(file))
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    if name == "index.html" {
        // One address for the page.
        return ApiErr::new(
            StatusCode::NOT_FOUND,
            "no such file of the web page: index.html",
        )
        .into_response();
    }
    serve(&name, &headers)
}

/// The headers every answer of the page carries.
fn page_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
}

/// Whether an `If-None-Match` header names `etag` (or is `*`).
fn matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.name == name) else {
        let shown: String = name.chars().take(64).collect();
        return ApiErr::new(
            StatusCode::NOT_FOUND,
            format!("no such file of the web page: {shown}"),
        )
        .into_response();
    };
    let asset = &ASSETS[i];
    let etag = &ETAGS[i];
    let mut resp = if matches(headers, etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.body,
        )
            .into_response()
    };
    let h = resp.headers_mut();
    page_headers(h);
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_there_and_the_page_names_only_them() {
        let index = std::str::from_utf8(ASSETS[0].body).unwrap();
        assert!(index.contains("<script type=\"module\" src=\"/ui/app.js\">"));
        // No inline script or style: the CSP would refuse them.
        assert!(!index.contains("<script>") && !index.contains("style="));
        for a in ASSETS {
            assert!(!a.body.is_empty(), "{} is empty", a.name);
        }
        for js in ["app.js", "table.js", "hostlist.js"] {
            let a = ASSETS.iter().find(|a| a.name == js).unwrap();
            let text = std::str::from_utf8(a.body).unwrap();
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let file = line
                    .rsplit("'./")
                    .next()
                    .and_then(|s| s.split('\'').next())
                    .unwrap();
                assert!(
                    ASSETS.iter().any(|a| a.name == file),
                    "{js} imports {file}, which is not served"
                );
            }
        }
    }

    #[test]
    fn etags_answer_not_modified() {
        let mut h = HeaderMap::new();
        let first = serve("app.js", &h);
        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(
            first.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(first.headers()[header::X_FRAME_OPTIONS], "DENY");
        let etag = first.headers()[header::ETAG].clone();
        h.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(serve("app.js", &h).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(
            serve("nope.js", &HeaderMap::new()).status(),
            StatusCode::NOT_FOUND
        );
    }
}
