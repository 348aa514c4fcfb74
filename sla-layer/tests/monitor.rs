//! The monitor through its public API, on a hand-moved clock: both windows, every status
//! rule, consecutive failures, uptime, events and configuration errors.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reliability_core::classify::Outcome::{self, Failure, Ignore, Success};
use reliability_core::clock::ManualClock;
use reliability_core::health::HealthStatus::{Degraded, Failed, Healthy, Unknown};
use sla_layer::{Reason, SlaMonitor, SlaMonitorBuilder, StatusChange, WindowKind};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn build(b: SlaMonitorBuilder) -> (SlaMonitor, ManualClock) {
    let clock = ManualClock::new();
    (b.clock(clock.shared()).build().unwrap(), clock)
}

fn record_n(m: &SlaMonitor, n: usize, latency: Duration, outcome: Outcome) {
    for _ in 0..n {
        m.record(latency, outcome);
    }
}

/// `n` calls of which `failures` fail, never two failures in a row.
fn record_spread(m: &SlaMonitor, n: usize, failures: usize, latency: Duration) {
    for i in 0..n {
        let fail = i % 2 == 1 && i / 2 < failures;
        m.record(latency, if fail { Failure } else { Success });
    }
}

#[test]
fn count_window_holds_the_last_n_calls() {
    let (m, _clock) = build(
        SlaMonitor::builder("src")
            .count_window(5)
            .max_consecutive_failures(100),
    );
    record_n(&m, 5, ms(900), Failure);
    record_n(&m, 5, ms(10), Success);
    let r = m.report();
    assert_eq!(r.count_window.calls, 5);
    assert_eq!(r.count_window.successes, 5);
    assert!(r.count_window.max < ms(11), "{:?}", r.count_window);
    assert_eq!(r.time_window.calls, 10);
    assert_eq!((r.totals.successes, r.totals.failures), (5, 5));
}

#[test]
fn time_window_expires_whole_intervals() {
    let (m, clock) = build(
        SlaMonitor::builder("src").time_window(Duration::from_secs(10), Duration::from_secs(1)),
    );
    record_n(&m, 3, ms(100), Success);
    clock.advance(Duration::from_secs(5));
    record_n(&m, 2, ms(200), Success);
    let r = m.report();
    assert_eq!(r.time_window.calls, 5);
    assert!(
        (r.calls_per_second - 1.0).abs() < 1e-9,
        "{}",
        r.calls_per_second
    );

    clock.advance(Duration::from_millis(4_999));
    assert_eq!(m.report().time_window.calls, 5, "9.999 s old: still inside");
    clock.advance(Duration::from_millis(1));
    let r = m.report();
    assert_eq!(r.time_window.calls, 2, "10 s old: expired");
    assert!(r.time_window.p50 >= ms(200));
    clock.advance(Duration::from_secs(5));
    assert_eq!(m.report().time_window.calls, 0);
    // The count window does not forget.
    assert_eq!(m.report().count_window.calls, 5);
}

#[test]
fn percentiles_of_the_count_window() {
    let (m, _clock) = build(SlaMonitor::builder("src"));
    for i in 1..=100 {
        m.record(ms(i), Success);
    }
    let w = m.report().count_window;
    let close = |d: Duration, want: u64| {
        let want = ms(want).as_secs_f64();
        (d.as_secs_f64() - want).abs() <= want * 0.01
    };
    assert!(
        close(w.p50, 50) && close(w.p95, 95) && close(w.p99, 99) && close(w.max, 100),
        "{w:?}"
    );
}

#[test]
fn consecutive_failures_fail_and_a_success_resets() {
    let (m, _clock) = build(SlaMonitor::builder("src").max_consecutive_failures(3));
    record_n(&m, 2, ms(1), Failure);
    assert_eq!(m.consecutive_failures(), 2);
    assert_eq!(
        m.status(),
        Healthy,
        "2 < 3 and too few calls for the rate rules"
    );
    m.record(ms(1), Ignore);
    assert_eq!(
        m.consecutive_failures(),
        2,
        "ignored calls do not break a run"
    );
    m.record(ms(1), Failure);
    let r = m.report();
    assert_eq!(r.status, Failed);
    assert_eq!(
        r.reasons,
        vec![Reason::ConsecutiveFailures { count: 3, max: 3 }]
    );
    m.record(ms(1), Success);
    assert_eq!(m.consecutive_failures(), 0);
    assert_eq!(m.status(), Healthy);
}

#[test]
fn success_rate_below_floor_fails() {
    let (m, _clock) = build(SlaMonitor::builder("src").min_success_rate(0.9));
    record_spread(&m, 10, 2, ms(1));
    let r = m.report();
    assert_eq!(r.status, Failed);
    assert!(
        matches!(r.reasons[0], Reason::SuccessRateBelowFloor { rate, .. } if (rate - 0.8).abs() < 1e-9)
    );
}

#[test]
fn success_rate_below_degraded_threshold_degrades() {
    let (m, _clock) = build(SlaMonitor::builder("src"));
    record_spread(&m, 100, 5, ms(1));
    let r = m.report();
    assert_eq!(r.status, Degraded);
    assert!(
        matches!(r.reasons[..], [Reason::SuccessRateDegraded { .. }]),
        "{:?}",
        r.reasons
    );
    // Exactly at the threshold is fine.
    let (m, _clock) = build(SlaMonitor::builder("src"));
    record_spread(&m, 100, 1, ms(1));
    assert_eq!(m.status(), Healthy);
}

#[test]
fn slow_p95_degrades() {
    let (m, _clock) = build(SlaMonitor::builder("src").p95(ms(500)));
    record_n(&m, 90, ms(10), Success);
    record_n(&m, 10, ms(600), Success);
    let r = m.report();
    assert_eq!(r.status, Degraded);
    assert!(
        matches!(r.reasons[..], [Reason::P95Exceeded { limit, .. }] if limit == ms(500)),
        "{:?}",
        r.reasons
    );
}

#[test]
fn slow_p99_degrades() {
    let (m, _clock) = build(SlaMonitor::builder("src").p99(ms(1000)));
    record_n(&m, 98, ms(10), Success);
    record_n(&m, 2, ms(2000), Success);
    let r = m.report();
    assert_eq!(r.status, Degraded);
    assert!(
        matches!(r.reasons[..], [Reason::P99Exceeded { .. }]),
        "{:?}",
        r.reasons
    );
}

#[test]
fn low_data_quality_degrades_and_bad_scores_are_refused() {
    let (m, _clock) = build(SlaMonitor::builder("src").min_data_quality(0.8));
    assert_eq!(m.status(), Unknown);
    m.report_data_quality(0.5).unwrap();
    let r = m.report();
    assert_eq!(r.status, Degraded);
    assert_eq!(r.data_quality, Some(0.5));
    assert!(m.report_data_quality(f64::NAN).is_err());
    assert!(m.report_data_quality(1.5).is_err());
    assert!(m.report_data_quality(-0.1).is_err());
    m.report_data_quality(0.9).unwrap();
    assert_eq!(m.status(), Unknown, "good data, but no call measured");
    m.record(ms(1), Success);
    assert_eq!(m.status(), Healthy);
}

#[test]
fn no_calls_is_unknown_and_too_few_to_judge_is_healthy() {
    let (m, _clock) = build(
        SlaMonitor::builder("src")
            .min_calls(10)
            .max_consecutive_failures(100),
    );
    assert_eq!(m.status(), Unknown, "nobody has measured it yet");
    record_n(&m, 9, ms(5000), Failure);
    assert_eq!(m.status(), Healthy);
    m.record(ms(5000), Failure);
    let r = m.report();
    assert_eq!(r.status, Failed);
    // Every rule that fires is listed, FAILED first.
    assert_eq!(r.reasons.len(), 3, "{:?}", r.reasons);
}

#[test]
fn time_status_window_forgets_old_trouble_and_an_empty_one_is_unknown() {
    let (m, clock) = build(
        SlaMonitor::builder("src")
            .status_window(WindowKind::Time)
            .time_window(Duration::from_secs(10), Duration::from_secs(1))
            .max_consecutive_failures(1000),
    );
    record_n(&m, 20, ms(1), Failure);
    assert_eq!(m.status(), Failed);
    clock.advance(Duration::from_secs(10));
    // An empty window (what an open breaker leaves) is not HEALTHY: nothing measured it.
    assert_eq!(m.status(), Unknown);
    m.record(ms(1), Success);
    assert_eq!(m.status(), Healthy);
}

#[test]
fn status_changes_reach_listeners_and_uptime_counts_failed_time() {
    let seen: Arc<Mutex<Vec<StatusChange>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let (m, clock) = build(
        SlaMonitor::builder("binance")
            .max_consecutive_failures(2)
            .on_status_change(move |e| sink.lock().unwrap().push(e.clone())),
    );
    clock.advance(Duration::from_secs(10));
    record_n(&m, 2, ms(1), Failure);
    clock.advance(Duration::from_secs(10));
    m.record(ms(1), Success);
    let r = m.report();
    assert!((r.uptime - 0.5).abs() < 1e-9, "{}", r.uptime);
    assert_eq!(r.status_changes, 3);
    let seen = seen.lock().unwrap();
    let path: Vec<_> = seen.iter().map(|e| (e.from, e.to)).collect();
    assert_eq!(
        path,
        vec![(Unknown, Healthy), (Healthy, Failed), (Failed, Healthy)]
    );
    assert_eq!(&*seen[0].source, "binance");
    assert_eq!(seen[1].reasons.len(), 1);
}

#[test]
fn calls_evaluate_on_their_own_every_interval() {
    let changes = Arc::new(Mutex::new(0));
    let sink = Arc::clone(&changes);
    let (m, clock) = build(
        SlaMonitor::builder("src")
            .p95(ms(100))
            .evaluation_interval(Duration::from_secs(1))
            .on_status_change(move |_| *sink.lock().unwrap() += 1),
    );
    record_n(&m, 20, ms(500), Success);
    assert_eq!(*changes.lock().unwrap(), 0, "not due yet");
    clock.advance(Duration::from_secs(1));
    m.record(ms(500), Success);
    assert_eq!(
        *changes.lock().unwrap(),
        1,
        "the first call after the interval evaluates"
    );
}

#[test]
fn timers_measure_and_dropped_timers_count_as_cancelled() {
    let (m, clock) = build(SlaMonitor::builder("src"));
    let t = m.start();
    clock.advance(ms(42));
    t.finish(Success);
    drop(m.start());
    let r = m.report();
    assert_eq!(r.totals.cancelled, 1);
    assert_eq!(r.count_window.calls, 1);
    assert!(r.count_window.max >= ms(42) && r.count_window.max < ms(43));
    assert_eq!(r.totals.latency_sum, ms(42));
}

#[test]
fn report_converts_to_core_snapshot() {
    let (m, clock) = build(SlaMonitor::builder("src").p95(ms(100)));
    clock.advance(Duration::from_secs(1));
    record_n(&m, 20, ms(200), Success);
    let r = m.report();
    let s = r.to_snapshot();
    assert_eq!(s.calls, 20);
    assert!((s.p95_ms - 200.0).abs() < 2.0);
    assert_eq!(s.error_budget_remaining, None);
    let c = r.to_component();
    assert_eq!(c.status, Degraded);
    assert!(c.message.unwrap().starts_with("p95"));
}

#[test]
fn invalid_settings_are_named() {
    let field = |b: SlaMonitorBuilder| b.build().unwrap_err().field;
    let b = || SlaMonitor::builder("src");
    assert_eq!(field(SlaMonitor::builder("")), "name");
    assert_eq!(field(SlaMonitor::builder("x".repeat(257))), "name");
    assert_eq!(field(b().count_window(0)), "count_window");
    assert_eq!(field(b().count_window(100_001)), "count_window");
    assert_eq!(
        field(b().time_window(Duration::from_secs(10), Duration::from_secs(3))),
        "time_window"
    );
    assert_eq!(
        field(b().time_window(Duration::from_secs(3601), Duration::from_secs(1))),
        "time_window"
    );
    assert_eq!(
        field(b().time_window(Duration::ZERO, Duration::ZERO)),
        "time_interval"
    );
    assert_eq!(field(b().significant_figures(6)), "significant_figures");
    assert_eq!(field(b().shards(0)), "shards");
    assert_eq!(
        field(b().evaluation_interval(Duration::ZERO)),
        "evaluation_interval"
    );
    assert_eq!(
        field(b().min_success_rate(1.5)),
        "thresholds.min_success_rate"
    );
    assert_eq!(
        field(b().min_success_rate(0.995)),
        "thresholds.degraded_success_rate"
    );
    assert_eq!(
        field(b().max_consecutive_failures(0)),
        "thresholds.max_consecutive_failures"
    );
    assert_eq!(field(b().p95(Duration::ZERO)), "thresholds.p95");
    assert_eq!(
        field(b().min_data_quality(f64::NAN)),
        "thresholds.min_data_quality"
    );
    assert_eq!(
        field(b().error_budget(0.0, Duration::from_secs(60))),
        "slo.target"
    );
}

#[test]
fn config_deserializes_and_rejects_unknown_fields() {
    let cfg: sla_layer::SlaConfig = serde_json::from_str(
        r#"{"time_window": "1m", "time_interval": "10s", "status_window": "time",
            "thresholds": {"p95": "250ms", "p99": null}}"#,
    )
    .unwrap();
    assert_eq!(cfg.thresholds.p95, Some(ms(250)));
    assert_eq!(cfg.thresholds.p99, None);
    assert_eq!(cfg.status_window, WindowKind::Time);
    assert!(SlaMonitor::from_config("x", &cfg).is_ok());
    assert!(serde_json::from_str::<sla_layer::SlaConfig>(r#"{"p95": "1s"}"#).is_err());
}

#[test]
fn a_panicking_listener_does_not_fail_the_call() {
    let (m, _clock) = build(
        SlaMonitor::builder("src")
            .max_consecutive_failures(1)
            .on_status_change(|_| panic!("listener bug")),
    );
    m.record(ms(1), Failure);
    assert_eq!(m.status(), Failed);
}
