//! Per-user usage: admitted and refused requests as counted by this process, bounded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;
use foldhash::quality::RandomState;
use parking_lot::Mutex;
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

    /// Adds counts that could not be flushed back.
    pub(super) fn add(&self, shard: usize, user: &str, u: Usage) {
        let mut map = self.shards[shard].lock();
        if !map.contains_key(user) && map.len() >= self.per_shard {
            self.untracked
                .fetch_add(u.allowed + u.rejected, Ordering::Relaxed);
            return;
        }
        let entry = map.entry(user.into()).or_default();
        entry.allowed += u.allowed;
        entry.rejected += u.rejected;
    }

    /// Takes every count out (the shared store's flush).
    pub(super) fn drain(&self) -> Vec<(String, Usage)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let map = std::mem::take(&mut *shard.lock());
            out.extend(map.into_iter().map(|(k, v)| (String::from(k), v)));
        }
        out
    }

    /// Most users tracked.
    pub(super) fn capacity(&self) -> usize {
        self.per_shard * SHARDS
    }

    pub(super) fn forget(&self, shard: usize, user: &str) {
        self.shards[shard].lock().remove(user);
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
            .and_then(|u| u.shards[self.shard(user)].lock().get(user).copied())
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

    /// Forgets all usage statistics (the fleet's, with a shared control store).
    pub async fn clear_usage(&self) -> Result<(), ControlFailure> {
        if let Some(usage) = &self.inner.usage {
            usage.shards.iter().for_each(|s| s.lock().clear());
            usage.untracked.store(0, Ordering::Relaxed);
        }
        match self.shared() {
            Some(shared) => shared.store.forget_usage(None).await,
            None => Ok(()),
        }
    }
}
