//! `access.log`: one line per HTTP request, in the Common Log Format with the time taken:
//! `PEER - ACCOUNT [07/Dec/2026:00:31:02 +0000] "GET /api/v1/node HTTP/1.1" 200 1234 0.003`.
//! Nodes' status reports and command polls are left out unless `[logs] access_nodes`.

use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

/// The account a request was made as, put into the response by the access guard.
#[derive(Clone, Debug)]
pub struct Account(pub String);

/// Paths every node calls all the time.
fn from_nodes(path: &str) -> bool {
    matches!(path, "/api/v1/node/status" | "/api/v1/node/commands")
}

/// The middleware writing a line per request.
pub async fn layer(req: Request, next: Next) -> Response {
    let Some(logs) = super::logs().filter(|l| l.access_on) else {
        return next.run(req).await;
    };
    if !logs.access_nodes && from_nodes(req.uri().path()) {
        return next.run(req).await;
    }
    let started = Instant::now();
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<crate::web::Conn>>()
        .map(|c| c.0.peer.ip().to_canonical().to_string());
    let method = req.method().to_string();
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let version = format!("{:?}", req.version());
    let resp = next.run(req).await;
    let account = resp.extensions().get::<Account>().map(|a| a.0.clone());
    let bytes = resp
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .or_else(|| axum::body::HttpBody::size_hint(resp.body()).exact());
    record(&Line {
        peer: peer.as_deref(),
        account: account.as_deref(),
        method: &method,
        target: &target,
        version: &version,
        status: resp.status().as_u16(),
        bytes,
        started,
    });
    resp
}

/// One request as access.log records it.
pub struct Line<'a> {
    pub peer: Option<&'a str>,
    pub account: Option<&'a str>,
    pub method: &'a str,
    pub target: &'a str,
    pub version: &'a str,
    pub status: u16,
    pub bytes: Option<u64>,
    pub started: Instant,
}

/// Write `l` to access.log (boot files sent outside axum come here too).
pub fn record(l: &Line<'_>) {
    let Some(logs) = super::logs().filter(|l| l.access_on) else {
        return;
    };
    logs.access
        .write(format(l, super::shared::now()).as_bytes());
}

fn format(l: &Line<'_>, now: f64) -> String {
    // Control characters and quotes in the request line are escaped, so a line is one line.
    let target: String = l
        .target
        .chars()
        .take(2048)
        .flat_map(|c| match c {
            '"' => "\\\"".chars().collect::<Vec<_>>(),
            c if c.is_control() => c.escape_default().collect(),
            c => vec![c],
        })
        .collect();
    format!(
        "{} - {} [{}] \"{} {} {}\" {} {} {:.3}\n",
        l.peer.unwrap_or("-"),
        l.account.unwrap_or("-"),
        clf_time(now),
        l.method,
        target,
        l.version,
        l.status,
        l.bytes.map_or("-".to_string(), |b| b.to_string()),
        l.started.elapsed().as_secs_f64()
    )
}

/// `07/Dec/2026:00:31:02 +0000`.
fn clf_time(ts: f64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    match time::OffsetDateTime::from_unix_timestamp(ts as i64) {
        Ok(t) => format!(
            "{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000",
            t.day(),
            MONTHS[usize::from(u8::from(t.month())) - 1],
            t.year(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("{ts}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_in_common_log_format() {
        let l = Line {
            peer: Some("10.0.0.5"),
            account: Some("root"),
            method: "GET",
            target: "/api/v1/node?ids=\"n1\"\n",
            version: "HTTP/1.1",
            status: 200,
            bytes: Some(12),
            started: Instant::now(),
        };
        let s = format(&l, 1_796_603_462.0);
        assert!(
            s.starts_with(
                "10.0.0.5 - root [07/Dec/2026:00:31:02 +0000] \"GET /api/v1/node?ids=\\\"n1\\\"\\n HTTP/1.1\" 200 12 0.0"
            ),
            "{s}"
        );
        assert_eq!(s.matches('\n').count(), 1);
    }
}
