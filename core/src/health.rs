//! Health and metrics snapshots: the serde types every layer fills and the facade serves.
//!
//! Each layer reports itself as one or more [`ComponentHealth`] values through the
//! [`HealthSource`] trait; [`SystemHealth::collect`] aggregates them into one JSON document
//! (`/admin/health`, the dashboard). The system's status is the worst status of its
//! components.
//!
//! # Example
//!
//! ```
//! use reliability_core::health::*;
//!
//! let breaker = ComponentHealth::new(
//!     "binance",
//!     HealthStatus::Degraded,
//!     ComponentDetail::Breaker(BreakerSnapshot { state: BreakerState::HalfOpen, ..Default::default() }),
//! );
//! let system = SystemHealth::from_components(vec![breaker], std::time::SystemTime::now());
//! assert_eq!(system.status, HealthStatus::Degraded);
//! let json = serde_json::to_value(&system).unwrap();
//! assert_eq!(json["components"][0]["detail"]["type"], "breaker");
//! assert_eq!(json["status"], "DEGRADED");
//! ```

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Health of a component or of the whole system, from best to worst.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthStatus {
    /// Within every threshold.
    #[default]
    Healthy,
    /// Not measured: too few calls in the window to judge (at start, or while an open
    /// breaker keeps calls from the upstream). Better than DEGRADED, never HEALTHY.
    Unknown,
    /// Working, outside some threshold (slow, some failures, a half-open breaker).
    Degraded,
    /// Not working (an open breaker, success rate under its floor).
    Failed,
}

impl HealthStatus {
    /// The worse of two statuses.
    #[must_use]
    pub fn worst(self, other: Self) -> Self {
        self.max(other)
    }

    /// `HEALTHY`, `UNKNOWN`, `DEGRADED` or `FAILED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "HEALTHY",
            Self::Unknown => "UNKNOWN",
            Self::Degraded => "DEGRADED",
            Self::Failed => "FAILED",
        }
    }
}

/// One component's health: an SLA monitor, a breaker, a cache, a limiter, a retry layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentHealth {
    /// The component's name (a source, a host, a cache name).
    pub name: String,
    /// Its status.
    pub status: HealthStatus,
    /// Why it is not healthy, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The layer-specific figures.
    pub detail: ComponentDetail,
}

impl ComponentHealth {
    /// A component with no message.
    pub fn new(name: impl Into<String>, status: HealthStatus, detail: ComponentDetail) -> Self {
        Self {
            name: name.into(),
            status,
            message: None,
            detail,
        }
    }

    /// The same, with a message.
    #[must_use]
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }
}

/// Layer-specific figures of a component, tagged by `type` in JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ComponentDetail {
    /// An SLA monitor.
    Sla(SlaSnapshot),
    /// A circuit breaker.
    Breaker(BreakerSnapshot),
    /// A cache.
    Cache(CacheSnapshot),
    /// A rate limiter.
    RateLimit(RateLimitSnapshot),
    /// A retry layer.
    Retry(RetrySnapshot),
    /// A concurrency limit.
    Concurrency(ConcurrencySnapshot),
}

/// Figures of a concurrency limit (a bulkhead or an adaptive limiter).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConcurrencySnapshot {
    /// The layer's name.
    pub name: String,
    /// `fixed`, `aimd`, `vegas` or `gradient2`.
    pub algorithm: String,
    /// `false` in shadow mode.
    pub enforced: bool,
    /// The current limit.
    pub limit: usize,
    /// Calls in flight.
    pub in_flight: usize,
    /// Calls waiting for a place.
    pub queued: usize,
    /// The smallest RTT of any call, milliseconds (adaptive only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_rtt_ms: Option<f64>,
    /// The smoothed RTT (gain 1/8), milliseconds (adaptive only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smoothed_rtt_ms: Option<f64>,
    /// The mean RTT of the last sample window, milliseconds (adaptive only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_rtt_ms: Option<f64>,
    /// Calls admitted.
    pub admitted: u64,
    /// Calls refused, for any reason.
    pub rejected: u64,
    /// Of those, queued calls pushed out by a higher class.
    pub shed: u64,
    /// Of those, queued calls whose wait timed out.
    pub queue_timeouts: u64,
    /// Calls shadow mode admitted that an enforced limit would have refused.
    pub shadow_rejected: u64,
}

/// Figures of an SLA monitor over its rolling window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SlaSnapshot {
    /// Calls in the window.
    pub calls: u64,
    /// Successful calls in the window.
    pub successes: u64,
    /// Failed calls in the window.
    pub failures: u64,
    /// Successes over counted calls, 0..=1 (1 when there were none).
    pub success_rate: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 95th percentile latency, milliseconds.
    pub p95_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// Largest latency, milliseconds.
    pub max_ms: f64,
    /// Failures in a row, up to now.
    pub consecutive_failures: u64,
    /// Share of time the source was not FAILED since monitoring began, 0..=1.
    pub uptime: f64,
    /// Calls per second over the window.
    pub calls_per_second: f64,
    /// The data-quality score the user reported, 0..=1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_quality: Option<f64>,
    /// Remaining error budget, 0..=1, where an SLO is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_budget_remaining: Option<f64>,
}

/// State of a circuit breaker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BreakerState {
    /// Calls flow; outcomes are recorded.
    #[default]
    Closed,
    /// Calls fail fast until the open wait ends.
    Open,
    /// A limited number of probe calls decide whether to close.
    HalfOpen,
    /// Held open by an operator until released.
    ForcedOpen,
}

/// Figures of a circuit breaker.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BreakerSnapshot {
    /// Current state.
    pub state: BreakerState,
    /// When the current state began, Unix milliseconds.
    pub state_since_unix_ms: u64,
    /// When an open breaker will admit a probe, Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at_unix_ms: Option<u64>,
    /// Calls admitted.
    pub calls: u64,
    /// Successful calls.
    pub successes: u64,
    /// Failed calls.
    pub failures: u64,
    /// Calls slower than the slow-call threshold.
    pub slow_calls: u64,
    /// Calls rejected without reaching the service.
    pub rejections: u64,
    /// State transitions.
    pub state_changes: u64,
    /// Failure rate in the current window, percent.
    pub failure_rate: f64,
    /// Slow-call rate in the current window, percent.
    pub slow_call_rate: f64,
}

/// Figures of one cache level (L1 memory, L2 Redis, L3 disk).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheLevelSnapshot {
    /// `l1`, `l2` or `l3`.
    pub level: String,
    /// Lookups answered by this level.
    pub hits: u64,
    /// Lookups this level could not answer.
    pub misses: u64,
    /// Failed operations (a dead Redis, a corrupt disk entry).
    pub errors: u64,
    /// Entries held, where known.
    pub entries: u64,
    /// Bytes held, where known.
    pub bytes: u64,
    /// Mean lookup latency, microseconds.
    pub mean_latency_us: f64,
}

impl CacheLevelSnapshot {
    /// Hits over lookups, 0..=1 (0 when there were none).
    pub fn hit_rate(&self) -> f64 {
        ratio(self.hits, self.hits + self.misses)
    }
}

/// Figures of a cache.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheSnapshot {
    /// Per-level figures, fastest first.
    pub levels: Vec<CacheLevelSnapshot>,
    /// Requests answered from cache (any level, fresh or stale).
    pub hits: u64,
    /// Requests that went to the upstream.
    pub misses: u64,
    /// Stale entries served (stale-while-revalidate and stale-if-error).
    pub stale_served: u64,
    /// Requests that joined another's in-flight upstream call.
    pub coalesced: u64,
    /// Values rejected as too large.
    pub rejected_too_large: u64,
    /// Hits over requests, 0..=1.
    pub hit_rate: f64,
}

/// Figures of a rate limiter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RateLimitSnapshot {
    /// Requests admitted.
    pub allowed: u64,
    /// Requests rejected.
    pub rejected: u64,
    /// Requests that waited for quota (client mode).
    pub waited: u64,
    /// `memory`, `redis` or `redis-cluster`.
    pub backend: String,
    /// Whether decisions currently come from the local fallback (Redis unreachable).
    pub fallback_active: bool,
    /// Subjects currently tracked in process.
    pub tracked_keys: u64,
    /// Whether control state (tiers, custom limits, usage) is shared by a fleet through
    /// the backend.
    #[serde(default)]
    pub shared_control: bool,
    /// Whether the shared control state could not be read or written lately: the last
    /// known rules apply until it answers again.
    #[serde(default)]
    pub control_stale: bool,
    /// Garbage found in the shared control state (reported and ignored).
    #[serde(default)]
    pub control_errors: u64,
}

/// Figures of a retry layer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RetrySnapshot {
    /// Calls made to the inner service, first attempts included.
    pub attempts: u64,
    /// Attempts after the first.
    pub retries: u64,
    /// Requests that failed after their last allowed attempt.
    pub give_ups: u64,
    /// Retries refused because the budget was empty.
    pub budget_exhausted: u64,
    /// Requests sent to the dead-letter sink.
    pub dead_lettered: u64,
}

/// Anything that can report its health: monitors, breakers, caches, limiters, registries.
pub trait HealthSource: Send + Sync {
    /// The components this source reports (a registry reports one per member).
    fn health(&self) -> Vec<ComponentHealth>;
}

impl<T: HealthSource + ?Sized> HealthSource for Arc<T> {
    fn health(&self) -> Vec<ComponentHealth> {
        (**self).health()
    }
}

/// The health of a whole system: every component, and the worst status among them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemHealth {
    /// The worst component status (HEALTHY when there are none).
    pub status: HealthStatus,
    /// When the snapshot was taken, Unix milliseconds.
    pub unix_ms: u64,
    /// Every component.
    pub components: Vec<ComponentHealth>,
}

impl SystemHealth {
    /// A snapshot of the given components taken at `now`.
    pub fn from_components(components: Vec<ComponentHealth>, now: SystemTime) -> Self {
        let status = components
            .iter()
            .fold(HealthStatus::Healthy, |s, c| s.worst(c.status));
        Self {
            status,
            unix_ms: unix_ms(now),
            components,
        }
    }

    /// A snapshot of every source.
    pub fn collect<'a>(
        sources: impl IntoIterator<Item = &'a dyn HealthSource>,
        now: SystemTime,
    ) -> Self {
        let components = sources.into_iter().flat_map(|s| s.health()).collect();
        Self::from_components(components, now)
    }

    /// Components that are not HEALTHY.
    pub fn unhealthy(&self) -> impl Iterator<Item = &ComponentHealth> {
        self.components
            .iter()
            .filter(|c| c.status != HealthStatus::Healthy)
    }
}

/// Milliseconds since the Unix epoch (0 before it).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `num / den`, or 0 when `den` is 0.
pub fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Two;
    impl HealthSource for Two {
        fn health(&self) -> Vec<ComponentHealth> {
            vec![
                ComponentHealth::new(
                    "a",
                    HealthStatus::Healthy,
                    ComponentDetail::Sla(SlaSnapshot::default()),
                ),
                ComponentHealth::new(
                    "b",
                    HealthStatus::Failed,
                    ComponentDetail::Retry(RetrySnapshot::default()),
                )
                .with_message("down"),
            ]
        }
    }

    #[test]
    fn system_status_is_the_worst() {
        let two = Two;
        let sys = SystemHealth::collect([&two as &dyn HealthSource], UNIX_EPOCH);
        assert_eq!(sys.status, HealthStatus::Failed);
        assert_eq!(sys.unhealthy().count(), 1);
        let empty = SystemHealth::from_components(vec![], UNIX_EPOCH);
        assert_eq!(empty.status, HealthStatus::Healthy);
    }

    #[test]
    fn json_shape_round_trips() {
        let sys = SystemHealth::collect([&Two as &dyn HealthSource], UNIX_EPOCH);
        let json = serde_json::to_value(&sys).unwrap();
        assert_eq!(json["status"], "FAILED");
        assert_eq!(json["components"][1]["message"], "down");
        assert_eq!(json["components"][0]["detail"]["type"], "sla");
        assert!(json["components"][0].get("message").is_none());
        let back: SystemHealth = serde_json::from_value(json).unwrap();
        assert_eq!(back, sys);
    }

    #[test]
    fn hit_rate_of_empty_level_is_zero() {
        assert_eq!(CacheLevelSnapshot::default().hit_rate(), 0.0);
        let l = CacheLevelSnapshot {
            hits: 3,
            misses: 1,
            ..Default::default()
        };
        assert_eq!(l.hit_rate(), 0.75);
    }
}
