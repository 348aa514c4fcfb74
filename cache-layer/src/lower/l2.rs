//! L2 on Redis, wired into a cache: read-through on L1 misses, write-behind through a
//! bounded queue, cross-instance invalidation over pub/sub, and the distributed
//! single-flight lock.
//!
//! **Writes** (stores after upstream calls, explicit writes, invalidations) go to Redis
//! from one background task through a bounded queue: the caller never waits for Redis,
//! and when the queue is full the write is dropped and counted (`l2_queue_overflow`), never
//! blocking. Order is kept: an explicit write's `SET` precedes its eviction notice.
//!
//! **Distributed single-flight** (opt-in, [`RedisLock`]): after an L2 miss, the instance
//! takes the key's lock in Redis (`SET NX PX` with a random token). The holder calls
//! upstream, writes L2 before answering, and releases the lock by compare-and-delete.
//! Other instances poll L2 for the value while the lock exists, at most the lock's TTL; a
//! crashed holder therefore blocks nobody beyond that TTL, after which the waiter calls
//! upstream itself.
//!
//! **Coherence**: explicit writes and invalidations are published on
//! `<prefix>:cache:invalidate` (one channel per cache prefix); every other instance
//! evicts the matching L1 entries (and reads the new value from L2 on its next miss). On
//! a Redis Cluster this is **sharded pub/sub** (`SPUBLISH` / `SSUBSCRIBE`, through
//! [`reliability_core::redis::pubsub`]): the channel is one fixed name, hence one slot,
//! and its messages stay on the shard that owns it instead of crossing the whole cluster
//! bus; the subscription follows the slot across a failover. Pub/sub is fire-and-forget,
//! so messages published while an instance is disconnected are lost to it: when its
//! subscription comes back, the instance **flushes its whole L1** and re-reads the
//! generation, so it can only serve what L2 holds now.
//!
//! The writer and subscriber tasks run on the runtime the cache was built in, and live
//! exactly as long as the cache, or until [`stop`](LowerTier::stop) (shutdown) aborts
//! them: the writer ends when its queue's sender, owned by this tier, is dropped with the
//! engine (after draining what was queued), and the subscriber as soon as the engine is
//! dropped, through a channel closed by that drop, with no periodic wake-up while all is
//! quiet. A flush marker sent through the queue behind the writes comes back once they are
//! done; if the runtime is gone, so is the writer, and a flush says so. The subscription reconnects and resubscribes
//! by itself; only a first `SUBSCRIBE` (at start, or if a subscription ever ends for
//! good) is retried here, with jittered exponential back-off
//! ([`reliability_core::backoff`]).

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{BoxFuture, Either, select};
use reliability_core::error::ConfigError;
use reliability_core::health::CacheLevelSnapshot;
use reliability_core::redis::pubsub::{Event, Subscription};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::{FlightLock, LowerTier};
use crate::backend::redis::RedisTier;
use crate::backend::{EntryMeta, Invalidation, Stored, Tier, TierError};
use crate::codec::Codec;
use crate::engine::Engine;
use crate::error::TierFlushError;
use crate::handle::CacheStats;
use crate::metrics::facade::Invalidations;
use crate::metrics::read;
use reliability_core::backoff::Backoff;

/// Writes queued for Redis, at most.
const QUEUE: usize = 10_000;

/// First wait before subscribing again after a failed first subscription; it doubles.
const SUBSCRIBE_RETRY_FIRST: Duration = Duration::from_millis(100);

/// Longest wait between two attempts to subscribe.
const SUBSCRIBE_RETRY_MAX: Duration = Duration::from_secs(5);

enum Op {
    Set {
        key: String,
        entry: Stored<Bytes>,
        notify: bool,
    },
    Invalidate(Invalidation),
    /// Answered once everything queued before it is done.
    Flush(oneshot::Sender<()>),
}

/// The pub/sub counters.
#[derive(Debug, Default)]
struct Coherence {
    /// Invalidations received from other instances.
    messages: AtomicU64,
    /// Invalidations published for other instances.
    published: AtomicU64,
    /// Re-subscriptions (each flushed L1).
    resyncs: AtomicU64,
    exported: Invalidations,
}

impl Coherence {
    fn received(&self) {
        self.messages.fetch_add(1, Ordering::Relaxed);
        self.exported.received();
    }

    fn sent(&self) {
        self.published.fetch_add(1, Ordering::Relaxed);
        self.exported.sent();
    }
}

/// Redis as a cache's L2.
pub(crate) struct RedisL2<V> {
    tier: Arc<RedisTier>,
    codec: Arc<dyn Codec<V>>,
    queue: mpsc::Sender<Op>,
    queue_overflow: AtomicU64,
    /// Operations the writer carried out and that failed (SET, invalidation, publish).
    failed: Arc<AtomicU64>,
    /// Failures and overflows already reported by a flush.
    reported: AtomicU64,
    /// Set by `stop`: later writes are dropped and counted as overflow.
    stopped: std::sync::atomic::AtomicBool,
    /// The writer and subscriber tasks, until `stop` takes them.
    tasks: parking_lot::Mutex<Vec<JoinHandle<()>>>,
    coherence: Arc<Coherence>,
    /// Where the subscriber runs once the engine exists (the runtime the cache was built
    /// in).
    runtime: tokio::runtime::Handle,
    /// Never sent on: dropped with this tier, i.e. with the engine that solely owns it,
    /// which is what tells the subscriber to stop.
    cache_dropped: watch::Sender<()>,
}

impl<V: 'static> RedisL2<V> {
    /// The wiring, with its writer task started on the current tokio runtime.
    pub(crate) fn start(
        mut tier: RedisTier,
        codec: Arc<dyn Codec<V>>,
        source: &str,
    ) -> Result<Self, ConfigError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            ConfigError::new("l2", "a cache with L2 must be built inside a tokio runtime")
        })?;
        tier.bind(source);
        let tier = Arc::new(tier);
        let coherence = Arc::new(Coherence {
            exported: Invalidations::new(source),
            ..Coherence::default()
        });
        let (queue, rx) = mpsc::channel(QUEUE);
        let failed = Arc::new(AtomicU64::new(0));
        // Ends when the cache (the only sender) is dropped, or at `stop`.
        let writer = runtime.spawn(writer(tier.clone(), rx, coherence.clone(), failed.clone()));
        Ok(Self {
            tier,
            codec,
            queue,
            queue_overflow: AtomicU64::new(0),
            failed,
            reported: AtomicU64::new(0),
            stopped: std::sync::atomic::AtomicBool::new(false),
            tasks: parking_lot::Mutex::new(vec![writer]),
            coherence,
            runtime,
            cache_dropped: watch::Sender::new(()),
        })
    }

    /// The distributed single-flight lock on this tier, held at most `ttl`.
    pub(crate) fn lock(&self, ttl: Duration) -> RedisLock<V> {
        RedisLock {
            tier: self.tier.clone(),
            codec: self.codec.clone(),
            ttl,
        }
    }

    fn enqueue(&self, op: Op) {
        if self.stopped.load(Ordering::Acquire) || self.queue.try_send(op).is_err() {
            self.queue_overflow.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl<V: Clone + Send + Sync + 'static> LowerTier<V> for RedisL2<V> {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<Stored<V>>> {
        Box::pin(async move {
            let found = self.tier.get_blob(key).await.ok()??;
            let value = self.codec.decode(&found.value)?;
            Some(Stored {
                value,
                meta: found.meta,
            })
        })
    }

    fn write_behind(&self, key: &str, value: &V, meta: EntryMeta, explicit: bool) {
        if let Some(value) = self.codec.encode(value) {
            self.enqueue(Op::Set {
                key: key.to_owned(),
                entry: Stored { value, meta },
                notify: explicit,
            });
        }
    }

    fn write_now<'a>(&'a self, key: &'a str, value: &V, meta: EntryMeta) -> BoxFuture<'a, ()> {
        let encoded = self.codec.encode(value);
        Box::pin(async move {
            if let Some(value) = encoded {
                let _ = self.tier.set_blob(key, &Stored { value, meta }).await;
            }
        })
    }

    fn invalidate(&self, scope: &Invalidation) {
        self.enqueue(Op::Invalidate(scope.clone()));
    }

    fn attach(&self, engine: &Arc<Engine<V>>) {
        let task = self.runtime.spawn(subscriber(
            Arc::downgrade(engine),
            self.tier.clone(),
            self.coherence.clone(),
            self.cache_dropped.subscribe(),
        ));
        self.tasks.lock().push(task);
    }

    fn level(&self) -> &'static str {
        "l2"
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), TierFlushError>> {
        Box::pin(super::flush_behind(
            "l2",
            self.stopped.load(Ordering::Acquire),
            &self.queue,
            Op::Flush,
            || read(&self.failed) + read(&self.queue_overflow),
            &self.reported,
        ))
    }

    fn pending(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        self.stopped.store(true, Ordering::Release);
        let tasks = std::mem::take(&mut *self.tasks.lock());
        for task in &tasks {
            task.abort();
        }
        Box::pin(async move {
            for task in tasks {
                // Cancelled (or already ended, or its runtime is gone): it has stopped.
                let _ = task.await;
            }
        })
    }

    fn report(&self, s: &mut CacheStats) {
        let m = &self.tier.metrics;
        s.l2_hits = read(&m.hits);
        s.l2_misses = read(&m.misses);
        s.l2_errors = read(&m.errors);
        s.l2_queue_overflow = read(&self.queue_overflow);
        s.pubsub_messages = read(&self.coherence.messages);
        s.pubsub_published = read(&self.coherence.published);
        s.pubsub_resyncs = read(&self.coherence.resyncs);
    }

    fn snapshot(&self) -> CacheLevelSnapshot {
        self.tier.stats()
    }

    fn available(&self) -> Option<bool> {
        Some(self.tier.available())
    }
}

/// Distributed single-flight through a Redis lock per key.
pub(crate) struct RedisLock<V> {
    tier: Arc<RedisTier>,
    codec: Arc<dyn Codec<V>>,
    ttl: Duration,
}

impl<V: Clone + Send + Sync + 'static> FlightLock<V> for RedisLock<V> {
    fn ttl(&self) -> Duration {
        self.ttl
    }

    fn try_lock<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
    ) -> BoxFuture<'a, Result<bool, TierError>> {
        Box::pin(self.tier.try_lock(key, token, self.ttl))
    }

    fn is_locked<'a>(&'a self, key: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(self.tier.is_locked(key))
    }

    fn release<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
        answer: Option<(&V, EntryMeta)>,
    ) -> BoxFuture<'a, ()> {
        let answer = answer.and_then(|(value, meta)| {
            Some(Stored {
                value: self.codec.encode(value)?,
                meta,
            })
        });
        Box::pin(async move {
            if let Some(stored) = answer {
                let _ = self.tier.set_blob(key, &stored).await;
            }
            self.tier.unlock(key, token).await;
        })
    }
}

/// `<instance hex>|<kind>|<generation>|<payload>`; kinds `k` `p` `t` `a`.
fn message(instance: u64, scope: &Invalidation, generation: u64) -> String {
    let (kind, payload) = match scope {
        Invalidation::Key(k) => ('k', k.as_str()),
        Invalidation::Prefix(p) => ('p', p.as_str()),
        Invalidation::Tag(t) => ('t', t.as_str()),
        Invalidation::All => ('a', ""),
    };
    format!("{instance:x}|{kind}|{generation}|{payload}")
}

fn parse(msg: &str) -> Option<(u64, Invalidation, u64)> {
    let mut parts = msg.splitn(4, '|');
    let instance = u64::from_str_radix(parts.next()?, 16).ok()?;
    let kind = parts.next()?;
    let generation = parts.next()?.parse().ok()?;
    let payload = parts.next()?.to_owned();
    let scope = match kind {
        "k" => Invalidation::Key(payload),
        "p" => Invalidation::Prefix(payload),
        "t" => Invalidation::Tag(payload),
        "a" => Invalidation::All,
        _ => return None,
    };
    Some((instance, scope, generation))
}

/// Drains the write queue into Redis until the cache is dropped.
/// Counts each failed operation in `failed` (the tier counts its own errors too); answers
/// flush markers in queue order.
async fn writer(
    tier: Arc<RedisTier>,
    mut rx: mpsc::Receiver<Op>,
    coherence: Arc<Coherence>,
    failed: Arc<AtomicU64>,
) {
    let fail = || {
        failed.fetch_add(1, Ordering::Relaxed);
    };
    while let Some(op) = rx.recv().await {
        let msg = match op {
            Op::Set { key, entry, notify } => {
                if tier.set_blob(&key, &entry).await.is_err() {
                    fail();
                    continue;
                }
                if !notify {
                    continue;
                }
                message(tier.instance, &Invalidation::Key(key), tier.generation())
            }
            Op::Invalidate(scope) => {
                let Ok(generation) = tier.apply(&scope).await else {
                    fail();
                    continue;
                };
                let g = generation.unwrap_or_else(|| tier.generation());
                message(tier.instance, &scope, g)
            }
            Op::Flush(done) => {
                let _ = done.send(());
                continue;
            }
        };
        if tier.publish(&msg).await.is_ok() {
            coherence.sent();
        } else {
            fail();
        }
    }
}

/// `f`, unless the cache is dropped first (`None`).
async fn unless_dropped<F: Future>(
    cache_dropped: &mut watch::Receiver<()>,
    f: F,
) -> Option<F::Output> {
    // Nothing is ever sent: `changed` completes only when the sender is dropped.
    match select(pin!(f), pin!(cache_dropped.changed())).await {
        Either::Left((out, _)) => Some(out),
        Either::Right(_) => None,
    }
}

/// Subscribes to the invalidation channel, retrying with jittered exponential back-off
/// while Redis is out of reach. Also says whether it was *late*: an attempt failed, or
/// took longer than a connect should (the connection's own retries hid an outage), so
/// the cache ran without invalidations for a while. `None` once the cache is dropped.
async fn subscribe(
    tier: &RedisTier,
    channel: &str,
    cache_dropped: &mut watch::Receiver<()>,
) -> Option<(Subscription, bool)> {
    let mut backoff = Backoff::new(SUBSCRIBE_RETRY_FIRST, SUBSCRIBE_RETRY_MAX);
    let mut failures = 0_u32;
    let started = std::time::Instant::now();
    loop {
        match unless_dropped(cache_dropped, tier.config().subscribe(&[channel])).await? {
            Ok(subscription) => {
                if failures > 0 {
                    tracing::info!(source = %tier.source(), channel, failures, "cache invalidations subscribed");
                }
                let late = failures > 0 || started.elapsed() > tier.config().connect_timeout;
                return Some((subscription, late));
            }
            Err(error) => {
                failures += 1;
                let delay = backoff.next_delay(rand::random());
                if failures == 1 {
                    tracing::warn!(source = %tier.source(), channel, %error, ?delay, "cannot subscribe to cache invalidations: retrying");
                } else {
                    tracing::debug!(source = %tier.source(), channel, %error, ?delay, failures, "still cannot subscribe to cache invalidations");
                }
                unless_dropped(cache_dropped, tokio::time::sleep(delay)).await?;
            }
        }
    }
}

/// Listens for other instances' invalidations until the cache is dropped; flushes L1 on
/// every re-subscription (messages may have been lost meanwhile).
async fn subscriber<V: Clone + Send + Sync + 'static>(
    engine: Weak<Engine<V>>,
    tier: Arc<RedisTier>,
    coherence: Arc<Coherence>,
    mut cache_dropped: watch::Receiver<()>,
) {
    let channel = tier.channel();
    // Whether the next subscription follows a gap in which messages may have been lost:
    // true after any subscription (a later one is a resubscription), and after a late
    // first one (the cache ran, and filled L1, unsubscribed). The few milliseconds of a
    // prompt first subscription are not a gap worth flushing a fresh cache for.
    let mut after_gap = false;
    loop {
        let Some((mut events, late)) = subscribe(&tier, &channel, &mut cache_dropped).await else {
            return;
        };
        after_gap |= late;
        loop {
            let Some(event) = unless_dropped(&mut cache_dropped, events.next()).await else {
                return;
            };
            match event {
                Some(Event::Message { payload, .. }) => {
                    let Some((from, scope, generation)) =
                        std::str::from_utf8(&payload).ok().and_then(parse)
                    else {
                        continue;
                    };
                    tier.set_generation(generation);
                    if from == tier.instance {
                        continue;
                    }
                    let Some(engine) = engine.upgrade() else {
                        return;
                    };
                    coherence.received();
                    engine.invalidate_local(&scope);
                }
                Some(Event::Subscribed) => {
                    // Before the engine is upgraded: a cache dropped meanwhile is not
                    // kept alive by this task for a Redis round trip.
                    tier.refresh_generation().await;
                    let Some(engine) = engine.upgrade() else {
                        return;
                    };
                    if after_gap {
                        coherence.resyncs.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(cache = %engine.settings.name, "pub/sub resubscribed: flushing L1");
                        engine.invalidate_local(&Invalidation::All);
                    }
                    after_gap = true;
                }
                Some(Event::Lost) => {
                    tracing::warn!(source = %tier.source(), channel, "pub/sub connection lost: L1 will be flushed on resubscription");
                }
                None => {
                    // Gone for good (not a reconnect, which `Subscription` does itself).
                    tracing::warn!(source = %tier.source(), channel, "pub/sub subscription ended: subscribing again");
                    // A pause, so that a subscription ending at once cannot spin this loop.
                    unless_dropped(
                        &mut cache_dropped,
                        tokio::time::sleep(SUBSCRIBE_RETRY_FIRST),
                    )
                    .await;
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_with_hostile_payloads() {
        for scope in [
            Invalidation::Key("a|b|c\n{x}".into()),
            Invalidation::Prefix("".into()),
            Invalidation::Tag("t".into()),
            Invalidation::All,
        ] {
            let m = message(0xabc, &scope, 7);
            assert_eq!(parse(&m), Some((0xabc, scope, 7)));
        }
        assert_eq!(parse("zz|k|1|x"), None);
        assert_eq!(parse("1|q|1|x"), None);
    }
}
