//! The `metrics` families of SLA monitors: `sla_calls_total` counted on the record path
//! equals the monitor's totals, and after a publish every gauge equals the report; the
//! exposition a real Prometheus recorder renders parses and passes `promtool`'s lint.

use std::collections::HashMap;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use prometheus_parse::{Scrape, Value};
use reliability_core::classify::Outcome::{Failure, Ignore, Success};
use reliability_core::clock::ManualClock;
use reliability_core::health::HealthStatus;
use sla_layer::{SlaConfig, SlaLayer, SlaRegistry, SloConfig};
use tower::{ServiceBuilder, ServiceExt, service_fn};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn registry(clock: &ManualClock) -> SlaRegistry {
    SlaRegistry::builder()
        .clock(clock.shared())
        .defaults(SlaConfig {
            slo: Some(SloConfig::default()),
            ..SlaConfig::default()
        })
        .build()
        .unwrap()
}

/// Every series of one snapshot by name and sorted labels (the debugging recorder resets
/// values when read, so each test reads once).
fn read(recorder: &metrics_util::debugging::Snapshotter) -> HashMap<String, f64> {
    recorder
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let mut labels: Vec<String> = key
                .key()
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let value = match value {
                DebugValue::Counter(n) => n as f64,
                DebugValue::Gauge(g) => g.into_inner(),
                DebugValue::Histogram(_) => unreachable!("no histograms"),
            };
            (
                format!("{}{{{}}}", key.key().name(), labels.join(",")),
                value,
            )
        })
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn counters_equal_the_totals_and_published_gauges_equal_the_report() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let clock = ManualClock::new();
    let reg = registry(&clock);
    let (binance, quiet) = metrics::with_local_recorder(&recorder, || {
        (
            reg.monitor("binance").unwrap(),
            reg.monitor("quiet").unwrap(),
        )
    });
    // Recorded outside the recorder's scope: the handles were registered at build.
    clock.advance(Duration::from_secs(1));
    for i in 0..100 {
        binance.record(ms(10 + i % 10), if i % 25 == 0 { Failure } else { Success });
    }
    binance.record(ms(1), Ignore);
    drop(binance.start()); // cancelled
    let svc = ServiceBuilder::new()
        .layer(SlaLayer::new(binance.clone()))
        .service(service_fn(|ok: bool| async move {
            if ok { Ok(()) } else { Err("down") }
        }));
    svc.clone().oneshot(true).await.unwrap();
    svc.oneshot(false).await.unwrap_err();
    binance.report_data_quality(0.5).unwrap();

    metrics::with_local_recorder(&recorder, || reg.publish_metrics());
    let f = read(&snapshotter);
    let get = |series: &str| -> f64 {
        *f.get(series)
            .unwrap_or_else(|| panic!("no {series} in {f:#?}"))
    };
    let report = binance.report();
    let t = report.totals;
    assert_eq!(
        (t.successes, t.failures, t.ignored, t.cancelled),
        (97, 5, 1, 1)
    );
    for (outcome, n) in [
        ("success", t.successes),
        ("failure", t.failures),
        ("ignored", t.ignored),
        ("cancelled", t.cancelled),
    ] {
        assert_eq!(
            get(&format!(
                "sla_calls_total{{outcome={outcome},source=binance}}"
            )),
            n as f64,
            "{outcome}"
        );
    }
    assert_eq!(
        get("sla_status_changes_total{source=binance}"),
        report.status_changes as f64
    );
    assert_eq!(report.status, HealthStatus::Degraded);
    for (status, one) in [
        ("HEALTHY", 0.0),
        ("UNKNOWN", 0.0),
        ("DEGRADED", 1.0),
        ("FAILED", 0.0),
    ] {
        assert_eq!(
            get(&format!("sla_status{{source=binance,status={status}}}")),
            one
        );
    }
    // A monitor nothing was recorded into: its status (UNKNOWN where core has it) is
    // the one series at 1.
    let quiet_status = quiet.report().status;
    for status in [
        HealthStatus::Healthy,
        HealthStatus::Unknown,
        HealthStatus::Degraded,
        HealthStatus::Failed,
    ] {
        assert_eq!(
            get(&format!(
                "sla_status{{source=quiet,status={}}}",
                status.as_str()
            )),
            if status == quiet_status { 1.0 } else { 0.0 }
        );
    }
    let w = &report.time_window;
    for (p, d) in [("50", w.p50), ("95", w.p95), ("99", w.p99)] {
        assert_eq!(
            get(&format!(
                "sla_call_duration_seconds{{percentile={p},source=binance}}"
            )),
            d.as_secs_f64()
        );
    }
    assert!(w.p50 > Duration::ZERO);
    assert_eq!(
        get("sla_call_duration_max_seconds{source=binance}"),
        w.max.as_secs_f64()
    );
    assert_eq!(
        get("sla_success_ratio{source=binance,window=count}"),
        report.count_window.success_rate()
    );
    assert_eq!(
        get("sla_success_ratio{source=binance,window=time}"),
        w.success_rate()
    );
    assert_eq!(
        get("sla_consecutive_failures{source=binance}"),
        report.consecutive_failures as f64
    );
    assert_eq!(get("sla_uptime_ratio{source=binance}"), report.uptime);
    assert_eq!(
        get("sla_calls_per_second{source=binance}"),
        report.calls_per_second
    );
    assert_eq!(get("sla_data_quality_ratio{source=binance}"), 0.5);
    assert!(!f.contains_key("sla_data_quality_ratio{source=quiet}"));
    let budget = report.error_budget.unwrap();
    assert_eq!(get("sla_slo_target_ratio{source=binance}"), budget.target);
    assert_eq!(
        get("sla_error_budget_remaining_ratio{source=binance}"),
        budget.remaining
    );
    assert!(!report.alerts.is_empty());
    for a in &report.alerts {
        let (name, severity) = (&a.alert.name, a.alert.severity.as_str());
        assert_eq!(
            get(&format!(
                "sla_burn_rate{{alert={name},source=binance,window=long}}"
            )),
            a.long_burn_rate
        );
        assert_eq!(
            get(&format!(
                "sla_burn_rate{{alert={name},source=binance,window=short}}"
            )),
            a.short_burn_rate
        );
        assert_eq!(
            get(&format!(
                "sla_alert_firing{{alert={name},severity={severity},source=binance}}"
            )),
            if a.firing { 1.0 } else { 0.0 }
        );
    }
}

#[test]
fn a_prometheus_exposition_parses_escapes_names_and_passes_promtool() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let clock = ManualClock::new();
    let reg = registry(&clock);
    let tricky = "api \"v2\"\\eu\nwest";
    let text = metrics::with_local_recorder(&recorder, || {
        let m = reg.monitor(tricky).unwrap();
        clock.advance(Duration::from_secs(1));
        for i in 0..100 {
            m.record(ms(10 + i % 10), if i % 25 == 0 { Failure } else { Success });
        }
        m.report_data_quality(0.5).unwrap();
        reg.monitor("other").unwrap().record(ms(1), Success);
        reg.publish_metrics();
        handle.render()
    });

    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty());
    assert_eq!(scrape.samples.len(), samples.count(), "{text}");
    // prometheus-parse keeps label values as written (it does not unescape).
    let escaped = r#"api \"v2\"\\eu\nwest"#;
    let find = |name: &str, labels: &[(&str, &str)]| {
        scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == name
                    && s.labels.get("source") == Some(escaped)
                    && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v))
            })
            .unwrap_or_else(|| panic!("{name} {labels:?} missing in\n{text}"))
            .value
            .clone()
    };
    assert_eq!(
        find("sla_calls_total", &[("outcome", "failure")]),
        Value::Counter(4.0)
    );
    assert_eq!(
        find("sla_status", &[("status", "DEGRADED")]),
        Value::Gauge(1.0)
    );
    assert!(
        matches!(find("sla_burn_rate", &[("alert", "page_fast"), ("window", "long")]), Value::Gauge(r) if (r - 40.0).abs() < 1e-6)
    );
    assert!(text.contains("# TYPE sla_calls_total counter"), "{text}");
    for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
        let parts: Vec<_> = line.split(' ').collect();
        let (name, kind) = (parts[2], parts[3]);
        assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
    }
    promtool_check(&text);
}

/// `promtool check metrics` on `text`; skipped without promtool unless
/// `RELIABILITY_REQUIRE_PROMTOOL=1`, as in CI.
fn promtool_check(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if std::env::var_os("RELIABILITY_REQUIRE_PROMTOOL").is_none() => {
            eprintln!("promtool not run: {e}");
            return;
        }
        Err(e) => panic!("promtool required: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
