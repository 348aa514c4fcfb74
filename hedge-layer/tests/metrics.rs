//! Feature `metrics`: the four counters, registered once per layer, count what the
//! snapshot counts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hedge_layer::HedgeLayer;
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
async fn counters_are_registered_once_and_count_events() {
    let captured = Captured::default();
    let layer = metrics::with_local_recorder(&captured, || {
        HedgeLayer::builder("quotes")
            .fixed_delay(Duration::from_millis(10))
            .budget_ratio(0.0)
            .budget_reserve(1)
            .build()
            .unwrap()
    });
    let upstream = service_fn(|i: u32| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok::<_, BoxError>(i)
    });
    let svc = ServiceBuilder::new().layer(layer.clone()).service(upstream);
    for i in 0..3 {
        svc.clone().oneshot(i).await.unwrap();
    }
    // One hedge from the reserve; the other two requests are refused by the budget.
    assert_eq!(captured.get("hedge_requests_total{source=quotes}"), (3, 1));
    assert_eq!(captured.get("hedge_sent_total{source=quotes}"), (1, 1));
    assert_eq!(captured.get("hedge_won_total{source=quotes}"), (0, 1));
    assert_eq!(
        captured.get("hedge_budget_refused_total{source=quotes}"),
        (2, 1)
    );
    let snap = layer.hedger().snapshot();
    assert_eq!(
        (
            snap.requests,
            snap.hedges_sent,
            snap.hedges_won,
            snap.budget_refused
        ),
        (3, 1, 0, 2)
    );
}
