//! The monitor: sharded recorders, merged on read, and the evaluation that turns their
//! figures into a status, events and alerts.
//!
//! # Recording cost and concurrency
//!
//! A call is recorded into one of a few **shards**, picked by the recording thread, each
//! behind its own small lock, so two threads almost never meet: there is no global lock
//! on the record path. A shard holds the current interval's histogram and the last
//! `count_window` calls it saw; completed intervals move to the monitor's ring once per
//! interval. Readers lock every shard briefly and merge. The only monitor-wide writes are
//! the consecutive-failure counter (written on failures, and on the first success after
//! one) and the evaluation deadline (once per `evaluation_interval`).

mod evaluate;
mod report;
mod shard;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use crossbeam_utils::CachePadded;
use parking_lot::Mutex;
use reliability_core::classify::Outcome;
use reliability_core::health::{ComponentHealth, HealthSource, HealthStatus};

pub use self::report::{CallTotals, SlaReport};
use self::shard::{Shard, ShardState, default_shards, thread_slot};
use crate::budget::BudgetTracker;
use crate::config::{SlaConfig, SlaMonitorBuilder};
use crate::error::InvalidScore;
use crate::events::{AlertListener, StatusListener};
use crate::metrics::Instruments;
use crate::status::StatusTracker;
use crate::window::{CountRing, IntervalData, TimeRing};
use reliability_core::clock::Ticker;

const NO_SCORE: u64 = u64::MAX;

struct MonitorCore {
    name: Arc<str>,
    config: SlaConfig,
    ticker: Ticker,
    interval_ns: u64,
    slots: u64,
    eval_every_ns: u64,
    max_consecutive: u64,
    /// Written on failures only: successes read it and leave the line shared.
    consecutive: CachePadded<AtomicU64>,
    next_eval_ns: CachePadded<AtomicU64>,
    data_quality: AtomicU64,
    ring: Mutex<TimeRing>,
    shards: OnceLock<Box<[Weak<Shard>]>>,
    eval: Mutex<EvalState>,
    status_listeners: Vec<StatusListener>,
    alert_listeners: Vec<AlertListener>,
    instruments: Instruments,
}

struct EvalState {
    tracker: StatusTracker,
    budget: Option<BudgetTracker>,
    seen: CallTotals,
}

/// A named SLA monitor: records calls, keeps rolling windows, decides a status.
///
/// Cheap to clone (two `Arc`s); clones share everything.
#[derive(Clone)]
pub struct SlaMonitor {
    core: Arc<MonitorCore>,
    shards: Arc<[Arc<Shard>]>,
}

impl fmt::Debug for SlaMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlaMonitor")
            .field("name", &self.core.name)
            .field("shards", &self.shards.len())
            .field("config", &self.core.config)
            .finish_non_exhaustive()
    }
}

impl SlaMonitor {
    /// A builder for a monitor called `name` (1 to 256 bytes).
    pub fn builder(name: impl Into<String>) -> SlaMonitorBuilder {
        SlaMonitorBuilder::new(name)
    }

    /// A monitor from a deserialized configuration, on the default clock.
    pub fn from_config(
        name: impl Into<String>,
        config: &SlaConfig,
    ) -> Result<Self, reliability_core::error::ConfigError> {
        Self::builder(name).config(config.clone()).build()
    }

    pub(crate) fn from_builder(b: SlaMonitorBuilder) -> Self {
        let config = b.config;
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
        let interval_ns = nanos(config.time_interval);
        let slots = (nanos(config.time_window) / interval_ns).max(1);
        let shard_count = config
            .shards
            .unwrap_or_else(default_shards)
            .next_power_of_two();
        let ticker = Ticker::new(b.clock);
        let now = ticker.now_ns();
        let name: Arc<str> = b.name.into();
        let core = Arc::new(MonitorCore {
            instruments: Instruments::new(&name),
            name,
            interval_ns,
            slots,
            eval_every_ns: nanos(config.evaluation_interval),
            max_consecutive: config.thresholds.max_consecutive_failures,
            consecutive: CachePadded::new(AtomicU64::new(0)),
            next_eval_ns: CachePadded::new(AtomicU64::new(
                now.saturating_add(nanos(config.evaluation_interval)),
            )),
            data_quality: AtomicU64::new(NO_SCORE),
            ring: Mutex::new(TimeRing::new(slots as usize)),
            shards: OnceLock::new(),
            eval: Mutex::new(EvalState {
                tracker: StatusTracker::new(),
                budget: config.slo.clone().map(BudgetTracker::new),
                seen: CallTotals::default(),
            }),
            status_listeners: b.status_listeners,
            alert_listeners: b.alert_listeners,
            ticker,
            config,
        });
        let shards: Arc<[Arc<Shard>]> = (0..shard_count)
            .map(|_| {
                Arc::new(Shard {
                    core: Arc::clone(&core),
                    state: Mutex::new(ShardState {
                        interval: 0,
                        interval_end_ns: 0,
                        current: IntervalData::new(core.config.significant_figures),
                        recent: CountRing::new(core.config.count_window),
                        totals: CallTotals::default(),
                        latency_sum_ns: 0,
                    }),
                })
            })
            .collect();
        let weak = shards.iter().map(Arc::downgrade).collect();
        // Just created: nobody else can have set it.
        let _ = core.shards.set(weak);
        Self { core, shards }
    }

    /// The monitor's name.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// Its configuration.
    pub fn config(&self) -> &SlaConfig {
        &self.core.config
    }

    #[inline]
    fn shard(&self) -> &Arc<Shard> {
        &self.shards[thread_slot() & (self.shards.len() - 1)]
    }

    /// Starts timing a call; [`CallTimer::finish`] records it. A timer dropped unfinished
    /// counts as a cancelled call.
    #[inline]
    pub fn start(&self) -> CallTimer {
        let shard = Arc::clone(self.shard());
        let start_ns = shard.core.ticker.now_ns();
        CallTimer {
            shard: Some(shard),
            start_ns,
        }
    }

    /// Records a call that took `latency` and ended now, measured by the caller.
    pub fn record(&self, latency: Duration, outcome: Outcome) {
        let now = self.core.ticker.now_ns();
        let latency_ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.shard().record(now, latency_ns, outcome);
    }

    /// Reports the quality of the data the source returns, 0..=1 (1 = perfect). The
    /// latest score is kept; NaN and values outside 0..=1 are refused.
    pub fn report_data_quality(&self, score: f64) -> Result<(), InvalidScore> {
        if !(0.0..=1.0).contains(&score) {
            return Err(InvalidScore(score));
        }
        self.core
            .data_quality
            .store(score.to_bits(), Ordering::Relaxed);
        Ok(())
    }

    /// Failures in a row, up to now.
    pub fn consecutive_failures(&self) -> u64 {
        self.core.consecutive.load(Ordering::Relaxed)
    }

    /// Evaluates the status rules and alerts now and returns everything the monitor knows.
    pub fn report(&self) -> SlaReport {
        self.core.evaluate(self.core.ticker.now_ns())
    }

    /// The current status (evaluates the rules).
    pub fn status(&self) -> HealthStatus {
        self.report().status
    }

    /// The current report as a [`ComponentHealth`].
    pub fn component_health(&self) -> ComponentHealth {
        self.report().to_component()
    }

    /// Evaluates the monitor and sets its windowed gauges (percentiles, ratios, status,
    /// budget, burn rates, alerts) from the report, for an exporter about to render (the
    /// families are in the crate's README, feature `metrics`). The first call
    /// registers the gauges with the recorder installed then; later calls only set them.
    #[cfg(feature = "metrics")]
    pub fn publish_metrics(&self) {
        let report = self.report();
        self.core.instruments.publish(&report);
    }
}

impl HealthSource for SlaMonitor {
    fn health(&self) -> Vec<ComponentHealth> {
        vec![self.component_health()]
    }
}

/// Times one call; see [`SlaMonitor::start`].
#[must_use = "a dropped timer records a cancelled call"]
pub struct CallTimer {
    shard: Option<Arc<Shard>>,
    start_ns: u64,
}

impl fmt::Debug for CallTimer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallTimer")
            .field("start_ns", &self.start_ns)
            .finish_non_exhaustive()
    }
}

impl CallTimer {
    /// Records the call with `outcome`, its latency measured from [`SlaMonitor::start`].
    #[inline]
    pub fn finish(mut self, outcome: Outcome) {
        if let Some(shard) = self.shard.take() {
            let end = shard.core.ticker.now_ns();
            shard.record(end, end.saturating_sub(self.start_ns), outcome);
        }
    }
}

impl Drop for CallTimer {
    fn drop(&mut self) {
        if let Some(shard) = self.shard.take() {
            shard.state.lock().totals.cancelled += 1;
            shard.core.instruments.cancelled();
        }
    }
}
