//! Prometheus text exposition (format 0.0.4) of monitor reports.
//!
//! A small writer of our own rather than the `metrics` facade with
//! `metrics-exporter-prometheus`: the monitor already holds every figure (windows merged on
//! read), so a facade would only add a global recorder, a second aggregation of the same
//! samples and an HTTP stack to the dependency tree. The format is a few lines of text;
//! what needs care is escaping label values (monitor names are user strings) and
//! formatting non-finite floats, both done here.
//!
//! | metric | type | labels | figure |
//! |---|---|---|---|
//! | `sla_calls_total` | counter | `source`, `outcome` = success, failure, ignored, cancelled | lifetime calls |
//! | `sla_call_duration_seconds` | summary | `source`, `quantile` = 0.5, 0.95, 0.99 | time-window quantiles; `_sum`/`_count` lifetime |
//! | `sla_call_duration_max_seconds` | gauge | `source` | time-window max |
//! | `sla_success_ratio` | gauge | `source`, `window` = count, time | success rate |
//! | `sla_consecutive_failures` | gauge | `source` | failures in a row |
//! | `sla_uptime_ratio` | gauge | `source` | share of time not FAILED |
//! | `sla_calls_per_second` | gauge | `source` | time-window call rate |
//! | `sla_data_quality_ratio` | gauge | `source` | last reported score (when reported) |
//! | `sla_status` | gauge | `source`, `status` = HEALTHY, DEGRADED, FAILED | 1 for the current status |
//! | `sla_status_changes_total` | counter | `source` | status transitions |
//! | `sla_slo_target_ratio` | gauge | `source` | the SLO (when set) |
//! | `sla_error_budget_remaining_ratio` | gauge | `source` | budget left, negative when overspent |
//! | `sla_burn_rate` | gauge | `source`, `alert`, `window` = long, short | burn rate of each alert window |
//! | `sla_alert_firing` | gauge | `source`, `alert`, `severity` | 1 while firing |

use std::fmt::Write;

use reliability_core::health::HealthStatus;

use crate::config::WindowKind;
use crate::monitor::SlaReport;

/// The exposition format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders `reports` (usually [`SlaRegistry::reports`](crate::SlaRegistry::reports)).
pub fn render(reports: &[SlaReport]) -> String {
    let mut w = Writer::default();
    w.family("sla_calls_total", "counter", "Calls recorded, by outcome.");
    for r in reports {
        let t = &r.totals;
        for (outcome, n) in [
            ("success", t.successes),
            ("failure", t.failures),
            ("ignored", t.ignored),
            ("cancelled", t.cancelled),
        ] {
            w.sample(
                "sla_calls_total",
                &[("source", &r.name), ("outcome", outcome)],
                n as f64,
            );
        }
    }
    w.family(
        "sla_call_duration_seconds",
        "summary",
        "Call latency: quantiles over the time window; sum and count since start.",
    );
    for r in reports {
        let win = &r.time_window;
        for (q, d) in [("0.5", win.p50), ("0.95", win.p95), ("0.99", win.p99)] {
            w.sample(
                "sla_call_duration_seconds",
                &[("source", &r.name), ("quantile", q)],
                d.as_secs_f64(),
            );
        }
        let source = [("source", &*r.name)];
        w.sample(
            "sla_call_duration_seconds_sum",
            &source,
            r.totals.latency_sum.as_secs_f64(),
        );
        w.sample(
            "sla_call_duration_seconds_count",
            &source,
            (r.totals.successes + r.totals.failures) as f64,
        );
    }
    gauge(
        &mut w,
        reports,
        "sla_call_duration_max_seconds",
        "Largest latency in the time window.",
        |r| Some(r.time_window.max.as_secs_f64()),
    );
    w.family(
        "sla_success_ratio",
        "gauge",
        "Successes over calls in each window.",
    );
    for r in reports {
        for (kind, win) in [
            (WindowKind::Count, &r.count_window),
            (WindowKind::Time, &r.time_window),
        ] {
            let window = if kind == WindowKind::Count {
                "count"
            } else {
                "time"
            };
            w.sample(
                "sla_success_ratio",
                &[("source", &r.name), ("window", window)],
                win.success_rate(),
            );
        }
    }
    gauge(
        &mut w,
        reports,
        "sla_consecutive_failures",
        "Failures in a row, up to now.",
        |r| Some(r.consecutive_failures as f64),
    );
    gauge(
        &mut w,
        reports,
        "sla_uptime_ratio",
        "Share of time since start the source was not FAILED.",
        |r| Some(r.uptime),
    );
    gauge(
        &mut w,
        reports,
        "sla_calls_per_second",
        "Call rate over the time window.",
        |r| Some(r.calls_per_second),
    );
    gauge(
        &mut w,
        reports,
        "sla_data_quality_ratio",
        "Last data-quality score reported.",
        |r| r.data_quality,
    );
    w.family(
        "sla_status",
        "gauge",
        "1 for the current status of the source.",
    );
    for r in reports {
        for s in [
            HealthStatus::Healthy,
            HealthStatus::Degraded,
            HealthStatus::Failed,
        ] {
            w.sample(
                "sla_status",
                &[("source", &r.name), ("status", s.as_str())],
                if r.status == s { 1.0 } else { 0.0 },
            );
        }
    }
    w.family(
        "sla_status_changes_total",
        "counter",
        "Status transitions since start.",
    );
    for r in reports {
        w.sample(
            "sla_status_changes_total",
            &[("source", &r.name)],
            r.status_changes as f64,
        );
    }
    gauge(
        &mut w,
        reports,
        "sla_slo_target_ratio",
        "Share of calls the SLO requires to succeed.",
        |r| r.error_budget.map(|b| b.target),
    );
    gauge(
        &mut w,
        reports,
        "sla_error_budget_remaining_ratio",
        "Share of the error budget left over the SLO period; negative when overspent.",
        |r| r.error_budget.map(|b| b.remaining),
    );
    w.family(
        "sla_burn_rate",
        "gauge",
        "Error-budget burn rate over each alert window.",
    );
    for r in reports {
        for a in &r.alerts {
            for (window, rate) in [("long", a.long_burn_rate), ("short", a.short_burn_rate)] {
                w.sample(
                    "sla_burn_rate",
                    &[
                        ("source", &r.name),
                        ("alert", &a.alert.name),
                        ("window", window),
                    ],
                    rate,
                );
            }
        }
    }
    w.family(
        "sla_alert_firing",
        "gauge",
        "1 while a burn-rate alert fires.",
    );
    for r in reports {
        for a in &r.alerts {
            w.sample(
                "sla_alert_firing",
                &[
                    ("source", &r.name),
                    ("alert", &a.alert.name),
                    ("severity", a.alert.severity.as_str()),
                ],
                if a.firing { 1.0 } else { 0.0 },
            );
        }
    }
    w.out
}

fn gauge(
    w: &mut Writer,
    reports: &[SlaReport],
    name: &str,
    help: &str,
    value: impl Fn(&SlaReport) -> Option<f64>,
) {
    w.family(name, "gauge", help);
    for r in reports {
        if let Some(v) = value(r) {
            w.sample(name, &[("source", &r.name)], v);
        }
    }
}

#[derive(Default)]
struct Writer {
    out: String,
}

impl Writer {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape_label(&mut self.out, v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        push_float(&mut self.out, value);
        self.out.push('\n');
    }
}

/// Label values escape backslash, double quote and line feed (exposition format spec).
fn escape_label(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn push_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_floats_are_escaped() {
        let mut s = String::new();
        escape_label(&mut s, "a\"b\\c\nd");
        assert_eq!(s, r#"a\"b\\c\nd"#);
        let mut s = String::new();
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.25] {
            push_float(&mut s, v);
            s.push(' ');
        }
        assert_eq!(s, "NaN +Inf -Inf 0.25 ");
    }
}
