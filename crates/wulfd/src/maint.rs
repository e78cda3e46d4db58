//! Background maintenance: compact old store history, defragment etcd members when that
//! gives back enough space, watch for etcd's space alarm, and remove unreferenced files.
//!
//! Every head cleans its own file store. The store itself is looked after by one head at a
//! time, the first of the live heads by name (on the embedded store: the only head), so two
//! heads never defragment at once. What it last did is kept at [`MAINT_KEY`] for
//! `wulf cluster db`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use wulf_model::db::{human_size, DbMember, DbStatus, Maintenance};
use wulf_model::Kind;
use wulf_store::{Expect, StoreError};

use crate::app::App;
use crate::objects::AnyObj;

/// What the maintaining head last did.
pub const MAINT_KEY: &str = "/wulf/maint/status";

pub async fn run(
    app: Arc<App>,
    keep_revisions: i64,
    keep_for: Duration,
    cancel: CancellationToken,
) {
    let every = Duration::from_secs(app.cfg.db.check_secs);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // (when, revision) samples: the revision `keep_for` ago bounds the history kept.
    let mut seen: std::collections::VecDeque<(std::time::Instant, i64)> = Default::default();
    let mut last_gc: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let rev = app.store.revision().await.ok();
        if let Some(rev) = rev {
            seen.push_back((std::time::Instant::now(), rev));
        }
        let mut old_enough = None;
        while let Some(&(at, rev)) = seen.front() {
            if at.elapsed() < keep_for {
                break;
            }
            old_enough = Some(rev);
            seen.pop_front();
        }
        if let (Some(rev), true) = (rev, maintains_store(&app)) {
            let compacted = compact(&app, rev, keep_revisions, old_enough).await;
            let defragmented = look_after(&app).await;
            if compacted.is_some() || !defragmented.is_empty() {
                record(&app, compacted, defragmented).await;
            }
            match crate::auth::session::sweep_expired(app.store.as_ref()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(sessions = n, "removed expired login sessions"),
                Err(e) => tracing::warn!(error = %e, "cannot sweep expired login sessions"),
            }
            match crate::log::shared::sweep(app.store.as_ref()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(lines = n, "removed old lines of the shared log"),
                Err(e) => tracing::warn!(error = %e, "cannot remove old lines of the shared log"),
            }
            crate::dhcp::sweep_unknown(&app).await;
        }
        if last_gc.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            last_gc = Some(std::time::Instant::now());
            let referenced = referenced_files(&app);
            let removed = app
                .blobs
                .collect_garbage(&referenced, Duration::from_secs(3600));
            if removed > 0 {
                tracing::info!(removed, "file store cleaned");
            }
        }
    }
}

/// Whether this head looks after the store: the first live head by name.
fn maintains_store(app: &App) -> bool {
    let Ok(heads) = app.live_heads.read() else {
        return true;
    };
    heads
        .iter()
        .map(|h| h.name.as_str())
        .min()
        .is_none_or(|first| first == app.head)
}

/// Compact history older than `keep` revisions before `rev` (the current one) or older than
/// `before` (the revision the store had `history_secs` ago), whichever removes more. Returns
/// the revision compacted to.
async fn compact(app: &App, rev: i64, keep: i64, before: Option<i64>) -> Option<i64> {
    let Ok(done) = app.store.compacted_revision().await else {
        return None;
    };
    let target = (rev - keep).max(before.unwrap_or(0)).min(rev);
    if target > done {
        match app.store.compact(target).await {
            Ok(()) => {
                tracing::debug!(revision = target, "compacted store history");
                return Some(target);
            }
            Err(e) => tracing::warn!(error = %e, "compaction failed"),
        }
    }
    None
}

/// The store's status with this head's view of the quota.
async fn store_status(app: &App) -> Result<DbStatus, StoreError> {
    let mut st = app.store.db_status().await?;
    if app.store.shared() {
        st.quota_bytes = Some(app.cfg.db.quota_mib << 20);
    }
    Ok(st)
}

/// The store's status, with the quota and what maintenance last did (`wulf cluster db`).
pub async fn db_status(app: &App) -> Result<DbStatus, StoreError> {
    let mut st = store_status(app).await?;
    st.maintenance = app
        .store
        .get(MAINT_KEY)
        .await?
        .and_then(|kv| serde_json::from_slice(&kv.value).ok());
    Ok(st)
}

/// Check sizes and alarms; defragment members where worthwhile. Returns the members
/// defragmented.
async fn look_after(app: &App) -> Vec<String> {
    // The embedded store needs no looking after, and its size figures cost a walk of the
    // whole file while writes wait: only `wulf cluster db` asks for them.
    if !app.store.shared() {
        return Vec::new();
    }
    let st = match store_status(app).await {
        Ok(st) => st,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the database status");
            return Vec::new();
        }
    };
    for a in &st.alarms {
        tracing::error!(
            member = %a.member,
            alarm = %a.alarm,
            "{}",
            alarm_advice(&a.alarm)
        );
    }
    for m in &st.members {
        match &m.unreachable {
            Some(why) => {
                tracing::warn!(member = %m.name, endpoint = %m.endpoint, "database member unreachable: {why}")
            }
            None => {
                tracing::debug!(member = %m.name, db_size = m.db_size, db_in_use = m.db_in_use, "database size");
                if let Some(q) = st.quota_bytes {
                    if m.db_size as f64 >= q as f64 * app.cfg.db.quota_fill {
                        tracing::warn!(
                            member = %m.name,
                            db_size = m.db_size,
                            quota = q,
                            "etcd member {} is at {:.0}% of its space quota",
                            m.name,
                            m.db_size as f64 * 100.0 / q as f64
                        );
                    }
                }
            }
        }
    }
    let min_free = app.cfg.db.defrag_min_free_mib << 20;
    let due = st
        .members
        .iter()
        .filter(|m| m.worth_defragmenting(min_free, st.quota_bytes, app.cfg.db.quota_fill));
    defragment(app, due)
        .await
        .into_iter()
        .filter_map(|(m, r)| r.ok().map(|()| m.name.clone()))
        .collect()
}

/// Defragment the reachable ones of `members`, one at a time, the leader last (it answers
/// nothing while it runs). Returns each member tried with its outcome, in that order.
async fn defragment<'a>(
    app: &App,
    members: impl Iterator<Item = &'a DbMember>,
) -> Vec<(&'a DbMember, Result<(), StoreError>)> {
    let mut order: Vec<&DbMember> = members.filter(|m| m.unreachable.is_none()).collect();
    order.sort_by_key(|m| m.leader);
    let mut out = Vec::with_capacity(order.len());
    for m in order {
        let t = std::time::Instant::now();
        let done = app.store.defragment(&m.endpoint).await;
        match &done {
            Ok(()) => tracing::info!(
                member = %m.name,
                freed_about = m.free(),
                took_ms = t.elapsed().as_millis() as u64,
                "etcd member {} defragmented",
                m.name
            ),
            Err(e) => tracing::warn!(member = %m.name, error = %e, "defragmentation failed"),
        }
        out.push((m, done));
    }
    out
}

fn alarm_advice(alarm: &str) -> String {
    match alarm {
        "NOSPACE" => "etcd database space exceeded (NOSPACE alarm): etcd refuses every write \
                      until space is made; run `wulf cluster db --recover` (compact, defragment, \
                      disarm) and raise etcd's --quota-backend-bytes if it fills again"
            .to_string(),
        other => format!("etcd alarm {other} raised; see `wulf cluster db` and etcd's logs"),
    }
}

/// Remember what maintenance did (best effort: the store may be refusing writes).
async fn record(app: &App, compacted: Option<i64>, defragmented: Vec<String>) {
    let now = crate::db::now() as u64;
    let mut m: Maintenance = match app.store.get(MAINT_KEY).await {
        Ok(Some(kv)) => serde_json::from_slice(&kv.value).unwrap_or_default(),
        _ => Maintenance::default(),
    };
    m.head = app.head.clone();
    m.checked = now;
    if let Some(rev) = compacted {
        m.compacted = Some((rev, now));
    }
    if !defragmented.is_empty() {
        m.defragmented = Some((defragmented, now));
    }
    if let Ok(v) = serde_json::to_vec(&m) {
        if let Err(e) = app.store.put(MAINT_KEY, v, Expect::Any).await {
            tracing::debug!(error = %e, "cannot record maintenance");
        }
    }
}

/// What `wulf cluster db` asks a head to do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DbAction {
    /// Compact all history up to the current revision.
    Compact,
    /// Defragment every reachable member.
    Defrag,
    /// Clear raised alarms.
    Disarm,
    /// Compact, defragment, disarm: the way out of "database space exceeded".
    Recover,
}

/// Run `action`; returns one line per step done.
pub async fn act(app: &App, action: DbAction) -> Result<Vec<String>, StoreError> {
    let mut steps = Vec::new();
    if matches!(action, DbAction::Compact | DbAction::Recover) {
        let rev = app.store.revision().await?;
        if rev > app.store.compacted_revision().await? {
            app.store.compact(rev).await?;
            steps.push(format!("compacted history up to revision {rev}"));
        } else {
            steps.push(format!("history already compacted up to revision {rev}"));
        }
        record(app, Some(rev), Vec::new()).await;
    }
    if matches!(action, DbAction::Defrag | DbAction::Recover) {
        let st = app.store.db_status().await?;
        if !app.store.shared() {
            steps.push(
                "the embedded store reuses its free pages itself: nothing to defragment".into(),
            );
        } else {
            for m in &st.members {
                if let Some(why) = &m.unreachable {
                    steps.push(format!("skipped member {} ({why})", m.name));
                }
            }
            let mut done = Vec::new();
            let mut failed = None;
            for (m, r) in defragment(app, st.members.iter()).await {
                match r {
                    Ok(()) => {
                        steps.push(format!(
                            "defragmented member {} (was {} with {} in use)",
                            m.name,
                            human_size(m.db_size),
                            human_size(m.db_in_use)
                        ));
                        done.push(m.name.clone());
                    }
                    Err(e) => failed = failed.or(Some(e)),
                }
            }
            record(app, None, done).await;
            if let Some(e) = failed {
                return Err(e);
            }
        }
    }
    if matches!(action, DbAction::Disarm | DbAction::Recover) {
        let cleared = app.store.disarm_alarms().await?;
        if cleared.is_empty() {
            steps.push("no alarm raised".into());
        }
        for a in cleared {
            tracing::warn!(member = %a.member, alarm = %a.alarm, "alarm disarmed on request");
            steps.push(format!("disarmed {} on member {}", a.alarm, a.member));
        }
    }
    Ok(steps)
}

/// The sha256 of every file an object refers to.
pub(crate) fn referenced_files(app: &App) -> HashSet<String> {
    let st = app.cache.read();
    let mut out = HashSet::new();
    for o in st
        .objects(Kind::Boot)
        .chain(st.objects(Kind::Image))
        .chain(st.objects(Kind::Repo))
    {
        match o {
            AnyObj::Boot(b) => out.extend(
                b.kernel
                    .iter()
                    .chain(b.initramfs.iter())
                    .chain(b.kickstart.iter())
                    .map(|f| f.sha256.clone()),
            ),
            AnyObj::Image(i) => out.extend(
                i.content
                    .iter()
                    .map(|f| f.sha256.clone())
                    .chain(i.parent_sha256.iter().cloned()),
            ),
            AnyObj::Repo(r) => out.extend(r.iso.iter().map(|f| f.sha256.clone())),
            _ => {}
        }
    }
    out
}

/// `GET|POST /api/v1/cluster/db`.
pub fn routes() -> axum::Router<std::sync::Arc<App>> {
    axum::Router::new().route(
        "/api/v1/cluster/db",
        axum::routing::get(cluster_db).post(cluster_db_act),
    )
}

/// `GET /api/v1/cluster/db`: the store's size and health, member by member.
async fn cluster_db(
    axum::extract::State(app): crate::app::AppState,
) -> Result<axum::Json<wulf_model::db::DbStatus>, crate::web::ApiErr> {
    Ok(axum::Json(db_status(&app).await?))
}

/// What `POST /api/v1/cluster/db` did, and the status after it.
#[derive(serde::Serialize)]
struct DbActed {
    done: Vec<String>,
    status: wulf_model::db::DbStatus,
}

/// `POST /api/v1/cluster/db` `{"action": "compact"|"defrag"|"disarm"|"recover"}`.
async fn cluster_db_act(
    axum::extract::State(app): crate::app::AppState,
    axum::Extension(who): axum::Extension<crate::auth::Principal>,
    body: axum::body::Body,
) -> Result<axum::Json<DbActed>, crate::web::ApiErr> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Ask {
        action: DbAction,
    }
    let ask: Ask =
        serde_json::from_value(crate::web::read_json(&app, body).await?).map_err(|e| {
            crate::web::ApiErr::bad(format!(
                "expected {{\"action\": \"compact\"|\"defrag\"|\"disarm\"|\"recover\"}}: {e}"
            ))
        })?;
    let done = act(&app, ask.action).await?;
    tracing::info!(target: "audit", account = %who.name, source = %who.source, action = ?ask.action, steps = ?done, "database maintenance on request");
    Ok(axum::Json(DbActed {
        done,
        status: db_status(&app).await?,
    }))
}
