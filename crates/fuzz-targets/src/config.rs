//! wulfd's config file: TOML text into `FileConfig` (what `FileConfig::load` does with the
//! file), settled into `Config` with no flags, and its `store` setting parsed; the settled
//! values stay inside their documented bounds, and a store URL survives `shareable`.

use wulfd::config::{Config, FileConfig, StoreUrl};

fn check_store(s: &str) {
    let Ok(url) = s.parse::<StoreUrl>() else {
        return;
    };
    match &url {
        StoreUrl::Embedded => assert!(url.shareable().is_none()),
        StoreUrl::Etcd(eps) => {
            assert!(!eps.is_empty());
            assert!(eps
                .iter()
                .all(|e| e.starts_with("http://") || e.starts_with("https://")));
            let again = url.shareable().expect("etcd is shareable");
            assert_eq!(
                again.parse::<StoreUrl>().as_ref(),
                Ok(&url),
                "{s:?} → {again:?}"
            );
        }
    }
}

pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check_store(text);
    let Ok(file) = toml::from_str::<FileConfig>(text) else {
        return;
    };
    let store = file.store.clone();
    let cfg = Config::settle(file, None, None, None);
    assert!((50..=60_000).contains(&cfg.status.flush_ms));
    assert!((1..=3600).contains(&cfg.status.persist_secs));
    assert!((1..=3600).contains(&cfg.db.check_secs));
    assert!(cfg.db.quota_mib >= 1);
    assert!((0.1..=1.0).contains(&cfg.db.quota_fill));
    assert!(cfg.history_revisions >= 100);
    assert!(cfg.history_secs >= 60);
    if let Some(s) = store {
        check_store(&s);
    }
}
