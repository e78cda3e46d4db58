//! The daemon's shared state: what every service and the HTTP layer work from.

use std::sync::Arc;

use wulf_store::Store;

use crate::auth::Auth;
use crate::blobs::Blobs;
use crate::cache::Cache;
use crate::db::Db;

pub struct App {
    pub db: Db,
    pub cache: Arc<Cache>,
    pub store: Arc<dyn Store>,
    pub blobs: Blobs,
    /// Accounts' tokens and the bootstrap token.
    pub auth: Auth,
    pub head: String,
    pub max_body: usize,
    /// The settled configuration (service sections, API port).
    pub cfg: crate::config::Config,
    /// The cluster CA and this head's TLS acceptor.
    pub tls: crate::tls::Tls,
    /// Secret the per-node boot credentials are derived from (shared by all heads).
    pub node_secret: Vec<u8>,
    /// Node status as this head sees it.
    pub status: Arc<crate::status::Status>,
    /// The heads that are up (for agents to fall back on).
    pub live_heads: crate::heads::LiveHeads,
    /// Files being fetched from peer heads.
    pub fetches: crate::peers::Fetches,
    /// Commands waiting for nodes' agents, and the results waited for.
    pub commands: crate::exec::Commands,
    /// Enrollment tokens handed out by this head and the nodes' credential nonces it knows.
    pub enroll: crate::enroll::Enrollment,
    /// Nodes fetching or holding each image, for peer-assisted downloads.
    pub swarm: crate::swarm::Swarms,
}

/// How axum handlers take the shared state.
pub type AppState = axum::extract::State<Arc<App>>;
