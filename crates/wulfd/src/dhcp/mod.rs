//! (being written)

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::api::App;

pub async fn run(app: Arc<App>, cancel: CancellationToken) {
    let _ = app;
    cancel.cancelled().await;
}
