//! Fault injection through the public API.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chaos_layer::{ChaosConfig, ChaosLayer, InjectedFault, LatencyDistribution};
use reliability_core::failure::{Failure, FailureKind};
use tokio::time::Instant;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The bare upstream: answers its request, counting calls.
fn upstream(
    calls: Arc<AtomicU64>,
) -> impl Service<u64, Response = u64, Error = BoxError, Future: Send> + Clone {
    service_fn(move |i: u64| {
        calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok::<_, BoxError>(i))
    })
}

/// What each of `n` calls got: `None` for the upstream's answer, `Some(true)` for an
/// injected error, `Some(false)` for the chosen response (`u64::MAX`).
async fn outcomes<S>(svc: &S, n: u64) -> Vec<Option<bool>>
where
    S: Service<u64, Response = u64, Error = BoxError> + Clone,
{
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n {
        out.push(match svc.clone().oneshot(i).await {
            Ok(v) if v == i => None,
            Ok(v) => {
                assert_eq!(v, u64::MAX);
                Some(false)
            }
            Err(err) => {
                assert!(err.downcast_ref::<InjectedFault>().is_some(), "{err}");
                Some(true)
            }
        });
    }
    out
}

fn within_four_sigma(seen: usize, n: u64, rate: f64) -> bool {
    let mean = rate * n as f64;
    let sigma = (n as f64 * rate * (1.0 - rate)).sqrt();
    (seen as f64 - mean).abs() <= 4.0 * sigma
}

/// Over 10,000 calls the error and response rates hold within 4 sigma, the faulted calls
/// never reach the upstream, and the same seed gives the same sequence.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn rates_hold_and_a_seed_repeats_its_sequence() {
    let n = 10_000;
    let make = || {
        let calls = Arc::new(AtomicU64::new(0));
        let layer = ChaosLayer::builder("rates")
            .seed(42)
            .error_rate(0.05)
            .response_rate(0.10)
            .respond_with(|| u64::MAX)
            .enabled(true)
            .build()
            .unwrap();
        let svc = ServiceBuilder::new()
            .layer(layer.clone())
            .service(upstream(calls.clone()));
        (layer, svc, calls)
    };
    let (layer, svc, calls) = make();
    let first = outcomes(&svc, n).await;
    let errors = first.iter().filter(|o| **o == Some(true)).count();
    let responses = first.iter().filter(|o| **o == Some(false)).count();
    assert!(within_four_sigma(errors, n, 0.05), "{errors} errors");
    assert!(
        within_four_sigma(responses, n, 0.10),
        "{responses} responses"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        n - (errors + responses) as u64
    );
    let counts = layer.handle().counts();
    assert_eq!(counts.errors as usize, errors);
    assert_eq!(counts.responses as usize, responses);

    let (_, svc, _) = make();
    assert_eq!(outcomes(&svc, n).await, first, "same seed, same sequence");

    // `apply` restarts the sequence on the same layer.
    layer.handle().apply(layer.handle().config()).unwrap();
    assert_eq!(outcomes(&svc_of(&layer), n).await, first);

    let other = ChaosLayer::builder("rates")
        .seed(43)
        .error_rate(0.05)
        .response_rate(0.10)
        .respond_with(|| u64::MAX)
        .enabled(true)
        .build()
        .unwrap();
    assert_ne!(
        outcomes(&svc_of(&other), n).await,
        first,
        "another seed differs"
    );
}

fn svc_of<R: chaos_layer::respond::Responder<u64> + Clone>(
    layer: &ChaosLayer<reliability_core::answer::AsError, R>,
) -> impl Service<u64, Response = u64, Error = BoxError> + Clone {
    ServiceBuilder::new()
        .layer(layer.clone())
        .service(upstream(Arc::default()))
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn disabled_injects_nothing() {
    let calls = Arc::new(AtomicU64::new(0));
    let layer = ChaosLayer::builder("off")
        .error_rate(1.0)
        .latency(1.0, LatencyDistribution::Fixed { delay: ms(500) })
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(upstream(calls.clone()));
    let started = Instant::now();
    assert!(outcomes(&svc, 1_000).await.iter().all(Option::is_none));
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(calls.load(Ordering::SeqCst), 1_000);
    assert_eq!(layer.handle().counts(), Default::default());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_handle_switches_at_run_time() {
    let calls = Arc::new(AtomicU64::new(0));
    let layer = ChaosLayer::builder("switch").build().unwrap();
    let handle = layer.handle();
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(upstream(calls.clone()));

    handle.enable();
    assert!(
        outcomes(&svc, 100).await.iter().all(Option::is_none),
        "rate 0"
    );
    handle.set_error_rate(1.0).unwrap();
    assert!(outcomes(&svc, 100).await.iter().all(|o| *o == Some(true)));
    handle.disable();
    assert!(outcomes(&svc, 100).await.iter().all(Option::is_none));
    handle
        .apply(ChaosConfig {
            enabled: true,
            error_rate: 0.5,
            ..ChaosConfig::default()
        })
        .unwrap();
    let mixed = outcomes(&svc, 1_000).await;
    assert!(within_four_sigma(
        mixed.iter().filter(|o| o.is_some()).count(),
        1_000,
        0.5
    ));
    // A bad rate is refused and changes nothing.
    assert_eq!(handle.set_error_rate(1.1).unwrap_err().field, "error_rate");
    assert_eq!(handle.config().error_rate, 0.5);
    // A clone of the handle drives the same layer.
    let clone = handle.clone();
    clone.disable();
    assert!(!handle.is_enabled());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn latency_is_added_on_the_paused_clock() {
    let slow_upstream = service_fn(|i: u64| async move {
        tokio::time::sleep(ms(20)).await;
        Ok::<_, BoxError>(i)
    });
    let layer = ChaosLayer::builder("slow")
        .latency(1.0, LatencyDistribution::Fixed { delay: ms(150) })
        .enabled(true)
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(slow_upstream);
    for i in 0..10 {
        let started = Instant::now();
        assert_eq!(svc.clone().oneshot(i).await.unwrap(), i);
        assert_eq!(
            started.elapsed(),
            ms(170),
            "20 ms upstream + 150 ms injected"
        );
    }
    assert_eq!(layer.handle().counts().latencies, 10);

    // A two-point mix: every delayed call takes 10 ms or 1 s, and about 5 % take 1 s.
    layer
        .handle()
        .set_latency(
            1.0,
            LatencyDistribution::TwoPoint {
                fast: ms(10),
                slow: ms(1_000),
                slow_share: 0.05,
            },
        )
        .unwrap();
    let mut slow = 0;
    for i in 0..2_000 {
        let started = Instant::now();
        svc.clone().oneshot(i).await.unwrap();
        match started.elapsed() {
            d if d == ms(1_020) => slow += 1,
            d => assert_eq!(d, ms(30)),
        }
    }
    assert!(within_four_sigma(slow, 2_000, 0.05), "{slow} slow");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_injected_error_reads_as_a_retryable_upstream_failure() {
    let layer = ChaosLayer::builder("fail")
        .error_rate(1.0)
        .latency(1.0, LatencyDistribution::Fixed { delay: ms(40) })
        .enabled(true)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU64::new(0));
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(upstream(calls.clone()));
    let started = Instant::now();
    let err = svc.oneshot(1).await.unwrap_err();
    assert_eq!(started.elapsed(), ms(40), "a slow failure");
    assert_eq!(Failure::of(&*err).kind(), FailureKind::UpstreamFailed);
    assert!(!reliability_core::error::is_do_not_retry(&*err));
    assert_eq!(
        err.downcast_ref::<InjectedFault>().unwrap().source_name(),
        "fail"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "the upstream was not called"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn http_mode_answers_a_chosen_status_or_502() {
    let upstream = service_fn(|_req: http::Request<()>| async {
        Ok::<_, Infallible>(http::Response::new(String::new()))
    });
    let layer = ChaosLayer::builder("http")
        .http()
        .respond_status(http::StatusCode::SERVICE_UNAVAILABLE)
        .response_rate(1.0)
        .enabled(true)
        .build()
        .unwrap();
    let svc = ServiceBuilder::new().layer(layer.clone()).service(upstream);
    let res = svc.clone().oneshot(http::Request::new(())).await.unwrap();
    assert_eq!(res.status(), 503);
    assert!(
        res.extensions()
            .get::<chaos_layer::http::Injected>()
            .is_some()
    );

    layer.handle().set_response_rate(0.0).unwrap();
    layer.handle().set_error_rate(1.0).unwrap();
    let res = svc.oneshot(http::Request::new(())).await.unwrap();
    assert_eq!(res.status(), 502);
    assert!(res.extensions().get::<InjectedFault>().is_some());
}

#[test]
fn layers_are_clone_send_sync_debug() {
    fn assert_traits<T: Clone + Send + Sync + std::fmt::Debug>(_: &T) {}
    let layer = ChaosLayer::builder("traits").build().unwrap();
    assert_traits(&layer);
    assert_traits(&layer.handle());
    assert_traits(&tower::Layer::layer(&layer, upstream(Arc::default())).handle());
}
