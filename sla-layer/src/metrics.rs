//! A monitor's figures through the `metrics` facade (feature `metrics`).
//!
//! Two kinds of series. Lifetime counts move on the record path, where the monitor's own
//! totals move, through handles registered once when the monitor is built. Windowed
//! figures (quantiles, ratios, status, budget, burn rates, alerts) only exist as of an
//! evaluation, so they are gauges set from a report by
//! [`SlaMonitor::publish_metrics`](crate::SlaMonitor::publish_metrics) (or
//! [`SlaRegistry::publish_metrics`](crate::SlaRegistry::publish_metrics)), which an
//! exporter's endpoint calls just before it renders; their handles are registered on the
//! first publish and kept, so later publishes allocate nothing. The families, and why
//! the percentiles are gauges labelled `percentile` rather than a summary, are in the
//! README.

#[cfg(not(feature = "metrics"))]
pub(crate) use self::off::Instruments;
#[cfg(feature = "metrics")]
pub(crate) use self::on::Instruments;

#[cfg(feature = "metrics")]
mod on {
    use std::sync::{Arc, OnceLock};

    use ::metrics::{Counter, Gauge, counter, describe_counter, describe_gauge, gauge};
    use reliability_core::classify::Outcome;
    use reliability_core::health::HealthStatus;

    use crate::budget::AlertStatus;
    use crate::monitor::SlaReport;

    const STATUSES: [HealthStatus; 4] = [
        HealthStatus::Healthy,
        HealthStatus::Unknown,
        HealthStatus::Degraded,
        HealthStatus::Failed,
    ];

    /// A monitor's handles: the record path's, registered when it is built, and the
    /// published gauges, registered on the first publish.
    pub(crate) struct Instruments {
        source: Arc<str>,
        /// success, failure, ignored, cancelled.
        calls: [Counter; 4],
        status_changes: Counter,
        published: OnceLock<Published>,
        data_quality: OnceLock<Gauge>,
    }

    impl std::fmt::Debug for Instruments {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Instruments")
                .field("source", &self.source)
                .field("published", &self.published.get().is_some())
                .finish_non_exhaustive()
        }
    }

    struct Published {
        /// p50, p95, p99.
        duration: [Gauge; 3],
        duration_max: Gauge,
        /// count, time.
        success_ratio: [Gauge; 2],
        status: [Gauge; 4],
        consecutive_failures: Gauge,
        uptime: Gauge,
        calls_per_second: Gauge,
        /// SLO target, budget remaining.
        budget: Option<[Gauge; 2]>,
        alerts: Vec<AlertGauges>,
    }

    struct AlertGauges {
        name: String,
        /// long, short.
        burn_rate: [Gauge; 2],
        firing: Gauge,
    }

    impl Instruments {
        pub(crate) fn new(source: &Arc<str>) -> Self {
            describe();
            let calls = ["success", "failure", "ignored", "cancelled"].map(|outcome| {
                counter!("sla_calls_total", "source" => Arc::clone(source), "outcome" => outcome)
            });
            Self {
                source: Arc::clone(source),
                calls,
                status_changes: counter!("sla_status_changes_total", "source" => Arc::clone(source)),
                published: OnceLock::new(),
                data_quality: OnceLock::new(),
            }
        }

        #[inline]
        pub(crate) fn recorded(&self, outcome: Outcome) {
            let i = match outcome {
                Outcome::Success => 0,
                Outcome::Failure => 1,
                Outcome::Ignore => 2,
            };
            self.calls[i].increment(1);
        }

        pub(crate) fn cancelled(&self) {
            self.calls[3].increment(1);
        }

        pub(crate) fn status_changed(&self) {
            self.status_changes.increment(1);
        }

        /// Sets every windowed gauge from `report` (this monitor's).
        pub(crate) fn publish(&self, report: &SlaReport) {
            let p = self
                .published
                .get_or_init(|| Published::register(&self.source, report));
            let time = &report.time_window;
            for (gauge, d) in p.duration.iter().zip([time.p50, time.p95, time.p99]) {
                gauge.set(d.as_secs_f64());
            }
            p.duration_max.set(time.max.as_secs_f64());
            p.success_ratio[0].set(report.count_window.success_rate());
            p.success_ratio[1].set(time.success_rate());
            for (gauge, status) in p.status.iter().zip(STATUSES) {
                gauge.set(if report.status == status { 1.0 } else { 0.0 });
            }
            p.consecutive_failures
                .set(report.consecutive_failures as f64);
            p.uptime.set(report.uptime);
            p.calls_per_second.set(report.calls_per_second);
            if let (Some([target, remaining]), Some(b)) = (&p.budget, &report.error_budget) {
                target.set(b.target);
                remaining.set(b.remaining);
            }
            for (i, a) in report.alerts.iter().enumerate() {
                match p.alerts.get(i) {
                    Some(g) if g.name == a.alert.name => g.set(a),
                    // The alerts come from the monitor's configuration, which never
                    // changes: this is never reached, but stays right if it were.
                    _ => AlertGauges::register(&self.source, a).set(a),
                }
            }
            if let Some(score) = report.data_quality {
                self.data_quality
                    .get_or_init(
                        || gauge!("sla_data_quality_ratio", "source" => Arc::clone(&self.source)),
                    )
                    .set(score);
            }
        }
    }

    impl Published {
        fn register(source: &Arc<str>, report: &SlaReport) -> Self {
            let one = |name: &'static str| gauge!(name, "source" => Arc::clone(source));
            Self {
                duration: ["50", "95", "99"].map(|p| {
                    gauge!("sla_call_duration_seconds", "source" => Arc::clone(source), "percentile" => p)
                }),
                duration_max: one("sla_call_duration_max_seconds"),
                success_ratio: ["count", "time"].map(|w| {
                    gauge!("sla_success_ratio", "source" => Arc::clone(source), "window" => w)
                }),
                status: STATUSES.map(|s| {
                    gauge!("sla_status", "source" => Arc::clone(source), "status" => s.as_str())
                }),
                consecutive_failures: one("sla_consecutive_failures"),
                uptime: one("sla_uptime_ratio"),
                calls_per_second: one("sla_calls_per_second"),
                budget: report.error_budget.map(|_| {
                    [
                        one("sla_slo_target_ratio"),
                        one("sla_error_budget_remaining_ratio"),
                    ]
                }),
                alerts: report
                    .alerts
                    .iter()
                    .map(|a| AlertGauges::register(source, a))
                    .collect(),
            }
        }
    }

    impl AlertGauges {
        fn register(source: &Arc<str>, a: &AlertStatus) -> Self {
            let alert = &a.alert;
            Self {
                name: alert.name.clone(),
                burn_rate: ["long", "short"].map(|w| {
                    gauge!(
                        "sla_burn_rate",
                        "source" => Arc::clone(source),
                        "alert" => alert.name.clone(),
                        "window" => w
                    )
                }),
                firing: gauge!(
                    "sla_alert_firing",
                    "source" => Arc::clone(source),
                    "alert" => alert.name.clone(),
                    "severity" => alert.severity.as_str()
                ),
            }
        }

        fn set(&self, a: &AlertStatus) {
            self.burn_rate[0].set(a.long_burn_rate);
            self.burn_rate[1].set(a.short_burn_rate);
            self.firing.set(if a.firing { 1.0 } else { 0.0 });
        }
    }

    fn describe() {
        describe_counter!(
            "sla_calls_total",
            "Calls recorded by an SLA monitor, by outcome."
        );
        describe_counter!(
            "sla_status_changes_total",
            "SLA status transitions since the monitor began."
        );
        describe_gauge!(
            "sla_call_duration_seconds",
            "Call latency percentiles over the monitor's time window."
        );
        describe_gauge!(
            "sla_call_duration_max_seconds",
            "Largest call latency in the monitor's time window."
        );
        describe_gauge!("sla_success_ratio", "Successes over calls in each window.");
        describe_gauge!("sla_status", "1 for the current SLA status of the source.");
        describe_gauge!("sla_consecutive_failures", "Failures in a row, up to now.");
        describe_gauge!(
            "sla_uptime_ratio",
            "Share of time since start the source was not FAILED."
        );
        describe_gauge!("sla_calls_per_second", "Call rate over the time window.");
        describe_gauge!(
            "sla_data_quality_ratio",
            "Last data-quality score reported."
        );
        describe_gauge!(
            "sla_slo_target_ratio",
            "Share of calls the SLO requires to succeed."
        );
        describe_gauge!(
            "sla_error_budget_remaining_ratio",
            "Share of the error budget left over the SLO period; negative when overspent."
        );
        describe_gauge!(
            "sla_burn_rate",
            "Error-budget burn rate over each alert window."
        );
        describe_gauge!("sla_alert_firing", "1 while a burn-rate alert fires.");
    }
}

/// Without the feature the record path's calls compile to nothing.
#[cfg(not(feature = "metrics"))]
mod off {
    use std::sync::Arc;

    use reliability_core::classify::Outcome;

    #[derive(Debug)]
    pub(crate) struct Instruments;

    impl Instruments {
        pub(crate) fn new(_source: &Arc<str>) -> Self {
            Self
        }
        #[inline(always)]
        pub(crate) fn recorded(&self, _outcome: Outcome) {}
        #[inline(always)]
        pub(crate) fn cancelled(&self) {}
        pub(crate) fn status_changed(&self) {}
    }
}
