//! Evaluation: the figures of every shard turned into a status, an error budget, events
//! and alerts, at most once per `evaluation_interval` on the record path.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use reliability_core::classify::Outcome;

use super::{MonitorCore, NO_SCORE, SlaReport};
use crate::config::WindowKind;
use crate::events::{self, AlertEvent, StatusChange};
use crate::status::{Assessment, assess};

impl MonitorCore {
    #[inline]
    pub(super) fn after_record(&self, now_ns: u64, outcome: Outcome) {
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
    pub(super) fn evaluate(&self, now_ns: u64) -> SlaReport {
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
                self.instruments.status_changed();
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
