//! The layer as a user stacks it, on a paused clock: shadow mode, queue timeouts,
//! shedding, per-key limits, an adaptive limit's snapshot, and the metrics it records.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use concurrency_layer::config::VegasConfig;
use concurrency_layer::{BulkheadFull, ConcurrencyLimitLayer, Priority, Rejection};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tower::{BoxError, Layer, Service, ServiceExt, service_fn};

/// An inner service whose calls wait for `release` (or `hold` of paused time).
fn held(
    release: Arc<Notify>,
) -> impl Service<Priority, Response = (), Error = Infallible, Future: Send> + Clone {
    service_fn(move |_: Priority| {
        let release = release.clone();
        async move {
            release.notified().await;
            Ok(())
        }
    })
}

#[tokio::test(start_paused = true)]
async fn shadow_mode_refuses_nothing_and_counts_what_it_would_have_shed() {
    let layer = ConcurrencyLimitLayer::builder("shadow")
        .limit(2)
        .critical_reserve(0.0)
        .shadow()
        .priority(|p: &Priority| *p)
        .build()
        .unwrap();
    let release = Arc::new(Notify::new());
    let svc = layer.layer(held(release.clone()));
    let mut calls = Vec::new();
    for _ in 0..5 {
        calls.push(tokio::spawn(svc.clone().oneshot(Priority::Normal)));
    }
    tokio::task::yield_now().await;
    let snap = layer.limiter().snapshot();
    assert!(!snap.enforced);
    assert_eq!(snap.in_flight, 5, "all admitted, over the limit");
    assert_eq!(snap.shadow_rejected, 3, "three would have been refused");
    assert_eq!(snap.rejected, 0);
    for _ in 0..5 {
        release.notify_one();
    }
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(layer.limiter().in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_queued_call_times_out_or_gets_the_freed_place() {
    let layer = ConcurrencyLimitLayer::builder("q")
        .limit(1)
        .queue(1, Duration::from_millis(100))
        .build()
        .unwrap();
    let release = Arc::new(Notify::new());
    let svc = layer.layer(held(release.clone()));
    let first = tokio::spawn(svc.clone().oneshot(Priority::Normal));
    tokio::task::yield_now().await;
    let started = tokio::time::Instant::now();
    let err = svc.clone().oneshot(Priority::Normal).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_millis(100));
    let full = err.downcast_ref::<BulkheadFull>().unwrap();
    assert_eq!(full.rejection(), Rejection::QueueTimeout);

    let second = tokio::spawn(svc.clone().oneshot(Priority::Normal));
    tokio::task::yield_now().await;
    assert_eq!(layer.limiter().queued(), 1);
    // Queue full: refused at once.
    let err = svc.clone().oneshot(Priority::Normal).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<BulkheadFull>().unwrap().rejection(),
        Rejection::QueueFull
    );
    release.notify_one();
    first.await.unwrap().unwrap();
    release.notify_one();
    second.await.unwrap().unwrap();
    let snap = layer.limiter().snapshot();
    assert_eq!(
        (snap.admitted, snap.rejected, snap.queue_timeouts),
        (2, 2, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn a_higher_class_pushes_the_newest_lowest_out_of_a_full_queue() {
    let layer = ConcurrencyLimitLayer::builder("shed")
        .limit(1)
        .queue(1, Duration::from_secs(10))
        .priority(|p: &Priority| *p)
        .build()
        .unwrap();
    let release = Arc::new(Notify::new());
    let svc = layer.layer(held(release.clone()));
    let running = tokio::spawn(svc.clone().oneshot(Priority::Low));
    tokio::task::yield_now().await;
    let low = tokio::spawn(svc.clone().oneshot(Priority::Low));
    tokio::task::yield_now().await;
    let critical = tokio::spawn(svc.clone().oneshot(Priority::Critical));
    let err: BoxError = low.await.unwrap().unwrap_err();
    let full = err.downcast_ref::<BulkheadFull>().unwrap();
    assert_eq!(
        (full.rejection(), full.priority()),
        (Rejection::Shed, Priority::Low)
    );
    release.notify_one();
    running.await.unwrap().unwrap();
    release.notify_one();
    critical.await.unwrap().unwrap();
    assert_eq!(layer.limiter().snapshot().shed, 1);
}

#[tokio::test(start_paused = true)]
async fn per_key_limits_are_separate_and_bounded() {
    let layer = ConcurrencyLimitLayer::builder("hosts")
        .limit(1)
        .max_keys(2)
        .build_per_key(|host: &&'static str| *host)
        .unwrap();
    let release = Arc::new(Notify::new());
    let r = release.clone();
    let svc = layer.layer(service_fn(move |_: &'static str| {
        let r = r.clone();
        async move {
            r.notified().await;
            Ok::<_, Infallible>(())
        }
    }));
    let a = tokio::spawn(svc.clone().oneshot("a"));
    let b = tokio::spawn(svc.clone().oneshot("b"));
    tokio::task::yield_now().await;
    let err = svc.clone().oneshot("a").await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<BulkheadFull>().unwrap().rejection(),
        Rejection::LimitReached
    );
    let err = svc.clone().oneshot("c").await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<BulkheadFull>().unwrap().rejection(),
        Rejection::TooManyKeys
    );
    release.notify_one();
    release.notify_one();
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
    // Both idle now: a new key evicts them.
    let c = tokio::spawn(svc.clone().oneshot("c"));
    tokio::task::yield_now().await;
    assert_eq!(layer.registry().len(), 1);
    release.notify_one();
    c.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_adaptive_limit_reports_its_rtts_in_the_snapshot() {
    let layer = ConcurrencyLimitLayer::builder("adaptive")
        .limit(4)
        .critical_reserve(0.0)
        .vegas(VegasConfig::default())
        .sample_window(Duration::from_millis(10), 1)
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(|_: ()| async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok::<_, Infallible>(())
    }));
    for _ in 0..10 {
        let calls: Vec<_> = (0..layer.limiter().limit())
            .map(|_| tokio::spawn(svc.clone().oneshot(())))
            .collect();
        for call in calls {
            call.await.unwrap().unwrap();
        }
    }
    let snap = layer.limiter().snapshot();
    assert_eq!(snap.algorithm, "vegas");
    assert_eq!(snap.min_rtt_ms, Some(20.0));
    assert_eq!(snap.smoothed_rtt_ms, Some(20.0));
    assert!(
        snap.limit > 4,
        "flat latency grows the limit: {}",
        snap.limit
    );
    let json = serde_json::to_value(&snap).unwrap();
    assert_eq!(json["min_rtt_ms"], 20.0);
}

/// A recorder that counts registrations and keeps every handle's value.
#[derive(Default)]
struct Recorded {
    registrations: AtomicU64,
    values: Mutex<HashMap<String, Arc<Value>>>,
}

#[derive(Default)]
struct Value(Mutex<f64>);

impl metrics::CounterFn for Value {
    fn increment(&self, by: u64) {
        *self.0.lock() += by as f64;
    }
    fn absolute(&self, v: u64) {
        *self.0.lock() = v as f64;
    }
}
impl metrics::GaugeFn for Value {
    fn increment(&self, by: f64) {
        *self.0.lock() += by;
    }
    fn decrement(&self, by: f64) {
        *self.0.lock() -= by;
    }
    fn set(&self, v: f64) {
        *self.0.lock() = v;
    }
}
impl metrics::HistogramFn for Value {
    fn record(&self, _: f64) {
        *self.0.lock() += 1.0;
    }
}

impl Recorded {
    fn handle(&self, key: &Key) -> Arc<Value> {
        self.registrations.fetch_add(1, Ordering::SeqCst);
        let mut labels: Vec<_> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        self.values.lock().entry(name).or_default().clone()
    }
    fn get(&self, name: &str) -> f64 {
        self.values
            .lock()
            .get(name)
            .map_or(f64::NAN, |v| *v.0.lock())
    }
}

impl Recorder for Recorded {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.handle(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.handle(key))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.handle(key))
    }
}

#[tokio::test(start_paused = true)]
async fn metrics_are_registered_once_and_recorded_per_call() {
    let recorder = Recorded::default();
    let layer = metrics::with_local_recorder(&recorder, || {
        ConcurrencyLimitLayer::builder("orders")
            .limit(1)
            .queue(1, Duration::from_millis(50))
            .priority(|p: &Priority| *p)
            .build()
            .unwrap()
    });
    let registered = recorder.registrations.load(Ordering::SeqCst);
    assert_eq!(
        registered, 9,
        "2 gauges, 6 counters (4 priorities), 1 histogram"
    );
    let release = Arc::new(Notify::new());
    let svc = layer.layer(held(release.clone()));
    let first = tokio::spawn(svc.clone().oneshot(Priority::Normal));
    tokio::task::yield_now().await;
    assert_eq!(recorder.get("concurrency_in_flight{source=orders}"), 1.0);
    let queued = tokio::spawn(svc.clone().oneshot(Priority::High));
    tokio::task::yield_now().await;
    let _ = svc.clone().oneshot(Priority::Low).await.unwrap_err();
    release.notify_one();
    first.await.unwrap().unwrap();
    release.notify_one();
    queued.await.unwrap().unwrap();
    assert_eq!(
        recorder.registrations.load(Ordering::SeqCst),
        registered,
        "none per call"
    );
    assert_eq!(recorder.get("concurrency_limit{source=orders}"), 1.0);
    assert_eq!(recorder.get("concurrency_in_flight{source=orders}"), 0.0);
    assert_eq!(
        recorder.get("concurrency_admitted_total{source=orders}"),
        2.0
    );
    assert_eq!(
        recorder.get("concurrency_rejected_total{priority=low,source=orders}"),
        1.0
    );
    assert_eq!(
        recorder.get("concurrency_rejected_total{priority=normal,source=orders}"),
        0.0
    );
    assert_eq!(
        recorder.get("concurrency_queue_wait_seconds{source=orders}"),
        1.0,
        "one call queued"
    );
    assert_eq!(
        recorder.get("concurrency_shadow_rejected_total{source=orders}"),
        0.0
    );
}

#[tokio::test(start_paused = true)]
async fn shadow_rejections_reach_their_counter() {
    let recorder = Recorded::default();
    let layer = metrics::with_local_recorder(&recorder, || {
        ConcurrencyLimitLayer::builder("s")
            .limit(1)
            .shadow()
            .build()
            .unwrap()
    });
    let release = Arc::new(Notify::new());
    let svc = layer.layer(held(release.clone()));
    let calls: Vec<_> = (0..3)
        .map(|_| tokio::spawn(svc.clone().oneshot(Priority::Normal)))
        .collect();
    tokio::task::yield_now().await;
    assert_eq!(
        recorder.get("concurrency_shadow_rejected_total{source=s}"),
        2.0
    );
    for _ in 0..3 {
        release.notify_one();
    }
    for c in calls {
        c.await.unwrap().unwrap();
    }
}

/// Layers and services are `Clone + Send + Sync + Debug` (axum's `Router::layer` needs the
/// first three), whatever the priority function.
#[test]
fn layers_and_services_are_clone_send_sync_debug() {
    fn assert_traits<T: Clone + Send + Sync + std::fmt::Debug>(_: &T) {}
    let layer = ConcurrencyLimitLayer::builder("traits")
        .priority(|_: &u8| Priority::Low)
        .build()
        .unwrap();
    assert_traits(&layer);
    let svc = layer.layer(tower::service_fn(|_: u8| async { Ok::<_, Infallible>(()) }));
    let _ = format!("{svc:?}");
    fn assert_send_sync<T: Clone + Send + Sync>(_: &T) {}
    assert_send_sync(&svc);
    assert!(format!("{:?}", layer.limiter()).contains("traits"));
}
