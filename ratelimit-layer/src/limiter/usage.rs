//! Per-user usage: admitted and refused requests as counted by this process, bounded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;
use foldhash::quality::RandomState;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::{RateLimiter, SHARDS, Shards};

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
#[derive(Debug)]
pub(super) struct UsageTable {
    shards: Shards<Mutex<HashMap<Box<str>, Usage, RandomState>>>,
    per_shard: usize,
    untracked: AtomicU64,
}

impl UsageTable {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| CachePadded::new(Mutex::new(HashMap::default())))
                .collect(),
            per_shard: capacity.div_ceil(SHARDS),
            untracked: AtomicU64::new(0),
        }
    }

    pub(super) fn record(&self, shard: usize, user: &str, allowed: bool) {
        let mut map = self.shards[shard].lock();
        if !map.contains_key(user) && map.len() >= self.per_shard {
            self.untracked.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let entry = match map.get_mut(user) {
            Some(e) => e,
            None => map.entry(user.into()).or_default(),
        };
        if allowed {
            entry.allowed += 1;
        } else {
            entry.rejected += 1;
        }
    }

    pub(super) fn forget(&self, shard: usize, user: &str) {
        self.shards[shard].lock().remove(user);
    }
}

impl RateLimiter {
    /// What this process counted for `user`.
    pub fn usage(&self, user: &str) -> Usage {
        let user = crate::key::stored_key(user);
        let user = &*user;
        self.inner
            .usage
            .as_ref()
            .and_then(|u| u.shards[self.shard(user)].lock().get(user).copied())
            .unwrap_or_default()
    }

    /// The `n` users with the most requests (admitted + refused) counted by this process.
    pub fn top_users(&self, n: usize) -> Vec<(String, Usage)> {
        let Some(usage) = &self.inner.usage else {
            return Vec::new();
        };
        let mut all: Vec<(String, Usage)> = usage
            .shards
            .iter()
            .flat_map(|s| {
                s.lock()
                    .iter()
                    .map(|(k, v)| (k.to_string(), *v))
                    .collect::<Vec<_>>()
            })
            .collect();
        all.sort_by_key(|(k, u)| (std::cmp::Reverse(u.allowed + u.rejected), k.clone()));
        all.truncate(n);
        all
    }

    /// Forgets all usage statistics.
    pub fn clear_usage(&self) {
        if let Some(usage) = &self.inner.usage {
            usage.shards.iter().for_each(|s| s.lock().clear());
            usage.untracked.store(0, Ordering::Relaxed);
        }
    }
}
