//! Counters of a retry layer, and its health report.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use reliability_core::health::{
    ComponentDetail, ComponentHealth, HealthSource, HealthStatus, RetrySnapshot,
};
use tokio::time::Instant;

use crate::layer::Core;

/// Counters shared by every clone of a layer.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) attempts: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) give_ups: AtomicU64,
    pub(crate) budget_exhausted: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) critical: AtomicU64,
}

impl Metrics {
    #[inline]
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> RetrySnapshot {
        RetrySnapshot {
            attempts: self.attempts.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            give_ups: self.give_ups.load(Ordering::Relaxed),
            budget_exhausted: self.budget_exhausted.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
        }
    }
}

/// A read-only view of one layer (all its clones): counters, budget state, health.
///
/// Get it from [`RetryLayer::handle`](crate::RetryLayer::handle) or
/// [`Retry::handle`](crate::Retry::handle).
#[derive(Clone)]
pub struct RetryHandle {
    pub(crate) core: Arc<dyn AsCore>,
}

/// Access to the non-generic part of a layer's shared state.
pub(crate) trait AsCore: Send + Sync + 'static {
    fn core(&self) -> &Core;
}

impl std::fmt::Debug for RetryHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryHandle")
            .field("name", &self.core.core().name)
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

impl RetryHandle {
    /// The layer's name in health reports.
    pub fn name(&self) -> &str {
        &self.core.core().name
    }

    /// The counters: attempts, retries, give-ups, budget exhaustion, dead letters.
    pub fn snapshot(&self) -> RetrySnapshot {
        self.core.core().metrics.snapshot()
    }

    /// Critical failures seen (never retried, reported).
    pub fn critical(&self) -> u64 {
        self.core.core().metrics.critical.load(Ordering::Relaxed)
    }

    /// Whether the budget would refuse a retry right now.
    pub fn budget_exhausted_now(&self) -> bool {
        self.core.core().budget.is_exhausted(Instant::now())
    }

    /// Tokens left, when the budget is a token bucket.
    pub fn budget_tokens(&self) -> Option<u32> {
        match &self.core.core().budget {
            crate::budget::Budget::TokenBucket(b) => Some(b.available()),
            _ => None,
        }
    }
}

impl HealthSource for RetryHandle {
    /// One component: DEGRADED while the budget refuses retries (the upstream is failing
    /// often enough to drain it), HEALTHY otherwise.
    fn health(&self) -> Vec<ComponentHealth> {
        let snapshot = self.snapshot();
        let component = if self.budget_exhausted_now() {
            ComponentHealth::new(
                self.name(),
                HealthStatus::Degraded,
                ComponentDetail::Retry(snapshot),
            )
            .with_message("retry budget exhausted: failures are returned without retries")
        } else {
            ComponentHealth::new(
                self.name(),
                HealthStatus::Healthy,
                ComponentDetail::Retry(snapshot),
            )
        };
        vec![component]
    }
}
