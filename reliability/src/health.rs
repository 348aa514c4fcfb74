//! System health in one document: every SLA monitor, breaker, cache and limiter.
//!
//! [`system_health`] collects the components of every [`HealthSource`] and arranges them
//! the way operators read them: the overall status first, then the data sources with
//! their SLA figures, the breakers, the caches and the rate limiters. The full component
//! list follows for tools that want everything.
//!
//! # Example
//!
//! ```
//! use reliability::core::health::*;
//! use reliability::health::system_health;
//!
//! struct Upstream;
//! impl HealthSource for Upstream {
//!     fn health(&self) -> Vec<ComponentHealth> {
//!         vec![ComponentHealth::new(
//!             "binance",
//!             HealthStatus::Healthy,
//!             ComponentDetail::Sla(SlaSnapshot { p95_ms: 12.0, success_rate: 1.0, ..Default::default() }),
//!         )]
//!     }
//! }
//!
//! let report = system_health([&Upstream as &dyn HealthSource]);
//! assert_eq!(report.status, HealthStatus::Healthy);
//! assert_eq!(report.sources[0].p95_ms, 12.0);
//! ```

use std::time::SystemTime;

use reliability_core::health::{
    BreakerState, ComponentDetail, ComponentHealth, HealthSource, HealthStatus, SystemHealth,
};
use serde::{Deserialize, Serialize};

/// The health document served at `/admin/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    /// The worst status of any component.
    pub status: HealthStatus,
    /// When it was taken, Unix milliseconds.
    pub unix_ms: u64,
    /// Data sources (SLA monitors).
    pub sources: Vec<SourceHealth>,
    /// Circuit breakers.
    pub breakers: Vec<BreakerHealth>,
    /// Caches: hit rate and stale serves.
    pub caches: Vec<CacheHealth>,
    /// Rate limiters: backend and fallback state.
    pub rate_limits: Vec<RateLimitHealth>,
    /// Every component with its full figures.
    pub components: Vec<ComponentHealth>,
}

/// One data source's SLA at a glance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceHealth {
    /// Its name.
    pub name: String,
    /// HEALTHY, DEGRADED or FAILED.
    pub status: HealthStatus,
    /// p50, milliseconds.
    pub p50_ms: f64,
    /// p95, milliseconds.
    pub p95_ms: f64,
    /// p99, milliseconds.
    pub p99_ms: f64,
    /// Success rate, 0..=1.
    pub success_rate: f64,
    /// Calls in the window.
    pub calls: u64,
}

/// One breaker at a glance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakerHealth {
    /// Its name.
    pub name: String,
    /// Its state.
    pub state: BreakerState,
    /// Failure rate in its window, percent.
    pub failure_rate: f64,
    /// Calls rejected while open.
    pub rejections: u64,
}

/// One cache at a glance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheHealth {
    /// Its name.
    pub name: String,
    /// Hits over requests, 0..=1.
    pub hit_rate: f64,
    /// Requests answered.
    pub hits: u64,
    /// Requests sent upstream.
    pub misses: u64,
    /// Stale entries served.
    pub stale_served: u64,
}

/// One rate limiter at a glance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateLimitHealth {
    /// Its name.
    pub name: String,
    /// `memory`, `redis` or `redis-cluster`.
    pub backend: String,
    /// Whether the local fallback is deciding (Redis unreachable).
    pub fallback_active: bool,
    /// Whether the shared control state (tiers, custom limits) is unreachable, so the last
    /// known assignments apply.
    pub control_stale: bool,
    /// Requests admitted.
    pub allowed: u64,
    /// Requests rejected.
    pub rejected: u64,
}

impl HealthReport {
    /// Arranges a system snapshot.
    pub fn from_system(system: SystemHealth) -> Self {
        let mut report = Self {
            status: system.status,
            unix_ms: system.unix_ms,
            sources: Vec::new(),
            breakers: Vec::new(),
            caches: Vec::new(),
            rate_limits: Vec::new(),
            components: Vec::new(),
        };
        for c in &system.components {
            let name = c.name.clone();
            match &c.detail {
                ComponentDetail::Sla(s) => report.sources.push(SourceHealth {
                    name,
                    status: c.status,
                    p50_ms: s.p50_ms,
                    p95_ms: s.p95_ms,
                    p99_ms: s.p99_ms,
                    success_rate: s.success_rate,
                    calls: s.calls,
                }),
                ComponentDetail::Breaker(b) => report.breakers.push(BreakerHealth {
                    name,
                    state: b.state,
                    failure_rate: b.failure_rate,
                    rejections: b.rejections,
                }),
                ComponentDetail::Cache(k) => report.caches.push(CacheHealth {
                    name,
                    hit_rate: k.hit_rate,
                    hits: k.hits,
                    misses: k.misses,
                    stale_served: k.stale_served,
                }),
                ComponentDetail::RateLimit(r) => report.rate_limits.push(RateLimitHealth {
                    name,
                    backend: r.backend.clone(),
                    fallback_active: r.fallback_active,
                    control_stale: r.control_stale,
                    allowed: r.allowed,
                    rejected: r.rejected,
                }),
                ComponentDetail::Retry(_) | ComponentDetail::Concurrency(_) => {}
            }
        }
        report.components = system.components;
        report
    }
}

/// The health of every source, arranged (see [`HealthReport`]).
pub fn system_health<'a>(sources: impl IntoIterator<Item = &'a dyn HealthSource>) -> HealthReport {
    HealthReport::from_system(SystemHealth::collect(sources, SystemTime::now()))
}
