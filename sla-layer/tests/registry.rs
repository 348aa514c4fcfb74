//! The registry: get-or-create, unhealthy sources, the system health snapshot's JSON
//! shape with foreign health sources, and Prometheus output read back by a real parser.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_parse::{Scrape, Value};
use reliability_core::classify::Outcome::{Failure, Success};
use reliability_core::clock::ManualClock;
use reliability_core::health::{
    BreakerSnapshot, BreakerState, ComponentDetail, ComponentHealth, HealthSource, HealthStatus,
};
use sla_layer::{RegistryError, SlaConfig, SlaMonitor, SlaRegistry};

struct Breaker;
impl HealthSource for Breaker {
    fn health(&self) -> Vec<ComponentHealth> {
        vec![ComponentHealth::new(
            "breaker:kraken",
            HealthStatus::Degraded,
            ComponentDetail::Breaker(BreakerSnapshot {
                state: BreakerState::HalfOpen,
                ..Default::default()
            }),
        )]
    }
}

fn registry(clock: &ManualClock) -> SlaRegistry {
    SlaRegistry::builder()
        .clock(clock.shared())
        .build()
        .unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn monitor_is_get_or_create_and_bounded() {
    let clock = ManualClock::new();
    let reg = SlaRegistry::builder()
        .clock(clock.shared())
        .max_monitors(2)
        .build()
        .unwrap();
    let a = reg.monitor("a").unwrap();
    a.record(ms(1), Success);
    assert_eq!(
        reg.monitor("a").unwrap().report().totals.successes,
        1,
        "same monitor"
    );
    reg.monitor("b").unwrap();
    assert_eq!(
        reg.monitor("c").unwrap_err(),
        RegistryError::Full { max: 2 }
    );
    assert!(reg.monitor("a").is_ok(), "existing names still resolve");
    assert_eq!(reg.names(), vec!["a", "b"]);
    assert!(reg.remove("b").is_some());
    let custom = SlaMonitor::builder("c").count_window(10).build().unwrap();
    assert!(reg.insert(custom).unwrap().is_none());
    assert_eq!(reg.get("c").unwrap().config().count_window, 10);
    assert!(
        matches!(SlaRegistry::new().monitor(""), Err(RegistryError::Config(e)) if e.field == "name")
    );
    assert_eq!(
        SlaRegistry::builder()
            .max_monitors(0)
            .build()
            .unwrap_err()
            .field,
        "max_monitors"
    );
}

#[test]
fn unhealthy_sources_worst_first() {
    let clock = ManualClock::new();
    let changes = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&changes);
    let reg = SlaRegistry::builder()
        .clock(clock.shared())
        .on_status_change(move |e| sink.lock().unwrap().push(e.source.to_string()))
        .build()
        .unwrap();
    for _ in 0..20 {
        reg.monitor("slow").unwrap().record(ms(900), Success);
        reg.monitor("fine").unwrap().record(ms(5), Success);
    }
    for _ in 0..5 {
        reg.monitor("down").unwrap().record(ms(5), Failure);
    }
    let bad = reg.unhealthy();
    let names: Vec<_> = bad.iter().map(|c| (c.name.as_str(), c.status)).collect();
    assert_eq!(
        names,
        vec![
            ("down", HealthStatus::Failed),
            ("slow", HealthStatus::Degraded)
        ]
    );
    assert!(bad[1].message.as_deref().unwrap().contains("p95"));
    let mut seen = changes.lock().unwrap().clone();
    seen.sort();
    assert_eq!(
        seen,
        vec!["down", "slow"],
        "registry listeners reach created monitors"
    );
}

#[test]
fn system_health_json_shape() {
    let clock = ManualClock::new();
    let reg = registry(&clock);
    clock.advance(Duration::from_secs(2));
    let m = reg.monitor("binance").unwrap();
    for _ in 0..10 {
        m.record(ms(20), Success);
    }
    m.report_data_quality(0.75).unwrap();
    reg.add_source(Arc::new(Breaker));
    let health = reg.system_health();
    assert_eq!(health.status, HealthStatus::Degraded);
    let json = serde_json::to_value(&health).unwrap();
    assert_eq!(json["status"], "DEGRADED");
    assert!(json["unix_ms"].as_u64().unwrap() > 0);
    let sla = &json["components"][0];
    assert_eq!(sla["name"], "binance");
    assert_eq!(sla["status"], "HEALTHY");
    assert!(sla.get("message").is_none());
    let detail = sla["detail"].as_object().unwrap();
    let mut keys: Vec<_> = detail.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        vec![
            "calls",
            "calls_per_second",
            "consecutive_failures",
            "data_quality",
            "failures",
            "max_ms",
            "p50_ms",
            "p95_ms",
            "p99_ms",
            "success_rate",
            "successes",
            "type",
            "uptime",
        ]
    );
    assert_eq!(detail["type"], "sla");
    assert_eq!(detail["calls"], 10);
    assert_eq!(detail["success_rate"], 1.0);
    assert_eq!(detail["data_quality"], 0.75);
    assert!((detail["p50_ms"].as_f64().unwrap() - 20.0).abs() < 0.2);
    assert_eq!(json["components"][1]["detail"]["type"], "breaker");

    // Extra sources can be passed per call too; the registry itself is a HealthSource.
    let with = reg.system_health_with(&[&Breaker]);
    assert_eq!(with.components.len(), 3);
    assert_eq!(reg.health().len(), 1);
}

#[test]
fn prometheus_output_parses_and_follows_conventions() {
    let clock = ManualClock::new();
    let cfg = SlaConfig {
        slo: Some(sla_layer::SloConfig::default()),
        ..SlaConfig::default()
    };
    let reg = SlaRegistry::builder()
        .clock(clock.shared())
        .defaults(cfg)
        .build()
        .unwrap();
    let tricky = "api \"v2\"\\eu\nwest";
    let m = reg.monitor(tricky).unwrap();
    clock.advance(Duration::from_secs(1));
    for i in 0..100 {
        m.record(ms(10 + i % 10), if i % 25 == 0 { Failure } else { Success });
    }
    m.report_data_quality(0.5).unwrap();
    reg.monitor("other").unwrap().record(ms(1), Success);
    let text = reg.render_prometheus();

    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    // Every sample line made it through the parser (summary quantiles are grouped).
    let sample_lines = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.contains("quantile="))
        .count();
    let summaries = 2;
    assert_eq!(scrape.samples.len(), sample_lines + summaries, "{text}");

    // prometheus-parse keeps label values as written (it does not unescape), so the
    // source label reads back in its escaped form.
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
        find("sla_calls_total", &[("outcome", "success")]),
        Value::Counter(96.0)
    );
    assert_eq!(
        find("sla_calls_total", &[("outcome", "failure")]),
        Value::Counter(4.0)
    );
    let Value::Summary(qs) = find("sla_call_duration_seconds", &[]) else {
        panic!("summary")
    };
    assert_eq!(qs.len(), 3);
    assert!((qs[0].count - 0.0145).abs() < 0.001, "{qs:?}");
    assert_eq!(
        find("sla_status", &[("status", "DEGRADED")]),
        Value::Gauge(1.0)
    );
    assert_eq!(
        find("sla_status", &[("status", "HEALTHY")]),
        Value::Gauge(0.0)
    );
    assert_eq!(find("sla_data_quality_ratio", &[]), Value::Gauge(0.5));
    assert_eq!(find("sla_slo_target_ratio", &[]), Value::Gauge(0.999));
    assert!(
        matches!(find("sla_burn_rate", &[("alert", "page_fast"), ("window", "long")]), Value::Gauge(r) if (r - 40.0).abs() < 1e-6)
    );
    // 4 % errors burn a 99.9 % SLO 40 times too fast: every alert fires.
    assert_eq!(
        find(
            "sla_alert_firing",
            &[("alert", "ticket"), ("severity", "ticket")]
        ),
        Value::Gauge(1.0)
    );
    assert!(text.contains("# TYPE sla_calls_total counter"));
    assert!(text.contains("# TYPE sla_call_duration_seconds summary"));
    // Conventions: counters end in _total, durations in _seconds, ratios in _ratio.
    for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
        let parts: Vec<_> = line.split(' ').collect();
        let (name, kind) = (parts[2], parts[3]);
        assert!(name.starts_with("sla_"));
        assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
        assert!(!name.contains("_ms") && !name.contains("millis"), "{line}");
    }
}
