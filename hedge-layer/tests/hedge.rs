//! Hedging through the public API, on the paused tokio clock.

mod support;

use std::sync::Arc;
use std::time::Duration;

use hedge_layer::HedgeLayer;
use support::{Latencies, Tally, call, quantile};
use tokio::time::Instant;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// An upstream where each call (first copy or hedge) draws its own latency.
fn seeded_upstream(
    latencies: Latencies,
    tally: Arc<Tally>,
) -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone {
    service_fn(move |req: u32| {
        let (tally, latency) = (tally.clone(), latencies.next());
        async move {
            call(tally, latency).await;
            Ok::<_, BoxError>(req)
        }
    })
}

/// Sends `n` requests one after another; returns their latencies, sorted.
async fn run<S>(svc: S, n: u32) -> Vec<Duration>
where
    S: Service<u32, Response = u32, Error = BoxError> + Clone,
{
    let mut latencies = Vec::with_capacity(n as usize);
    for i in 0..n {
        let started = Instant::now();
        assert_eq!(svc.clone().oneshot(i).await.unwrap(), i);
        latencies.push(started.elapsed());
    }
    latencies.sort();
    latencies
}

/// 5 % of calls take 1 s, the rest 10 ms. Unhedged, p99 is 1 s; hedged at p95, p99
/// drops below 3 × p50 and the hedges stay within the budget.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn hedging_at_p95_cuts_the_tail_within_budget() {
    let n = 3_000;
    let upstream_latencies = || Latencies::new(2024, ms(10), ms(1_000), 0.05);

    let bare = run(seeded_upstream(upstream_latencies(), Arc::default()), n).await;
    assert!(
        quantile(&bare, 0.99) >= ms(1_000),
        "the test upstream has a tail"
    );

    let layer = HedgeLayer::builder("p95")
        .percentile(95.0)
        .min_samples(100)
        .budget_ratio(0.1)
        .budget_reserve(10)
        .build()
        .unwrap();
    let tally = Arc::new(Tally::default());
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(seeded_upstream(upstream_latencies(), tally.clone()));
    let hedged = run(svc, n).await;

    let (p50, p99) = (quantile(&hedged, 0.5), quantile(&hedged, 0.99));
    assert!(p99 < p50 * 3, "p50 {p50:?}, p99 {p99:?}");
    let snap = layer.hedger().snapshot();
    assert_eq!(snap.requests, u64::from(n));
    assert!(snap.hedges_sent > 0 && snap.hedges_won > 0, "{snap:?}");
    // The budget's bound: reserve + ratio × requests that could be hedged.
    assert!(
        snap.hedges_sent as f64 <= 10.0 + 0.1 * f64::from(n),
        "{snap:?}"
    );
    assert_eq!(tally.started(), u64::from(n) + snap.hedges_sent);
    let delay = snap.delay.expect("enough samples for a delay");
    assert!(delay >= ms(10) && delay < ms(11), "{delay:?}");
}

/// Every call is slow: each request wants a hedge, and the budget lets through only its
/// reserve plus one hedge per ten requests.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn in_an_outage_hedges_stop_at_the_budget() {
    let n = 1_000u32;
    let layer = HedgeLayer::builder("outage")
        .fixed_delay(ms(50))
        .budget_ratio(0.1)
        .budget_reserve(10)
        .build()
        .unwrap();
    let tally = Arc::new(Tally::default());
    let slow = Latencies::new(1, ms(1_000), ms(1_000), 0.0);
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(seeded_upstream(slow, tally.clone()));
    run(svc, n).await;

    let snap = layer.hedger().snapshot();
    let bound = 10 + u64::from(n) / 10;
    assert!(snap.hedges_sent <= bound, "{snap:?}");
    assert!(
        snap.hedges_sent >= bound - 1,
        "the budget is spent, not hoarded: {snap:?}"
    );
    assert_eq!(snap.hedges_sent + snap.budget_refused, u64::from(n));
    assert_eq!(tally.started(), u64::from(n) + snap.hedges_sent);
}

/// Every call fails after 100 ms: failed copies do not answer while another is in flight,
/// the last failure is the answer, and the budget still bounds the hedges.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn in_a_failing_outage_hedges_stop_at_the_budget() {
    let n = 500u32;
    let layer = HedgeLayer::builder("failing")
        .fixed_delay(ms(50))
        .budget_ratio(0.1)
        .budget_reserve(5)
        .build()
        .unwrap();
    let tally = Arc::new(Tally::default());
    let t = tally.clone();
    let upstream = service_fn(move |_: u32| {
        let t = t.clone();
        async move {
            call(t, ms(100)).await;
            Err::<u32, BoxError>("upstream down".into())
        }
    });
    let svc = ServiceBuilder::new().layer(layer.clone()).service(upstream);
    for i in 0..n {
        let started = Instant::now();
        let err = svc.clone().oneshot(i).await.unwrap_err();
        assert_eq!(err.to_string(), "upstream down");
        // Hedged: the hedge's failure at 150 ms; else the first copy's at 100 ms.
        assert!(started.elapsed() == ms(100) || started.elapsed() == ms(150));
    }
    let snap = layer.hedger().snapshot();
    assert!(snap.hedges_sent <= 5 + u64::from(n) / 10, "{snap:?}");
    assert_eq!(snap.hedges_won, 0);
}

/// The winner's answer drops the losers: no upstream call completes after the answer.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn losers_are_cancelled() {
    let layer = HedgeLayer::builder("cancel")
        .fixed_delay(ms(20))
        .max_hedges(3)
        .budget_reserve(100)
        .build()
        .unwrap();
    let tally = Arc::new(Tally::default());
    let t = tally.clone();
    // The first three copies hang for a second; the fourth answers in 5 ms.
    let upstream = service_fn(move |req: u32| {
        let t = t.clone();
        let n = t.started();
        async move {
            call(t, if n < 3 { ms(1_000) } else { ms(5) }).await;
            Ok::<_, BoxError>(req)
        }
    });
    let svc = ServiceBuilder::new().layer(layer.clone()).service(upstream);
    let started = Instant::now();
    assert_eq!(svc.oneshot(7).await.unwrap(), 7);
    let answered = Instant::now();
    assert_eq!(
        answered - started,
        ms(65),
        "hedges at 20, 40 and 60 ms; the last wins"
    );
    assert_eq!(tally.started(), 4);

    tokio::time::advance(ms(5_000)).await;
    let after: Vec<_> = tally
        .completions
        .lock()
        .unwrap()
        .iter()
        .filter(|at| **at > answered)
        .copied()
        .collect();
    assert!(
        after.is_empty(),
        "calls completed after the answer: {after:?}"
    );
    assert_eq!(tally.completed(), 1);
    let snap = layer.hedger().snapshot();
    assert_eq!((snap.hedges_sent, snap.hedges_won), (3, 1));
}

/// A first copy that fails while a hedge is in flight does not answer; the hedge does.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_failed_copy_waits_for_the_others() {
    let layer = HedgeLayer::builder("fail-then-win")
        .fixed_delay(ms(10))
        .build()
        .unwrap();
    let tally = Arc::new(Tally::default());
    let t = tally.clone();
    let upstream = service_fn(move |req: u32| {
        let t = t.clone();
        let first = t.started() == 0;
        async move {
            call(t, if first { ms(30) } else { ms(40) }).await;
            if first {
                Err::<u32, BoxError>("first copy failed".into())
            } else {
                Ok(req)
            }
        }
    });
    let svc = ServiceBuilder::new().layer(layer.clone()).service(upstream);
    let started = Instant::now();
    assert_eq!(svc.oneshot(1).await.unwrap(), 1);
    assert_eq!(started.elapsed(), ms(50));
    assert_eq!(layer.hedger().snapshot().hedges_won, 1);
}

/// A fast answer never fires a hedge, and a percentile delay waits for its samples.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn no_hedge_before_min_samples_or_for_fast_answers() {
    let layer = HedgeLayer::builder("warmup")
        .percentile(50.0)
        .min_samples(50)
        .build()
        .unwrap();
    let tally = Arc::new(Tally::default());
    let slow = Latencies::new(3, ms(100), ms(100), 0.0);
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(seeded_upstream(slow, tally.clone()));
    run(svc.clone(), 49).await;
    assert_eq!(layer.hedger().delay(), None);
    run(svc, 1).await;
    assert!(layer.hedger().delay().is_some());
    assert_eq!(layer.hedger().snapshot().hedges_sent, 0);
}

#[test]
fn snapshot_serializes_counts_and_delay() {
    let layer = HedgeLayer::builder("snap")
        .fixed_delay(ms(25))
        .build()
        .unwrap();
    let json = serde_json::to_value(layer.hedger().snapshot()).unwrap();
    assert_eq!(json["name"], "snap");
    assert_eq!(json["requests"], 0);
    assert_eq!(json["hedges_sent"], 0);
    assert_eq!(json["hedges_won"], 0);
    assert_eq!(json["budget_refused"], 0);
    assert_eq!(json["delay"], "25ms");
}

#[test]
fn invalid_settings_are_refused() {
    let err = HedgeLayer::builder("bad")
        .budget_ratio(2.0)
        .build()
        .unwrap_err();
    assert_eq!(err.field, "budget_ratio");
    let err = HedgeLayer::builder("bad")
        .percentile(0.5)
        .build()
        .unwrap_err();
    assert_eq!(err.field, "delay.percentile");
}

#[test]
fn layers_are_clone_send_sync_debug() {
    fn assert_traits<T: Clone + Send + Sync + std::fmt::Debug>(_: &T) {}
    let layer = HedgeLayer::builder("traits").build().unwrap();
    assert_traits(&layer);
    let svc = layer.layer_service();
    assert_traits(&svc);
}

trait LayerService {
    fn layer_service(
        &self,
    ) -> hedge_layer::Hedge<tower::util::BoxCloneSyncService<u32, u32, BoxError>>;
}

impl LayerService for HedgeLayer {
    fn layer_service(
        &self,
    ) -> hedge_layer::Hedge<tower::util::BoxCloneSyncService<u32, u32, BoxError>> {
        use tower::Layer;
        self.layer(tower::util::BoxCloneSyncService::new(service_fn(
            |r: u32| async move { Ok::<_, BoxError>(r) },
        )))
    }
}
