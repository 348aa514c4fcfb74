//! Feature `metrics`: `chaos_injected_total{source, fault}`, registered once per layer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chaos_layer::{ChaosLayer, LatencyDistribution};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};

/// Counters by `name{labels}`, and how often each was registered.
#[derive(Default)]
struct Captured {
    counters: Mutex<BTreeMap<String, (Arc<AtomicU64>, u32)>>,
}

impl Captured {
    fn get(&self, key: &str) -> (u64, u32) {
        let map = self.counters.lock().unwrap();
        map.get(key)
            .map_or((0, 0), |(c, n)| (c.load(Ordering::SeqCst), *n))
    }
}

impl Recorder for Captured {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        let mut map = self.counters.lock().unwrap();
        let entry = map.entry(name).or_default();
        entry.1 += 1;
        Counter::from_arc(entry.0.clone())
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn injections_are_counted_by_fault() {
    let captured = Captured::default();
    let layer = metrics::with_local_recorder(&captured, || {
        ChaosLayer::builder("orders")
            .error_rate(0.5)
            .response_rate(0.5)
            .respond_with(|| u32::MAX)
            .latency(
                1.0,
                LatencyDistribution::Fixed {
                    delay: Duration::from_millis(1),
                },
            )
            .enabled(true)
            .build()
            .unwrap()
    });
    let upstream = service_fn(|i: u32| async move { Ok::<_, BoxError>(i) });
    let svc = ServiceBuilder::new().layer(layer.clone()).service(upstream);
    for i in 0..200 {
        let _ = svc.clone().oneshot(i).await;
    }
    let counts = layer.handle().counts();
    let error = captured.get("chaos_injected_total{source=orders,fault=error}");
    let response = captured.get("chaos_injected_total{source=orders,fault=response}");
    let latency = captured.get("chaos_injected_total{source=orders,fault=latency}");
    assert_eq!(error, (counts.errors, 1));
    assert_eq!(response, (counts.responses, 1));
    assert_eq!(latency, (200, 1));
    assert_eq!(error.0 + response.0, 200);
}
