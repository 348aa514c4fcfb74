//! Where entries persist, so that a restart or another instance can rebuild its index.
//!
//! An entry store keeps, per namespace, every entry's exact key, vector, encoded value,
//! store time and TTL, and can list the entries stored since a moment: a starting
//! instance loads a namespace whole, a running one catches up incrementally.
//! - [`memory::MemoryStore`] lives in the process (tests, or one process that rebuilds
//!   layers);
//! - [`tier::TierStore`] keeps entries on any `cache-layer` tier, such as its crash-safe
//!   disk tier (L3), with a manifest per namespace: a restart rebuilds from the file;
//! - `redis::RedisStore` (feature `redis`) keeps the entries in `cache-layer`'s `RedisTier`
//!   and their membership in one sorted set per namespace: instances share them.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
pub use cache_layer::backend::TierError;
use cache_layer::backend::{EntryMeta, Invalidation, Stored, Tier};
use futures_util::future::BoxFuture;

pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;
pub mod tier;

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

/// Tier metadata of an entry: its store time and TTL, no stale windows.
pub(crate) fn entry_meta(stored_at: SystemTime, ttl: Duration) -> EntryMeta {
    EntryMeta {
        stored_at,
        ttl,
        stale_while_revalidate: Duration::ZERO,
        stale_if_error: Duration::ZERO,
        fetch_cost: Duration::ZERO,
        negative: false,
        tags: Vec::new(),
    }
}

/// Writes `record` as one tier value under its key.
pub(crate) async fn put_record(tier: &dyn Tier<Bytes>, record: &Record) -> Result<(), TierError> {
    let value = crate::wire::encode_entry(&record.vector, &record.value);
    let meta = entry_meta(record.stored_at, record.ttl);
    tier.set(&record.key, Stored { value, meta }).await
}

/// Reads the record of `key` from `tier`: `None` when absent, malformed or expired.
pub(crate) async fn get_record(
    tier: &dyn Tier<Bytes>,
    key: &str,
) -> Result<Option<Record>, TierError> {
    let Some(s) = tier.get(key).await? else {
        return Ok(None);
    };
    let record = crate::wire::decode_entry(&s.value).map(|(vector, value)| Record {
        key: key.to_owned(),
        vector: vector.into(),
        value: Bytes::copy_from_slice(value),
        stored_at: s.meta.stored_at,
        ttl: s.meta.ttl,
    });
    Ok(record.filter(|r| r.remaining(SystemTime::now()).is_some()))
}

/// Removes the values of `keys` from `tier`.
pub(crate) async fn drop_records(tier: &dyn Tier<Bytes>, keys: &[String]) -> Result<(), TierError> {
    for k in keys {
        tier.invalidate(&Invalidation::Key(k.clone())).await?;
    }
    Ok(())
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

    /// A count that changes whenever entries of `namespace` are removed, by any instance:
    /// an instance that sees it change reloads the namespace whole, so invalidations
    /// reach every instance. Stores with one writer may keep the default (always 0).
    fn removals<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<u64, TierError>> {
        let _ = namespace;
        Box::pin(std::future::ready(Ok(0)))
    }
}
