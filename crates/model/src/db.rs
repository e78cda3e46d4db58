//! The database's size and health as heads report it (`wulf cluster db`): one row per store
//! member (the embedded file, or each etcd member), the store's alarms, and what the heads'
//! maintenance last did.

use serde::{Deserialize, Serialize};

/// etcd's default space quota (`--quota-backend-bytes` unset): 2 GiB.
pub const ETCD_DEFAULT_QUOTA: u64 = 2 << 30;

/// Size and health of the store behind the heads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DbStatus {
    /// "embedded" or "etcd".
    pub backend: String,
    /// The store's current revision.
    pub revision: i64,
    /// History before this revision has been compacted away.
    pub compacted_revision: i64,
    /// The space quota of each member, in bytes (etcd refuses writes beyond it), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_bytes: Option<u64>,
    pub members: Vec<DbMember>,
    /// Raised alarms, e.g. `NOSPACE` (database space exceeded) on a member.
    #[serde(default)]
    pub alarms: Vec<DbAlarm>,
    /// What the heads' maintenance task last did, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<Maintenance>,
}

/// One member of the store: the embedded database file, or one etcd member.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DbMember {
    /// etcd member name (or the file, for the embedded store).
    pub name: String,
    /// The client URL it was asked through (or the file's path).
    pub endpoint: String,
    /// etcd member id in hex; empty for the embedded store.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub leader: bool,
    #[serde(default)]
    pub version: String,
    /// Size of the database file.
    pub db_size: u64,
    /// Bytes of it in use; the rest is free space that defragmenting gives back.
    pub db_in_use: u64,
    #[serde(default)]
    pub raft_index: u64,
    /// Errors the member itself reports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Why the member could not be asked (down, unreachable); its sizes are then 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<String>,
}

impl DbMember {
    /// Bytes defragmenting would give back.
    pub fn free(&self) -> u64 {
        self.db_size.saturating_sub(self.db_in_use)
    }

    /// Whether defragmenting this member is worthwhile: at least `min_free` bytes and half the
    /// file are free, or the file has reached `quota_fill` of `quota` and a tenth of it is free.
    pub fn worth_defragmenting(&self, min_free: u64, quota: Option<u64>, quota_fill: f64) -> bool {
        if self.unreachable.is_some() || self.db_size == 0 {
            return false;
        }
        let free = self.free();
        let mostly_free = free >= min_free && free.saturating_mul(2) >= self.db_size;
        let near_quota = quota.is_some_and(|q| {
            q > 0 && self.db_size as f64 >= q as f64 * quota_fill && free * 10 >= self.db_size
        });
        mostly_free || near_quota
    }
}

/// A raised store alarm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbAlarm {
    /// The member's name (or hex id when the name is unknown).
    pub member: String,
    /// `NOSPACE` (database space exceeded: writes are refused) or `CORRUPT`.
    pub alarm: String,
}

/// What the maintenance task last did (written by the head that ran it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Maintenance {
    /// The head that runs maintenance now.
    pub head: String,
    /// Unix seconds of the last check.
    pub checked: u64,
    /// The last compaction: revision and Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compacted: Option<(i64, u64)>,
    /// The last defragmentation: members and Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defragmented: Option<(Vec<String>, u64)>,
}

/// `n` bytes for people: "512 B", "1.5 MiB".
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(size: u64, used: u64) -> DbMember {
        DbMember {
            db_size: size,
            db_in_use: used,
            ..Default::default()
        }
    }

    #[test]
    fn defragment_when_mostly_free_or_near_the_quota() {
        const MIB: u64 = 1 << 20;
        // Half free and over the minimum.
        assert!(member(200 * MIB, 90 * MIB).worth_defragmenting(64 * MIB, None, 0.8));
        // Half free but small.
        assert!(!member(40 * MIB, 10 * MIB).worth_defragmenting(64 * MIB, None, 0.8));
        // Little free.
        assert!(!member(200 * MIB, 180 * MIB).worth_defragmenting(64 * MIB, None, 0.8));
        // Near the quota, with a tenth free.
        let q = Some(100 * MIB);
        assert!(member(90 * MIB, 80 * MIB).worth_defragmenting(64 * MIB, q, 0.8));
        assert!(!member(90 * MIB, 85 * MIB).worth_defragmenting(64 * MIB, q, 0.8));
        // An unreachable member is never defragmented.
        let mut m = member(200 * MIB, 10 * MIB);
        m.unreachable = Some("connection refused".into());
        assert!(!m.worth_defragmenting(64 * MIB, None, 0.8));
    }
}
