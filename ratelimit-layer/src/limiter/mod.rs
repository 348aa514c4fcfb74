//! The limiter: one handle that resolves a subject's quota, asks the backend, and keeps the
//! metrics and usage that the operations API reports.
//!
//! - `builder`: [`RateLimiterBuilder`] and its validation;
//! - `rules`: which quota a request gets (user limit > endpoint limit > user tier > default
//!   tier) and the calls that change the rules;
//! - `usage`: per-user counts, bounded;
//! - `metrics`: striped counters, the health snapshot;
//! - `ops`: the read side of the operations API (status, reset, tiers).

mod builder;
mod metrics;
mod ops;
mod rules;
mod shared;
mod usage;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use arc_swap::ArcSwap;
use crossbeam_utils::CachePadded;
use foldhash::quality::RandomState;
use parking_lot::RwLock;

use self::metrics::Metrics;
use self::rules::UserRule;
use self::usage::UsageTable;
use crate::backend::{Backend, BackendUnavailable, Pending};
use crate::error::{RateLimited, Reason};
use crate::key::Subject;
use crate::quota::{Decision, Mode, Quota};
use crate::respond::PolicyLabel;
use crate::tier::TierTable;

pub use self::builder::RateLimiterBuilder;
pub use self::ops::{Status, TierInfo, WindowReport};
pub use self::rules::{Policy, Resolved};
pub use self::usage::Usage;

const SHARDS: usize = 16;

/// Independently locked parts of a table, one cache line apart.
type Shards<T> = Box<[CachePadded<T>]>;

/// Handle on one rate limiter: cheap to clone, shared by every service built from it and
/// by the operations API.
///
/// A limiter decides, per subject, whether a request fits its quota: the user's custom
/// limit, else the endpoint's custom limit, else the user's tier, else the default tier
/// (see [`RateLimiter::resolve`]). It keeps counters ([`RateLimiter::snapshot`], also its
/// [`HealthSource`](reliability_core::health::HealthSource) answer) and bounded per-user
/// usage ([`RateLimiter::top_users`]).
///
/// # Example: the operations API
///
/// ```
/// use std::time::Duration;
/// use ratelimit_layer::{Quota, RateLimiter};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let limiter = RateLimiter::new(); // free, basic, pro, enterprise; free by default
/// limiter.set_tier("acme", "pro").await.unwrap();
/// limiter.check("acme", 1).await.unwrap();
///
/// let status = limiter.status("acme", None).await.unwrap();
/// assert_eq!(status.policy, "pro");
/// assert_eq!(status.windows[0].remaining, 9); // 10 per second, one used
///
/// limiter.set_user_limit("acme", Quota::per(1, Duration::from_secs(60)).unwrap()).await.unwrap();
/// assert_eq!(limiter.status("acme", None).await.unwrap().policy, "user");
/// limiter.clear_user_limit("acme").await.unwrap();
/// limiter.reset("acme").await.unwrap();
/// assert_eq!(limiter.top_users(10).await.unwrap().len(), 0);
/// assert_eq!(limiter.tiers().iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["free", "basic", "pro", "enterprise"]);
/// # }
/// ```
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
    /// Control state shared through the backend's store, when it has one.
    shared: Option<shared::Shared>,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("name", &self.inner.name)
            .field("backend", &self.inner.backend)
            .finish_non_exhaustive()
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
    fn shard(&self, user: &str) -> usize {
        self.inner.hasher.hash_one(user) as usize % SHARDS
    }

    /// Starts a decision for `subject`: the service's first step, before it knows whether
    /// the backend answers now or later (see [`RateLimiter::check`]).
    pub(crate) fn begin(&self, subject: &Subject, mode: Mode) -> (Resolved, Pending<Decision>) {
        if self.inner.shared.is_some() {
            self.ensure_listening();
            if self.cached_rule(&subject.user).is_none() {
                // The user's first request here: load the rule, then decide under it.
                let mut resolved = self.resolve(&subject.user, subject.endpoint.as_deref());
                resolved.provisional = true;
                let this = self.clone();
                let subject = subject.clone();
                return (
                    resolved,
                    Pending::Remote(Box::pin(async move {
                        this.load_rule(&subject.user).await;
                        this.decide(&subject, mode).1.await
                    })),
                );
            }
        }
        self.decide(subject, mode)
    }

    /// Resolves with what is known now and asks the backend.
    fn decide(&self, subject: &Subject, mode: Mode) -> (Resolved, Pending<Decision>) {
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
    pub(crate) fn finish(
        &self,
        subject: &Subject,
        resolved: &mut Resolved,
        result: Result<Decision, BackendUnavailable>,
    ) -> Result<Decision, RateLimited> {
        if resolved.provisional {
            *resolved = self.resolve(&subject.user, subject.endpoint.as_deref());
        }
        let m = &self.inner.metrics;
        let decision = match result {
            Ok(d) => d,
            Err(e) => {
                m.backend_error(resolved.policy);
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
            self.maybe_flush();
        }
        if decision.allowed {
            m.allowed(resolved.policy);
            return Ok(decision);
        }
        m.rejected(resolved.policy);
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
        let (mut resolved, pending) = self.begin(subject, Mode::Consume);
        let result = pending.await;
        self.finish(subject, &mut resolved, result)
    }

    /// Whether `subject` would be admitted now, without consuming anything.
    pub async fn peek(&self, subject: &Subject) -> Result<Decision, BackendUnavailable> {
        self.begin(subject, Mode::Peek).1.await
    }

    /// The label of `policy` for a decision made under it: a tier's prebuilt one, or one
    /// built from the decision for a custom user or endpoint limit.
    pub fn policy_label(&self, policy: Policy, decision: &Decision) -> PolicyLabel {
        match policy {
            Policy::Tier(i) => self.inner.tiers.load().get(i).label().clone(),
            Policy::User => PolicyLabel::for_decision("user", decision),
            Policy::Endpoint => PolicyLabel::for_decision("endpoint", decision),
        }
    }

    /// The name of `policy` (a tier's name, `user` or `endpoint`).
    pub fn policy_name(&self, policy: Policy) -> String {
        match policy {
            Policy::Tier(i) => self.inner.tiers.load().get(i).name().to_owned(),
            Policy::User => "user".into(),
            Policy::Endpoint => "endpoint".into(),
        }
    }

    /// The name given at build time.
    pub fn name(&self) -> &str {
        &self.inner.name
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
