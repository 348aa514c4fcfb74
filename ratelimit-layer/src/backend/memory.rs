//! The in-process backend: sharded maps, bounded memory, idle keys reclaimed (see
//! [`MemoryBackend`]).

use std::hash::BuildHasher;

use foldhash::quality::RandomState;
use hashbrown::HashTable;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_utils::CachePadded;
use parking_lot::Mutex;
use reliability_core::clock::{SharedClock, Ticker, default_clock};
use reliability_core::error::ConfigError;

use super::{Backend, Pending};
use crate::key::stored_key;
use crate::quota::{Cell, Decision, MAX_WINDOWS, Mode, Quota, decide, idle_after, refund};

const SHARDS: usize = 64;
const EVICTION_SAMPLE: usize = 4;

#[derive(Debug)]
struct Slot {
    /// The key's hash, kept so that growing the table never hashes again.
    hash: u64,
    key: Box<str>,
    entry: Entry,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    cells: [Cell; MAX_WINDOWS],
    layout: u64,
    idle_after: u64,
}

#[derive(Debug, Default)]
struct Shard {
    map: HashTable<Slot>,
    /// Hashes in insertion order: eviction candidates come from the front, so choosing one
    /// costs O(1) (stale hashes of swept keys are skipped; the queue is rebuilt when it
    /// grows past twice the table).
    order: std::collections::VecDeque<u64>,
    swept_len: usize,
    next_sweep: u64,
    last_sweep: u64,
    key_bytes: usize,
}

/// The in-process backend: sharded maps, bounded memory, idle keys reclaimed. Cheap to
/// clone (one `Arc`).
///
/// Keys are spread over 64 shards, each behind its own mutex held for one map lookup and
/// one [`decide`](crate::quota::decide()): there is no global lock. A key is *idle* once its
/// state equals a fresh key's (GCRA: TAT in the past; sliding window: two periods without
/// traffic); forgetting it then changes no decision, so idle keys are dropped by a sweep
/// that runs when a shard doubles in size, once per `sweep_interval`, at the cap, and on
/// [`MemoryBackend::purge_idle`].
///
/// **Bound.** At most `max_keys` keys are held, each in at most
/// [`MemoryBackend::BYTES_PER_KEY`] plus 258 bytes of key text (longer keys are stored as a
/// digest). When a shard is full of keys that are all still active, the key closest to idle
/// among the shard's 4 oldest is evicted (it restarts fresh, a bounded over-admission that
/// is counted in [`MemoryBackend::evicted`]).
#[derive(Debug, Clone)]
pub struct MemoryBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shards: Box<[CachePadded<Mutex<Shard>>]>,
    hasher: RandomState,
    /// The injected clock, or the CPU's time-stamp counter after
    /// [`MemoryBackendBuilder::system_clock`].
    ticker: Ticker,
    base_wall: u64,
    shard_cap: usize,
    sweep_interval: u64,
    evicted: AtomicU64,
}

/// Builder of [`MemoryBackend`].
#[derive(Debug, Clone)]
#[must_use]
pub struct MemoryBackendBuilder {
    max_keys: usize,
    sweep_interval: Duration,
    clock: Option<SharedClock>,
    system_clock: bool,
}

impl Default for MemoryBackendBuilder {
    fn default() -> Self {
        Self {
            max_keys: 1_000_000,
            sweep_interval: Duration::from_secs(1),
            clock: None,
            system_clock: false,
        }
    }
}

impl MemoryBackendBuilder {
    /// Most keys held at once (default 1,000,000, at least 64).
    pub fn max_keys(mut self, n: usize) -> Self {
        self.max_keys = n;
        self
    }
    /// How often each shard drops idle keys while it is used (default 1 s).
    pub fn sweep_interval(mut self, d: Duration) -> Self {
        self.sweep_interval = d;
        self
    }
    /// The clock (default: tokio's, which follows `tokio::time::pause`).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self.system_clock = false;
        self
    }
    /// Reads the CPU's time-stamp counter (`quanta`, calibrated against the OS clock): much
    /// cheaper per decision than tokio's clock on machines where `clock_gettime` is slow, but
    /// deaf to `tokio::time::pause` (for production, not for paused-time tests).
    pub fn system_clock(mut self) -> Self {
        self.clock = None;
        self.system_clock = true;
        self
    }
    /// Validates and builds.
    pub fn build(self) -> Result<MemoryBackend, ConfigError> {
        if self.max_keys < SHARDS || self.max_keys > 1 << 40 {
            return Err(ConfigError::out_of_range(
                "max_keys",
                "[64, 2^40]",
                self.max_keys,
            ));
        }
        if self.sweep_interval.is_zero() || self.sweep_interval > Duration::from_secs(3600) {
            return Err(ConfigError::out_of_range(
                "sweep_interval",
                "(0s, 1h]",
                format!("{:?}", self.sweep_interval),
            ));
        }
        let clock = self.clock.unwrap_or_else(default_clock);
        let base_wall = clock
            .wall()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        Ok(MemoryBackend {
            inner: Arc::new(Inner {
                shards: (0..SHARDS)
                    .map(|_| CachePadded::new(Mutex::new(Shard::default())))
                    .collect(),
                hasher: RandomState::default(),
                ticker: Ticker::new((!self.system_clock).then_some(clock)),
                base_wall,
                shard_cap: self.max_keys.div_ceil(SHARDS),
                sweep_interval: self.sweep_interval.as_micros() as u64,
                evicted: AtomicU64::new(0),
            }),
        })
    }
}

/// The shard of a hash: middle bits, because the table itself uses the low bits (bucket)
/// and the top 7 bits (tag) of the same hash.
fn shard_of(hash: u64) -> usize {
    (hash >> 32) as usize % SHARDS
}

impl MemoryBackend {
    /// Approximate bytes held per key besides the key text (entry, map slot, box).
    pub const BYTES_PER_KEY: usize = std::mem::size_of::<Slot>() + 1 + 8;

    /// A backend with defaults (1,000,000 keys, tokio clock).
    pub fn new() -> Self {
        Self::builder().build().expect("defaults are valid")
    }

    /// A builder.
    pub fn builder() -> MemoryBackendBuilder {
        MemoryBackendBuilder::default()
    }

    /// Microseconds since the Unix epoch, by the injected clock.
    pub fn now_micros(&self) -> u64 {
        let i = &self.inner;
        i.base_wall + i.ticker.now_ns() / 1_000
    }

    /// Keys evicted while still active because the cap was reached.
    pub fn evicted(&self) -> u64 {
        self.inner.evicted.load(Ordering::Relaxed)
    }

    /// Approximate bytes held by keys and their state.
    pub fn approx_bytes(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| {
                let s = s.lock();
                s.map.capacity() * Self::BYTES_PER_KEY + s.order.capacity() * 8 + s.key_bytes
            })
            .sum()
    }

    /// Drops every idle key now; returns how many were dropped.
    pub fn purge_idle(&self) -> usize {
        let now = self.now_micros();
        self.inner
            .shards
            .iter()
            .map(|s| sweep(&mut s.lock(), now))
            .sum()
    }

    /// Decides synchronously (what [`Backend::decide`] returns, without the wrapper).
    pub fn decide_now(&self, key: &str, quota: &Quota, cost: u64, mode: Mode) -> Decision {
        let key = &*stored_key(key);
        let now = self.now_micros();
        let inner = &*self.inner;
        let hash = inner.hasher.hash_one(key);
        let mut shard = inner.shards[shard_of(hash)].lock();
        let layout = quota.layout();
        if now >= shard.next_sweep {
            shard.next_sweep = now + inner.sweep_interval;
            sweep(&mut shard, now);
        }
        if let Some(slot) = shard.map.find_mut(hash, |s| &*s.key == key) {
            let entry = &mut slot.entry;
            if entry.layout != layout {
                entry.cells = [Cell::default(); MAX_WINDOWS];
                entry.layout = layout;
            }
            let decision = decide(quota, &mut entry.cells, now, cost, mode);
            if decision.allowed && mode == Mode::Consume {
                entry.idle_after = idle_after(quota, &entry.cells);
            }
            return decision;
        }
        let mut cells = [Cell::default(); MAX_WINDOWS];
        let decision = decide(quota, &mut cells, now, cost, mode);
        if decision.allowed && mode == Mode::Consume {
            make_room(
                &mut shard,
                now,
                inner.shard_cap,
                inner.sweep_interval,
                &inner.evicted,
            );
            shard.key_bytes += key.len();
            let entry = Entry {
                cells,
                layout,
                idle_after: idle_after(quota, &cells),
            };
            shard.map.insert_unique(
                hash,
                Slot {
                    hash,
                    key: key.into(),
                    entry,
                },
                |s| s.hash,
            );
            shard.order.push_back(hash);
        }
        decision
    }

    /// Gives back `units` of `quota` that `key` consumed and did not spend (see
    /// [`quota::refund`](crate::quota::refund)); nothing for a key not held.
    pub fn refund_now(&self, key: &str, quota: &Quota, units: u64) {
        let key = &*stored_key(key);
        let now = self.now_micros();
        let hash = self.inner.hasher.hash_one(key);
        let mut shard = self.inner.shards[shard_of(hash)].lock();
        if let Some(slot) = shard.map.find_mut(hash, |s| &*s.key == key)
            && slot.entry.layout == quota.layout()
        {
            refund(quota, &mut slot.entry.cells, now, units);
        }
    }

    /// Forgets `key` (it starts fresh).
    pub fn forget(&self, key: &str) {
        let key = &*stored_key(key);
        let hash = self.inner.hasher.hash_one(key);
        let mut shard = self.inner.shards[shard_of(hash)].lock();
        if let Ok(found) = shard.map.find_entry(hash, |s| &*s.key == key) {
            found.remove();
            shard.key_bytes -= key.len();
        }
    }
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

fn sweep(shard: &mut Shard, now: u64) -> usize {
    let before = shard.map.len();
    let mut freed = 0;
    shard.map.retain(|s| {
        let keep = s.entry.idle_after > now;
        if !keep {
            freed += s.key.len();
        }
        keep
    });
    shard.key_bytes -= freed;
    if shard.map.len() * 4 < shard.map.capacity() {
        shard.map.shrink_to_fit(|s| s.hash);
    }
    if shard.map.is_empty() || shard.order.len() > 2 * shard.map.len() + 64 {
        shard.order = shard.map.iter().map(|s| s.hash).collect();
    }
    shard.swept_len = shard.map.len();
    shard.last_sweep = now;
    before - shard.map.len()
}

fn make_room(shard: &mut Shard, now: u64, cap: usize, sweep_interval: u64, evicted: &AtomicU64) {
    let len = shard.map.len();
    // Sweeps cost O(shard): run them when the shard doubled, or at the cap at most 16
    // times per sweep interval, so a flood of new keys costs O(1) amortised per key.
    let at_cap = len >= cap && now >= shard.last_sweep + sweep_interval / 16;
    if at_cap || (len < cap && len >= 2 * shard.swept_len.max(32)) {
        sweep(shard, now);
    }
    if shard.map.len() >= cap {
        evict_one(shard, evicted);
    }
    if shard.order.len() > 2 * shard.map.len() + 64 {
        shard.order = shard.map.iter().map(|s| s.hash).collect();
    }
}

/// Evicts the key closest to idle among the oldest few still present.
fn evict_one(shard: &mut Shard, evicted: &AtomicU64) {
    let mut best: Option<(u64, u64)> = None;
    let mut looked = 0;
    while looked < EVICTION_SAMPLE {
        let Some(hash) = shard.order.pop_front() else {
            break;
        };
        let Some(slot) = shard.map.find(hash, |s| s.hash == hash) else {
            continue;
        };
        looked += 1;
        let idle = slot.entry.idle_after;
        match best {
            Some((_, b)) if b <= idle => shard.order.push_back(hash),
            _ => {
                if let Some((h, _)) = best.replace((hash, idle)) {
                    shard.order.push_back(h);
                }
            }
        }
    }
    if let Some((hash, _)) = best
        && let Ok(found) = shard.map.find_entry(hash, |s| s.hash == hash)
    {
        let (slot, _) = found.remove();
        shard.key_bytes -= slot.key.len();
        evicted.fetch_add(1, Ordering::Relaxed);
    }
}

impl Backend for MemoryBackend {
    fn decide(&self, key: &str, quota: &Quota, cost: u64, mode: Mode) -> Pending<Decision> {
        Pending::ready(Ok(self.decide_now(key, quota, cost, mode)))
    }

    fn reset(&self, key: &str, _quota: &Quota) -> Pending<()> {
        self.forget(key);
        Pending::ready(Ok(()))
    }

    fn refund(&self, key: &str, quota: &Quota, units: u64) -> Pending<()> {
        self.refund_now(key, quota, units);
        Pending::ready(Ok(()))
    }

    fn name(&self) -> &'static str {
        "memory"
    }

    fn tracked_keys(&self) -> u64 {
        self.inner
            .shards
            .iter()
            .map(|s| s.lock().map.len() as u64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reliability_core::clock::ManualClock;

    #[test]
    fn cap_holds_and_idle_keys_go() {
        let clock = ManualClock::new();
        let b = MemoryBackend::builder()
            .max_keys(640)
            .clock(clock.shared())
            .build()
            .unwrap();
        let q = Quota::per(1, Duration::from_secs(10)).unwrap();
        for i in 0..5_000 {
            assert!(b.decide_now(&format!("k{i}"), &q, 1, Mode::Consume).allowed);
        }
        assert!(
            b.tracked_keys() <= 640 + SHARDS as u64,
            "{}",
            b.tracked_keys()
        );
        assert!(b.evicted() > 0);
        clock.advance(Duration::from_secs(11));
        b.purge_idle();
        assert_eq!(b.tracked_keys(), 0);
        assert_eq!(b.approx_bytes(), 0);
    }

    #[test]
    fn system_clock_moves() {
        let b = MemoryBackend::builder().system_clock().build().unwrap();
        let t0 = b.now_micros();
        std::thread::sleep(Duration::from_millis(2));
        assert!(b.now_micros() >= t0 + 1_000);
    }

    #[test]
    fn denied_fresh_key_is_not_stored() {
        let b = MemoryBackend::builder()
            .clock(ManualClock::new().shared())
            .build()
            .unwrap();
        let q = Quota::per(1, Duration::from_secs(1)).unwrap();
        assert!(!b.decide_now("x", &q, 2, Mode::Consume).allowed);
        assert!(b.decide_now("x", &q, 1, Mode::Peek).allowed);
        assert_eq!(b.tracked_keys(), 0);
        assert!(MemoryBackend::builder().max_keys(1).build().is_err());
    }
}
