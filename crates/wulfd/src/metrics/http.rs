//! HTTP requests and their latency per route, keyed by the route pattern axum matched
//! (`/api/v1/{kind}`), never the raw path, so the number of series is fixed: one per row of
//! the access table (auth/table.rs) and status class, plus `unmatched` for requests no route
//! matched. The sendfile fast path for boot files, which bypasses axum, counts itself under
//! the route it stands in for (`/boot/file/{sha256}`).

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::{BootVia, Histogram};
use crate::auth::table::RULES;

/// The route label of requests that matched no route.
pub const UNMATCHED: &str = "unmatched";
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const BOOT_FILE: &str = "/boot/file/{sha256}";

type L2 = [(&'static str, &'static str); 2];
type L3 = [(&'static str, &'static str); 3];

/// What the sendfile fast path answered: the status (0 before an answer began) and the
/// bytes of the file it sent.
#[derive(Debug, Default)]
pub struct Sendfile {
    pub status: u16,
    pub bytes: u64,
}

/// Counters and histograms per route, indexed like [`RULES`] (the last one: unmatched).
pub struct HttpMetrics {
    requests: Vec<[Counter; 5]>,
    latency: Vec<Histogram>,
    boot_file: usize,
}

impl HttpMetrics {
    pub(super) fn new(reg: &mut Registry) -> HttpMetrics {
        let requests = Family::<L3, Counter>::default();
        let latency =
            Family::<L2, Histogram, fn() -> Histogram>::new_with_constructor(Histogram::latency);
        let routes: Vec<(&'static str, &'static str)> = RULES
            .iter()
            .map(|r| (r.method, r.path))
            .chain([("", UNMATCHED)])
            .collect();
        let mut by_route = Vec::with_capacity(routes.len());
        let mut hist = Vec::with_capacity(routes.len());
        for (method, route) in &routes {
            by_route.push(CLASSES.map(|code| {
                requests
                    .get_or_create(&[("method", method), ("route", route), ("code", code)])
                    .clone()
            }));
            hist.push(
                latency
                    .get_or_create(&[("method", method), ("route", route)])
                    .clone(),
            );
        }
        reg.register(
            "wulf_http_requests",
            "HTTP requests answered, by method, route pattern and status class",
            requests,
        );
        reg.register(
            "wulf_http_request_duration_seconds",
            "Time from a request's head to its answer's head, by method and route pattern",
            latency,
        );
        let boot_file = RULES
            .iter()
            .position(|r| r.method == "GET" && r.path == BOOT_FILE)
            .unwrap_or(RULES.len());
        HttpMetrics {
            requests: by_route,
            latency: hist,
            boot_file,
        }
    }

    /// The slot of a matched route (HEAD counts as GET, as the access table reads it).
    fn slot(&self, method: &Method, route: Option<&str>) -> usize {
        let Some(route) = route else {
            return RULES.len();
        };
        let m = if method == Method::HEAD {
            "GET"
        } else {
            method.as_str()
        };
        RULES
            .iter()
            .position(|r| r.path == route && r.method == m)
            .unwrap_or(RULES.len())
    }

    fn count(&self, slot: usize, status: u16, took: Duration) {
        let class = usize::from((status / 100).clamp(1, 5) - 1);
        self.requests[slot][class].inc();
        self.latency[slot].observe(took);
    }

    /// A connection of the sendfile fast path ended, after `took` (the whole answer, the
    /// file's transfer included).
    pub fn sendfile(&self, out: &Sendfile, took: Duration) {
        if out.status == 0 {
            // Closed before an answer began.
            return;
        }
        self.count(self.boot_file, out.status, took);
        if matches!(out.status, 200 | 206) {
            super::get().boot_file(BootVia::Sendfile, out.bytes);
        }
    }
}

/// The middleware (outermost on the router): count and time every request.
pub async fn track(req: Request, next: Next) -> Response {
    let t = Instant::now();
    let http = &super::get().http;
    let slot = http.slot(
        req.method(),
        req.extensions().get::<MatchedPath>().map(|m| m.as_str()),
    );
    let head = req.method() == Method::HEAD;
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    http.count(slot, status, t.elapsed());
    if slot == http.boot_file && !head && matches!(status, 200 | 206) {
        let len = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .unwrap_or(0);
        super::get().boot_file(BootVia::Router, len);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_map_to_their_rows() {
        let h = &super::super::get().http;
        let info = h.slot(&Method::GET, Some("/api/v1/info"));
        assert_eq!(RULES[info].path, "/api/v1/info");
        assert_eq!(h.slot(&Method::HEAD, Some(BOOT_FILE)), h.boot_file);
        assert_eq!(RULES[h.boot_file].path, BOOT_FILE);
        assert_eq!(h.slot(&Method::GET, None), RULES.len());
        assert_eq!(h.slot(&Method::PUT, Some("/api/v1/info")), RULES.len());
    }
}
