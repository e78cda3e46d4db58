//! `GET /api/v1/log`: the shared log lines this head holds, filtered ([`LogQuery`]), newest
//! `limit` of them oldest first; with `after` and `wait`, a long poll for the next lines.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use axum::Json;
use wulf_api::log::{LogPage, LogQuery};

use super::shared::{parse_cursor, Entry};
use super::Level;
use crate::web::ApiErr;

/// Lines in one answer at most.
const MAX_LIMIT: usize = 100_000;
/// The longest wait for new lines.
const MAX_WAIT: u64 = 60;

pub fn routes() -> axum::Router<Arc<crate::app::App>> {
    axum::Router::new().route("/api/v1/log", axum::routing::get(get_log))
}

/// A query, checked.
struct Filter {
    head: Option<String>,
    since: Option<f64>,
    level: Level,
    nodes: Option<HashSet<String>>,
    after: Option<(i64, u32)>,
}

impl Filter {
    fn new(q: &LogQuery) -> Result<Filter, ApiErr> {
        let level = match &q.level {
            Some(l) => Level::parse(l).map_err(|e| ApiErr::bad(format!("level: {e}")))?,
            None => Level::Debug,
        };
        let nodes = match &q.node {
            Some(sel) => Some(
                wulf_model::hostlist::expand(sel)
                    .map_err(|e| ApiErr::bad(format!("node: '{sel}': {e}")))?
                    .into_iter()
                    .collect(),
            ),
            None => None,
        };
        let after = match &q.after {
            Some(c) => Some(parse_cursor(c).ok_or_else(|| {
                ApiErr::bad(format!(
                    "after: '{c}' is not a cursor (give back the cursor of an earlier answer)"
                ))
            })?),
            None => None,
        };
        if let Some(s) = q.since {
            if !s.is_finite() {
                return Err(ApiErr::bad("since: not a Unix time"));
            }
        }
        Ok(Filter {
            head: q.head.clone(),
            since: q.since,
            level,
            nodes,
            after,
        })
    }

    fn keeps(&self, e: &Entry) -> bool {
        let l = &e.line;
        self.after.is_none_or(|a| (e.rev, e.idx) > a)
            && self.head.as_ref().is_none_or(|h| &l.head == h)
            && self.since.is_none_or(|s| l.ts >= s)
            && Level::parse(&l.level).is_ok_and(|lv| lv <= self.level)
            && self.nodes.as_ref().is_none_or(|want| {
                l.nodes.as_deref().is_some_and(|n| {
                    wulf_model::hostlist::expand(n)
                        .map(|names| names.iter().any(|x| want.contains(x)))
                        .unwrap_or(false)
                })
            })
    }
}

/// The newest `limit` lines `f` keeps, oldest first, and the cursor after them (the
/// newest line held when none is kept, so a follower starts from now).
fn select(f: &Filter, limit: usize) -> LogPage {
    let Some(logs) = super::logs() else {
        return LogPage::default();
    };
    logs.shared.with_lines(|lines| {
        let mut picked: Vec<&Entry> = lines
            .iter()
            .rev()
            .filter(|e| f.keeps(e))
            .take(limit)
            .collect();
        picked.reverse();
        let cursor = picked
            .last()
            .map(|e| e.cursor())
            .or_else(|| match f.after {
                Some((r, i)) => Some(format!("{r}.{i}")),
                None => lines.back().map(|e| e.cursor()),
            })
            .unwrap_or_else(|| "0.0".to_string());
        LogPage {
            lines: picked.into_iter().map(|e| e.line.clone()).collect(),
            cursor,
        }
    })
}

async fn get_log(q: Result<Query<LogQuery>, QueryRejection>) -> Result<Json<LogPage>, ApiErr> {
    let Query(q) = q.map_err(|e| ApiErr::bad(e.body_text()))?;
    let f = Filter::new(&q)?;
    let limit = q.limit.unwrap_or(1000).clamp(1, MAX_LIMIT);
    let wait = q.wait.unwrap_or(0).min(MAX_WAIT);
    let Some(logs) = super::logs() else {
        return Ok(Json(LogPage::default()));
    };
    let mut changed = logs.shared.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    loop {
        let page = select(&f, limit);
        if !page.lines.is_empty() || f.after.is_none() || wait == 0 {
            return Ok(Json(page));
        }
        tokio::select! {
            r = changed.changed() => if r.is_err() { return Ok(Json(page)) },
            _ = tokio::time::sleep_until(deadline) => return Ok(Json(page)),
        }
    }
}
