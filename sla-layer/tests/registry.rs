//! The registry: get-or-create, unhealthy sources, the system health snapshot's JSON
//! shape with foreign health sources. (Its metrics: `tests/metrics.rs`.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reliability_core::classify::Outcome::{Failure, Success};
use reliability_core::clock::ManualClock;
use reliability_core::health::{
    BreakerSnapshot, BreakerState, ComponentDetail, ComponentHealth, HealthSource, HealthStatus,
};
use sla_layer::{RegistryError, SlaMonitor, SlaRegistry};

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
    // "fine" changed too: from UNKNOWN (nothing measured) to HEALTHY.
    assert_eq!(
        seen,
        vec!["down", "fine", "slow"],
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
