//! The admin router's memory: a bounded ring of health samples for the dashboard's charts.
//!
//! A background task takes one sample per interval (by default 600 points at one second:
//! ten minutes) and keeps, per component, only the figures a chart draws. The ring sits
//! behind one mutex that the sampler takes once per interval and `GET /admin/history`
//! once per request; no layer ever touches it.
//!
//! The answer, oldest point first:
//!
//! ```json
//! { "interval_ms": 1000, "capacity": 600, "points": [ {
//!     "unix_ms": 1767225600000,
//!     "sources": [ { "name": "cex", "status": "HEALTHY", "p50_ms": 12.5, "p95_ms": 40.0,
//!                    "p99_ms": 80.0, "calls": 120, "failures": 1 } ],
//!     "caches": [ { "name": "cex", "hits": 900, "misses": 100, "hit_ratio": 0.9,
//!                   "stale_served": 3 } ],
//!     "breakers": [ { "name": "cex", "state": "CLOSED" } ],
//!     "rate_limits": [ { "name": "api", "allowed": 1000, "rejected": 7 } ] } ] }
//! ```
//!
//! Cache and limiter figures are the components' running totals (a chart draws their
//! differences); SLA figures cover the monitor's rolling window.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use reliability_core::health::{BreakerState, ComponentDetail, HealthStatus, SystemHealth};
use serde::{Serialize, Serializer};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// Points kept by default: ten minutes at [`DEFAULT_HISTORY_INTERVAL`].
pub const DEFAULT_HISTORY_CAPACITY: usize = 600;

/// Time between two samples by default.
pub const DEFAULT_HISTORY_INTERVAL: Duration = Duration::from_secs(1);

/// Most points a history may keep (a day at one second).
pub const MAX_HISTORY_CAPACITY: usize = 86_400;

/// The sampled history of one router.
pub(crate) struct History {
    capacity: usize,
    interval: Duration,
    ring: Mutex<Ring>,
    started: AtomicBool,
}

impl History {
    /// An empty history; nothing is allocated until the first sample.
    pub(crate) fn new(capacity: usize, interval: Duration) -> Self {
        Self {
            capacity,
            interval,
            ring: Mutex::new(Ring::default()),
            started: AtomicBool::new(false),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn interval(&self) -> Duration {
        self.interval
    }

    fn ring(&self) -> MutexGuard<'_, Ring> {
        // A panic while recording leaves at worst one half-written point: keep serving.
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a point taken from `system`, dropping the oldest once full.
    pub(crate) fn record(&self, system: &SystemHealth) {
        self.ring().record(system, self.capacity);
    }

    /// The JSON answer of `GET /admin/history`: the points newer than `since` (Unix ms).
    pub(crate) fn to_json(&self, since: Option<u64>) -> Vec<u8> {
        let ring = self.ring();
        let start = since.map_or(0, |s| ring.points.partition_point(|p| p.unix_ms <= s));
        let answer = Answer {
            interval_ms: u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX),
            capacity: self.capacity,
            points: Points(ring.points.range(start..)),
        };
        // Roughly what a point of a small server takes, so the buffer rarely regrows.
        let mut out = Vec::with_capacity(64 + 400 * (ring.points.len() - start));
        serde_json::to_writer(&mut out, &answer).expect("history serializes to memory");
        out
    }
}

/// A copy of a builder holds no samples: each router records its own.
impl Clone for History {
    fn clone(&self) -> Self {
        Self::new(self.capacity, self.interval)
    }
}

/// What the sampler reads and where it writes.
pub(crate) trait Sampled: Send + Sync + 'static {
    /// The owner's history.
    fn recorder(&self) -> &History;
    /// A snapshot of every component.
    fn sample(&self) -> SystemHealth;
}

/// Starts the sampler of `owner` on the current tokio runtime, once. Outside a runtime it
/// does nothing and answers `None`, so the next call (a request) starts it. The task holds
/// only a [`Weak`]: it ends at the first tick after the owner is dropped.
pub(crate) fn ensure_sampler<T: Sampled>(owner: &Arc<T>) -> Option<JoinHandle<()>> {
    let history = owner.recorder();
    if history.started.load(Ordering::Acquire) {
        return None;
    }
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    if history.started.swap(true, Ordering::AcqRel) {
        return None;
    }
    Some(runtime.spawn(sample_every(Arc::downgrade(owner), history.interval())))
}

async fn sample_every<T: Sampled>(owner: Weak<T>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        ticks.tick().await;
        let Some(owner) = owner.upgrade() else {
            return;
        };
        let system = owner.sample();
        owner.recorder().record(&system);
    }
}

#[derive(Default)]
struct Ring {
    points: VecDeque<Point>,
    /// Every component name seen, shared by all the points that carry it.
    names: Vec<Arc<str>>,
}

impl Ring {
    fn record(&mut self, system: &SystemHealth, capacity: usize) {
        let mut point = if self.points.len() >= capacity {
            self.points.pop_front().unwrap_or_default()
        } else {
            if self.points.capacity() == 0 {
                self.points.reserve_exact(capacity);
            }
            Point::default()
        };
        point.clear();
        // Timestamps never go back, so `since` can bisect (a wall clock may step back).
        let last = self.points.back().map_or(0, |p| p.unix_ms);
        point.unix_ms = system.unix_ms.max(last);
        for c in &system.components {
            let name = self.intern(&c.name);
            match &c.detail {
                ComponentDetail::Sla(s) => point.sources.push(SourcePoint {
                    name,
                    status: c.status,
                    p50_ms: s.p50_ms as f32,
                    p95_ms: s.p95_ms as f32,
                    p99_ms: s.p99_ms as f32,
                    calls: s.calls,
                    failures: s.failures,
                }),
                ComponentDetail::Cache(k) => point.caches.push(CachePoint {
                    name,
                    hits: k.hits,
                    misses: k.misses,
                    hit_ratio: k.hit_rate as f32,
                    stale_served: k.stale_served,
                }),
                ComponentDetail::Breaker(b) => point.breakers.push(BreakerPoint {
                    name,
                    state: b.state,
                }),
                ComponentDetail::RateLimit(r) => point.rate_limits.push(RateLimitPoint {
                    name,
                    allowed: r.allowed,
                    rejected: r.rejected,
                }),
                ComponentDetail::Retry(_) | ComponentDetail::Concurrency(_) => {}
            }
        }
        self.points.push_back(point);
    }

    fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(known) = self.names.iter().find(|n| &***n == name) {
            return known.clone();
        }
        // Names come from the registered parts; a bound keeps a source that invents
        // names (one per host, say) from growing the table for ever.
        let name: Arc<str> = Arc::from(name);
        if self.names.len() < 1024 {
            self.names.push(name.clone());
        }
        name
    }
}

#[derive(Debug, Default, Serialize)]
struct Point {
    unix_ms: u64,
    sources: Vec<SourcePoint>,
    caches: Vec<CachePoint>,
    breakers: Vec<BreakerPoint>,
    rate_limits: Vec<RateLimitPoint>,
}

impl Point {
    /// Empties the point and keeps its buffers for the next sample.
    fn clear(&mut self) {
        self.sources.clear();
        self.caches.clear();
        self.breakers.clear();
        self.rate_limits.clear();
    }
}

#[derive(Debug, Serialize)]
struct SourcePoint {
    #[serde(serialize_with = "name")]
    name: Arc<str>,
    status: HealthStatus,
    p50_ms: f32,
    p95_ms: f32,
    p99_ms: f32,
    calls: u64,
    failures: u64,
}

#[derive(Debug, Serialize)]
struct CachePoint {
    #[serde(serialize_with = "name")]
    name: Arc<str>,
    hits: u64,
    misses: u64,
    hit_ratio: f32,
    stale_served: u64,
}

#[derive(Debug, Serialize)]
struct BreakerPoint {
    #[serde(serialize_with = "name")]
    name: Arc<str>,
    state: BreakerState,
}

#[derive(Debug, Serialize)]
struct RateLimitPoint {
    #[serde(serialize_with = "name")]
    name: Arc<str>,
    allowed: u64,
    rejected: u64,
}

fn name<S: Serializer>(name: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(name)
}

#[derive(Serialize)]
struct Answer<'a> {
    interval_ms: u64,
    capacity: usize,
    points: Points<'a>,
}

/// The points straight from the ring, without a copy.
struct Points<'a>(std::collections::vec_deque::Iter<'a, Point>);

impl Serialize for Points<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    use reliability_core::health::{
        BreakerSnapshot, CacheSnapshot, ComponentHealth, RateLimitSnapshot, RetrySnapshot,
        SlaSnapshot,
    };
    use serde_json::Value;

    fn system(unix_ms: u64, calls: u64) -> SystemHealth {
        SystemHealth {
            status: HealthStatus::Healthy,
            unix_ms,
            components: vec![
                ComponentHealth::new(
                    "cex",
                    HealthStatus::Degraded,
                    ComponentDetail::Sla(SlaSnapshot {
                        calls,
                        failures: 2,
                        p50_ms: 1.5,
                        p95_ms: 9.25,
                        p99_ms: 20.0,
                        ..Default::default()
                    }),
                ),
                ComponentHealth::new(
                    "cex",
                    HealthStatus::Failed,
                    ComponentDetail::Breaker(BreakerSnapshot {
                        state: BreakerState::Open,
                        ..Default::default()
                    }),
                ),
                ComponentHealth::new(
                    "cex-cache",
                    HealthStatus::Healthy,
                    ComponentDetail::Cache(CacheSnapshot {
                        hits: 3,
                        misses: 1,
                        hit_rate: 0.75,
                        stale_served: 1,
                        ..Default::default()
                    }),
                ),
                ComponentHealth::new(
                    "api",
                    HealthStatus::Healthy,
                    ComponentDetail::RateLimit(RateLimitSnapshot {
                        allowed: 10,
                        rejected: 4,
                        ..Default::default()
                    }),
                ),
                ComponentHealth::new(
                    "cex-retry",
                    HealthStatus::Healthy,
                    ComponentDetail::Retry(RetrySnapshot::default()),
                ),
            ],
        }
    }

    fn answer(history: &History, since: Option<u64>) -> Value {
        serde_json::from_slice(&history.to_json(since)).unwrap()
    }

    fn stamps(answer: &Value) -> Vec<u64> {
        answer["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["unix_ms"].as_u64().unwrap())
            .collect()
    }

    #[test]
    fn ring_keeps_the_newest_capacity_points() {
        let history = History::new(5, Duration::from_secs(1));
        assert_eq!(stamps(&answer(&history, None)), Vec::<u64>::new());
        for i in 1..=12 {
            history.record(&system(i * 1000, i));
        }
        let all = answer(&history, None);
        assert_eq!(all["capacity"], 5);
        assert_eq!(all["interval_ms"], 1000);
        assert_eq!(stamps(&all), [8000, 9000, 10_000, 11_000, 12_000]);
        assert_eq!(history.ring().points.len(), 5);
        // The interned names are shared, not copied per point.
        assert_eq!(history.ring().names.len(), 4);
    }

    #[test]
    fn since_returns_only_newer_points() {
        let history = History::new(10, Duration::from_secs(1));
        for i in 1..=6 {
            history.record(&system(i * 1000, i));
        }
        assert_eq!(stamps(&answer(&history, Some(4000))), [5000, 6000]);
        assert_eq!(stamps(&answer(&history, Some(4500))), [5000, 6000]);
        assert_eq!(stamps(&answer(&history, Some(0))).len(), 6);
        assert!(stamps(&answer(&history, Some(6000))).is_empty());
        assert!(stamps(&answer(&history, Some(u64::MAX))).is_empty());
    }

    #[test]
    fn a_clock_stepping_back_does_not_unsort_the_ring() {
        let history = History::new(10, Duration::from_secs(1));
        history.record(&system(5000, 1));
        history.record(&system(3000, 2));
        history.record(&system(7000, 3));
        assert_eq!(stamps(&answer(&history, None)), [5000, 5000, 7000]);
        assert_eq!(stamps(&answer(&history, Some(5000))), [7000]);
    }

    #[test]
    fn a_point_carries_the_figures_each_chart_draws() {
        let history = History::new(3, Duration::from_millis(250));
        history.record(&system(1000, 42));
        let point = &answer(&history, None)["points"][0];
        assert_eq!(
            point["sources"][0],
            serde_json::json!({ "name": "cex", "status": "DEGRADED", "p50_ms": 1.5,
                "p95_ms": 9.25, "p99_ms": 20.0, "calls": 42, "failures": 2 })
        );
        assert_eq!(point["breakers"][0]["state"], "OPEN");
        assert_eq!(point["caches"][0]["hit_ratio"], 0.75);
        assert_eq!(point["caches"][0]["stale_served"], 1);
        assert_eq!(point["rate_limits"][0]["rejected"], 4);
        assert_eq!(
            point.as_object().unwrap().len(),
            5,
            "no retry figures: {point}"
        );
    }

    struct Counting {
        history: History,
        samples: AtomicU64,
    }

    impl Sampled for Counting {
        fn recorder(&self) -> &History {
            &self.history
        }
        fn sample(&self) -> SystemHealth {
            let n = self.samples.fetch_add(1, Ordering::SeqCst) + 1;
            system(n * 1000, n)
        }
    }

    fn counting() -> Arc<Counting> {
        Arc::new(Counting {
            history: History::new(4, Duration::from_secs(1)),
            samples: AtomicU64::new(0),
        })
    }

    #[test]
    fn outside_a_runtime_the_sampler_waits_for_one() {
        let owner = counting();
        assert!(ensure_sampler(&owner).is_none());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            assert!(
                ensure_sampler(&owner).is_some(),
                "started on the first call"
            );
            assert!(ensure_sampler(&owner).is_none(), "started once");
        });
    }

    #[tokio::test(start_paused = true)]
    async fn sampler_fills_the_ring_and_stops_with_its_owner() {
        let owner = counting();
        let task = ensure_sampler(&owner).expect("inside a runtime");
        // The first sample is taken at once, then one per interval.
        tokio::time::sleep(Duration::from_millis(5500)).await;
        assert_eq!(owner.samples.load(Ordering::SeqCst), 6);
        assert_eq!(
            stamps(&answer(&owner.history, None)),
            [3000, 4000, 5000, 6000]
        );
        drop(owner);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the sampler ends once its owner is gone")
            .unwrap();
    }
}
