//! Local batching: lease units from a shared backend in chunks to cut round trips (see
//! [`Leased`]).

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_utils::CachePadded;
use parking_lot::Mutex;
use reliability_core::clock::{Instant, SharedClock, default_clock};
use reliability_core::error::ConfigError;

use super::{Backend, Pending};
use crate::quota::{Decision, Mode, Quota};

const SHARDS: usize = 16;
/// Most leases held per shard; expired ones are swept first, then new leases are skipped.
const MAX_LEASES_PER_SHARD: usize = 4096;
/// Chunks a process may hold per key at once (the 4 of the bound in [`Leased`]'s docs).
const MAX_HELD_CHUNKS: u64 = 4;

type LeaseMap = Mutex<HashMap<Box<str>, Lease>>;

#[derive(Debug, Clone, Copy)]
struct Lease {
    remaining: u64,
    expires: Instant,
    quota: Quota,
    decision: Decision,
}

/// Local batching: a backend that leases units from `B` in chunks to cut round trips.
///
/// `Leased` wraps any backend (normally `RedisBackend`). A request of cost `c` for a key
/// without a live lease asks the shared backend for `lease` units at once; when granted, the
/// process keeps `lease − c` units for that key for up to `lease_ttl` and admits later
/// requests from them without a round trip. When the chunk is refused, the request asks for
/// what is left (at least its own cost); when that is refused too, the refusal is remembered
/// until its `retry_after` (at most `lease_ttl`): a refusal stays true until then, because
/// other processes can only consume more.
///
/// Concurrent requests that miss the lease at the same time each fetch a chunk; the chunks
/// are merged, and a process holds at most `4 × (lease − 1)` units per key (the rest are
/// dropped: an under-admission, never an over-admission).
///
/// **Over-admission bound.** Units are counted in the shared store when leased, before they
/// are spent. Over any interval, the units actually admitted across all processes are at most
/// what the quota admits (its GCRA/sliding-window bound) **plus `P × 4 × (lease − 1)`** for
/// `P` processes: the units that may be held unspent when the interval starts. Unspent units
/// are dropped when the lease expires (under-admission). With `lease = 10`, the shared store
/// sees about a tenth of the decisions below the limit.
#[derive(Debug)]
pub struct Leased<B> {
    inner: Arc<Inner<B>>,
}

impl<B> Clone for Leased<B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

#[derive(Debug)]
struct Inner<B> {
    backend: B,
    lease: u64,
    ttl: Duration,
    clock: SharedClock,
    hasher: RandomState,
    shards: Box<[CachePadded<LeaseMap>]>,
    local: AtomicU64,
}

impl<B: Backend> Leased<B> {
    /// Leases `lease` units (2 to 10,000) per round trip, kept at most `lease_ttl`
    /// (1 ms to 60 s).
    pub fn new(backend: B, lease: u64, lease_ttl: Duration) -> Result<Self, ConfigError> {
        Self::with_clock(backend, lease, lease_ttl, default_clock())
    }

    /// As [`Leased::new`] with an injected clock for lease expiry.
    pub fn with_clock(
        backend: B,
        lease: u64,
        lease_ttl: Duration,
        clock: SharedClock,
    ) -> Result<Self, ConfigError> {
        if !(2..=10_000).contains(&lease) {
            return Err(ConfigError::out_of_range("lease", "[2, 10000]", lease));
        }
        if lease_ttl < Duration::from_millis(1) || lease_ttl > Duration::from_secs(60) {
            return Err(ConfigError::out_of_range(
                "lease_ttl",
                "[1ms, 60s]",
                format!("{lease_ttl:?}"),
            ));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                backend,
                lease,
                ttl: lease_ttl,
                clock,
                hasher: RandomState::new(),
                shards: (0..SHARDS)
                    .map(|_| CachePadded::new(Mutex::new(HashMap::new())))
                    .collect(),
                local: AtomicU64::new(0),
            }),
        })
    }

    /// Decisions answered from a lease, without a round trip.
    pub fn local_decisions(&self) -> u64 {
        self.inner.local.load(Ordering::Relaxed)
    }

    /// The wrapped backend.
    pub fn get_ref(&self) -> &B {
        &self.inner.backend
    }

    fn shard(&self, key: &str) -> &LeaseMap {
        &self.inner.shards[self.inner.hasher.hash_one(key) as usize % SHARDS]
    }

    fn store(&self, key: &str, mut lease: Lease) {
        let mut map = self.shard(key).lock();
        if let Some(held) = map.get_mut(key)
            && lease.decision.allowed
            && held.decision.allowed
            && held.quota == lease.quota
            && held.expires > self.inner.clock.now()
        {
            let cap = MAX_HELD_CHUNKS * (self.inner.lease - 1);
            held.remaining = (held.remaining + lease.remaining).min(cap);
            held.expires = held.expires.min(lease.expires);
            return;
        }
        lease.remaining = lease
            .remaining
            .min(MAX_HELD_CHUNKS * (self.inner.lease - 1));
        if map.len() >= MAX_LEASES_PER_SHARD {
            let now = self.inner.clock.now();
            map.retain(|_, l| l.expires > now);
        }
        if map.len() < MAX_LEASES_PER_SHARD {
            map.insert(key.into(), lease);
        }
    }
}

impl<B: Backend> Backend for Leased<B> {
    fn decide(&self, key: &str, quota: &Quota, cost: u64, mode: Mode) -> Pending<Decision> {
        let inner = &self.inner;
        // Chunks never exceed any window's capacity, or they could never be granted.
        let chunk = quota
            .windows()
            .iter()
            .map(|w| w.burst().min(w.limit()))
            .min()
            .unwrap_or(1)
            .min(inner.lease);
        if mode == Mode::Peek || cost >= chunk {
            return inner.backend.decide(key, quota, cost, mode);
        }
        let now = inner.clock.now();
        {
            let mut map = self.shard(key).lock();
            if let Some(l) = map.get_mut(key) {
                if l.expires > now && l.quota == *quota {
                    if !l.decision.allowed {
                        inner.local.fetch_add(1, Ordering::Relaxed);
                        return Pending::ready(Ok(l.decision));
                    }
                    if l.remaining >= cost {
                        l.remaining -= cost;
                        inner.local.fetch_add(1, Ordering::Relaxed);
                        return Pending::ready(Ok(l.decision));
                    }
                } else {
                    map.remove(key);
                }
            }
        }
        let this = self.clone();
        let quota = *quota;
        let key: Box<str> = key.into();
        Pending::Remote(Box::pin(async move {
            let inner = &this.inner;
            let first = inner
                .backend
                .decide(&key, &quota, chunk, Mode::Consume)
                .await?;
            let (asked, decision) = if first.allowed {
                (chunk, first)
            } else {
                let left = first
                    .windows()
                    .iter()
                    .map(|w| w.remaining)
                    .min()
                    .unwrap_or(0);
                let asked = left.min(chunk).max(cost);
                (
                    asked,
                    inner
                        .backend
                        .decide(&key, &quota, asked, Mode::Consume)
                        .await?,
                )
            };
            let now = inner.clock.now();
            let (remaining, keep_for) = if decision.allowed {
                (asked - cost, inner.ttl)
            } else {
                (
                    0,
                    Duration::from_micros(decision.retry_after).min(inner.ttl),
                )
            };
            this.store(
                &key,
                Lease {
                    remaining,
                    expires: now + keep_for,
                    quota,
                    decision,
                },
            );
            Ok(decision)
        }))
    }

    fn reset(&self, key: &str, quota: &Quota) -> Pending<()> {
        self.shard(key).lock().remove(key);
        self.inner.backend.reset(key, quota)
    }

    fn refund(&self, key: &str, quota: &Quota, units: u64) -> Pending<()> {
        self.inner.backend.refund(key, quota, units)
    }

    /// Gives every unspent unit of every live lease back to the shared backend (one refund
    /// round trip per key held) and forgets the leases; then releases what the shared
    /// backend itself holds. For a shutdown: the fleet gets the units this process took and
    /// will not spend. The first failure is reported after every key was tried.
    fn release(&self) -> Pending<()> {
        let now = self.inner.clock.now();
        let mut held = Vec::new();
        for shard in self.inner.shards.iter() {
            held.extend(
                shard
                    .lock()
                    .drain()
                    .filter(|(_, l)| l.decision.allowed && l.remaining > 0 && l.expires > now)
                    .map(|(key, l)| (key, l.quota, l.remaining)),
            );
        }
        let this = self.clone();
        Pending::Remote(Box::pin(async move {
            let mut result = Ok(());
            for (key, quota, units) in held {
                if let Err(e) = this.inner.backend.refund(&key, &quota, units).await
                    && result.is_ok()
                {
                    result = Err(e);
                }
            }
            let released = this.inner.backend.release().await;
            result.and(released)
        }))
    }

    fn name(&self) -> &'static str {
        self.inner.backend.name()
    }

    fn control(&self) -> Option<Arc<dyn crate::control::ControlStore>> {
        self.inner.backend.control()
    }

    fn tracked_keys(&self) -> u64 {
        self.inner.backend.tracked_keys()
            + self
                .inner
                .shards
                .iter()
                .map(|s| s.lock().len() as u64)
                .sum::<u64>()
    }

    fn fallback_active(&self) -> bool {
        self.inner.backend.fallback_active()
    }

    fn unavailable(&self) -> bool {
        self.inner.backend.unavailable()
    }

    fn attach(&self, limiter: &str) {
        self.inner.backend.attach(limiter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemoryBackend;
    use reliability_core::clock::ManualClock;

    #[tokio::test]
    async fn released_leases_give_their_unspent_units_back() {
        let clock = ManualClock::new();
        let shared = MemoryBackend::builder()
            .clock(clock.shared())
            .build()
            .unwrap();
        let quota = Quota::per(20, Duration::from_secs(60)).unwrap();
        let leased =
            Leased::with_clock(shared.clone(), 10, Duration::from_secs(5), clock.shared()).unwrap();
        // One request leases 10 and spends 1; another key spends 3 of its 10.
        assert!(
            leased
                .decide("a", &quota, 1, Mode::Consume)
                .await
                .unwrap()
                .allowed
        );
        for _ in 0..3 {
            assert!(
                leased
                    .decide("b", &quota, 1, Mode::Consume)
                    .await
                    .unwrap()
                    .allowed
            );
        }
        // What a peek of one unit would leave: one less than what is free.
        let left =
            |key: &str| shared.decide_now(key, &quota, 1, Mode::Peek).windows()[0].remaining + 1;
        assert_eq!(
            (left("a"), left("b")),
            (10, 10),
            "a chunk of 10 taken for each"
        );
        leased.release().await.unwrap();
        assert_eq!(
            (left("a"), left("b")),
            (19, 17),
            "only what was spent stays taken"
        );
        // Nothing is held any more: a second release gives nothing back.
        leased.release().await.unwrap();
        assert_eq!((left("a"), left("b")), (19, 17));
        // An expired lease is not given back (its units may be spent elsewhere by now).
        assert!(
            leased
                .decide("c", &quota, 1, Mode::Consume)
                .await
                .unwrap()
                .allowed
        );
        clock.advance(Duration::from_secs(6));
        leased.release().await.unwrap();
        // 10 free after the chunk, 2 more regained in 6 s (one per 3 s), none refunded.
        assert_eq!(left("c"), 12);
    }

    #[tokio::test]
    async fn leases_cut_round_trips_and_respect_the_bound() {
        let clock = ManualClock::new();
        let shared = MemoryBackend::builder()
            .clock(clock.shared())
            .build()
            .unwrap();
        let leased =
            Leased::with_clock(shared, 10, Duration::from_millis(100), clock.shared()).unwrap();
        let quota = Quota::per(25, Duration::from_secs(1)).unwrap();
        let mut admitted = 0;
        for _ in 0..100 {
            if leased
                .decide("k", &quota, 1, Mode::Consume)
                .await
                .unwrap()
                .allowed
            {
                admitted += 1;
            }
        }
        // 25 units: two chunks of 10, then the remaining 5 one by one.
        assert_eq!(admitted, 25);
        assert!(leased.local_decisions() >= 18);
        assert!(Leased::new(MemoryBackend::new(), 1, Duration::from_secs(1)).is_err());
        assert!(Leased::new(MemoryBackend::new(), 2, Duration::ZERO).is_err());
    }
}
