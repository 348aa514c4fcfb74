//! Counters and health: what the limiter decided, in the shared health vocabulary.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;
use reliability_core::health::{
    ComponentDetail, ComponentHealth, HealthSource, HealthStatus, RateLimitSnapshot,
};

use super::RateLimiter;

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
    pub(super) allowed: Striped,
    pub(super) rejected: Striped,
    pub(super) waited: Striped,
    pub(super) backend_errors: Striped,
}

impl RateLimiter {
    pub(crate) fn record_wait(&self) {
        self.inner.metrics.waited.add(1);
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
