//! L2 wiring: read-through on L1 misses, write-behind through a bounded queue, and
//! cross-instance invalidation over Redis pub/sub.
//!
//! **Writes** (stores after upstream calls, explicit writes, invalidations) go to Redis
//! from one background task through a bounded queue: the caller never waits for Redis,
//! and when the queue is full the write is dropped and counted (`l2_queue_overflow`), never
//! blocking. Order is kept: an explicit write's `SET` precedes its eviction notice.
//!
//! **Distributed single-flight** (opt-in): after an L2 miss, the instance takes the key's
//! lock in Redis (`SET NX PX` with a random token). The holder calls upstream, writes L2
//! before answering, and releases the lock by compare-and-delete. Other instances poll L2
//! for the value while the lock exists, at most the lock's TTL; a crashed holder therefore
//! blocks nobody beyond that TTL, after which the waiter calls upstream itself.
//!
//! **Coherence**: explicit writes and invalidations are published on
//! `<prefix>:cache:invalidate`; every other instance evicts the matching L1 entries (and
//! reads the new value from L2 on its next miss). Pub/sub is fire-and-forget, so messages
//! published while an instance is disconnected are lost to it: when its subscription comes
//! back, the instance **flushes its whole L1** and re-reads the generation, so it can only
//! serve what L2 holds now. On a cluster, classic `PUBLISH` reaches every node's
//! subscribers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::backend::memory::Entry;
use crate::backend::redis::RedisTier;
use crate::backend::{Invalidation, Stored};
use crate::codec::Codec;
use crate::engine::Engine;

/// Writes queued for Redis, at most.
pub(crate) const QUEUE: usize = 10_000;

pub(crate) enum Op {
    Set {
        key: String,
        entry: Stored<Bytes>,
        notify: bool,
    },
    Invalidate(Invalidation),
}

pub(crate) struct Lower<V> {
    pub(crate) tier: Arc<RedisTier>,
    pub(crate) codec: Arc<dyn Codec<V>>,
    queue: mpsc::Sender<Op>,
    pub(crate) queue_overflow: AtomicU64,
    pub(crate) resyncs: AtomicU64,
    pub(crate) messages: AtomicU64,
    /// Distributed single-flight: how long a lock holder may take.
    pub(crate) lock_ttl: Option<Duration>,
    pub(crate) lock_waits: AtomicU64,
}

impl<V: 'static> Lower<V> {
    pub(crate) fn new(
        tier: Arc<RedisTier>,
        codec: Arc<dyn Codec<V>>,
        lock_ttl: Option<Duration>,
    ) -> (Self, mpsc::Receiver<Op>) {
        let (queue, rx) = mpsc::channel(QUEUE);
        (
            Self {
                tier,
                codec,
                queue,
                queue_overflow: AtomicU64::new(0),
                resyncs: AtomicU64::new(0),
                messages: AtomicU64::new(0),
                lock_ttl,
                lock_waits: AtomicU64::new(0),
            },
            rx,
        )
    }

    pub(crate) fn enqueue(&self, op: Op) {
        if self.queue.try_send(op).is_err() {
            self.queue_overflow.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues the write of an L1 entry (when the codec accepts the value).
    pub(crate) fn write(
        &self,
        key: &str,
        entry: &Entry<V>,
        meta: crate::backend::EntryMeta,
        notify: bool,
    ) {
        if !entry.shared {
            return;
        }
        if let Some(value) = self.codec.encode(&entry.value) {
            self.enqueue(Op::Set {
                key: key.to_owned(),
                entry: Stored { value, meta },
                notify,
            });
        }
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
pub(crate) async fn writer(tier: Arc<RedisTier>, mut rx: mpsc::Receiver<Op>) {
    while let Some(op) = rx.recv().await {
        match op {
            Op::Set { key, entry, notify } => {
                if tier.set_blob(&key, &entry).await.is_ok() && notify {
                    let msg = message(tier.instance, &Invalidation::Key(key), tier.generation());
                    let _ = tier.publish(&msg).await;
                }
            }
            Op::Invalidate(scope) => {
                if let Ok(generation) = tier.apply(&scope).await {
                    let g = generation.unwrap_or_else(|| tier.generation());
                    let _ = tier.publish(&message(tier.instance, &scope, g)).await;
                }
            }
        }
    }
}

/// Listens for other instances' invalidations until the cache is dropped; flushes L1 on
/// every re-subscription (messages may have been lost meanwhile).
pub(crate) async fn subscriber<V: Clone + Send + Sync + 'static>(
    engine: Weak<Engine<V>>,
    tier: Arc<RedisTier>,
) {
    let mut first = true;
    loop {
        if engine.strong_count() == 0 {
            return;
        }
        let subscribed = async {
            let client = tier.config().client().ok()?;
            let mut pubsub =
                tokio::time::timeout(Duration::from_secs(1), client.get_async_pubsub())
                    .await
                    .ok()?
                    .ok()?;
            pubsub.subscribe(tier.channel()).await.ok()?;
            Some(pubsub)
        }
        .await;
        let Some(pubsub) = subscribed else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        {
            let Some(engine) = engine.upgrade() else {
                return;
            };
            let lower = engine.lower.as_ref().expect("subscriber runs with L2");
            tier.refresh_generation().await;
            if !first {
                lower.resyncs.fetch_add(1, Ordering::Relaxed);
                tracing::info!(cache = %engine.settings.name, "pub/sub reconnected: flushing L1");
                engine.invalidate_local(&Invalidation::All);
            }
        }
        first = false;
        let mut messages = pubsub.into_on_message();
        loop {
            // Wakes up every second to notice a dropped cache even when all is quiet.
            let msg = match tokio::time::timeout(Duration::from_secs(1), messages.next()).await {
                Err(_) if engine.strong_count() == 0 => return,
                Err(_) => continue,
                Ok(None) => break,
                Ok(Some(msg)) => msg,
            };
            let Some(engine) = engine.upgrade() else {
                return;
            };
            let Ok(text) = msg.get_payload::<String>() else {
                continue;
            };
            let Some((from, scope, generation)) = parse(&text) else {
                continue;
            };
            tier.set_generation(generation);
            if from == tier.instance {
                continue;
            }
            if let Some(lower) = &engine.lower {
                lower.messages.fetch_add(1, Ordering::Relaxed);
            }
            engine.invalidate_local(&scope);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
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
