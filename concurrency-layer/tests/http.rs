//! HTTP mode through a real axum server on loopback: a full bulkhead answers 503 with
//! `Retry-After` and the refusal's text as body (the core answer), without calling the
//! handler; a client-side limiter around hyper's client refuses with a typed error.
//! Real time; the tests wait for events (a handler that has started), never sleep.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use concurrency_layer::{BulkheadFull, ConcurrencyLimitLayer, Rejection};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use reliability_core::failure::{Failure, FailureKind};
use tokio::sync::{Notify, mpsc};
use tower::{Service, ServiceBuilder, ServiceExt};

/// A handler that tells when it starts and answers when released.
#[derive(Clone)]
struct Upstream {
    started: mpsc::UnboundedSender<()>,
    release: Arc<Notify>,
    seen: Arc<AtomicUsize>,
}

impl Upstream {
    fn new() -> (Self, mpsc::UnboundedReceiver<()>) {
        let (started, rx) = mpsc::unbounded_channel();
        let this = Self {
            started,
            release: Arc::new(Notify::new()),
            seen: Arc::new(AtomicUsize::new(0)),
        };
        (this, rx)
    }

    fn router(&self) -> Router {
        let this = self.clone();
        Router::new().route(
            "/",
            get(move || {
                let this = this.clone();
                async move {
                    this.seen.fetch_add(1, Ordering::SeqCst);
                    let released = this.release.notified();
                    let _ = this.started.send(());
                    released.await;
                    "done"
                }
            }),
        )
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

#[tokio::test]
async fn a_full_bulkhead_answers_503_with_retry_after() {
    let (upstream, mut started) = Upstream::new();
    let layer = ConcurrencyLimitLayer::builder("api")
        .limit(1)
        .retry_after(Duration::from_millis(2_500))
        .http()
        .build()
        .unwrap();
    let url = serve(upstream.router().layer(layer.clone())).await;
    let client = client();

    let first = {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move {
            client
                .request(Request::get(url).body(Body::empty()).unwrap())
                .await
                .unwrap()
        })
    };
    started.recv().await.unwrap();
    assert_eq!(layer.limiter().in_flight(), 1);

    let res = client
        .request(Request::get(&url).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "3", "2.5 s rounded up");
    assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "`api` is at its limit of 1 calls in flight\n");
    assert_eq!(
        upstream.seen.load(Ordering::SeqCst),
        1,
        "the handler was not called"
    );

    upstream.release.notify_one();
    let res = first.await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // The place is back.
    let again = {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move {
            client
                .request(Request::get(url).body(Body::empty()).unwrap())
                .await
                .unwrap()
        })
    };
    started.recv().await.unwrap();
    upstream.release.notify_one();
    assert_eq!(again.await.unwrap().status(), StatusCode::OK);
    let snapshot = layer.limiter().snapshot();
    assert_eq!((snapshot.admitted, snapshot.rejected), (2, 1));
}

#[tokio::test]
async fn a_client_side_limiter_refuses_with_a_typed_error() {
    let (upstream, mut started) = Upstream::new();
    let url = serve(upstream.router()).await;
    let layer = ConcurrencyLimitLayer::builder("remote")
        .limit(1)
        .build()
        .unwrap();
    let svc = ServiceBuilder::new().layer(layer.clone()).service(client());

    let mut first_svc = svc.clone();
    let first = first_svc
        .ready()
        .await
        .unwrap()
        .call(Request::get(&url).body(Body::empty()).unwrap());
    let first = tokio::spawn(first);
    started.recv().await.unwrap();

    let err = svc
        .clone()
        .oneshot(Request::get(&url).body(Body::empty()).unwrap())
        .await
        .unwrap_err();
    let full = err.downcast_ref::<BulkheadFull>().expect("typed refusal");
    assert_eq!(
        (full.name(), full.rejection()),
        ("remote", Rejection::LimitReached)
    );
    assert_eq!(Failure::of(&*err).kind(), FailureKind::Overloaded);
    assert!(reliability_core::error::is_do_not_retry(&*err));

    upstream.release.notify_one();
    assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(upstream.seen.load(Ordering::SeqCst), 1);
}
