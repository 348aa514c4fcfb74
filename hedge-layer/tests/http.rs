//! HTTP mode: the idempotency rule decides what is hedged.

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hedge_layer::HedgeLayer;
use reliability_core::idempotent::{IDEMPOTENCY_KEY, ReplayNonIdempotent};
use support::{Tally, call};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Every call takes 100 ms; the hedge delay is 10 ms, so every hedgeable request is hedged.
fn slow_upstream(
    tally: Arc<Tally>,
) -> impl Service<
    http::Request<String>,
    Response = http::Response<String>,
    Error = Infallible,
    Future: Send,
> + Clone {
    service_fn(move |_req: http::Request<String>| {
        let tally = tally.clone();
        async move {
            call(tally, ms(100)).await;
            Ok::<_, Infallible>(http::Response::new(String::new()))
        }
    })
}

fn request(method: http::Method) -> http::Request<String> {
    http::Request::builder()
        .method(method)
        .uri("/orders/7")
        .body("{}".to_owned())
        .unwrap()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn post_is_never_hedged_unless_opted_in() {
    let layer = HedgeLayer::builder("http")
        .http()
        .fixed_delay(ms(10))
        .budget_reserve(1_000)
        .build()
        .unwrap();
    let tally = Arc::new(Tally::default());
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(slow_upstream(tally.clone()));

    for method in [http::Method::POST, http::Method::PATCH] {
        for _ in 0..50 {
            let res = svc.clone().oneshot(request(method.clone())).await.unwrap();
            assert_eq!(res.status(), 200);
        }
    }
    assert_eq!(layer.hedger().snapshot().hedges_sent, 0);
    assert_eq!(
        tally.started(),
        100,
        "each POST and PATCH sent exactly once"
    );

    for method in [http::Method::GET, http::Method::PUT, http::Method::DELETE] {
        svc.clone().oneshot(request(method)).await.unwrap();
    }
    assert_eq!(layer.hedger().snapshot().hedges_sent, 3);

    let mut marked = request(http::Method::POST);
    marked.extensions_mut().insert(ReplayNonIdempotent);
    svc.clone().oneshot(marked).await.unwrap();
    let mut keyed = request(http::Method::POST);
    keyed
        .headers_mut()
        .insert(IDEMPOTENCY_KEY, http::HeaderValue::from_static("k-1"));
    svc.clone().oneshot(keyed).await.unwrap();
    assert_eq!(layer.hedger().snapshot().hedges_sent, 5);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_layer_may_opt_in_for_every_method() {
    let layer = HedgeLayer::builder("http-all")
        .http()
        .hedge_non_idempotent(true)
        .fixed_delay(ms(10))
        .build()
        .unwrap();
    let tally = Arc::new(Tally::default());
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(slow_upstream(tally.clone()));
    svc.oneshot(request(http::Method::POST)).await.unwrap();
    assert_eq!(layer.hedger().snapshot().hedges_sent, 1);
}

/// A 503 from one copy does not answer while another copy is in flight.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_5xx_copy_waits_for_the_others() {
    let layer = HedgeLayer::builder("http-5xx")
        .http()
        .fixed_delay(ms(10))
        .build()
        .unwrap();
    let tally = Arc::new(Tally::default());
    let t = tally.clone();
    let upstream = service_fn(move |_req: http::Request<String>| {
        let t = t.clone();
        let first = t.started() == 0;
        async move {
            call(t, ms(if first { 20 } else { 30 })).await;
            let status = if first { 503 } else { 200 };
            Ok::<_, Infallible>(
                http::Response::builder()
                    .status(status)
                    .body(String::new())
                    .unwrap(),
            )
        }
    });
    let svc = ServiceBuilder::new().layer(layer).service(upstream);
    let res = svc.oneshot(request(http::Method::GET)).await.unwrap();
    assert_eq!(res.status(), 200);
}
