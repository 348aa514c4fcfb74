//! What a monitor announces: status changes and burn-rate alerts.
//!
//! Each event is logged with `tracing` (target `sla_layer`) and handed to the listeners
//! registered on the builder. Listeners run on the thread that evaluated the monitor
//! (a caller's, every `evaluation_interval`, or a reader's), after the monitor's locks are
//! released, so a listener may read the monitor; it should be quick. A listener that
//! panics is logged and skipped: it never fails the call that happened to evaluate.

use std::sync::Arc;
use std::time::SystemTime;

use reliability_core::health::HealthStatus;

use crate::budget::AlertStatus;
use crate::status::Reason;

/// A monitor's status changed.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusChange {
    /// The monitor's name.
    pub source: Arc<str>,
    /// The status before.
    pub from: HealthStatus,
    /// The status now.
    pub to: HealthStatus,
    /// Why it is not HEALTHY (empty when it is).
    pub reasons: Vec<Reason>,
    /// When it changed (wall clock).
    pub at: SystemTime,
}

/// A burn-rate alert started or stopped firing.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertEvent {
    /// The monitor's name.
    pub source: Arc<str>,
    /// The alert, its windows and burn rates; `status.firing` says which way it went.
    pub status: AlertStatus,
    /// When it changed (wall clock).
    pub at: SystemTime,
}

/// A status-change listener.
pub type StatusListener = Arc<dyn Fn(&StatusChange) + Send + Sync>;
/// An alert listener.
pub type AlertListener = Arc<dyn Fn(&AlertEvent) + Send + Sync>;

pub(crate) fn log_status_change(e: &StatusChange) {
    let reasons = reasons_text(&e.reasons);
    match e.to {
        HealthStatus::Healthy | HealthStatus::Unknown => tracing::info!(
            target: "sla_layer", source = %e.source, from = e.from.as_str(), to = e.to.as_str(),
            "SLA status changed"
        ),
        HealthStatus::Degraded => tracing::warn!(
            target: "sla_layer", source = %e.source, from = e.from.as_str(), to = e.to.as_str(),
            %reasons, "SLA status changed"
        ),
        HealthStatus::Failed => tracing::error!(
            target: "sla_layer", source = %e.source, from = e.from.as_str(), to = e.to.as_str(),
            %reasons, "SLA status changed"
        ),
    }
}

pub(crate) fn log_alert(e: &AlertEvent) {
    let s = &e.status;
    if s.firing {
        tracing::error!(
            target: "sla_layer", source = %e.source, alert = %s.alert.name,
            severity = s.alert.severity.as_str(), burn_rate = s.alert.burn_rate,
            long_burn_rate = s.long_burn_rate, short_burn_rate = s.short_burn_rate,
            "error-budget burn-rate alert firing"
        );
    } else {
        tracing::info!(
            target: "sla_layer", source = %e.source, alert = %s.alert.name,
            severity = s.alert.severity.as_str(), "error-budget burn-rate alert resolved"
        );
    }
}

/// Runs one listener, containing a panic so that a faulty listener cannot fail the user's
/// request that triggered the evaluation.
pub(crate) fn notify(source: &str, f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        tracing::error!(target: "sla_layer", source, "an SLA event listener panicked");
    }
}

pub(crate) fn reasons_text(reasons: &[Reason]) -> String {
    reasons
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
