//! HEALTHY / DEGRADED / FAILED: the rules, and the tracker that remembers transitions and
//! uptime. Pure: takes window figures and `now`.
//!
//! # The rules
//!
//! Checked against the status window (the count window unless configured otherwise). The
//! status is the worst that any rule gives:
//!
//! | rule | gives |
//! |---|---|
//! | `consecutive_failures >= max_consecutive_failures` (counted whatever the volume) | FAILED |
//! | at least `min_calls` calls and `success_rate < min_success_rate` | FAILED |
//! | at least `min_calls` calls and `success_rate < degraded_success_rate` | DEGRADED |
//! | at least `min_calls` calls and `p95 > p95` threshold | DEGRADED |
//! | at least `min_calls` calls and `p99 > p99` threshold | DEGRADED |
//! | a data-quality score was reported and it is `< min_data_quality` | DEGRADED |
//! | none of the above, and no call at all in the window | UNKNOWN |
//! | none of the above (including "too few calls to judge the rates") | HEALTHY |
//!
//! An empty window is UNKNOWN, not HEALTHY: at start, and while an open breaker keeps
//! calls from the upstream, nobody has measured the source. (The facade's health document
//! also folds each source's breakers into its status.)
//!
//! Slowness only degrades: a slow source still answers. Failing answers fail.

use std::fmt;
use std::time::Duration;

use reliability_core::error::ConfigError;
use reliability_core::health::HealthStatus;
use serde::{Deserialize, Serialize};

use crate::window::WindowStats;

/// The per-source thresholds that decide a monitor's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlaThresholds {
    /// DEGRADED when the 95th percentile latency is above this. Default 500 ms.
    #[serde(with = "humantime_serde")]
    pub p95: Option<Duration>,
    /// DEGRADED when the 99th percentile latency is above this. Default 1 s.
    #[serde(with = "humantime_serde")]
    pub p99: Option<Duration>,
    /// FAILED when the success rate is below this floor, 0..=1. Default 0.90.
    pub min_success_rate: f64,
    /// DEGRADED when the success rate is below this, 0..=1 and at least
    /// `min_success_rate`. Default 0.99.
    pub degraded_success_rate: f64,
    /// FAILED after this many failures in a row, at least 1. Default 5.
    pub max_consecutive_failures: u64,
    /// DEGRADED when the reported data-quality score is below this, 0..=1. Default none.
    pub min_data_quality: Option<f64>,
    /// Calls the window needs before rate and latency rules apply. Default 10.
    pub min_calls: u64,
}

impl Default for SlaThresholds {
    fn default() -> Self {
        Self {
            p95: Some(Duration::from_millis(500)),
            p99: Some(Duration::from_secs(1)),
            min_success_rate: 0.90,
            degraded_success_rate: 0.99,
            max_consecutive_failures: 5,
            min_data_quality: None,
            min_calls: 10,
        }
    }
}

impl SlaThresholds {
    /// Checks every field; the error names the field and its allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, d) in [("p95", self.p95), ("p99", self.p99)] {
            if d == Some(Duration::ZERO) {
                return Err(ConfigError::new(field, "must be > 0 (or unset)"));
            }
        }
        ConfigError::check_range("min_success_rate", self.min_success_rate, 0.0..=1.0)?;
        ConfigError::check_range(
            "degraded_success_rate",
            self.degraded_success_rate,
            0.0..=1.0,
        )?;
        if self.degraded_success_rate < self.min_success_rate {
            return Err(ConfigError::new(
                "degraded_success_rate",
                format!(
                    "{} must be >= min_success_rate ({})",
                    self.degraded_success_rate, self.min_success_rate
                ),
            ));
        }
        if self.max_consecutive_failures == 0 {
            return Err(ConfigError::out_of_range(
                "max_consecutive_failures",
                "[1, u64::MAX]",
                0,
            ));
        }
        if let Some(q) = self.min_data_quality {
            ConfigError::check_range("min_data_quality", q, 0.0..=1.0)?;
        }
        Ok(())
    }
}

/// Why a monitor is not HEALTHY.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reason {
    /// `consecutive_failures >= max_consecutive_failures`.
    ConsecutiveFailures {
        /// Failures in a row.
        count: u64,
        /// The threshold.
        max: u64,
    },
    /// The success rate is below `min_success_rate` (FAILED).
    SuccessRateBelowFloor {
        /// The window's success rate.
        rate: f64,
        /// The floor.
        floor: f64,
    },
    /// The success rate is below `degraded_success_rate` (DEGRADED).
    SuccessRateDegraded {
        /// The window's success rate.
        rate: f64,
        /// The threshold.
        threshold: f64,
    },
    /// p95 above its threshold.
    P95Exceeded {
        /// The window's p95.
        actual: Duration,
        /// The threshold.
        limit: Duration,
    },
    /// p99 above its threshold.
    P99Exceeded {
        /// The window's p99.
        actual: Duration,
        /// The threshold.
        limit: Duration,
    },
    /// The reported data-quality score is below `min_data_quality`.
    DataQualityLow {
        /// The reported score.
        score: f64,
        /// The threshold.
        min: f64,
    },
}

impl Reason {
    /// The status this reason gives.
    pub fn status(&self) -> HealthStatus {
        match self {
            Self::ConsecutiveFailures { .. } | Self::SuccessRateBelowFloor { .. } => {
                HealthStatus::Failed
            }
            _ => HealthStatus::Degraded,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ConsecutiveFailures { count, max } => {
                write!(f, "{count} consecutive failures (max {max})")
            }
            Self::SuccessRateBelowFloor { rate, floor } => {
                write!(f, "success rate {rate:.4} < floor {floor}")
            }
            Self::SuccessRateDegraded { rate, threshold } => {
                write!(f, "success rate {rate:.4} < {threshold}")
            }
            Self::P95Exceeded { actual, limit } => write!(f, "p95 {actual:?} > {limit:?}"),
            Self::P99Exceeded { actual, limit } => write!(f, "p99 {actual:?} > {limit:?}"),
            Self::DataQualityLow { score, min } => {
                write!(f, "data quality {score:.3} < {min}")
            }
        }
    }
}

/// The verdict of the rules: a status and the reasons for it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Assessment {
    /// The worst status any rule gave.
    pub status: HealthStatus,
    /// Every rule that fired, FAILED reasons first.
    pub reasons: Vec<Reason>,
}

impl Assessment {
    /// The reasons joined for people (`"p95 600ms > 500ms; ..."`), or `None` when healthy.
    pub fn message(&self) -> Option<String> {
        if self.reasons.is_empty() {
            return None;
        }
        let parts: Vec<String> = self.reasons.iter().map(ToString::to_string).collect();
        Some(parts.join("; "))
    }
}

/// Applies the rules of the module docs.
pub fn assess(
    window: &WindowStats,
    consecutive_failures: u64,
    data_quality: Option<f64>,
    t: &SlaThresholds,
) -> Assessment {
    let mut reasons = Vec::new();
    if consecutive_failures >= t.max_consecutive_failures {
        reasons.push(Reason::ConsecutiveFailures {
            count: consecutive_failures,
            max: t.max_consecutive_failures,
        });
    }
    if window.calls >= t.min_calls.max(1) {
        let rate = window.success_rate();
        if rate < t.min_success_rate {
            reasons.push(Reason::SuccessRateBelowFloor {
                rate,
                floor: t.min_success_rate,
            });
        } else if rate < t.degraded_success_rate {
            reasons.push(Reason::SuccessRateDegraded {
                rate,
                threshold: t.degraded_success_rate,
            });
        }
        if let Some(limit) = t.p95.filter(|l| window.p95 > *l) {
            reasons.push(Reason::P95Exceeded {
                actual: window.p95,
                limit,
            });
        }
        if let Some(limit) = t.p99.filter(|l| window.p99 > *l) {
            reasons.push(Reason::P99Exceeded {
                actual: window.p99,
                limit,
            });
        }
    }
    if let (Some(score), Some(min)) = (data_quality, t.min_data_quality)
        && score < min
    {
        reasons.push(Reason::DataQualityLow { score, min });
    }
    let measured = if window.calls > 0 {
        HealthStatus::Healthy
    } else {
        HealthStatus::Unknown
    };
    let status = reasons.iter().fold(measured, |s, r| s.worst(r.status()));
    Assessment { status, reasons }
}

/// Remembers the current status, when it began and how long the source spent FAILED.
#[derive(Debug, Clone)]
pub(crate) struct StatusTracker {
    status: HealthStatus,
    since_ns: u64,
    failed_ns: u64,
    changes: u64,
}

impl StatusTracker {
    /// A tracker of a source not yet measured (UNKNOWN).
    pub(crate) fn new() -> Self {
        Self {
            status: HealthStatus::Unknown,
            since_ns: 0,
            failed_ns: 0,
            changes: 0,
        }
    }

    pub(crate) fn changes(&self) -> u64 {
        self.changes
    }

    /// Moves to `status` at `now_ns`; returns the previous status when it changed.
    pub(crate) fn update(&mut self, status: HealthStatus, now_ns: u64) -> Option<HealthStatus> {
        if status == self.status {
            return None;
        }
        let now_ns = now_ns.max(self.since_ns);
        if self.status == HealthStatus::Failed {
            self.failed_ns += now_ns - self.since_ns;
        }
        let from = self.status;
        self.status = status;
        self.since_ns = now_ns;
        self.changes += 1;
        Some(from)
    }

    /// Share of the time since monitoring began that the source was not FAILED, 0..=1.
    pub(crate) fn uptime(&self, now_ns: u64) -> f64 {
        let now_ns = now_ns.max(self.since_ns);
        let mut failed = self.failed_ns;
        if self.status == HealthStatus::Failed {
            failed += now_ns - self.since_ns;
        }
        if now_ns == 0 {
            1.0
        } else {
            1.0 - failed as f64 / now_ns as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_counts_failed_time_only() {
        let mut t = StatusTracker::new();
        assert_eq!(t.uptime(0), 1.0);
        assert_eq!(
            t.update(HealthStatus::Degraded, 10),
            Some(HealthStatus::Unknown),
            "a new tracker has measured nothing"
        );
        assert_eq!(
            t.update(HealthStatus::Failed, 20),
            Some(HealthStatus::Degraded)
        );
        assert_eq!(t.update(HealthStatus::Failed, 25), None);
        assert_eq!(t.uptime(40), 0.5);
        t.update(HealthStatus::Healthy, 40);
        assert_eq!(t.uptime(80), 0.75);
        assert_eq!(t.changes(), 3);
    }
}
