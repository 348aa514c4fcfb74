//! Configuration of a monitor: windows, thresholds, SLO; and the builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reliability_core::clock::SharedClock;
use reliability_core::error::ConfigError;
use serde::{Deserialize, Serialize};

use crate::budget::{BurnRateAlert, SloConfig};
use crate::events::{AlertEvent, AlertListener, StatusChange, StatusListener};
use crate::monitor::SlaMonitor;
use crate::status::SlaThresholds;

/// Largest count window: it bounds each shard's memory (24 bytes a call, per shard).
pub const MAX_COUNT_WINDOW: usize = 100_000;
/// Most intervals a time window may be cut into.
pub const MAX_INTERVALS: u64 = 3_600;
/// Longest monitor name, in bytes (names become metric label values).
pub const MAX_NAME_LEN: usize = 256;

/// Which window the status rules read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    /// The last `count_window` calls (the default): a status that does not fade when
    /// traffic stops.
    #[default]
    Count,
    /// The last `time_window`: a status that forgets old trouble, and goes HEALTHY on no
    /// traffic.
    Time,
}

/// Everything that configures a monitor, deserializable from TOML or JSON (durations in
/// humantime: `"60s"`, `"30d"`).
///
/// ```
/// let cfg: sla_layer::SlaConfig = serde_json::from_str(r#"{
///     "count_window": 200,
///     "time_window": "5m",
///     "thresholds": { "p95": "250ms", "min_success_rate": 0.95 },
///     "slo": { "target": 0.999, "period": "30d" }
/// }"#).unwrap();
/// let monitor = sla_layer::SlaMonitor::from_config("binance", &cfg).unwrap();
/// assert_eq!(monitor.name(), "binance");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlaConfig {
    /// Calls in the count window, 1..=100 000. Default 100.
    pub count_window: usize,
    /// Length of the time window. Default 60 s.
    #[serde(with = "humantime_serde")]
    pub time_window: Duration,
    /// Length of each interval of the time window; `time_window / time_interval` must be
    /// a whole number in 1..=3600. Default 5 s.
    #[serde(with = "humantime_serde")]
    pub time_interval: Duration,
    /// The window the status rules read. Default `count`.
    pub status_window: WindowKind,
    /// The thresholds of the status rules.
    pub thresholds: SlaThresholds,
    /// An SLO with its error budget and burn-rate alerts. Default none.
    pub slo: Option<SloConfig>,
    /// How often calls re-evaluate status and alerts (reads always do). Default 1 s.
    #[serde(with = "humantime_serde")]
    pub evaluation_interval: Duration,
    /// HdrHistogram precision, 1..=5 significant figures. Default 2 (1 % relative error).
    pub significant_figures: u8,
    /// Recording shards; default: the number of CPUs rounded up to a power of two, at
    /// most 16.
    pub shards: Option<usize>,
}

impl Default for SlaConfig {
    fn default() -> Self {
        Self {
            count_window: 100,
            time_window: Duration::from_secs(60),
            time_interval: Duration::from_secs(5),
            status_window: WindowKind::Count,
            thresholds: SlaThresholds::default(),
            slo: None,
            evaluation_interval: Duration::from_secs(1),
            significant_figures: 2,
            shards: None,
        }
    }
}

impl SlaConfig {
    /// Checks every field; the error names the field and its allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_COUNT_WINDOW).contains(&self.count_window) {
            return Err(ConfigError::out_of_range(
                "count_window",
                "[1, 100000]",
                self.count_window,
            ));
        }
        if self.time_interval < Duration::from_millis(1) {
            return Err(ConfigError::new("time_interval", "must be at least 1ms"));
        }
        let window = self.time_window.as_nanos();
        let interval = self.time_interval.as_nanos();
        if !window.is_multiple_of(interval)
            || !(1..=u128::from(MAX_INTERVALS)).contains(&(window / interval))
        {
            return Err(ConfigError::new(
                "time_window",
                format!(
                    "{:?} must be a whole multiple (1 to 3600) of time_interval {:?}",
                    self.time_window, self.time_interval
                ),
            ));
        }
        if self.evaluation_interval.is_zero() {
            return Err(ConfigError::new("evaluation_interval", "must be > 0"));
        }
        if !(1..=5).contains(&self.significant_figures) {
            return Err(ConfigError::out_of_range(
                "significant_figures",
                "[1, 5]",
                self.significant_figures,
            ));
        }
        if let Some(n) = self.shards
            && !(1..=64).contains(&n)
        {
            return Err(ConfigError::out_of_range("shards", "[1, 64]", n));
        }
        self.thresholds
            .validate()
            .map_err(|e| e.within("thresholds"))?;
        if let Some(slo) = &self.slo {
            slo.validate()?;
        }
        Ok(())
    }
}

/// Builds a [`SlaMonitor`]: the settings of [`SlaConfig`], plus a clock and listeners.
///
/// ```
/// use std::time::Duration;
/// use sla_layer::SlaMonitor;
///
/// let monitor = SlaMonitor::builder("binance")
///     .p95(Duration::from_millis(200))
///     .min_success_rate(0.95)
///     .max_consecutive_failures(3)
///     .error_budget(0.999, Duration::from_secs(30 * 24 * 3600))
///     .on_status_change(|e| println!("{} is now {}", e.source, e.to.as_str()))
///     .build()
///     .unwrap();
/// assert_eq!(monitor.name(), "binance");
/// ```
#[must_use]
pub struct SlaMonitorBuilder {
    pub(crate) name: String,
    pub(crate) config: SlaConfig,
    pub(crate) clock: Option<SharedClock>,
    pub(crate) status_listeners: Vec<StatusListener>,
    pub(crate) alert_listeners: Vec<AlertListener>,
}

impl fmt::Debug for SlaMonitorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlaMonitorBuilder")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl SlaMonitorBuilder {
    pub(crate) fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            config: SlaConfig::default(),
            clock: None,
            status_listeners: Vec::new(),
            alert_listeners: Vec::new(),
        }
    }

    /// Replaces every setting with `config` (listeners and clock are kept).
    pub fn config(mut self, config: SlaConfig) -> Self {
        self.config = config;
        self
    }

    /// Calls in the count window (default 100).
    pub fn count_window(mut self, calls: usize) -> Self {
        self.config.count_window = calls;
        self
    }

    /// The time window and its interval (default 60 s in 5 s intervals).
    pub fn time_window(mut self, window: Duration, interval: Duration) -> Self {
        self.config.time_window = window;
        self.config.time_interval = interval;
        self
    }

    /// The window the status rules read (default the count window).
    pub fn status_window(mut self, kind: WindowKind) -> Self {
        self.config.status_window = kind;
        self
    }

    /// All thresholds at once.
    pub fn thresholds(mut self, thresholds: SlaThresholds) -> Self {
        self.config.thresholds = thresholds;
        self
    }

    /// DEGRADED above this p95 (default 500 ms).
    pub fn p95(mut self, limit: Duration) -> Self {
        self.config.thresholds.p95 = Some(limit);
        self
    }

    /// DEGRADED above this p99 (default 1 s).
    pub fn p99(mut self, limit: Duration) -> Self {
        self.config.thresholds.p99 = Some(limit);
        self
    }

    /// FAILED below this success rate (default 0.90).
    pub fn min_success_rate(mut self, rate: f64) -> Self {
        self.config.thresholds.min_success_rate = rate;
        self
    }

    /// DEGRADED below this success rate (default 0.99).
    pub fn degraded_success_rate(mut self, rate: f64) -> Self {
        self.config.thresholds.degraded_success_rate = rate;
        self
    }

    /// FAILED after this many failures in a row (default 5).
    pub fn max_consecutive_failures(mut self, failures: u64) -> Self {
        self.config.thresholds.max_consecutive_failures = failures;
        self
    }

    /// DEGRADED when the reported data-quality score is below this.
    pub fn min_data_quality(mut self, score: f64) -> Self {
        self.config.thresholds.min_data_quality = Some(score);
        self
    }

    /// Calls the window needs before rate and latency rules apply (default 10).
    pub fn min_calls(mut self, calls: u64) -> Self {
        self.config.thresholds.min_calls = calls;
        self
    }

    /// An SLO with the SRE Workbook's burn-rate alerts.
    pub fn error_budget(mut self, target: f64, period: Duration) -> Self {
        self.config.slo = Some(SloConfig::new(target, period));
        self
    }

    /// A full SLO configuration.
    pub fn slo(mut self, slo: SloConfig) -> Self {
        self.config.slo = Some(slo);
        self
    }

    /// Replaces the burn-rate alerts (after [`error_budget`](Self::error_budget)).
    pub fn burn_rate_alerts(mut self, alerts: Vec<BurnRateAlert>) -> Self {
        self.config
            .slo
            .get_or_insert_with(SloConfig::default)
            .alerts = alerts;
        self
    }

    /// Calls each alert window needs before the alert may fire (default 100).
    pub fn min_volume(mut self, calls: u64) -> Self {
        self.config
            .slo
            .get_or_insert_with(SloConfig::default)
            .min_volume = calls;
        self
    }

    /// How often calls re-evaluate status and alerts (default 1 s).
    pub fn evaluation_interval(mut self, every: Duration) -> Self {
        self.config.evaluation_interval = every;
        self
    }

    /// HdrHistogram significant figures, 1..=5 (default 2).
    pub fn significant_figures(mut self, digits: u8) -> Self {
        self.config.significant_figures = digits;
        self
    }

    /// Recording shards, 1..=64 (default: CPUs, rounded up to a power of two, at most 16).
    pub fn shards(mut self, shards: usize) -> Self {
        self.config.shards = Some(shards);
        self
    }

    /// Reads time from `clock` instead of the CPU's time-stamp counter: `TokioClock` for
    /// tests on paused tokio time, `ManualClock` for tests that move time by hand.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Calls `f` on every status change.
    pub fn on_status_change(mut self, f: impl Fn(&StatusChange) + Send + Sync + 'static) -> Self {
        self.status_listeners.push(Arc::new(f));
        self
    }

    /// Calls `f` whenever a burn-rate alert starts or stops firing.
    pub fn on_alert(mut self, f: impl Fn(&AlertEvent) + Send + Sync + 'static) -> Self {
        self.alert_listeners.push(Arc::new(f));
        self
    }

    /// Validates the settings and builds the monitor.
    pub fn build(self) -> Result<SlaMonitor, ConfigError> {
        if self.name.is_empty() || self.name.len() > MAX_NAME_LEN {
            return Err(ConfigError::new("name", "must be 1 to 256 bytes"));
        }
        self.config.validate()?;
        Ok(SlaMonitor::from_builder(self))
    }
}
