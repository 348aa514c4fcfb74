//! Entries on Redis: values and vectors in `cache-layer`'s [`RedisTier`], membership in a
//! sorted set per namespace.
//!
//! - Each entry is one `RedisTier` value (LZ4 above 1 KiB, checksummed, Redis TTL at the
//!   end of the entry's TTL) under its exact key, which is a digest of the namespace and
//!   the text: neither is ever part of a Redis key.
//! - `<prefix>:semantic:{<namespace>}:members` scores each key by its store time in
//!   milliseconds, so [`load`](EntryStore::load) with `since` is one `ZRANGEBYSCORE`
//!   followed by one `GET` per key (a rebuild of `n` entries costs `n + 1` round trips).
//!   The set's own TTL is pushed forward on every write; members whose entry has expired
//!   are dropped as loads meet them.
//! - `<prefix>:semantic:{<namespace>}:removals` counts removals: an instance that sees it
//!   change reloads the namespace whole, so invalidations reach every instance.
//! - The namespace is the key's cluster hash tag (through `KeySpace`), so a namespace's set
//!   sits on one node of a cluster.
//!
//! Use a key prefix of its own for the semantic cache: `RedisTier` keys live under
//! `<prefix>:cache`, like those of an ordinary `cache-layer` cache.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cache_layer::backend::Tier;
use cache_layer::backend::redis::RedisTier;
use futures_util::future::BoxFuture;
use reliability_core::key::KeySpace;
use reliability_core::redis::{RedisConfig, RedisConnection, RedisSetupError};
use std::sync::Arc;

use super::{EntryStore, Record, TierError};

/// Entries on Redis or Redis Cluster.
pub struct RedisStore {
    tier: Arc<RedisTier>,
    conn: RedisConnection,
    keys: KeySpace,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("tier", &self.tier)
            .field("prefix", &self.keys.prefix())
            .finish()
    }
}

fn err(e: impl fmt::Display) -> TierError {
    TierError {
        level: "l2",
        message: e.to_string(),
    }
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl RedisStore {
    /// Connects to the Redis `config` names.
    pub async fn connect(config: &RedisConfig) -> Result<Self, RedisSetupError> {
        let tier = RedisTier::connect(config).await?;
        let keys = config.keyspace()?.child("semantic")?;
        let conn = config.connect().await?;
        Ok(Self {
            tier: Arc::new(tier),
            conn,
            keys,
        })
    }

    /// The underlying tier, to share with the embedding cache
    /// ([`SemanticCacheLayerBuilder::embedding_tier`](crate::SemanticCacheLayerBuilder::embedding_tier)).
    pub fn tier(&self) -> Arc<dyn Tier<Bytes>> {
        self.tier.clone()
    }

    /// The sorted set of `namespace`'s keys (for tests and operators).
    pub fn members_key(&self, namespace: &str) -> String {
        self.keys.key(namespace, "members")
    }
}

impl EntryStore for RedisStore {
    fn save<'a>(
        &'a self,
        namespace: &'a str,
        record: &'a Record,
    ) -> BoxFuture<'a, Result<(), TierError>> {
        Box::pin(async move {
            super::put_record(&*self.tier, record).await?;
            let members = self.members_key(namespace);
            let keep = u64::try_from(record.ttl.as_millis())
                .unwrap_or(u64::MAX / 2)
                .saturating_add(60_000);
            let mut conn = self.conn.clone();
            redis::pipe()
                .cmd("ZADD")
                .arg(&members)
                .arg(millis(record.stored_at))
                .arg(&record.key)
                .ignore()
                .cmd("PEXPIRE")
                .arg(&members)
                .arg(keep)
                .ignore()
                .query_async::<()>(&mut conn)
                .await
                .map_err(err)
        })
    }

    fn load<'a>(
        &'a self,
        namespace: &'a str,
        since: Option<SystemTime>,
    ) -> BoxFuture<'a, Result<Vec<Record>, TierError>> {
        Box::pin(async move {
            let members = self.members_key(namespace);
            let mut conn = self.conn.clone();
            let low = since.map_or_else(|| "-inf".to_owned(), |t| millis(t).to_string());
            let keys: Vec<String> = redis::cmd("ZRANGEBYSCORE")
                .arg(&members)
                .arg(low)
                .arg("+inf")
                .query_async(&mut conn)
                .await
                .map_err(err)?;
            let mut found = Vec::with_capacity(keys.len());
            let mut gone = Vec::new();
            for key in keys {
                match super::get_record(&*self.tier, &key).await? {
                    Some(r) => found.push(r),
                    None => gone.push(key),
                }
            }
            if !gone.is_empty() {
                let _: Result<(), _> = redis::cmd("ZREM")
                    .arg(&members)
                    .arg(&gone)
                    .query_async(&mut conn)
                    .await;
            }
            Ok(found)
        })
    }

    fn remove<'a>(
        &'a self,
        namespace: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<(), TierError>> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(());
            }
            super::drop_records(&*self.tier, keys).await?;
            let mut conn = self.conn.clone();
            redis::pipe()
                .cmd("ZREM")
                .arg(self.members_key(namespace))
                .arg(keys)
                .ignore()
                .cmd("INCR")
                .arg(self.keys.key(namespace, "removals"))
                .ignore()
                .query_async::<()>(&mut conn)
                .await
                .map_err(err)
        })
    }

    fn removals<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<u64, TierError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let n: Option<u64> = redis::cmd("GET")
                .arg(self.keys.key(namespace, "removals"))
                .query_async(&mut conn)
                .await
                .map_err(err)?;
            Ok(n.unwrap_or(0))
        })
    }
}
