//! Background maintenance: compact old store history, remove unreferenced files.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wulf_model::Kind;

use crate::api::App;
use crate::objects::AnyObj;

pub async fn run(
    app: Arc<App>,
    keep_revisions: i64,
    keep_for: Duration,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    // (when, revision) samples: the revision `keep_for` ago bounds the history kept.
    let mut seen: std::collections::VecDeque<(std::time::Instant, i64)> = Default::default();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Ok(rev) = app.store.revision().await {
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
        compact(&app, keep_revisions, old_enough).await;
        let referenced = referenced_files(&app);
        let removed = app
            .blobs
            .collect_garbage(&referenced, Duration::from_secs(3600));
        if removed > 0 {
            tracing::info!(removed, "file store cleaned");
        }
    }
}

/// Compact history older than `keep` revisions back or older than `before` (the revision the
/// store had `history_secs` ago), whichever removes more.
async fn compact(app: &App, keep: i64, before: Option<i64>) {
    let (Ok(rev), Ok(done)) = (
        app.store.revision().await,
        app.store.compacted_revision().await,
    ) else {
        return;
    };
    let target = (rev - keep).max(before.unwrap_or(0)).min(rev);
    if target > done {
        match app.store.compact(target).await {
            Ok(()) => tracing::debug!(revision = target, "compacted store history"),
            Err(e) => tracing::warn!(error = %e, "compaction failed"),
        }
    }
}

fn referenced_files(app: &App) -> HashSet<String> {
    let st = app.cache.read();
    let mut out = HashSet::new();
    for o in st.objects(Kind::Boot).chain(st.objects(Kind::Image)) {
        match o {
            AnyObj::Boot(b) => out.extend(
                b.kernel
                    .iter()
                    .chain(b.initramfs.iter())
                    .map(|f| f.sha256.clone()),
            ),
            AnyObj::Image(i) => out.extend(i.content.iter().map(|f| f.sha256.clone())),
            _ => {}
        }
    }
    out
}
