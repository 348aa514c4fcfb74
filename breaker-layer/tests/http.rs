//! HTTP mode through a real axum server on loopback: an open circuit answers 503 with
//! `Retry-After`; a 429 can be set not to trip; a client-side breaker around hyper's
//! client fails fast without touching the network. Real time, no sleeps.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use breaker_layer::{CircuitBreakerLayer, CircuitOpen};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use reliability_core::classify::{HttpClassifier, Outcome};
use reliability_core::health::BreakerState;
use tower::{Service, ServiceBuilder, ServiceExt};

/// Upstream handler state: the status it answers with, and how many requests it saw.
#[derive(Clone, Default)]
struct Upstream {
    status: Arc<AtomicU16>,
    seen: Arc<AtomicUsize>,
}

impl Upstream {
    fn router(&self) -> Router {
        let this = self.clone();
        Router::new().route(
            "/",
            get(move || {
                let this = this.clone();
                async move {
                    this.seen.fetch_add(1, Ordering::SeqCst);
                    StatusCode::from_u16(this.status.load(Ordering::SeqCst)).unwrap()
                }
            }),
        )
    }

    fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/")
}

fn client() -> Client<HttpConnector, Body> {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn get_status(
    client: &Client<HttpConnector, Body>,
    url: &str,
) -> (StatusCode, Option<String>) {
    let res = client
        .request(Request::get(url).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let retry_after = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (res.status(), retry_after)
}

#[tokio::test]
async fn open_circuit_answers_503_with_retry_after() {
    let upstream = Upstream::default();
    upstream.answer(500);
    let layer = CircuitBreakerLayer::builder("api")
        .http()
        .consecutive_failures(2)
        .build()
        .unwrap();
    let url = serve(upstream.router().layer(layer.clone())).await;
    let client = client();

    assert_eq!(
        get_status(&client, &url).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        get_status(&client, &url).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(layer.breaker().state(), BreakerState::Open);

    upstream.answer(200);
    let (status, retry_after) = get_status(&client, &url).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let secs: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((29..=30).contains(&secs), "{secs}");
    assert_eq!(
        upstream.seen.load(Ordering::SeqCst),
        2,
        "the handler was not called"
    );

    layer.breaker().reset();
    assert_eq!(get_status(&client, &url).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_429_can_be_set_not_to_trip() {
    let upstream = Upstream::default();
    upstream.answer(429);
    let layer = CircuitBreakerLayer::builder("limited")
        .http()
        .classifier(HttpClassifier::new().too_many_requests_as(Outcome::Ignore))
        .consecutive_failures(2)
        .build()
        .unwrap();
    let url = serve(upstream.router().layer(layer.clone())).await;
    let client = client();
    for _ in 0..5 {
        assert_eq!(
            get_status(&client, &url).await.0,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    assert_eq!(layer.breaker().state(), BreakerState::Closed);

    // With the default table a 429 is a failure.
    let strict = CircuitBreakerLayer::builder("strict")
        .http()
        .consecutive_failures(2)
        .build()
        .unwrap();
    let url = serve(upstream.router().layer(strict.clone())).await;
    for _ in 0..2 {
        get_status(&client, &url).await;
    }
    assert_eq!(strict.breaker().state(), BreakerState::Open);
}

#[tokio::test]
async fn client_side_breaker_fails_fast_with_a_typed_error() {
    let upstream = Upstream::default();
    upstream.answer(503);
    let url = serve(upstream.router()).await;
    // Generic mode around hyper's client, with the HTTP table deciding what fails.
    let layer = CircuitBreakerLayer::builder("remote")
        .classifier(HttpClassifier::new())
        .consecutive_failures(3)
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new().layer(layer.clone()).service(client());
    for _ in 0..3 {
        let res = svc
            .ready()
            .await
            .unwrap()
            .call(Request::get(&url).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(Request::get(&url).body(Body::empty()).unwrap())
        .await
        .unwrap_err();
    let open = err.downcast_ref::<CircuitOpen>().expect("typed rejection");
    assert_eq!(open.name(), "remote");
    assert_eq!(upstream.seen.load(Ordering::SeqCst), 3);
}
