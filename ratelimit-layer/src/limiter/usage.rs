//! Per-user usage: admitted and refused requests as counted by this process, bounded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;
use foldhash::quality::RandomState;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use super::{RateLimiter, SHARDS, Shards};
use crate::control::ControlFailure;

/// Admitted and refused units of one user, as counted by this process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Requests admitted.
    pub allowed: u64,
    /// Requests refused.
    pub rejected: u64,
}

/// Per-user counters, bounded: once `capacity` users are tracked, new users are not
/// (they are counted in `untracked`) until [`RateLimiter::clear_usage`].
///
/// A decision of a user already tracked takes its shard's lock **shared** and adds to the
/// user's atomic counters, so decisions for one hot user (the global key) on many threads
/// run side by side instead of queueing on a mutex. Only a user's first decision, a flush
/// and a reset take the lock exclusively. A flush swaps the shard's map out under the
/// exclusive lock: no decision is adding to it then, so no count is lost or counted twice.
#[derive(Debug)]
pub(super) struct UsageTable {
    shards: Shards<RwLock<HashMap<Box<str>, Counts, RandomState>>>,
    per_shard: usize,
    untracked: AtomicU64,
}

/// One user's counters.
#[derive(Debug, Default)]
struct Counts {
    allowed: AtomicU64,
    rejected: AtomicU64,
}

impl Counts {
    fn add(&self, allowed: u64, rejected: u64) {
        if allowed > 0 {
            self.allowed.fetch_add(allowed, Ordering::Relaxed);
        }
        if rejected > 0 {
            self.rejected.fetch_add(rejected, Ordering::Relaxed);
        }
    }

    fn read(&self) -> Usage {
        Usage {
            allowed: self.allowed.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
        }
    }
}

impl UsageTable {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| CachePadded::new(RwLock::new(HashMap::default())))
                .collect(),
            per_shard: capacity.div_ceil(SHARDS),
            untracked: AtomicU64::new(0),
        }
    }

    pub(super) fn record(&self, shard: usize, user: &str, allowed: bool) {
        let (a, r) = if allowed { (1, 0) } else { (0, 1) };
        self.add_counts(shard, user, a, r);
    }

    /// Adds counts that could not be flushed back.
    pub(super) fn add(&self, shard: usize, user: &str, u: Usage) {
        self.add_counts(shard, user, u.allowed, u.rejected);
    }

    fn add_counts(&self, shard: usize, user: &str, allowed: u64, rejected: u64) {
        if let Some(counts) = self.shards[shard].read().get(user) {
            counts.add(allowed, rejected);
            return;
        }
        let mut map = self.shards[shard].write();
        if !map.contains_key(user) && map.len() >= self.per_shard {
            self.untracked
                .fetch_add(allowed + rejected, Ordering::Relaxed);
            return;
        }
        map.entry(user.into()).or_default().add(allowed, rejected);
    }

    /// Takes every count out (the shared store's flush).
    pub(super) fn drain(&self) -> Vec<(String, Usage)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let map = std::mem::take(&mut *shard.write());
            out.extend(map.into_iter().map(|(k, v)| (String::from(k), v.read())));
        }
        out
    }

    /// Most users tracked.
    pub(super) fn capacity(&self) -> usize {
        self.per_shard * SHARDS
    }

    pub(super) fn forget(&self, shard: usize, user: &str) {
        self.shards[shard].write().remove(user);
    }

    fn get(&self, shard: usize, user: &str) -> Option<Usage> {
        self.shards[shard].read().get(user).map(Counts::read)
    }

    fn all(&self) -> Vec<(String, Usage)> {
        self.shards
            .iter()
            .flat_map(|s| {
                s.read()
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.read()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn clear(&self) {
        self.shards.iter().for_each(|s| s.write().clear());
        self.untracked.store(0, Ordering::Relaxed);
    }
}

impl RateLimiter {
    /// What was counted for `user`: by the whole fleet with a shared control store (this
    /// process' counts are flushed first), else by this process.
    pub async fn usage(&self, user: &str) -> Result<Usage, ControlFailure> {
        let user = crate::key::stored_key(user);
        if let Some(shared) = self.shared() {
            self.flush_usage().await?;
            return shared.store.usage(&user).await;
        }
        Ok(self.local_usage(&user))
    }

    fn local_usage(&self, user: &str) -> Usage {
        self.inner
            .usage
            .as_ref()
            .and_then(|u| u.get(self.shard(user), user))
            .unwrap_or_default()
    }

    /// The `n` users with the most requests (admitted + refused): fleet-wide with a shared
    /// control store (this process' counts are flushed first), else as counted here.
    pub async fn top_users(&self, n: usize) -> Result<Vec<(String, Usage)>, ControlFailure> {
        if let Some(shared) = self.shared() {
            self.flush_usage().await?;
            return shared.store.top(n).await;
        }
        Ok(self.local_top_users(n))
    }

    fn local_top_users(&self, n: usize) -> Vec<(String, Usage)> {
        let Some(usage) = &self.inner.usage else {
            return Vec::new();
        };
        let mut all = usage.all();
        all.sort_by_key(|(k, u)| (std::cmp::Reverse(u.allowed + u.rejected), k.clone()));
        all.truncate(n);
        all
    }

    /// Forgets all usage statistics (the fleet's, with a shared control store).
    pub async fn clear_usage(&self) -> Result<(), ControlFailure> {
        if let Some(usage) = &self.inner.usage {
            usage.clear();
        }
        match self.shared() {
            Some(shared) => shared.store.forget_usage(None).await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two threads count one hot user while a third flushes over and over: every count
    /// lands in exactly one flush (none lost, none twice).
    #[test]
    fn flushes_racing_decisions_lose_and_double_nothing() {
        const EACH: u64 = 50_000;
        let table = UsageTable::new(1024);
        let done = std::sync::atomic::AtomicUsize::new(0);
        let flushed = std::thread::scope(|scope| {
            for t in 0..2 {
                let (table, done) = (&table, &done);
                scope.spawn(move || {
                    for i in 0..EACH {
                        table.record(3, "hot", (i + t) % 2 == 0);
                    }
                    done.fetch_add(1, Ordering::Release);
                });
            }
            let mut flushed = Usage::default();
            while done.load(Ordering::Acquire) < 2 {
                for (user, u) in table.drain() {
                    assert_eq!(user, "hot");
                    flushed.allowed += u.allowed;
                    flushed.rejected += u.rejected;
                }
            }
            flushed
        });
        let rest = table.drain();
        let total = rest.iter().fold(flushed, |mut acc, (_, u)| {
            acc.allowed += u.allowed;
            acc.rejected += u.rejected;
            acc
        });
        assert_eq!(total.allowed + total.rejected, 2 * EACH);
        assert_eq!(total.allowed, EACH);
    }

    #[test]
    fn a_full_table_counts_new_users_as_untracked() {
        let table = UsageTable::new(SHARDS);
        table.record(0, "a", true);
        table.record(0, "b", true);
        table.record(0, "a", false);
        assert_eq!(
            table.get(0, "a"),
            Some(Usage {
                allowed: 1,
                rejected: 1
            })
        );
        assert_eq!(table.get(0, "b"), None);
        assert_eq!(table.untracked.load(Ordering::Relaxed), 1);
    }
}
