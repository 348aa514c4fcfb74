//! L2: Redis or Redis Cluster, shared by every instance of a service.
//!
//! - One Redis key per entry holds the value and its freshness metadata
//!   ([`wire`](super::wire) format, LZ4 above a threshold, checksummed), written with
//!   `SET .. PX` so Redis expires it at the end of its longest stale window.
//! - Keys come from the [`KeySpace`] of the [`RedisConfig`]:
//!   `<prefix>:{<escaped user key>}:v<generation>`. The user key is the cluster hash tag.
//! - Invalidation by key deletes the key. Prefix, tag and clear-all invalidations bump a
//!   *generation* (`<prefix>:generation`): every older key becomes unreachable at once and
//!   expires on its own. Redis cannot find keys by prefix or tag across a cluster cheaply,
//!   so these clear the whole L2 namespace (L1s drop exactly the matching entries).
//! - Invalidations travel to the other instances on the channel `<prefix>:invalidate`:
//!   `PUBLISH` on one node, sharded `SPUBLISH` on a cluster (the channel's shard only).
//! - Here `<prefix>` is the config's `key_prefix` followed by `:cache`; the crate README
//!   tabulates every key and channel, with its TTL.
//! - A failing Redis is skipped for [`BACKOFF`] after each error (counted): lookups fall
//!   back to L1 and the upstream (and stale-if-error), never to an error for the caller.
//!   It is used again automatically once the back-off has passed and a command succeeds.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant as StdInstant, SystemTime};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use redis::AsyncCommands;
use reliability_core::health::CacheLevelSnapshot;
use reliability_core::key::KeySpace;
use reliability_core::redis::{RedisConfig, RedisConnection, RedisSetupError, pubsub};

use super::wire::{decode_owned, encode, keep_ms};
use super::{Invalidation, Stored, Tier, TierError};
use crate::metrics::LevelMetrics;
use crate::metrics::facade::TierName;

/// How long Redis is skipped after an error.
pub const BACKOFF: Duration = Duration::from_millis(250);

/// The Redis tier.
pub struct RedisTier {
    conn: RedisConnection,
    config: RedisConfig,
    keys: KeySpace,
    generation: AtomicU64,
    compress_above: usize,
    pub(crate) metrics: LevelMetrics,
    started: StdInstant,
    down_until_ms: AtomicU64,
    /// Set by the first failure after a success, cleared by the first success after: the
    /// two state changes that are logged.
    lost: AtomicBool,
    /// The cache this tier serves (empty until bound), for logs.
    source: String,
    pub(crate) instance: u64,
}

impl fmt::Debug for RedisTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTier")
            .field("prefix", &self.keys.prefix())
            .field("cluster", &self.conn.is_cluster())
            .field("generation", &self.generation.load(Ordering::Relaxed))
            .finish()
    }
}

fn tier_err(e: impl fmt::Display) -> TierError {
    TierError {
        level: "l2",
        message: e.to_string(),
    }
}

impl RedisTier {
    /// Connects (one shared, self-reconnecting connection) and reads the current
    /// generation. Cache keys live under `<key_prefix>:cache`.
    pub async fn connect(config: &RedisConfig) -> Result<Self, RedisSetupError> {
        let keys = config.keyspace()?.child("cache")?;
        let conn = config.connect().await?;
        let tier = Self {
            conn,
            config: config.clone(),
            keys,
            generation: AtomicU64::new(0),
            compress_above: 1024,
            metrics: LevelMetrics::default(),
            started: StdInstant::now(),
            down_until_ms: AtomicU64::new(0),
            lost: AtomicBool::new(false),
            source: String::new(),
            instance: rand::random(),
        };
        tier.refresh_generation().await;
        Ok(tier)
    }

    /// Values larger than `bytes` are LZ4-compressed (default 1 KiB).
    #[must_use]
    pub fn compress_above(mut self, bytes: usize) -> Self {
        self.compress_above = bytes;
        self
    }

    /// The Redis key of a user key (for tests and operators).
    pub fn redis_key(&self, key: &str) -> String {
        let generation = self.generation.load(Ordering::Acquire);
        self.keys.key(key, &format!("v{generation}"))
    }

    pub(crate) fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// The invalidation channel, `<prefix>:cache:invalidate`: one fixed name per cache
    /// prefix, hence one cluster slot, as sharded pub/sub requires.
    pub fn channel(&self) -> String {
        self.keys.fixed("invalidate")
    }

    fn generation_key(&self) -> String {
        self.keys.fixed("generation")
    }

    pub(crate) fn set_generation(&self, generation: u64) {
        self.generation.fetch_max(generation, Ordering::AcqRel);
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Re-reads the generation (after a reconnect: bumps may have been missed).
    pub(crate) async fn refresh_generation(&self) {
        let mut conn = self.conn.clone();
        if let Ok(Some(g)) = conn.get::<_, Option<u64>>(self.generation_key()).await {
            self.set_generation(g);
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether Redis may be tried now (not inside a back-off).
    pub fn available(&self) -> bool {
        self.elapsed_ms() >= self.down_until_ms.load(Ordering::Relaxed)
    }

    /// Binds this tier to the cache `source`: its figures are exported, and its logs
    /// name, under that name.
    pub(crate) fn bind(&mut self, source: &str) {
        self.metrics.bind(source, TierName::L2);
        source.clone_into(&mut self.source);
    }

    /// The cache this tier serves, for logs.
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    fn failed(&self, e: &redis::RedisError) -> TierError {
        self.metrics.error();
        let until = self.elapsed_ms() + u64::try_from(BACKOFF.as_millis()).unwrap_or(250);
        self.down_until_ms.store(until, Ordering::Relaxed);
        if self.lost.swap(true, Ordering::AcqRel) {
            tracing::debug!(source = %self.source, tier = "l2", error = %e, "redis cache tier still failing");
        } else {
            tracing::warn!(source = %self.source, tier = "l2", error = %e, "cache tier lost: serving from L1 and the upstream");
        }
        tier_err(e)
    }

    /// A command succeeded: logs the tier's return if it had been lost.
    fn succeeded(&self) {
        if self.lost.load(Ordering::Relaxed) && self.lost.swap(false, Ordering::AcqRel) {
            tracing::info!(source = %self.source, tier = "l2", "cache tier regained");
        }
    }

    /// Reads an entry; a corrupt blob is dropped, counted and reported as absent.
    pub(crate) async fn get_blob(&self, key: &str) -> Result<Option<Stored<Bytes>>, TierError> {
        if !self.available() {
            return Err(tier_err("backing off after an error"));
        }
        let started = StdInstant::now();
        let mut conn = self.conn.clone();
        let redis_key = self.redis_key(key);
        let got: Option<Vec<u8>> = conn.get(&redis_key).await.map_err(|e| self.failed(&e))?;
        self.succeeded();
        let took = started.elapsed();
        self.metrics.record_latency(took);
        self.metrics.exported.lookup_took(took);
        self.metrics.lookups.fetch_add(1, Ordering::Relaxed);
        let Some(blob) = got else {
            self.metrics.miss();
            return Ok(None);
        };
        match decode_owned(Bytes::from(blob)) {
            Ok(stored) => {
                self.metrics.hit();
                Ok(Some(stored))
            }
            Err(e) => {
                self.metrics.error();
                tracing::warn!(error = %e, "dropping a corrupt L2 entry");
                let _: Result<(), _> = conn.del(&redis_key).await;
                Ok(None)
            }
        }
    }

    /// Writes an entry with a Redis TTL at the end of its longest stale window.
    pub(crate) async fn set_blob(&self, key: &str, entry: &Stored<Bytes>) -> Result<(), TierError> {
        if !self.available() {
            return Err(tier_err("backing off after an error"));
        }
        let blob = encode(entry, self.compress_above);
        let px = keep_ms(&entry.meta, SystemTime::now());
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(self.redis_key(key))
            .arg(blob)
            .arg("PX")
            .arg(px)
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| self.failed(&e))?;
        self.succeeded();
        Ok(())
    }

    /// Applies an invalidation; returns the new generation for namespace-wide ones.
    pub(crate) async fn apply(&self, scope: &Invalidation) -> Result<Option<u64>, TierError> {
        let mut conn = self.conn.clone();
        match scope {
            Invalidation::Key(k) => {
                let _: () = conn
                    .del(self.redis_key(k))
                    .await
                    .map_err(|e| self.failed(&e))?;
                Ok(None)
            }
            _ => {
                let g: u64 = conn
                    .incr(self.generation_key(), 1)
                    .await
                    .map_err(|e| self.failed(&e))?;
                self.set_generation(g);
                Ok(Some(g))
            }
        }
    }

    /// Takes the distributed single-flight lock of `key` for `ttl` (`SET NX PX` with a
    /// random token); `Ok(false)` when another instance holds it.
    pub(crate) async fn try_lock(
        &self,
        key: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, TierError> {
        if !self.available() {
            return Err(tier_err("backing off after an error"));
        }
        let mut conn = self.conn.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(self.keys.key(key, "lock"))
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(&e))?;
        Ok(set.is_some())
    }

    /// Whether anyone holds the lock of `key` (errors count as "no": the waiter then
    /// calls upstream itself).
    pub(crate) async fn is_locked(&self, key: &str) -> bool {
        let mut conn = self.conn.clone();
        conn.exists(self.keys.key(key, "lock"))
            .await
            .unwrap_or(false)
    }

    /// Releases the lock of `key` if `token` still holds it (compare-and-delete, so a
    /// holder whose lock expired never deletes its successor's).
    pub(crate) async fn unlock(&self, key: &str, token: &str) {
        const RELEASE: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then \
                               return redis.call('del', KEYS[1]) else return 0 end";
        let mut conn = self.conn.clone();
        let _: Result<i64, _> = redis::Script::new(RELEASE)
            .key(self.keys.key(key, "lock"))
            .arg(token)
            .invoke_async(&mut conn)
            .await;
    }

    /// The Redis key of `key`'s single-flight lock (for tests and operators).
    pub fn lock_key(&self, key: &str) -> String {
        self.keys.key(key, "lock")
    }

    /// Publishes an invalidation for the other instances: `PUBLISH` on one node,
    /// sharded `SPUBLISH` on a cluster.
    pub(crate) async fn publish(&self, message: &str) -> Result<(), TierError> {
        let mut conn = self.conn.clone();
        pubsub::publish(&mut conn, &self.channel(), message.as_bytes())
            .await
            .map(drop)
            .map_err(|e| self.failed(&e))
    }
}

impl Tier<Bytes> for RedisTier {
    fn level(&self) -> &'static str {
        "l2"
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Stored<Bytes>>, TierError>> {
        Box::pin(self.get_blob(key))
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        entry: Stored<Bytes>,
    ) -> BoxFuture<'a, Result<(), TierError>> {
        Box::pin(async move { self.set_blob(key, &entry).await })
    }

    fn invalidate<'a>(&'a self, scope: &'a Invalidation) -> BoxFuture<'a, Result<(), TierError>> {
        Box::pin(async move { self.apply(scope).await.map(|_| ()) })
    }

    fn stats(&self) -> CacheLevelSnapshot {
        self.metrics.snapshot("l2", 0, 0)
    }
}
