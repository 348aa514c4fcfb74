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

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use crossbeam_utils::CachePadded;
use parking_lot::Mutex;
use reliability_core::classify::Outcome;
use reliability_core::health::{
    ComponentDetail, ComponentHealth, HealthSource, HealthStatus, SlaSnapshot,
};

use crate::budget::{AlertStatus, BudgetTracker, ErrorBudget};
use crate::clock::Ticker;
use crate::config::{SlaConfig, SlaMonitorBuilder, WindowKind};
use crate::error::InvalidScore;
use crate::events::{self, AlertEvent, AlertListener, StatusChange, StatusListener};
use crate::status::{Assessment, Reason, StatusTracker, assess};
use crate::window::{
    Accumulator, CallEntry, CountRing, IntervalData, TimeRing, WindowStats, count_window, in_window,
};

/// Lifetime counts of a monitor (they never expire; Prometheus counters come from here).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallTotals {
    /// Successful calls.
    pub successes: u64,
    /// Failed calls.
    pub failures: u64,
    /// Calls whose outcome was `Ignore` (not counted by the SLA).
    pub ignored: u64,
    /// Calls dropped before they finished.
    pub cancelled: u64,
    /// Total latency of successes and failures.
    pub latency_sum: Duration,
}

impl CallTotals {
    fn absorb(&mut self, o: &CallTotals) {
        self.successes += o.successes;
        self.failures += o.failures;
        self.ignored += o.ignored;
        self.cancelled += o.cancelled;
        self.latency_sum = self.latency_sum.saturating_add(o.latency_sum);
    }
}

/// Everything a monitor knows at one moment. Taking one evaluates the status rules and
/// the alerts (and may emit events).
#[derive(Debug, Clone, PartialEq)]
pub struct SlaReport {
    /// The monitor's name.
    pub name: Arc<str>,
    /// The current status.
    pub status: HealthStatus,
    /// Why it is not HEALTHY.
    pub reasons: Vec<Reason>,
    /// The status rules' window kind.
    pub status_window: WindowKind,
    /// The last `count_window` calls.
    pub count_window: WindowStats,
    /// The last `time_window`.
    pub time_window: WindowStats,
    /// Failures in a row, up to now.
    pub consecutive_failures: u64,
    /// Share of time since the monitor began that it was not FAILED.
    pub uptime: f64,
    /// Calls per second over the time window.
    pub calls_per_second: f64,
    /// The last data-quality score reported.
    pub data_quality: Option<f64>,
    /// Lifetime counts.
    pub totals: CallTotals,
    /// Status changes since the monitor began.
    pub status_changes: u64,
    /// The error budget, where an SLO is set.
    pub error_budget: Option<ErrorBudget>,
    /// Every burn-rate alert.
    pub alerts: Vec<AlertStatus>,
    /// When the report was taken (wall clock).
    pub at: SystemTime,
}

impl SlaReport {
    /// The figures the status rules read.
    pub fn status_figures(&self) -> &WindowStats {
        match self.status_window {
            WindowKind::Count => &self.count_window,
            WindowKind::Time => &self.time_window,
        }
    }

    /// The report as reliability-core's [`SlaSnapshot`] (figures of the status window).
    pub fn to_snapshot(&self) -> SlaSnapshot {
        let w = self.status_figures();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        SlaSnapshot {
            calls: w.calls,
            successes: w.successes,
            failures: w.failures,
            success_rate: w.success_rate(),
            p50_ms: ms(w.p50),
            p95_ms: ms(w.p95),
            p99_ms: ms(w.p99),
            max_ms: ms(w.max),
            consecutive_failures: self.consecutive_failures,
            uptime: self.uptime,
            calls_per_second: self.calls_per_second,
            data_quality: self.data_quality,
            error_budget_remaining: self.error_budget.map(|b| b.remaining.clamp(0.0, 1.0)),
        }
    }

    /// The report as one component of a system health snapshot.
    pub fn to_component(&self) -> ComponentHealth {
        let c = ComponentHealth::new(
            &*self.name,
            self.status,
            ComponentDetail::Sla(self.to_snapshot()),
        );
        if self.reasons.is_empty() {
            c
        } else {
            c.with_message(events::reasons_text(&self.reasons))
        }
    }
}

/// One recording shard; a call in flight holds it, not the monitor. Padded to whole cache
/// lines so that two threads writing their own shards never share one.
#[repr(align(128))]
pub(crate) struct Shard {
    core: Arc<MonitorCore>,
    state: Mutex<ShardState>,
}

struct ShardState {
    interval: u64,
    interval_end_ns: u64,
    current: IntervalData,
    recent: CountRing,
    /// `latency_sum` is kept in `latency_sum_ns` here: a plain add on the hot path.
    totals: CallTotals,
    latency_sum_ns: u64,
}

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

static NEXT_THREAD_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's shard number, plus one; 0 until first used.
    static THREAD_SLOT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[inline]
fn thread_slot() -> usize {
    THREAD_SLOT.with(|slot| match slot.get() {
        0 => {
            let n = NEXT_THREAD_SLOT.fetch_add(1, Ordering::Relaxed);
            slot.set(n.wrapping_add(1));
            n
        }
        n => n - 1,
    })
}

fn default_shards() -> usize {
    static SHARDS: OnceLock<usize> = OnceLock::new();
    *SHARDS.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .next_power_of_two()
            .min(16)
    })
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
        let core = Arc::new(MonitorCore {
            name: b.name.into(),
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
        }
    }
}

impl Shard {
    #[inline]
    fn record(&self, end_ns: u64, latency_ns: u64, outcome: Outcome) {
        let core = &*self.core;
        {
            let mut s = self.state.lock();
            match outcome {
                Outcome::Ignore => s.totals.ignored += 1,
                Outcome::Success | Outcome::Failure => {
                    let success = outcome == Outcome::Success;
                    if end_ns >= s.interval_end_ns {
                        core.rotate(&mut s, end_ns);
                    }
                    s.current.record(latency_ns, success);
                    s.recent.push(CallEntry {
                        at_ns: end_ns,
                        latency_ns,
                        success,
                    });
                    if success {
                        s.totals.successes += 1;
                    } else {
                        s.totals.failures += 1;
                    }
                    s.latency_sum_ns = s.latency_sum_ns.saturating_add(latency_ns);
                }
            }
        }
        core.after_record(end_ns, outcome);
    }
}

impl MonitorCore {
    /// Moves a shard's finished interval to the ring. Lock order: shard, then ring.
    #[cold]
    fn rotate(&self, s: &mut ShardState, now_ns: u64) {
        if s.current.successes + s.current.failures > 0 {
            self.ring
                .lock()
                .flush(s.interval, &s.current, self.config.significant_figures);
            s.current.reset();
        }
        s.interval = now_ns / self.interval_ns;
        s.interval_end_ns = (s.interval + 1).saturating_mul(self.interval_ns);
    }

    #[inline]
    fn after_record(&self, now_ns: u64, outcome: Outcome) {
        match outcome {
            Outcome::Failure => {
                let n = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
                if n == self.max_consecutive {
                    self.evaluate(now_ns);
                    return;
                }
            }
            Outcome::Success => {
                if self.consecutive.load(Ordering::Relaxed) != 0 {
                    let before = self.consecutive.swap(0, Ordering::Relaxed);
                    if before >= self.max_consecutive {
                        self.evaluate(now_ns);
                        return;
                    }
                }
            }
            Outcome::Ignore => {}
        }
        let due = self.next_eval_ns.load(Ordering::Relaxed);
        if now_ns >= due
            && self
                .next_eval_ns
                .compare_exchange(
                    due,
                    now_ns.saturating_add(self.eval_every_ns),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            self.evaluate(now_ns);
        }
    }

    fn data_quality(&self) -> Option<f64> {
        let bits = self.data_quality.load(Ordering::Relaxed);
        (bits != NO_SCORE).then(|| f64::from_bits(bits))
    }

    /// Merges every shard and the ring. Lock order: (eval), shards in order, ring.
    fn read(&self, now_ns: u64) -> (WindowStats, WindowStats, CallTotals) {
        let sigfig = self.config.significant_figures;
        let shards: Vec<Arc<Shard>> = self
            .shards
            .get()
            .map(|w| w.iter().filter_map(Weak::upgrade).collect())
            .unwrap_or_default();
        let guards: Vec<_> = shards.iter().map(|s| s.state.lock()).collect();
        let current = now_ns / self.interval_ns;
        let mut time = Accumulator::new(sigfig);
        let mut entries = Vec::with_capacity(guards.len() * self.config.count_window);
        let mut totals = CallTotals::default();
        for g in &guards {
            if in_window(g.interval, current, self.slots) {
                time.add_interval(&g.current);
            }
            entries.extend_from_slice(g.recent.entries());
            totals.absorb(&g.totals);
            totals.latency_sum = totals
                .latency_sum
                .saturating_add(Duration::from_nanos(g.latency_sum_ns));
        }
        self.ring.lock().collect(current, &mut time);
        drop(guards);
        let count = count_window(entries, self.config.count_window, sigfig);
        (count, time.stats(), totals)
    }

    fn evaluate(&self, now_ns: u64) -> SlaReport {
        let mut status_events = Vec::new();
        let mut alert_events = Vec::new();
        let at = self.ticker.wall();
        let report = {
            let mut e = self.eval.lock();
            let (count, time, totals) = self.read(now_ns);
            let consecutive = self.consecutive.load(Ordering::Relaxed);
            let data_quality = self.data_quality();
            let window = match self.config.status_window {
                WindowKind::Count => &count,
                WindowKind::Time => &time,
            };
            let Assessment { status, reasons } =
                assess(window, consecutive, data_quality, &self.config.thresholds);
            if let Some(from) = e.tracker.update(status, now_ns) {
                status_events.push(StatusChange {
                    source: Arc::clone(&self.name),
                    from,
                    to: status,
                    reasons: reasons.clone(),
                    at,
                });
            }
            let seen = e.seen;
            let (mut error_budget, mut alerts) = (None, Vec::new());
            if let Some(b) = &mut e.budget {
                b.observe(
                    now_ns,
                    totals.successes.saturating_sub(seen.successes),
                    totals.failures.saturating_sub(seen.failures),
                );
                for status in b.evaluate(now_ns) {
                    alert_events.push(AlertEvent {
                        source: Arc::clone(&self.name),
                        status,
                        at,
                    });
                }
                error_budget = Some(b.budget(now_ns));
                alerts = b.alerts(now_ns);
            }
            e.seen = totals;
            // The time window spans the current partial interval and the full ones before
            // it, and never more than the monitor's age.
            let span_ns =
                ((self.slots - 1) * self.interval_ns + now_ns % self.interval_ns).min(now_ns);
            let calls_per_second = if span_ns == 0 {
                0.0
            } else {
                time.calls as f64 * 1e9 / span_ns as f64
            };
            tracing::debug!(
                target: "sla_layer", source = %self.name, status = status.as_str(),
                calls = window.calls, success_rate = window.success_rate(),
                p50_ms = window.p50.as_secs_f64() * 1e3, p95_ms = window.p95.as_secs_f64() * 1e3,
                p99_ms = window.p99.as_secs_f64() * 1e3, consecutive_failures = consecutive,
                calls_per_second, "SLA evaluated"
            );
            SlaReport {
                name: Arc::clone(&self.name),
                status,
                reasons,
                status_window: self.config.status_window,
                count_window: count,
                time_window: time,
                consecutive_failures: consecutive,
                uptime: e.tracker.uptime(now_ns),
                calls_per_second,
                data_quality,
                totals,
                status_changes: e.tracker.changes(),
                error_budget,
                alerts,
                at,
            }
        };
        for ev in &status_events {
            events::log_status_change(ev);
            for l in &self.status_listeners {
                events::notify(&self.name, || l(ev));
            }
        }
        for ev in &alert_events {
            events::log_alert(ev);
            for l in &self.alert_listeners {
                events::notify(&self.name, || l(ev));
            }
        }
        report
    }
}
