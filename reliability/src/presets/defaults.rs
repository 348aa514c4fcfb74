//! The preset tables, as the layers' own configurations: one function per layer, one
//! value per [`SourceKind`].
//!
//! | source | SLA p95 / p99 | min success | max consecutive failures | breaker: consecutive failures / open wait / successes | cache TTL default (min..max) |
//! |---|---|---|---|---|---|
//! | CEX | 1 s / 2 s | 95 % | 3 | 5 / 30 s / 2 | 5 s (2..15 s) |
//! | DEX | 3 s / 5 s | 90 % | 5 | 10 / 60 s / 3 | 30 s (10..120 s) |
//! | Social | 5 s / 10 s | 85 % | 3 | 3 / 120 s / 1 | 300 s (60..900 s) |
//!
//! And the settings typical of such sources:
//!
//! | source | retry: attempts / backoff base..cap / jitter / budget | quota / max wait | attempt timeout |
//! |---|---|---|---|
//! | CEX | 3 / 50 ms..1 s / full / 20 % | 20 per 1 s / 2 s | 2 s |
//! | DEX | 3 / 200 ms..5 s / decorrelated / 20 % | 10 per 1 s / 5 s | 5 s |
//! | Social | 4 / 500 ms..10 s / full / 10 % | 5 per 5 s / 10 s | 10 s |
//!
//! And a bulkhead in front of each upstream (calls in flight at once):
//!
//! | source | concurrency limit | wait queue | when full |
//! |---|---|---|---|
//! | CEX | 32, fixed | none | refused at once (`BulkheadFull`, 503 + `Retry-After: 1`) |
//! | DEX | 64, fixed | 64 calls, 1 s | waits, then refused |
//! | Social | adaptive (Gradient2), 16 to start, 4..64 | 32 calls, 2 s | waits, then refused; the limit falls as latency climbs |
//!
//! Everything else is the layer's default, but for these: the SLA windows are the last 100
//! calls and 60 s in 5 s intervals; the breaker also trips at 50 % failures over a window
//! of 20 calls (DEX: 40) once it holds 10 (DEX: 20), and admits as many half-open probes
//! as it needs successes, so one failed probe reopens it; a stale entry is served for one
//! TTL while it is refreshed and for two TTLs when the upstream fails.
//!
//! ```
//! use std::time::Duration;
//! use reliability::config::SourceKind;
//! use reliability::presets::defaults;
//!
//! let breaker = defaults::breaker(SourceKind::Dex);
//! assert_eq!(breaker.consecutive_failures, Some(10));
//! assert_eq!(breaker.open_wait, Duration::from_secs(60));
//! // The layer's own configuration: it builds a breaker by itself.
//! let layer = reliability::breaker::CircuitBreakerLayer::from_config("uniswap", &breaker);
//! assert!(layer.is_ok());
//! ```

use hedge_layer::HedgeConfig;
use std::time::Duration;

use breaker_layer::CircuitBreakerConfig;
use breaker_layer::config::WindowConfig as BreakerWindow;
use cache_layer::adaptive::AdaptiveRule;
use cache_layer::{AdaptiveConfig, CacheConfig};
use concurrency_layer::{AlgorithmConfig, ConcurrencyConfig, Gradient2Config};
use ratelimit_layer::WindowConfig;
use retry_layer::RetryConfig;
use retry_layer::backoff::{Backoff, Jitter};
use retry_layer::budget::{BudgetConfig, RatioBudgetConfig};
use sla_layer::SlaConfig;
use sla_layer::status::SlaThresholds;

use crate::config::{ClientRateLimitConfig, SourceKind};

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

const fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// The SLA table: p95, p99, min success rate and max consecutive failures.
pub fn sla(kind: SourceKind) -> SlaConfig {
    let (p95, p99, min_success_rate, max_consecutive_failures) = match kind {
        SourceKind::Cex => (secs(1), secs(2), 0.95, 3),
        SourceKind::Dex => (secs(3), secs(5), 0.90, 5),
        SourceKind::Social => (secs(5), secs(10), 0.85, 3),
    };
    SlaConfig {
        count_window: 100,
        time_window: secs(60),
        time_interval: secs(5),
        thresholds: SlaThresholds {
            p95: Some(p95),
            p99: Some(p99),
            min_success_rate,
            max_consecutive_failures,
            ..SlaThresholds::default()
        },
        ..SlaConfig::default()
    }
}

/// The breaker table: consecutive failures that open the circuit, the open wait, and the
/// successful probes that close it.
pub fn breaker(kind: SourceKind) -> CircuitBreakerConfig {
    let (failures, open_wait, successes, window, minimum_calls) = match kind {
        SourceKind::Cex => (5, secs(30), 2, 20, 10),
        SourceKind::Dex => (10, secs(60), 3, 40, 20),
        SourceKind::Social => (3, secs(120), 1, 20, 10),
    };
    CircuitBreakerConfig {
        window: BreakerWindow::Count { size: window },
        failure_rate: 50.0,
        minimum_calls,
        consecutive_failures: Some(failures),
        open_wait,
        half_open_probes: successes,
        success_threshold: successes,
        ..CircuitBreakerConfig::default()
    }
}

/// The TTL table: the default TTL, and the bounds of the adaptive TTL (popularity rule).
pub fn cache(kind: SourceKind) -> CacheConfig {
    let (ttl, min, max) = match kind {
        SourceKind::Cex => (secs(5), secs(2), secs(15)),
        SourceKind::Dex => (secs(30), secs(10), secs(120)),
        SourceKind::Social => (secs(300), secs(60), secs(900)),
    };
    CacheConfig {
        ttl,
        adaptive: Some(AdaptiveConfig {
            rule: AdaptiveRule::Popularity,
            min,
            max,
        }),
        stale_while_revalidate: ttl,
        stale_if_error: Some(ttl * 2),
        max_entries: Some(10_000),
        ..CacheConfig::default()
    }
}

/// Attempts, exponential backoff and an Envoy-style ratio budget, so retries never
/// amplify an outage.
pub fn retry(kind: SourceKind) -> RetryConfig {
    let (max_attempts, base, cap, jitter, ratio) = match kind {
        SourceKind::Cex => (3, millis(50), secs(1), Jitter::Full, 0.2),
        SourceKind::Dex => (3, millis(200), secs(5), Jitter::Decorrelated, 0.2),
        SourceKind::Social => (4, millis(500), secs(10), Jitter::Full, 0.1),
    };
    RetryConfig {
        max_attempts,
        backoff: Backoff::exponential(base, cap, jitter),
        budget: BudgetConfig::Ratio(RatioBudgetConfig {
            ratio,
            ..RatioBudgetConfig::default()
        }),
        ..RetryConfig::default()
    }
}

/// The upstream's quota (`limit` per `period`, all of it at once after a pause) and the
/// longest wait for it.
pub fn rate_limit(kind: SourceKind) -> ClientRateLimitConfig {
    let (limit, period, max_wait) = match kind {
        SourceKind::Cex => (20, secs(1), secs(2)),
        SourceKind::Dex => (10, secs(1), secs(5)),
        SourceKind::Social => (5, secs(5), secs(10)),
    };
    ClientRateLimitConfig {
        window: WindowConfig::new(limit, period),
        max_wait,
    }
}

/// The bulkhead of the preset table: small and strict for exchanges, a queue for DEX
/// aggregators, an adaptive limit for social APIs whose latency climbs under load.
pub fn concurrency(kind: SourceKind) -> ConcurrencyConfig {
    match kind {
        SourceKind::Cex => ConcurrencyConfig {
            limit: 32,
            queue_capacity: 0,
            ..ConcurrencyConfig::default()
        },
        SourceKind::Dex => ConcurrencyConfig {
            limit: 64,
            queue_capacity: 64,
            queue_timeout: secs(1),
            ..ConcurrencyConfig::default()
        },
        SourceKind::Social => ConcurrencyConfig {
            limit: 16,
            queue_capacity: 32,
            queue_timeout: secs(2),
            adaptive: Some(AlgorithmConfig::Gradient2(Gradient2Config {
                min_limit: 4,
                max_limit: 64,
                ..Gradient2Config::default()
            })),
            ..ConcurrencyConfig::default()
        },
    }
}

/// Hedging of idempotent reads: CEX and DEX reads (order books, quotes) send a second
/// copy after their own p95 latency, within a budget of 10 % of requests; social APIs,
/// whose quota is the scarce thing, are not hedged (`max_hedges = 0`).
pub fn hedge(kind: SourceKind) -> HedgeConfig {
    match kind {
        SourceKind::Cex | SourceKind::Dex => HedgeConfig::default(),
        SourceKind::Social => HedgeConfig {
            max_hedges: 0,
            ..HedgeConfig::default()
        },
    }
}

/// The time allowed for one attempt.
pub fn attempt_timeout(kind: SourceKind) -> Duration {
    match kind {
        SourceKind::Cex => secs(2),
        SourceKind::Dex => secs(5),
        SourceKind::Social => secs(10),
    }
}
