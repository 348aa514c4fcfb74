//! Counters of a retry layer, its health report, and (feature `metrics`) the same
//! counters through the `metrics` facade.
//!
//! Each total moves in one method here, which bumps the atomic the health snapshot reads
//! and, with the feature, the facade handle registered for it when the layer was built: the
//! snapshot and the exposition cannot drift apart, and a call never looks a metric up.
//! The families are listed in the README.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use reliability_core::health::{
    ComponentDetail, ComponentHealth, HealthSource, HealthStatus, RetrySnapshot,
};
use tokio::time::Instant;

use crate::layer::Core;
use crate::schedule::StopReason;

/// Counters shared by every clone of a layer.
#[derive(Debug)]
pub(crate) struct Metrics {
    attempts: AtomicU64,
    retries: AtomicU64,
    give_ups: AtomicU64,
    budget_exhausted: AtomicU64,
    dead_lettered: AtomicU64,
    critical: AtomicU64,
    #[cfg(feature = "metrics")]
    facade: facade::Handles,
}

#[inline]
fn add(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    /// Counters at zero; with the `metrics` feature, handles registered now with
    /// `source = name`.
    pub(crate) fn new(name: &str) -> Self {
        #[cfg(not(feature = "metrics"))]
        let _ = name;
        Self {
            attempts: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            give_ups: AtomicU64::new(0),
            budget_exhausted: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            critical: AtomicU64::new(0),
            #[cfg(feature = "metrics")]
            facade: facade::Handles::new(name),
        }
    }

    /// An attempt is about to be made (the first one included).
    #[inline]
    pub(crate) fn attempt(&self) {
        add(&self.attempts);
        #[cfg(feature = "metrics")]
        self.facade.attempts.increment(1);
    }

    /// A retry was granted.
    pub(crate) fn retry(&self) {
        add(&self.retries);
        #[cfg(feature = "metrics")]
        self.facade.retries.increment(1);
    }

    /// The budget refused a retry.
    pub(crate) fn budget_exhausted(&self) {
        add(&self.budget_exhausted);
        #[cfg(feature = "metrics")]
        self.facade.budget_exhausted.increment(1);
    }

    /// A request was given up on (`reason.is_give_up()`).
    pub(crate) fn give_up(&self, reason: StopReason) {
        add(&self.give_ups);
        #[cfg(feature = "metrics")]
        self.facade.give_up(reason);
        #[cfg(not(feature = "metrics"))]
        let _ = reason;
    }

    /// A given-up request went to the dead-letter sink.
    pub(crate) fn dead_lettered(&self) {
        add(&self.dead_lettered);
        #[cfg(feature = "metrics")]
        self.facade.dead_letters.increment(1);
    }

    /// A critical failure was reported (not in the snapshot, nor exported).
    pub(crate) fn critical(&self) {
        add(&self.critical);
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

#[cfg(feature = "metrics")]
mod facade {
    use ::metrics::{Counter, counter, describe_counter};

    use crate::schedule::StopReason;

    /// The `reason` label of each give-up, in `Handles::give_ups` order. Only give-ups
    /// count (`StopReason::is_give_up`), as in the snapshot: a failure that is not
    /// retryable is never given up on, it is never retried in the first place.
    const GIVE_UP_REASONS: [(StopReason, &str); 4] = [
        (StopReason::AttemptsExhausted, "attempts"),
        (StopReason::BudgetExhausted, "budget"),
        (StopReason::ElapsedExhausted, "elapsed"),
        (StopReason::DeadlineExceeded, "deadline"),
    ];

    #[derive(Debug)]
    pub(super) struct Handles {
        pub(super) attempts: Counter,
        pub(super) retries: Counter,
        give_ups: [Counter; 4],
        pub(super) budget_exhausted: Counter,
        pub(super) dead_letters: Counter,
    }

    impl Handles {
        pub(super) fn new(name: &str) -> Self {
            describe();
            let source = || name.to_owned();
            Self {
                attempts: counter!("retry_attempts_total", "source" => source()),
                retries: counter!("retry_retries_total", "source" => source()),
                give_ups: GIVE_UP_REASONS.map(|(_, reason)| {
                    counter!("retry_give_ups_total", "source" => source(), "reason" => reason)
                }),
                budget_exhausted: counter!("retry_budget_exhausted_total", "source" => source()),
                dead_letters: counter!("retry_dead_letters_total", "source" => source()),
            }
        }

        pub(super) fn give_up(&self, reason: StopReason) {
            if let Some(i) = GIVE_UP_REASONS.iter().position(|(r, _)| *r == reason) {
                self.give_ups[i].increment(1);
            }
        }
    }

    fn describe() {
        describe_counter!(
            "retry_attempts_total",
            "Attempts a retry layer made, first attempts included."
        );
        describe_counter!(
            "retry_retries_total",
            "Retries a retry layer made (attempts after the first)."
        );
        describe_counter!(
            "retry_give_ups_total",
            "Requests a retry layer gave up on while they still failed, by reason."
        );
        describe_counter!(
            "retry_budget_exhausted_total",
            "Retries refused by the retry budget."
        );
        describe_counter!(
            "retry_dead_letters_total",
            "Given-up requests handed to the dead-letter sink."
        );
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
