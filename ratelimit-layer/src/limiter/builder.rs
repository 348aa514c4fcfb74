//! [`RateLimiterBuilder`]: name, backend, tiers, endpoint limits, usage capacity.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use arc_swap::ArcSwap;
use crossbeam_utils::CachePadded;
use foldhash::quality::RandomState;
use parking_lot::RwLock;
use reliability_core::error::ConfigError;

use super::metrics::Metrics;
use super::rules::UserRule;
use super::shared::Shared;
use super::usage::UsageTable;
use super::{Inner, RateLimiter, SHARDS};
use crate::backend::{Backend, MemoryBackend};
use crate::quota::Quota;
use crate::tier::{Tier, TierTable};

/// Builder of [`RateLimiter`].
#[must_use]
pub struct RateLimiterBuilder {
    name: String,
    backend: Option<Arc<dyn Backend>>,
    tiers: TierTable,
    endpoints: HashMap<Box<str>, Quota>,
    user_tiers: Vec<(String, String)>,
    user_limits: Vec<(String, Quota)>,
    usage_capacity: usize,
}

impl fmt::Debug for RateLimiterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiterBuilder")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl RateLimiterBuilder {
    /// Name in health and metrics (default `ratelimit`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
    /// The backend (default: a fresh [`MemoryBackend`]).
    pub fn backend(mut self, backend: impl Backend) -> Self {
        self.backend = Some(Arc::new(backend));
        self
    }
    /// The tier table (default: [`TierTable::standard`]).
    pub fn tiers(mut self, tiers: TierTable) -> Self {
        self.tiers = tiers;
        self
    }
    /// One quota for everyone: a table with a single tier named `default`.
    pub fn quota(self, quota: Quota) -> Self {
        let tier = Tier::new("default", quota).expect("constant name");
        self.tiers(TierTable::new(vec![tier], "default").expect("one tier"))
    }
    /// A custom limit for an endpoint (counted per user and endpoint).
    pub fn endpoint_limit(mut self, endpoint: impl Into<String>, quota: Quota) -> Self {
        self.endpoints
            .insert(endpoint.into().into_boxed_str(), quota);
        self
    }
    /// Puts `user` in `tier` from configuration (checked at build). With a shared control
    /// store this is the base under the stored assignments: an assignment made at run
    /// time wins, and clearing it falls back to this one.
    pub fn user_tier(mut self, user: impl Into<String>, tier: impl Into<String>) -> Self {
        self.user_tiers.push((user.into(), tier.into()));
        self
    }
    /// Gives `user` a custom quota from configuration (the base under run-time changes,
    /// as for [`user_tier`](Self::user_tier)).
    pub fn user_limit(mut self, user: impl Into<String>, quota: Quota) -> Self {
        self.user_limits.push((user.into(), quota));
        self
    }
    /// Most users whose usage is counted (default 100,000; 0 turns usage statistics off).
    pub fn usage_capacity(mut self, n: usize) -> Self {
        self.usage_capacity = n;
        self
    }
    /// Validates and builds.
    pub fn build(self) -> Result<RateLimiter, ConfigError> {
        if self.name.is_empty() || self.name.len() > 128 {
            return Err(ConfigError::out_of_range(
                "name",
                "1 to 128 bytes",
                self.name.len(),
            ));
        }
        if self.usage_capacity > 100_000_000 {
            return Err(ConfigError::out_of_range(
                "usage_capacity",
                "[0, 10^8]",
                self.usage_capacity,
            ));
        }
        let usage = (self.usage_capacity > 0).then(|| UsageTable::new(self.usage_capacity));
        let backend = self
            .backend
            .unwrap_or_else(|| Arc::new(MemoryBackend::new()));
        backend.attach(&self.name);
        let tier_names: Vec<&str> = self.tiers.tiers().iter().map(Tier::name).collect();
        let metrics = Metrics::new(&self.name, &tier_names);
        let mut base_rules: HashMap<Box<str>, UserRule> = HashMap::new();
        for (user, tier) in &self.user_tiers {
            let index = self.tiers.index_of(tier).ok_or_else(|| {
                ConfigError::new("user_tier", format!("unknown tier {tier:?} for {user:?}"))
            })?;
            base_rules.entry(user.as_str().into()).or_default().tier = Some(index);
        }
        for (user, quota) in &self.user_limits {
            base_rules.entry(user.as_str().into()).or_default().custom = Some(*quota);
        }
        let shared = backend
            .control()
            .map(|store| Shared::new(store, self.endpoints.clone(), base_rules.clone()));
        let limiter = RateLimiter {
            inner: Arc::new(Inner {
                name: self.name,
                backend,
                tiers: ArcSwap::from_pointee(self.tiers),
                users: (0..SHARDS)
                    .map(|_| CachePadded::new(RwLock::new(HashMap::default())))
                    .collect(),
                // With shared control, every lookup reads the rule cache.
                user_rules: AtomicUsize::new(usize::from(shared.is_some())),
                endpoints: ArcSwap::from_pointee(self.endpoints),
                hasher: RandomState::default(),
                usage,
                metrics,
                shared,
            }),
        };
        if limiter.inner.shared.is_none() {
            for (user, rule) in base_rules {
                limiter.update_user(&user, |r| *r = rule);
            }
        }
        Ok(limiter)
    }
}

impl RateLimiter {
    /// A builder: memory backend, standard tiers.
    pub fn builder() -> RateLimiterBuilder {
        RateLimiterBuilder {
            name: "ratelimit".into(),
            backend: None,
            tiers: TierTable::standard(),
            endpoints: HashMap::new(),
            user_tiers: Vec::new(),
            user_limits: Vec::new(),
            usage_capacity: 100_000,
        }
    }

    /// A limiter with the standard tiers on a memory backend.
    pub fn new() -> Self {
        Self::builder().build().expect("defaults are valid")
    }
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new()
    }
}
