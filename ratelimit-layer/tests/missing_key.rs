//! Requests whose key cannot be extracted: the `on_missing_key` choice, through a real axum
//! server started *without* `into_make_service_with_connect_info` (so `PeerIp` finds nothing),
//! and in generic mode.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use ratelimit_layer::http::{HeaderKey, PeerIp};
use ratelimit_layer::{
    KeyExtractorExt, KeyNotFound, MissingKey, Quota, RateLimitLayer, RateLimited, RateLimiter,
};
use reliability_core::error::is_do_not_retry;
use tower::{BoxError, Layer, ServiceExt, service_fn};

/// One request per minute: a second admitted request would mean two buckets.
fn quota_of_one() -> RateLimiter {
    RateLimiter::builder()
        .quota(Quota::per(1, Duration::from_secs(60)).unwrap())
        .build()
        .unwrap()
}

/// Serves `app` on loopback the plain way, without connect info.
async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

struct Answer {
    status: u16,
    content_type: Option<String>,
    body: String,
}

async fn get_from(addr: SocketAddr, path: &str, api_key: Option<&str>) -> Answer {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let mut request = http::Request::get(format!("http://{addr}{path}"));
    if let Some(key) = api_key {
        request = request.header("x-api-key", key);
    }
    let res = client
        .request(request.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        content_type,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_default_rejects_naming_the_fix() {
    let peer_ip = RateLimitLayer::new(quota_of_one())
        .key(PeerIp::new())
        .http();
    let header = RateLimitLayer::new(quota_of_one())
        .key(HeaderKey::new("x-api-key").unwrap())
        .http();
    let header_or_peer = RateLimitLayer::new(quota_of_one())
        .key(HeaderKey::new("x-api-key").unwrap().or(PeerIp::new()))
        .http();
    let app = Router::new()
        .route("/peer", get(|| async { "hi" }).layer(peer_ip))
        .route("/header", get(|| async { "hi" }).layer(header))
        .route("/either", get(|| async { "hi" }).layer(header_or_peer));
    let addr = serve(app).await;

    // No connect info: the server's mistake, every time (not a quota: no 429 ever).
    for _ in 0..3 {
        let answer = get_from(addr, "/peer", None).await;
        assert_eq!(answer.status, 500);
        assert_eq!(
            answer.content_type.as_deref(),
            Some("text/plain; charset=utf-8")
        );
        assert!(
            answer
                .body
                .contains("into_make_service_with_connect_info::<SocketAddr>()"),
            "{}",
            answer.body
        );
    }

    // A required header the client did not send: the client's mistake.
    let answer = get_from(addr, "/header", None).await;
    assert_eq!(answer.status, 400);
    assert!(
        answer.body.contains("`x-api-key` header"),
        "{}",
        answer.body
    );
    assert_eq!(get_from(addr, "/header", Some("k")).await.status, 200);

    // Header optional, peer address missing: still the server's mistake.
    let answer = get_from(addr, "/either", None).await;
    assert_eq!(answer.status, 500);
    assert!(answer.body.contains("PeerIp"), "{}", answer.body);
    assert_eq!(get_from(addr, "/either", Some("k")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_global_shares_one_bucket() {
    let limiter = quota_of_one();
    let layer = RateLimitLayer::new(limiter.clone())
        .key(PeerIp::new())
        .on_missing_key(MissingKey::Global)
        .http();
    let addr = serve(
        Router::new()
            .route("/", get(|| async { "hi" }))
            .layer(layer),
    )
    .await;

    assert_eq!(get_from(addr, "/", None).await.status, 200);
    assert_eq!(get_from(addr, "/", None).await.status, 429);
    // Both counted against the anonymous subject, not against the (unknown) client IP.
    let usage = limiter.usage("").await.unwrap();
    assert_eq!((usage.allowed, usage.rejected), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_bypass_never_limits() {
    let limiter = quota_of_one();
    let layer = RateLimitLayer::new(limiter.clone())
        .key(PeerIp::new())
        .on_missing_key(MissingKey::Bypass)
        .http();
    let addr = serve(
        Router::new()
            .route("/", get(|| async { "hi" }))
            .layer(layer),
    )
    .await;

    for _ in 0..5 {
        let answer = get_from(addr, "/", None).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, "hi");
    }
    let seen = limiter.snapshot();
    assert_eq!(seen.allowed + seen.rejected, 0);
}

#[tokio::test]
async fn generic_mode_fails_with_a_final_typed_error() {
    let limiter = quota_of_one();
    let svc = RateLimitLayer::new(limiter.clone())
        .key(PeerIp::new())
        .layer(service_fn(|_: http::Request<()>| async {
            Ok::<_, Infallible>("hi")
        }));
    let err: BoxError = svc
        .oneshot(http::Request::new(()))
        .await
        .expect_err("no key, default Reject");
    let missing = err.downcast_ref::<KeyNotFound>().expect("typed error");
    assert!(!missing.is_client_error());
    assert!(
        missing
            .hint()
            .contains("into_make_service_with_connect_info")
    );
    assert!(is_do_not_retry(&*err));
    assert!(err.downcast_ref::<RateLimited>().is_none());
    let seen = limiter.snapshot();
    assert_eq!(seen.allowed + seen.rejected, 0);
}

/// Records the message of every WARN event, with the thread it came from.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<(std::thread::ThreadId, String)>>>);

struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for Warnings {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == tracing::Level::WARN {
            let mut message = Message(String::new());
            event.record(&mut message);
            self.0
                .lock()
                .unwrap()
                .push((std::thread::current().id(), message.0));
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

// The subscriber is the process-wide default, installed once: a thread-local one races
// with the other tests' threads over each callsite's cached interest. Only this test's
// events count (current_thread: they all come from its thread).
#[tokio::test(flavor = "current_thread")]
async fn the_fix_is_logged_once_per_layer() {
    static GLOBAL: std::sync::OnceLock<Warnings> = std::sync::OnceLock::new();
    let warnings = GLOBAL.get_or_init(|| {
        let w = Warnings::default();
        tracing::subscriber::set_global_default(w.clone()).expect("the only global subscriber");
        w
    });
    let me = std::thread::current().id();
    let echo = service_fn(|_: http::Request<()>| async { Ok::<_, Infallible>("hi") });
    for choice in [MissingKey::Reject, MissingKey::Global, MissingKey::Bypass] {
        let layer = RateLimitLayer::new(quota_of_one())
            .key(PeerIp::new())
            .on_missing_key(choice);
        let svc = layer.layer(echo);
        for _ in 0..4 {
            let _ = svc.clone().oneshot(http::Request::new(())).await;
        }
        // A second service of the same layer shares its state, so it stays quiet too.
        let _ = layer.layer(echo).oneshot(http::Request::new(())).await;
    }
    let warnings: Vec<String> = warnings
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(thread, _)| *thread == me)
        .map(|(_, w)| w.clone())
        .collect();
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    for (w, outcome) in
        warnings
            .iter()
            .zip(["are rejected", "one bucket shared", "let through unlimited"])
    {
        assert!(w.contains("into_make_service_with_connect_info"), "{w}");
        assert!(w.contains("on_missing_key"), "{w}");
        assert!(w.contains(outcome), "{w}");
    }
}
