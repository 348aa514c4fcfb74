//! Counters and health: what the limiter decided, in the shared health vocabulary.
//!
//! With feature `metrics`, each count is also recorded through the `metrics` facade at
//! the same point, by handles registered once when the limiter is built ([`Exported`]):
//! a decision costs one more atomic add, never a registry look-up or a label string.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_utils::CachePadded;
use reliability_core::health::{
    ComponentDetail, ComponentHealth, HealthSource, HealthStatus, RateLimitSnapshot,
};

use super::{Policy, RateLimiter};

/// Counters striped over cache lines so that many threads can count without sharing one.
#[derive(Debug, Default)]
pub(super) struct Striped([CachePadded<AtomicU64>; 8]);

impl Striped {
    pub(super) fn add(&self, n: u64) {
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
pub(super) struct Metrics {
    allowed: Striped,
    rejected: Striped,
    waited: Striped,
    backend_errors: Striped,
    exported: Exported,
}

impl Metrics {
    /// The counters of the limiter `source` whose tier table has `tiers` (in order).
    pub(super) fn new(source: &str, tiers: &[&str]) -> Self {
        Self {
            exported: Exported::new(source, tiers),
            ..Self::default()
        }
    }

    #[inline]
    pub(super) fn allowed(&self, policy: Policy) {
        self.allowed.add(1);
        self.exported.decided(policy, true);
    }

    #[inline]
    pub(super) fn rejected(&self, policy: Policy) {
        self.rejected.add(1);
        self.exported.decided(policy, false);
    }

    pub(super) fn backend_error(&self, policy: Policy) {
        self.backend_errors.add(1);
        self.exported.backend_error();
        self.rejected(policy);
    }
}

#[cfg(feature = "metrics")]
use self::exported::Exported;

#[cfg(feature = "metrics")]
mod exported {
    use std::time::Duration;

    use metrics::{Counter, Histogram, counter, histogram};

    use super::Policy;

    /// The limiter's handles. Decisions are indexed by policy: one pair per tier of the
    /// table, then `custom` (every user's own limit) and `endpoint` (every endpoint
    /// limit), so the label set is fixed when the limiter is built.
    #[derive(Debug)]
    pub(in crate::limiter) struct Exported {
        /// `[allowed, rejected]` per policy.
        decisions: Box<[[Counter; 2]]>,
        backend_errors: Counter,
        waits: Counter,
        wait_duration: Histogram,
    }

    impl Default for Exported {
        fn default() -> Self {
            Self {
                decisions: Box::default(),
                backend_errors: Counter::noop(),
                waits: Counter::noop(),
                wait_duration: Histogram::noop(),
            }
        }
    }

    impl Exported {
        pub(in crate::limiter) fn new(source: &str, tiers: &[&str]) -> Self {
            super::describe();
            let pair = |tier: &str| {
                ["allowed", "rejected"].map(|result| {
                    counter!(
                        "ratelimit_decisions_total",
                        "source" => source.to_owned(),
                        "result" => result,
                        "tier" => tier.to_owned()
                    )
                })
            };
            Self {
                decisions: tiers
                    .iter()
                    .copied()
                    .chain(["custom", "endpoint"])
                    .map(pair)
                    .collect(),
                backend_errors: counter!("ratelimit_backend_errors_total", "source" => source.to_owned()),
                waits: counter!("ratelimit_waits_total", "source" => source.to_owned()),
                wait_duration: histogram!("ratelimit_wait_duration_seconds", "source" => source.to_owned()),
            }
        }

        #[inline]
        pub(in crate::limiter) fn decided(&self, policy: Policy, allowed: bool) {
            let tiers = self.decisions.len().saturating_sub(2);
            let i = match policy {
                Policy::Tier(i) => usize::from(i),
                Policy::User => tiers,
                Policy::Endpoint => tiers + 1,
            };
            if let Some(pair) = self.decisions.get(i) {
                pair[usize::from(!allowed)].increment(1);
            }
        }

        pub(in crate::limiter) fn backend_error(&self) {
            self.backend_errors.increment(1);
        }

        pub(in crate::limiter) fn waited(&self, wait: Duration) {
            self.waits.increment(1);
            self.wait_duration.record(wait.as_secs_f64());
        }
    }
}

#[cfg(not(feature = "metrics"))]
#[derive(Debug, Default)]
struct Exported;

#[cfg(not(feature = "metrics"))]
impl Exported {
    fn new(_: &str, _: &[&str]) -> Self {
        Self
    }
    #[inline(always)]
    fn decided(&self, _: Policy, _: bool) {}
    #[inline(always)]
    fn backend_error(&self) {}
    #[inline(always)]
    fn waited(&self, _: Duration) {}
}

impl RateLimiter {
    /// Counts a client-mode wait of `wait` before the request is decided again.
    pub(crate) fn record_wait(&self, wait: Duration) {
        self.inner.metrics.waited.add(1);
        self.inner.metrics.exported.waited(wait);
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
            shared_control: self.inner.shared.is_some(),
            control_stale: self.inner.shared.as_ref().is_some_and(|s| s.stale()),
            control_errors: self
                .inner
                .shared
                .as_ref()
                .map_or(0, |s| s.errors.load(Ordering::Relaxed)),
        }
    }

    /// Decisions that failed because the backend was down (fail-closed).
    pub fn backend_errors(&self) -> u64 {
        self.inner.metrics.backend_errors.get()
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
        } else if snap.control_stale {
            (
                HealthStatus::Degraded,
                Some("shared control state unreachable: the last known tier assignments apply"),
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

/// The families' help texts.
#[cfg(feature = "metrics")]
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "ratelimit_decisions_total",
        "Rate-limit decisions, by result (allowed or rejected) and tier."
    );
    describe_counter!(
        "ratelimit_backend_errors_total",
        "Decisions the backend could not make (fail-closed errors)."
    );
    describe_counter!("ratelimit_waits_total", "Client-mode waits for quota.");
    describe_histogram!(
        "ratelimit_wait_duration_seconds",
        metrics::Unit::Seconds,
        "Client-mode wait for quota."
    );
    describe_gauge!(
        "ratelimit_fallback_active",
        "1 while the Redis backend has fallen back to in-process limits."
    );
    describe_counter!(
        "ratelimit_lease_round_trips_total",
        "Round trips to the Redis backend."
    );
}
