//! The limiter: resolves a subject's quota (user limit, endpoint limit, tier), asks the
//! backend, keeps metrics and usage, and serves the operations API.
//!
//! # Example: the operations API
//!
//! ```
//! use std::time::Duration;
//! use ratelimit_layer::{Quota, RateLimiter};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let limiter = RateLimiter::new(); // free, basic, pro, enterprise; free by default
//! limiter.set_tier("acme", "pro").unwrap();
//! limiter.check("acme", 1).await.unwrap();
//!
//! let status = limiter.status("acme", None).await.unwrap();
//! assert_eq!(status.policy, "pro");
//! assert_eq!(status.windows[0].remaining, 9); // 10 per second, one used
//!
//! limiter.set_user_limit("acme", Quota::per(1, Duration::from_secs(60)).unwrap());
//! assert_eq!(limiter.status("acme", None).await.unwrap().policy, "user");
//! limiter.clear_user_limit("acme");
//! limiter.reset("acme").await.unwrap();
//! assert_eq!(limiter.top_users(10).len(), 0);
//! assert_eq!(limiter.tiers().iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["free", "basic", "pro", "enterprise"]);
//! # }
//! ```

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use crossbeam_utils::CachePadded;
use foldhash::quality::RandomState;
use parking_lot::{Mutex, RwLock};
use reliability_core::error::ConfigError;
use reliability_core::health::{
    ComponentDetail, ComponentHealth, HealthSource, HealthStatus, RateLimitSnapshot,
};
use reliability_core::redis::{RedisConfig, RedisSetupError};
use serde::{Deserialize, Serialize};

use crate::backend::{
    Backend, BackendUnavailable, FailureMode, Leased, MemoryBackend, Pending, RedisBackend,
};
use crate::error::{RateLimited, Reason};
use crate::key::Subject;
use crate::quota::{Decision, Mode, Quota, WindowConfig, WindowStatus};
use crate::tier::{TierTable, TiersConfig};

const SHARDS: usize = 16;

/// Independently locked parts of a table, one cache line apart.
type Shards<T> = Box<[CachePadded<T>]>;

/// Which rule gave a request its quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// The user's tier (index into the tier table).
    Tier(u16),
    /// A custom limit set for this user.
    User,
    /// A custom limit set for the request's endpoint (counted per user and endpoint).
    Endpoint,
}

/// A resolved quota for one request: what to decide and under which key.
#[derive(Debug, Clone, Copy)]
pub struct Resolved {
    /// The quota.
    pub quota: Quota,
    /// Where it came from.
    pub policy: Policy,
    /// Whether state is kept per (user, endpoint) rather than per user.
    pub per_endpoint: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct UserRule {
    tier: Option<u16>,
    custom: Option<Quota>,
}

/// Admitted and refused units of one user, as counted by this process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Requests admitted.
    pub allowed: u64,
    /// Requests refused.
    pub rejected: u64,
}

/// Remaining and reset of one window, for the operations API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowReport {
    /// Units per period.
    pub limit: u64,
    /// Period in seconds (fractions for sub-second windows).
    pub period_secs: f64,
    /// Units left now.
    pub remaining: u64,
    /// Milliseconds until the window is full again / rolls over.
    pub reset_ms: u64,
}

/// A user's standing: policy and per-window remaining.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The user.
    pub user: String,
    /// Tier name, `user` (custom limit) or `endpoint`.
    pub policy: String,
    /// The user's tier (even when a custom limit overrides it).
    pub tier: String,
    /// One entry per window of the quota.
    pub windows: Vec<WindowReport>,
    /// What this process counted for the user.
    pub usage: Usage,
}

/// A tier as listed by the operations API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierInfo {
    /// Tier name.
    pub name: String,
    /// Whether unknown users get it.
    pub default: bool,
    /// Its windows.
    pub windows: Vec<WindowConfig>,
}

/// A tier name that is not in the table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown tier {0:?}")]
pub struct UnknownTier(pub String);

/// Counters striped over cache lines so that many threads can count without sharing one.
#[derive(Debug, Default)]
struct Striped([CachePadded<AtomicU64>; 8]);

impl Striped {
    fn add(&self, n: u64) {
        thread_local! { static STRIPE: usize = next_stripe(); }
        let i = STRIPE.with(|s| *s);
        self.0[i % 8].fetch_add(n, Ordering::Relaxed);
    }
    fn get(&self) -> u64 {
        self.0.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

fn next_stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[derive(Debug, Default)]
struct Metrics {
    allowed: Striped,
    rejected: Striped,
    waited: Striped,
    backend_errors: Striped,
}

/// Per-user counters, bounded: once `capacity` users are tracked, new users are not
/// (they are counted in `untracked`) until [`RateLimiter::clear_usage`].
#[derive(Debug)]
struct UsageTable {
    shards: Shards<Mutex<HashMap<Box<str>, Usage, RandomState>>>,
    per_shard: usize,
    untracked: AtomicU64,
}

impl UsageTable {
    fn record(&self, shard: usize, user: &str, allowed: bool) {
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
}

/// Handle on one rate limiter: cheap to clone, shared by every service built from it and
/// by the operations API.
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    backend: Arc<dyn Backend>,
    tiers: ArcSwap<TierTable>,
    users: Shards<RwLock<HashMap<Box<str>, UserRule, RandomState>>>,
    user_rules: AtomicUsize,
    endpoints: ArcSwap<HashMap<Box<str>, Quota>>,
    hasher: RandomState,
    usage: Option<UsageTable>,
    metrics: Metrics,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("name", &self.inner.name)
            .field("backend", &self.inner.backend)
            .finish_non_exhaustive()
    }
}

/// Serializable limiter settings, backend included (TOML: `name`, `default_tier`,
/// `[[tiers.<name>]]`, `[[endpoints."<route>"]]`, `[redis]`, `failure_mode`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimiterConfig {
    /// Name in health and metrics.
    pub name: String,
    /// The tier table.
    #[serde(flatten)]
    pub tiers: TiersConfig,
    /// Custom limits per endpoint.
    pub endpoints: std::collections::BTreeMap<String, Vec<WindowConfig>>,
    /// Most users whose usage is counted (0 turns usage statistics off).
    pub usage_capacity: usize,
    /// Shared state in Redis (single node or cluster); in-process when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisConfig>,
    /// What to do while Redis is down (fail open by default).
    pub failure_mode: FailureMode,
    /// Number of processes sharing the Redis limit: each fallback admits `1/n` of it.
    pub fallback_share: u64,
    /// Most keys of the in-process backend (or of the fallback).
    pub max_keys: usize,
    /// Read the CPU's time-stamp counter instead of tokio's clock in the in-process backend
    /// (faster; ignores `tokio::time::pause`).
    pub system_clock: bool,
    /// Units leased from Redis per round trip (0: no batching); see [`Leased`].
    pub lease: u64,
    /// How long a lease may be held.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
}

impl Default for RateLimiterConfig {
    fn default() -> Self {
        Self {
            name: "ratelimit".into(),
            tiers: TiersConfig::default(),
            endpoints: Default::default(),
            usage_capacity: 100_000,
            redis: None,
            failure_mode: FailureMode::Open,
            fallback_share: 1,
            max_keys: 1_000_000,
            system_clock: false,
            lease: 0,
            lease_ttl: Duration::from_millis(100),
        }
    }
}

impl RateLimiterConfig {
    /// Builds the limiter, connecting to Redis when configured.
    pub async fn build(&self) -> Result<RateLimiter, RedisSetupError> {
        let memory = MemoryBackend::builder().max_keys(self.max_keys);
        let memory = if self.system_clock {
            memory.system_clock()
        } else {
            memory
        }
        .build()?;
        let builder = self.builder()?;
        let Some(redis) = &self.redis else {
            return Ok(builder.backend(memory).build()?);
        };
        let backend = RedisBackend::builder(redis.clone())
            .failure_mode(self.failure_mode)
            .fallback_share(self.fallback_share)
            .fallback(memory)
            .build()
            .await?;
        let builder = if self.lease == 0 {
            builder.backend(backend)
        } else {
            builder.backend(Leased::new(backend, self.lease, self.lease_ttl)?)
        };
        Ok(builder.build()?)
    }

    /// A builder preloaded with this configuration.
    pub fn builder(&self) -> Result<RateLimiterBuilder, ConfigError> {
        let mut b = RateLimiter::builder()
            .name(self.name.clone())
            .tiers(self.tiers.build()?)
            .usage_capacity(self.usage_capacity);
        for (endpoint, windows) in &self.endpoints {
            let q = Quota::from_config(windows)
                .map_err(|e| e.within(&format!("endpoints.{endpoint}")))?;
            b = b.endpoint_limit(endpoint.clone(), q);
        }
        Ok(b)
    }
}

/// Builder of [`RateLimiter`].
#[must_use]
pub struct RateLimiterBuilder {
    name: String,
    backend: Option<Arc<dyn Backend>>,
    tiers: TierTable,
    endpoints: HashMap<Box<str>, Quota>,
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
        let tier = crate::tier::Tier::new("default", quota).expect("constant name");
        self.tiers(TierTable::new(vec![tier], "default").expect("one tier"))
    }
    /// A custom limit for an endpoint (counted per user and endpoint).
    pub fn endpoint_limit(mut self, endpoint: impl Into<String>, quota: Quota) -> Self {
        self.endpoints
            .insert(endpoint.into().into_boxed_str(), quota);
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
        let usage = (self.usage_capacity > 0).then(|| UsageTable {
            shards: (0..SHARDS)
                .map(|_| CachePadded::new(Mutex::new(HashMap::default())))
                .collect(),
            per_shard: self.usage_capacity.div_ceil(SHARDS),
            untracked: AtomicU64::new(0),
        });
        Ok(RateLimiter {
            inner: Arc::new(Inner {
                name: self.name,
                backend: self
                    .backend
                    .unwrap_or_else(|| Arc::new(MemoryBackend::new())),
                tiers: ArcSwap::from_pointee(self.tiers),
                users: (0..SHARDS)
                    .map(|_| CachePadded::new(RwLock::new(HashMap::default())))
                    .collect(),
                user_rules: AtomicUsize::new(0),
                endpoints: ArcSwap::from_pointee(self.endpoints),
                hasher: RandomState::default(),
                usage,
                metrics: Metrics::default(),
            }),
        })
    }
}

/// The storage key of a subject: the user alone, or (user, endpoint), encoded injectively
/// (a length prefix after a NUL, which plain user keys never start with).
pub(crate) fn storage_key<'a>(user: &'a str, endpoint: Option<&str>) -> Cow<'a, str> {
    match endpoint {
        None if !user.starts_with('\0') => Cow::Borrowed(user),
        None => Cow::Owned(format!("\0{}:{user}", user.len())),
        Some(e) => Cow::Owned(format!("\0{}:{user}\0{e}", user.len())),
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
            usage_capacity: 100_000,
        }
    }

    /// A limiter with the standard tiers on a memory backend.
    pub fn new() -> Self {
        Self::builder().build().expect("defaults are valid")
    }

    fn shard(&self, user: &str) -> usize {
        self.inner.hasher.hash_one(user) as usize % SHARDS
    }

    /// The quota that applies to `user` on `endpoint`: the user's custom limit, else the
    /// endpoint's custom limit, else the user's tier, else the default tier.
    pub fn resolve(&self, user: &str, endpoint: Option<&str>) -> Resolved {
        let mut tier = None;
        if self.inner.user_rules.load(Ordering::Relaxed) > 0 {
            let rule = self.inner.users[self.shard(user)].read().get(user).copied();
            if let Some(rule) = rule {
                if let Some(quota) = rule.custom {
                    return Resolved {
                        quota,
                        policy: Policy::User,
                        per_endpoint: false,
                    };
                }
                tier = rule.tier;
            }
        }
        if let Some(e) = endpoint {
            let endpoints = self.inner.endpoints.load();
            if let Some(quota) = endpoints.get(e) {
                return Resolved {
                    quota: *quota,
                    policy: Policy::Endpoint,
                    per_endpoint: true,
                };
            }
        }
        let tiers = self.inner.tiers.load();
        let index = tier.unwrap_or_else(|| tiers.default_index());
        Resolved {
            quota: *tiers.get(index).quota(),
            policy: Policy::Tier(index),
            per_endpoint: false,
        }
    }

    /// Starts a decision for `subject` (used by the service; see [`RateLimiter::check`]).
    pub fn begin(&self, subject: &Subject, mode: Mode) -> (Resolved, Pending<Decision>) {
        let resolved = self.resolve(&subject.user, subject.endpoint.as_deref());
        let endpoint = if resolved.per_endpoint {
            subject.endpoint.as_deref()
        } else {
            None
        };
        let key = storage_key(&subject.user, endpoint);
        // A cost of 0 counts as 1: a request is never free.
        let cost = u64::from(subject.cost.max(1));
        let pending = self.inner.backend.decide(&key, &resolved.quota, cost, mode);
        (resolved, pending)
    }

    /// Finishes a decision started by [`RateLimiter::begin`]: counts it and turns a denial
    /// into [`RateLimited`].
    pub fn finish(
        &self,
        subject: &Subject,
        resolved: &Resolved,
        result: Result<Decision, BackendUnavailable>,
    ) -> Result<Decision, RateLimited> {
        let m = &self.inner.metrics;
        let decision = match result {
            Ok(d) => d,
            Err(e) => {
                m.backend_errors.add(1);
                m.rejected.add(1);
                tracing::warn!(limiter = %self.inner.name, error = %e, "rate limit backend unavailable, rejecting");
                return Err(RateLimited::new(
                    Reason::BackendUnavailable,
                    self.policy_name(resolved.policy),
                    Some(Duration::from_secs(1)),
                    None,
                ));
            }
        };
        if let Some(usage) = &self.inner.usage {
            let user = crate::key::stored_key(&subject.user);
            usage.record(self.shard(&user), &user, decision.allowed);
        }
        if decision.allowed {
            m.allowed.add(1);
            return Ok(decision);
        }
        m.rejected.add(1);
        let reason = if decision.retry_after == u64::MAX {
            Reason::CostTooHigh
        } else {
            Reason::Exceeded
        };
        Err(RateLimited::new(
            reason,
            self.policy_name(resolved.policy),
            decision.retry_after(),
            Some(Box::new(decision)),
        ))
    }

    /// Consumes `cost` units for `user` (no endpoint): `Ok` with per-window detail, or
    /// [`RateLimited`].
    pub async fn check(&self, user: &str, cost: u32) -> Result<Decision, RateLimited> {
        self.check_subject(&Subject::new(user).cost(cost)).await
    }

    /// Consumes for a full subject (user, endpoint, cost).
    pub async fn check_subject(&self, subject: &Subject) -> Result<Decision, RateLimited> {
        let (resolved, pending) = self.begin(subject, Mode::Consume);
        let result = pending.await;
        self.finish(subject, &resolved, result)
    }

    /// Whether `subject` would be admitted now, without consuming anything.
    pub async fn peek(&self, subject: &Subject) -> Result<Decision, BackendUnavailable> {
        self.begin(subject, Mode::Peek).1.await
    }

    pub(crate) fn record_wait(&self) {
        self.inner.metrics.waited.add(1);
    }

    /// The display name of a policy (tier name, `user` or `endpoint`).
    pub fn policy_name(&self, policy: Policy) -> String {
        match policy {
            Policy::Tier(i) => self.inner.tiers.load().get(i).name().to_owned(),
            Policy::User => "user".into(),
            Policy::Endpoint => "endpoint".into(),
        }
    }

    // ---- operations API ----

    fn update_user(&self, user: &str, f: impl FnOnce(&mut UserRule)) {
        let mut map = self.inner.users[self.shard(user)].write();
        let existed = map.contains_key(user);
        let rule = map.entry(user.into()).or_default();
        f(rule);
        if rule.tier.is_none() && rule.custom.is_none() {
            map.remove(user);
            if existed {
                self.inner.user_rules.fetch_sub(1, Ordering::Relaxed);
            }
        } else if !existed {
            self.inner.user_rules.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Puts `user` in tier `tier`.
    pub fn set_tier(&self, user: &str, tier: &str) -> Result<(), UnknownTier> {
        let index = self
            .inner
            .tiers
            .load()
            .index_of(tier)
            .ok_or_else(|| UnknownTier(tier.to_owned()))?;
        self.update_user(user, |r| r.tier = Some(index));
        Ok(())
    }

    /// The tier of `user`.
    pub fn tier_of(&self, user: &str) -> String {
        let rule = self.inner.users[self.shard(user)]
            .read()
            .get(user)
            .copied()
            .unwrap_or_default();
        let tiers = self.inner.tiers.load();
        tiers
            .get(rule.tier.unwrap_or_else(|| tiers.default_index()))
            .name()
            .to_owned()
    }

    /// Gives `user` a custom quota that overrides tier and endpoint limits.
    pub fn set_user_limit(&self, user: &str, quota: Quota) {
        self.update_user(user, |r| r.custom = Some(quota));
    }

    /// Removes `user`'s custom quota.
    pub fn clear_user_limit(&self, user: &str) {
        self.update_user(user, |r| r.custom = None);
    }

    /// Sets a custom quota for `endpoint`.
    pub fn set_endpoint_limit(&self, endpoint: &str, quota: Quota) {
        self.inner.endpoints.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.insert(endpoint.into(), quota);
            m
        });
    }

    /// Removes `endpoint`'s custom quota.
    pub fn clear_endpoint_limit(&self, endpoint: &str) {
        self.inner.endpoints.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.remove(endpoint);
            m
        });
    }

    /// Forgets `user`'s counted state (all windows, user-level key) and usage.
    pub async fn reset(&self, user: &str) -> Result<(), BackendUnavailable> {
        let resolved = self.resolve(user, None);
        if let Some(usage) = &self.inner.usage {
            let user = crate::key::stored_key(user);
            usage.shards[self.shard(&user)].lock().remove(&*user);
        }
        self.inner
            .backend
            .reset(&storage_key(user, None), &resolved.quota)
            .await
    }

    /// Remaining and reset of each window for `user` (on `endpoint`), without consuming.
    pub async fn status(
        &self,
        user: &str,
        endpoint: Option<&str>,
    ) -> Result<Status, BackendUnavailable> {
        let mut subject = Subject::new(user);
        subject.endpoint = endpoint.map(str::to_owned);
        let (resolved, pending) = self.begin(&subject, Mode::Peek);
        let decision = pending.await?;
        let window = |w: &WindowStatus| WindowReport {
            limit: w.limit,
            period_secs: w.period as f64 / 1e6,
            remaining: if decision.allowed {
                w.remaining + 1
            } else {
                w.remaining
            },
            reset_ms: w.reset_after / 1_000,
        };
        Ok(Status {
            user: user.to_owned(),
            policy: self.policy_name(resolved.policy),
            tier: self.tier_of(user),
            windows: decision.windows().iter().map(window).collect(),
            usage: self.usage(user),
        })
    }

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

    /// The tiers.
    pub fn tiers(&self) -> Vec<TierInfo> {
        let t = self.inner.tiers.load();
        let default = t.default_tier().name().to_owned();
        t.tiers()
            .iter()
            .map(|t| TierInfo {
                name: t.name().to_owned(),
                default: t.name() == default,
                windows: t.quota().config(),
            })
            .collect()
    }

    /// Counters and backend state, in the shared health vocabulary.
    pub fn snapshot(&self) -> RateLimitSnapshot {
        let m = &self.inner.metrics;
        RateLimitSnapshot {
            allowed: m.allowed.get(),
            rejected: m.rejected.get(),
            waited: m.waited.get(),
            backend: self.inner.backend.name().to_owned(),
            fallback_active: self.inner.backend.fallback_active(),
            tracked_keys: self.inner.backend.tracked_keys(),
        }
    }

    /// Decisions that failed because the backend was down (fail-closed).
    pub fn backend_errors(&self) -> u64 {
        self.inner.metrics.backend_errors.get()
    }

    /// The name given at build time.
    pub fn name(&self) -> &str {
        &self.inner.name
    }
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthSource for RateLimiter {
    /// Degraded while decisions come from the local fallback, failed while the shared
    /// backend is down and the limiter fails closed.
    fn health(&self) -> Vec<ComponentHealth> {
        let snap = self.snapshot();
        let (status, message) = if self.inner.backend.unavailable() {
            (
                HealthStatus::Failed,
                Some("shared backend down: refusing requests (fail-closed)"),
            )
        } else if snap.fallback_active {
            (
                HealthStatus::Degraded,
                Some("shared backend down: deciding with the local fallback"),
            )
        } else {
            (HealthStatus::Healthy, None)
        };
        let mut c = ComponentHealth::new(
            self.inner.name.clone(),
            status,
            ComponentDetail::RateLimit(snap),
        );
        if let Some(m) = message {
            c = c.with_message(m);
        }
        vec![c]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_keys_are_injective() {
        let keys = [
            storage_key("a", None),
            storage_key("\0a", None),
            storage_key("a", Some("")),
            storage_key("a", Some("b")),
            storage_key("a\0b", None),
            storage_key("\u{0}1:a", None),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
