//! The tiers below L1 (Redis as L2, disk as L3) as the engine drives them, and the miss
//! path through them.
//!
//! [`Tier`](crate::backend::Tier) is the storage contract of one level: bytes with their
//! metadata in and out. A [`LowerTier`] is such a level wired into a cache: the codec
//! between values and bytes, a bounded write-behind queue, and whatever keeps the level
//! coherent across instances (L2's pub/sub). The engine holds its lower tiers in one list,
//! nearest first, and never names one: features only decide what [`TierSetup::start`]
//! builds (`l2` with `redis`, `l3` with `disk`).
//!
//! Nothing here is on the L1-hit path. Lookups and writes-through return boxed futures
//! (the miss path is I/O-bound anyway); writes-behind and invalidations only queue.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use reliability_core::error::ConfigError;
use reliability_core::health::CacheLevelSnapshot;
use tower::BoxError;
use tower_service::Service;

use crate::backend::memory::{Entry, nanos};
use crate::backend::{EntryMeta, Invalidation, Stored, TierError};
use crate::engine::{Engine, Origin, Serving, decide};
use crate::error::TierFlushError;
use crate::freshness::Phase;
use crate::future::{LowerFuture, spawn_refresh};
use crate::handle::CacheStats;
use crate::metrics::bump;
use crate::singleflight::LeaderGuard;
use crate::status::CacheStatus;

#[cfg(feature = "redis")]
#[cfg(feature = "redis")]
pub(crate) mod l2;
#[cfg(feature = "disk")]
pub(crate) mod l3;

/// One tier below L1, as the engine drives it.
pub(crate) trait LowerTier<V>: Send + Sync + 'static {
    /// The entry of `key`; an error, or bytes the codec cannot read, is a miss.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<Stored<V>>>;

    /// Queues the write of `value` (write-behind): never waits, and a full queue drops
    /// the write and counts it. `explicit` marks an explicit write (`put`), which other
    /// instances must hear of.
    fn write_behind(&self, key: &str, value: &V, meta: EntryMeta, explicit: bool);

    /// Writes `value` now (write-through); a failure is the tier's to count, not the
    /// caller's to see.
    fn write_now<'a>(&'a self, key: &'a str, value: &V, meta: EntryMeta) -> BoxFuture<'a, ()>;

    /// Queues an invalidation (and its announcement to other instances, if the tier
    /// has them).
    fn invalidate(&self, scope: &Invalidation);

    /// Starts what needs the shared engine (L2: the pub/sub subscriber that invalidates
    /// this instance's L1). Called once, when the cache is built.
    fn attach(&self, engine: &Arc<Engine<V>>) {
        let _ = engine;
    }

    /// Writes this tier's counters into `stats`.
    fn report(&self, stats: &mut CacheStats);

    /// This tier's health figures.
    fn snapshot(&self) -> CacheLevelSnapshot;

    /// Sets this tier's exported gauges from what it knows now (nothing for a tier whose
    /// size it cannot know).
    fn publish_metrics(&self) {}

    /// Whether the tier is in use now; `None` for a tier that is never skipped.
    fn available(&self) -> Option<bool> {
        None
    }

    /// Keeps `keys` as the hot set for a later process, if this tier survives restarts.
    fn save_hot_keys(&self, keys: &[String]) {
        let _ = keys;
    }

    /// The hot set a previous process kept here, if this tier keeps one.
    fn saved_hot_keys(&self) -> Option<Vec<String>> {
        None
    }

    /// The tier's name in errors and logs (`"l2"`, `"l3"`).
    fn level(&self) -> &'static str;

    /// Resolves once every write and invalidation queued before the call has been carried
    /// out or has failed (a marker sent through the queue behind them comes back).
    /// `Lost` reports what failed or overflowed since the previous flush.
    fn flush(&self) -> BoxFuture<'_, Result<(), TierFlushError>>;

    /// Operations queued now.
    fn pending(&self) -> usize;

    /// Stops the tier's background work now (what is still queued is dropped, and later
    /// writes are counted as overflow) and resolves once it has ended.
    fn stop(&self) -> BoxFuture<'_, ()>;
}

/// A write-behind queue's flush: puts `marker` behind what `queue` holds (waiting for
/// room: the caller bounds the wait), waits until the writer reaches it, then reports what
/// was lost since the last flush (`lost()`, failed plus dropped, read after the marker).
#[cfg(any(feature = "redis", feature = "disk"))]
async fn flush_behind<Op>(
    tier: &'static str,
    stopped: bool,
    queue: &tokio::sync::mpsc::Sender<Op>,
    marker: impl FnOnce(tokio::sync::oneshot::Sender<()>) -> Op,
    lost: impl FnOnce() -> u64,
    reported: &std::sync::atomic::AtomicU64,
) -> Result<(), TierFlushError> {
    let (done, ack) = tokio::sync::oneshot::channel();
    if stopped || queue.send(marker(done)).await.is_err() || ack.await.is_err() {
        return Err(TierFlushError::Stopped { tier });
    }
    lost_since_flush(tier, lost(), reported)
}

/// Failed and dropped operations not yet reported by a flush: `total` now, against the
/// highest total a flush has reported (`reported`, raised to `total`).
#[cfg(any(feature = "redis", feature = "disk"))]
fn lost_since_flush(
    tier: &'static str,
    total: u64,
    reported: &std::sync::atomic::AtomicU64,
) -> Result<(), TierFlushError> {
    let before = reported.fetch_max(total, std::sync::atomic::Ordering::AcqRel);
    match total.saturating_sub(before) {
        0 => Ok(()),
        lost => Err(TierFlushError::Lost { tier, lost }),
    }
}

/// Distributed single-flight: one upstream call per key across instances, through a
/// lock per key that a crashed holder keeps at most [`ttl`](Self::ttl).
pub(crate) trait FlightLock<V>: Send + Sync + 'static {
    /// How long a holder may take.
    fn ttl(&self) -> Duration;

    /// Takes the lock of `key` with `token`; `Ok(false)` when another instance holds it.
    fn try_lock<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
    ) -> BoxFuture<'a, Result<bool, TierError>>;

    /// Whether anyone holds the lock of `key` (an error counts as no: the waiter then
    /// calls upstream itself).
    fn is_locked<'a>(&'a self, key: &'a str) -> BoxFuture<'a, bool>;

    /// Writes `answer` where the waiters look for it, then releases the lock if `token`
    /// still holds it.
    fn release<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
        answer: Option<(&V, EntryMeta)>,
    ) -> BoxFuture<'a, ()>;
}

/// The tiers below L1 that a builder was given, built by [`start`](Self::start).
pub(crate) struct TierSetup<V> {
    /// Redis as L2, with the codec of its values.
    #[cfg(feature = "redis")]
    pub(crate) l2: Option<(
        crate::backend::redis::RedisTier,
        Arc<dyn crate::codec::Codec<V>>,
    )>,
    /// Distributed single-flight on L2, with its lock TTL.
    #[cfg(feature = "redis")]
    pub(crate) l2_lock: Option<Duration>,
    /// The disk as L3, with the codec of its values.
    #[cfg(feature = "disk")]
    pub(crate) l3: Option<(
        crate::backend::disk::DiskTier,
        Arc<dyn crate::codec::Codec<V>>,
    )>,
    values: PhantomData<fn() -> V>,
}

impl<V> Default for TierSetup<V> {
    fn default() -> Self {
        Self {
            #[cfg(feature = "redis")]
            l2: None,
            #[cfg(feature = "redis")]
            l2_lock: None,
            #[cfg(feature = "disk")]
            l3: None,
            values: PhantomData,
        }
    }
}

/// The started lower tiers, nearest first, and the distributed lock if any.
pub(crate) type Started<V> = (Vec<Arc<dyn LowerTier<V>>>, Option<Arc<dyn FlightLock<V>>>);

impl<V: Clone + Send + Sync + 'static> TierSetup<V> {
    /// Checks the settings and starts each tier's background writer. L2 must start
    /// inside a tokio runtime.
    pub(crate) fn start(self, source: &str) -> Result<Started<V>, ConfigError> {
        #[cfg(not(any(feature = "redis", feature = "disk")))]
        let _ = source;
        // Each enabled feature may add its tier; without them both stay empty.
        #[allow(unused_mut)]
        let mut tiers: Vec<Arc<dyn LowerTier<V>>> = Vec::new();
        #[allow(unused_mut)]
        let mut flight_lock: Option<Arc<dyn FlightLock<V>>> = None;
        #[cfg(feature = "redis")]
        {
            if let Some(t) = self.l2_lock
                && (self.l2.is_none() || t.is_zero() || t > Duration::from_secs(60))
            {
                return Err(ConfigError::new(
                    "distributed_single_flight",
                    "needs an L2 tier and a lock TTL in (0s, 60s]",
                ));
            }
            if let Some((tier, codec)) = self.l2 {
                let l2 = l2::RedisL2::start(tier, codec, source)?;
                flight_lock = self
                    .l2_lock
                    .map(|ttl| Arc::new(l2.lock(ttl)) as Arc<dyn FlightLock<V>>);
                tiers.push(Arc::new(l2));
            }
        }
        #[cfg(feature = "disk")]
        if let Some((tier, codec)) = self.l3 {
            let l3 = l3::DiskL3::start(tier, codec, source).map_err(|e| {
                ConfigError::new("l3", format!("cannot start the disk writer: {e}"))
            })?;
            tiers.push(Arc::new(l3));
        }
        Ok((tiers, flight_lock))
    }
}

impl<V: Clone + Send + Sync + 'static> Engine<V> {
    /// Looks `key` up in each lower tier, nearest first.
    async fn lower_get(&self, key: &str) -> Option<Stored<V>> {
        for tier in &self.lower {
            if let Some(found) = tier.get(key).await {
                return Some(found);
            }
        }
        None
    }

    /// Puts an entry found in a lower tier into L1 (not written back).
    fn promote(&self, key: &str, found: Stored<V>) -> Arc<Entry<V>> {
        let freshness = self.l1.to_freshness(&found.meta);
        let size = (self.settings.value_size)(&found.value);
        let entry = Arc::new(Entry {
            value: found.value,
            freshness,
            negative: found.meta.negative,
            shared: true,
            tags: found.meta.tags.into_boxed_slice(),
            size: u32::try_from(size).unwrap_or(u32::MAX),
            hits: std::sync::atomic::AtomicU32::new(0),
            next_ttl_nanos: std::sync::atomic::AtomicU64::new(nanos(freshness.ttl)),
        });
        self.l1.insert_entry(key.to_owned(), entry.clone());
        entry
    }

    /// Write-through: writes the L1 entry of `key` to every lower tier now.
    pub(crate) async fn write_through(&self, key: &str) {
        if !self.settings.write_through || self.lower.is_empty() {
            return;
        }
        let Some(entry) = self.l1.get_entry(key) else {
            return;
        };
        if !entry.shared {
            return;
        }
        let meta = self.l1.to_meta(&entry);
        for tier in &self.lower {
            tier.write_now(key, &entry.value, meta.clone()).await;
        }
    }
}

/// The miss path with lower tiers: look there first (promoting a hit into L1), then,
/// with distributed single-flight, wait for another instance's call; else call upstream.
/// The caller leads the key's flight (or runs uncoalesced).
pub(crate) fn read_through<S, Req, V>(
    engine: Arc<Engine<V>>,
    guard: Option<LeaderGuard<V>>,
    key: String,
    mut prior: Option<Arc<Entry<V>>>,
    mut svc: S,
    req: Req,
) -> LowerFuture<V>
where
    S: Service<Req, Response = V> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    V: Clone + Send + Sync + 'static,
    Req: Send + 'static,
{
    Box::pin(async move {
        if let Some(found) = engine.lower_get(&key).await {
            let entry = engine.promote(&key, found);
            let now = engine.clock.now();
            match decide::serving(&entry.freshness, now) {
                Serving::Now(status) => {
                    bump(&engine.metrics.hits);
                    let value = finish(guard, entry.value.clone());
                    if matches!(status, CacheStatus::Stale { .. }) {
                        engine.metrics.stale_revalidating();
                        if let Some(g) = engine.lead_refresh(&key, &entry, now) {
                            spawn_refresh(engine.clone(), g, svc, req, entry);
                        }
                    }
                    return (value, status);
                }
                Serving::IfUpstreamFails => prior = Some(entry),
                Serving::Gone => {}
            }
        }
        let token = match engine.flight_lock.as_deref() {
            Some(lock) => {
                let token = format!("{:x}", rand::random::<u128>());
                match lock.try_lock(&key, &token).await {
                    Ok(true) => Some(token),
                    Ok(false) => {
                        bump(&engine.metrics.lock_waits);
                        let deadline = tokio::time::Instant::now() + lock.ttl();
                        while tokio::time::Instant::now() < deadline {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            if let Some(found) = engine.lower_get(&key).await {
                                let entry = engine.promote(&key, found);
                                if entry.freshness.phase(engine.clock.now()) == Phase::Fresh {
                                    bump(&engine.metrics.hits);
                                    engine.metrics.coalesced();
                                    let status = CacheStatus::Miss {
                                        stored: false,
                                        collapsed: true,
                                    };
                                    return (finish(guard, entry.value.clone()), status);
                                }
                            }
                            if !lock.is_locked(&key).await {
                                break;
                            }
                        }
                        None
                    }
                    Err(_) => None,
                }
            }
            None => None,
        };
        bump(&engine.metrics.misses);
        let started = engine.clock.now();
        let r = svc.call(req).await.map_err(Into::into);
        let answer = engine.complete(guard, &key, r, prior.as_ref(), started, Origin::Request);
        if matches!(answer.1, CacheStatus::Miss { stored: true, .. }) {
            engine.write_through(&key).await;
        }
        if let (Some(token), Some(lock)) = (token, engine.flight_lock.as_deref()) {
            // The value reaches L2 before the lock is released, so waiters find it.
            let held = engine.l1.get_entry(&key);
            let held = held.as_deref().map(|e| (&e.value, engine.l1.to_meta(e)));
            lock.release(&key, &token, held).await;
        }
        answer
    })
}

/// Hands `value` to the flight's followers if this caller leads one.
fn finish<V: Clone>(guard: Option<LeaderGuard<V>>, value: V) -> Result<V, BoxError> {
    match guard {
        Some(g) => g.finish(Ok(value)),
        None => Ok(value),
    }
}
