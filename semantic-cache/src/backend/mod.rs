//! Where entries persist, so that a restart or another instance can rebuild its index.
//!
//! An entry store keeps, per namespace, every entry's exact key, vector, encoded value,
//! store time and TTL, and can list the entries stored since a moment: a starting
//! instance loads a namespace whole, a running one catches up incrementally.
//! [`memory::MemoryStore`] lives in the process (tests, or one process that rebuilds
//! layers); `redis::RedisStore` (feature `redis`) keeps the entries in `cache-layer`'s
//! `RedisTier` and their membership in one sorted set per namespace.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
pub use cache_layer::backend::TierError;
use futures_util::future::BoxFuture;

pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;

/// One persisted entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The entry's exact key.
    pub key: String,
    /// Its normalized vector.
    pub vector: Arc<[f32]>,
    /// Its value, as the codec encoded it.
    pub value: Bytes,
    /// When it was stored, wall clock.
    pub stored_at: SystemTime,
    /// Its time to live.
    pub ttl: Duration,
}

impl Record {
    /// Time left at wall-clock `now` (`None` once expired; a store time in the future,
    /// from another host's clock, counts as now).
    pub fn remaining(&self, now: SystemTime) -> Option<Duration> {
        let age = now.duration_since(self.stored_at).unwrap_or_default();
        self.ttl.checked_sub(age).filter(|d| !d.is_zero())
    }
}

/// Persistent entries of every namespace.
pub trait EntryStore: Send + Sync + fmt::Debug + 'static {
    /// Stores `record` in `namespace` (replacing an entry of the same key).
    fn save<'a>(
        &'a self,
        namespace: &'a str,
        record: &'a Record,
    ) -> BoxFuture<'a, Result<(), TierError>>;

    /// The live entries of `namespace` stored at or after `since` (all when `None`).
    fn load<'a>(
        &'a self,
        namespace: &'a str,
        since: Option<SystemTime>,
    ) -> BoxFuture<'a, Result<Vec<Record>, TierError>>;

    /// Removes `keys` from `namespace`.
    fn remove<'a>(
        &'a self,
        namespace: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<(), TierError>>;
}
