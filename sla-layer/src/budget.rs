//! Error budgets and multi-window, multi-burn-rate alerts. Pure: fed counts and `now`.
//!
//! # Why burn rates
//!
//! An SLO of 99.9 % over 30 days allows 0.1 % of calls to fail: that allowance is the
//! **error budget**. Alerting on "error rate above 0.1 %" pages for every blip; alerting on
//! "budget spent" pages a month too late. The SRE Workbook (chapter 5, "Alerting on
//! SLOs") alerts on the **burn rate**, how many times faster than "exactly on budget" the
//! budget is being spent, measured over two windows at once: a long window proves the
//! problem is significant, a short one (1/12 of it) proves it is still happening, so the
//! alert resets minutes after a fix. Its recommended table for a 30-day SLO:
//!
//! | severity | burn rate | long window | short window | budget spent when it fires |
//! |---|---|---|---|---|
//! | page | 14.4 | 1 h | 5 min | 2 % |
//! | page | 6 | 6 h | 30 min | 5 % |
//! | ticket | 1 | 3 d | 6 h | 10 % |
//!
//! An alert **fires when the burn rate over both of its windows is greater than its
//! rate** and each window holds at least `min_volume` calls: with three calls an hour, one
//! failure is a 33 % error rate, and the workbook's advice for such low-traffic sources
//! is not to page on them. It resolves as soon as either condition stops holding.
//!
//! Counts are kept per window in rings of [`BUCKETS_PER_WINDOW`] buckets, so a window of
//! length `W` counts between `W - W/30` and `W` of history: never anything older than `W`.

use std::time::Duration;

use reliability_core::error::ConfigError;
use serde::{Deserialize, Serialize};

/// Buckets each window is cut into.
pub const BUCKETS_PER_WINDOW: u64 = 30;

/// How loudly an alert should be raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Wake someone up.
    Page,
    /// Open a ticket.
    Ticket,
}

impl Severity {
    /// `page` or `ticket`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Page => "page",
            Self::Ticket => "ticket",
        }
    }
}

/// One multi-window burn-rate alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BurnRateAlert {
    /// A short name, used in events and metrics labels (`page_fast`).
    pub name: String,
    /// Page or ticket.
    pub severity: Severity,
    /// The burn rate both windows must exceed, > 0.
    pub burn_rate: f64,
    /// The long window: is the problem significant?
    #[serde(with = "humantime_serde")]
    pub long_window: Duration,
    /// The short window: is it still happening? Shorter than `long_window`.
    #[serde(with = "humantime_serde")]
    pub short_window: Duration,
}

impl BurnRateAlert {
    /// An alert; see the module docs.
    pub fn new(
        name: impl Into<String>,
        severity: Severity,
        burn_rate: f64,
        long_window: Duration,
        short_window: Duration,
    ) -> Self {
        Self {
            name: name.into(),
            severity,
            burn_rate,
            long_window,
            short_window,
        }
    }

    /// The SRE Workbook's three alerts for a 30-day SLO (table in the module docs).
    pub fn workbook_defaults() -> Vec<Self> {
        const H: u64 = 3600;
        vec![
            Self::new("page_fast", Severity::Page, 14.4, secs(H), secs(300)),
            Self::new("page_slow", Severity::Page, 6.0, secs(6 * H), secs(1800)),
            Self::new("ticket", Severity::Ticket, 1.0, secs(72 * H), secs(6 * H)),
        ]
    }
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// An SLO: the share of calls that must succeed over a period, and its alerts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SloConfig {
    /// Share of calls that must succeed, strictly between 0 and 1. Default 0.999.
    pub target: f64,
    /// The period the budget covers. Default 30 days.
    #[serde(with = "humantime_serde")]
    pub period: Duration,
    /// The burn-rate alerts. Default: the workbook's three.
    pub alerts: Vec<BurnRateAlert>,
    /// Calls each of an alert's windows needs before it may fire. Default 100.
    pub min_volume: u64,
}

impl Default for SloConfig {
    fn default() -> Self {
        Self {
            target: 0.999,
            period: secs(30 * 24 * 3600),
            alerts: BurnRateAlert::workbook_defaults(),
            min_volume: 100,
        }
    }
}

impl SloConfig {
    /// An SLO of `target` over `period` with the workbook's alerts.
    pub fn new(target: f64, period: Duration) -> Self {
        Self {
            target,
            period,
            ..Self::default()
        }
    }

    /// Checks every field; the error names the field and its allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.target > 0.0 && self.target < 1.0) {
            return Err(ConfigError::out_of_range(
                "slo.target",
                "(0, 1)",
                self.target,
            ));
        }
        if self.period < Duration::from_secs(1) {
            return Err(ConfigError::new("slo.period", "must be at least 1s"));
        }
        if self.alerts.len() > 16 {
            return Err(ConfigError::out_of_range(
                "slo.alerts",
                "at most 16 alerts",
                self.alerts.len(),
            ));
        }
        for (i, a) in self.alerts.iter().enumerate() {
            let field = |f: &str| format!("slo.alerts[{i}].{f}");
            if !(a.burn_rate > 0.0 && a.burn_rate.is_finite()) {
                return Err(ConfigError::out_of_range(
                    field("burn_rate"),
                    "(0, inf)",
                    a.burn_rate,
                ));
            }
            if a.short_window < Duration::from_secs(1) {
                return Err(ConfigError::new(
                    field("short_window"),
                    "must be at least 1s",
                ));
            }
            if a.short_window >= a.long_window {
                return Err(ConfigError::new(
                    field("short_window"),
                    "must be shorter than long_window",
                ));
            }
            if a.name.is_empty() || a.name.len() > 64 {
                return Err(ConfigError::new(
                    field("name"),
                    "must be 1 to 64 characters",
                ));
            }
        }
        Ok(())
    }
}

/// Good and bad call counts over a window of `BUCKETS_PER_WINDOW` buckets.
#[derive(Debug, Clone)]
struct CountRing {
    bucket_ns: u64,
    buckets: Vec<(u64, u64, u64)>,
}

impl CountRing {
    fn new(window: Duration) -> Self {
        let window_ns = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        Self {
            bucket_ns: (window_ns / BUCKETS_PER_WINDOW).max(1),
            buckets: vec![(u64::MAX, 0, 0); BUCKETS_PER_WINDOW as usize],
        }
    }

    fn add(&mut self, now_ns: u64, good: u64, bad: u64) {
        let index = now_ns / self.bucket_ns;
        let slot = &mut self.buckets[(index % BUCKETS_PER_WINDOW) as usize];
        if slot.0 != index {
            *slot = (index, 0, 0);
        }
        slot.1 += good;
        slot.2 += bad;
    }

    fn sum(&self, now_ns: u64) -> WindowCounts {
        let current = now_ns / self.bucket_ns;
        let (good, bad) = self
            .buckets
            .iter()
            .filter(|(i, _, _)| {
                *i != u64::MAX && crate::window::in_window(*i, current, BUCKETS_PER_WINDOW)
            })
            .fold((0, 0), |(g, b), (_, good, bad)| (g + good, b + bad));
        WindowCounts { good, bad }
    }
}

/// Calls counted in one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowCounts {
    /// Calls that met the SLO.
    pub good: u64,
    /// Calls that did not.
    pub bad: u64,
}

impl WindowCounts {
    /// Good and bad calls.
    pub fn total(&self) -> u64 {
        self.good + self.bad
    }

    /// How many times faster than "exactly on budget" this window spends the budget of an
    /// SLO of `target`: error rate over `1 - target`. Zero without calls.
    pub fn burn_rate(&self, target: f64) -> f64 {
        if self.total() == 0 {
            0.0
        } else {
            (self.bad as f64 / self.total() as f64) / (1.0 - target)
        }
    }
}

/// The state of the error budget over the SLO period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorBudget {
    /// The SLO target.
    pub target: f64,
    /// The period.
    pub period: Duration,
    /// Calls in the period.
    pub calls: u64,
    /// Failed calls in the period.
    pub failures: u64,
    /// Failures the budget allows for this many calls: `(1 - target) * calls`.
    pub allowed_failures: f64,
    /// Share of the budget left: 1 untouched, 0 spent, negative overspent. 1 without calls.
    pub remaining: f64,
    /// The burn rate over the whole period.
    pub burn_rate: f64,
}

/// An alert's current figures.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertStatus {
    /// The alert's configuration.
    pub alert: BurnRateAlert,
    /// Whether it is firing.
    pub firing: bool,
    /// Counts and burn rate in the long window.
    pub long: WindowCounts,
    /// Counts and burn rate in the short window.
    pub short: WindowCounts,
    /// Burn rate over the long window.
    pub long_burn_rate: f64,
    /// Burn rate over the short window.
    pub short_burn_rate: f64,
}

/// Tracks an SLO's budget and alerts from counts fed over time.
#[derive(Debug, Clone)]
pub struct BudgetTracker {
    config: SloConfig,
    period: CountRing,
    /// One ring per distinct window length.
    windows: Vec<(Duration, CountRing)>,
    firing: Vec<bool>,
}

impl BudgetTracker {
    /// A tracker for a validated `config`.
    pub fn new(config: SloConfig) -> Self {
        let mut windows: Vec<(Duration, CountRing)> = Vec::new();
        for a in &config.alerts {
            for w in [a.long_window, a.short_window] {
                if !windows.iter().any(|(d, _)| *d == w) {
                    windows.push((w, CountRing::new(w)));
                }
            }
        }
        Self {
            period: CountRing::new(config.period),
            firing: vec![false; config.alerts.len()],
            windows,
            config,
        }
    }

    /// The SLO.
    pub fn config(&self) -> &SloConfig {
        &self.config
    }

    /// Adds calls that finished at `now_ns`.
    pub fn observe(&mut self, now_ns: u64, good: u64, bad: u64) {
        if good == 0 && bad == 0 {
            return;
        }
        self.period.add(now_ns, good, bad);
        for (_, ring) in &mut self.windows {
            ring.add(now_ns, good, bad);
        }
    }

    fn counts(&self, window: Duration, now_ns: u64) -> WindowCounts {
        self.windows
            .iter()
            .find(|(d, _)| *d == window)
            .map(|(_, r)| r.sum(now_ns))
            .unwrap_or_default()
    }

    /// The budget over the period ending at `now_ns`.
    pub fn budget(&self, now_ns: u64) -> ErrorBudget {
        let c = self.period.sum(now_ns);
        let allowed = (1.0 - self.config.target) * c.total() as f64;
        let remaining = if c.total() == 0 {
            1.0
        } else {
            1.0 - c.bad as f64 / allowed
        };
        ErrorBudget {
            target: self.config.target,
            period: self.config.period,
            calls: c.total(),
            failures: c.bad,
            allowed_failures: allowed,
            remaining,
            burn_rate: c.burn_rate(self.config.target),
        }
    }

    /// Every alert's figures at `now_ns`, with `firing` as of the last [`evaluate`](Self::evaluate).
    pub fn alerts(&self, now_ns: u64) -> Vec<AlertStatus> {
        let target = self.config.target;
        self.config
            .alerts
            .iter()
            .zip(&self.firing)
            .map(|(a, firing)| {
                let long = self.counts(a.long_window, now_ns);
                let short = self.counts(a.short_window, now_ns);
                AlertStatus {
                    alert: a.clone(),
                    firing: *firing,
                    long,
                    short,
                    long_burn_rate: long.burn_rate(target),
                    short_burn_rate: short.burn_rate(target),
                }
            })
            .collect()
    }

    /// Re-evaluates every alert at `now_ns`; returns those whose firing state changed.
    pub fn evaluate(&mut self, now_ns: u64) -> Vec<AlertStatus> {
        let mut changed = Vec::new();
        for (i, mut status) in self.alerts(now_ns).into_iter().enumerate() {
            let min = self.config.min_volume;
            let rate = status.alert.burn_rate;
            let firing = status.long.total() >= min
                && status.short.total() >= min
                && status.long_burn_rate > rate
                && status.short_burn_rate > rate;
            if firing != self.firing[i] {
                self.firing[i] = firing;
                status.firing = firing;
                changed.push(status);
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000_000_000;

    #[test]
    fn budget_spent_and_overspent() {
        let mut t = BudgetTracker::new(SloConfig::new(0.99, secs(3600)));
        assert_eq!(t.budget(0).remaining, 1.0);
        t.observe(MIN, 995, 5);
        let b = t.budget(MIN);
        assert!((b.remaining - 0.5).abs() < 1e-9, "{b:?}");
        assert!((b.burn_rate - 0.5).abs() < 1e-9);
        t.observe(2 * MIN, 0, 20);
        assert!(t.budget(2 * MIN).remaining < 0.0);
        // After the period the calls expire.
        assert_eq!(t.budget(70 * MIN).calls, 0);
    }

    #[test]
    fn duplicate_windows_share_a_ring() {
        let mut cfg = SloConfig::default();
        cfg.alerts.push(BurnRateAlert::new(
            "x",
            Severity::Page,
            2.0,
            secs(3600),
            secs(300),
        ));
        let t = BudgetTracker::new(cfg);
        // 1h, 5m, 6h, 30m, 3d: 6h serves two alerts, and the added alert reuses 1h and 5m.
        assert_eq!(t.windows.len(), 5);
    }

    #[test]
    fn validation_names_the_field() {
        let mut cfg = SloConfig::new(1.0, secs(60));
        assert_eq!(cfg.validate().unwrap_err().field, "slo.target");
        cfg.target = 0.9;
        cfg.alerts[1].short_window = secs(7 * 3600);
        assert_eq!(
            cfg.validate().unwrap_err().field,
            "slo.alerts[1].short_window"
        );
    }
}
