//! What a monitor reports: [`SlaReport`] and its lifetime [`CallTotals`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reliability_core::health::{ComponentDetail, ComponentHealth, HealthStatus, SlaSnapshot};

use crate::budget::{AlertStatus, ErrorBudget};
use crate::config::WindowKind;
use crate::events;
use crate::status::Reason;
use crate::window::WindowStats;

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
    pub(super) fn absorb(&mut self, o: &CallTotals) {
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
