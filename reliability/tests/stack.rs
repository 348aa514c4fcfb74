//! The five HTTP-mode layers in one `ServiceBuilder` around an axum `Router`, served by
//! `axum::serve` on loopback, with no glue between them: rate limit, cache, breaker, SLA
//! and retry, in two different orders.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use reliability::breaker::CircuitBreakerLayer;
use reliability::cache::http::HttpCacheLayer;
use reliability::core::clock::ManualClock;
use reliability::ratelimit::http::HeaderKey;
use reliability::ratelimit::{Quota, RateLimitLayer, RateLimiter};
use reliability::retry::backoff::Backoff;
use reliability::retry::http::HttpRetryLayer;
use reliability::sla::{SlaLayer, SlaMonitor};
use tower::ServiceBuilder;

#[derive(Clone, Default)]
struct Upstream {
    price_calls: Arc<AtomicU64>,
    flaky_calls: Arc<AtomicU64>,
    down: Arc<AtomicBool>,
}

async fn price(State(u): State<Upstream>) -> (StatusCode, String) {
    let n = u.price_calls.fetch_add(1, Ordering::SeqCst) + 1;
    if u.down.load(Ordering::SeqCst) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "down".into());
    }
    (StatusCode::OK, format!("price #{n}"))
}

/// 503 to every odd call: the retry layer turns each request into two calls and a 200.
async fn flaky(State(u): State<Upstream>) -> (StatusCode, String) {
    let n = u.flaky_calls.fetch_add(1, Ordering::SeqCst) + 1;
    if n % 2 == 1 {
        (StatusCode::SERVICE_UNAVAILABLE, "busy".into())
    } else {
        (StatusCode::OK, format!("flaky #{n}"))
    }
}

struct Parts {
    limit: RateLimitLayer<HeaderKey, reliability::core::answer::AsHttp>,
    cache: HttpCacheLayer,
    breaker: CircuitBreakerLayer<
        reliability::core::classify::HttpClassifier,
        reliability::core::answer::AsHttp,
    >,
    sla: SlaLayer<reliability::core::classify::HttpClassifier>,
    retry: reliability::retry::http::AnswerErrorsLayer<HttpRetryLayer>,
    clock: ManualClock,
}

fn parts() -> Parts {
    let clock = ManualClock::new();
    let limiter = RateLimiter::builder()
        .quota(Quota::per(10, Duration::from_secs(3600)).unwrap())
        .build()
        .unwrap();
    let limit = RateLimitLayer::new(limiter)
        .key(HeaderKey::new("x-api-key").unwrap())
        .http();
    let cache = HttpCacheLayer::builder()
        .name("api")
        .ttl(Duration::from_secs(10))
        .stale_while_revalidate(Duration::ZERO)
        .stale_if_error(Duration::from_secs(600))
        .clock(clock.shared())
        .build()
        .unwrap();
    let breaker = CircuitBreakerLayer::builder("api")
        .http()
        .open_wait(Duration::from_secs(30))
        .build()
        .unwrap();
    let sla = SlaLayer::new(SlaMonitor::builder("api").build().unwrap()).http();
    let retry = HttpRetryLayer::builder()
        .max_attempts(2)
        .backoff(Backoff::constant(Duration::from_millis(1)))
        .build()
        .unwrap()
        .answer_errors();
    Parts {
        limit,
        cache,
        breaker,
        sla,
        retry,
        clock,
    }
}

fn router(upstream: Upstream) -> axum::Router {
    axum::Router::new()
        .route("/price", get(price))
        .route("/flaky", get(flaky))
        .route("/uncached", get(price))
        .with_state(upstream)
}

async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

async fn get_as(addr: SocketAddr, key: &str, path: &str) -> Answer {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let req = http::Request::get(format!("http://{addr}{path}"))
        .header("x-api-key", key)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .expect("no hang")
        .unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn cache_status(a: &Answer) -> String {
    a.headers
        .get_all("cache-status")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::test]
async fn limit_cache_breaker_sla_retry_stack_on_a_router() {
    let upstream = Upstream::default();
    let p = parts();
    let breaker = p.breaker.breaker().clone();
    let app = router(upstream.clone()).layer(
        ServiceBuilder::new()
            .layer(p.limit)
            .layer(p.cache)
            .layer(p.breaker)
            .layer(p.sla)
            .layer(p.retry),
    );
    let addr = serve(app).await;

    // A miss, then a hit: the upstream is called once.
    let first = get_as(addr, "alice", "/price").await;
    assert_eq!((first.status, first.body.as_str()), (200, "price #1"));
    assert!(
        cache_status(&first).contains("fwd=miss"),
        "{}",
        cache_status(&first)
    );
    let hit = get_as(addr, "alice", "/price").await;
    assert_eq!((hit.status, hit.body.as_str()), (200, "price #1"));
    assert!(
        cache_status(&hit).contains("; hit"),
        "{}",
        cache_status(&hit)
    );
    assert_eq!(upstream.price_calls.load(Ordering::SeqCst), 1);
    assert!(
        hit.headers.contains_key("ratelimit"),
        "the limiter decorates hits too"
    );

    // The retry layer, inside the breaker, turns a 503 into a second call and a 200.
    let retried = get_as(addr, "alice", "/flaky").await;
    assert_eq!((retried.status, retried.body.as_str()), (200, "flaky #2"));
    assert_eq!(upstream.flaky_calls.load(Ordering::SeqCst), 2);

    // An open circuit: 503 with `Retry-After` where nothing is cached.
    breaker.force_open();
    let open = get_as(addr, "alice", "/uncached").await;
    assert_eq!(open.status, 503);
    assert_eq!(open.headers["retry-after"], "30");
    assert_eq!(upstream.price_calls.load(Ordering::SeqCst), 1, "not sent");

    // The cached entry expires; the circuit is still open: the stale copy is served.
    p.clock.advance(Duration::from_secs(11));
    let stale = get_as(addr, "alice", "/price").await;
    assert_eq!((stale.status, stale.body.as_str()), (200, "price #1"));
    assert!(
        cache_status(&stale).contains("detail=stale-if-error"),
        "{}",
        cache_status(&stale)
    );
    breaker.reset();

    // The caller's own limit: 10 per hour per key, hits included. Alice has used 5.
    for _ in 0..5 {
        assert_eq!(get_as(addr, "alice", "/price").await.status, 200);
    }
    let limited = get_as(addr, "alice", "/price").await;
    assert_eq!(limited.status, 429);
    assert!(limited.headers.contains_key("retry-after"));
    assert!(limited.headers.contains_key("ratelimit-policy"));
    // Another key is not limited.
    assert_eq!(get_as(addr, "bob", "/price").await.status, 200);
}

#[tokio::test]
async fn the_same_layers_stack_in_the_reverse_order() {
    let upstream = Upstream::default();
    let p = parts();
    let breaker = p.breaker.breaker().clone();
    let app = router(upstream.clone()).layer(
        ServiceBuilder::new()
            .layer(p.retry)
            .layer(p.sla)
            .layer(p.breaker)
            .layer(p.cache)
            .layer(p.limit),
    );
    let addr = serve(app).await;

    assert_eq!(get_as(addr, "carol", "/price").await.body, "price #1");
    let hit = get_as(addr, "carol", "/price").await;
    assert!(
        cache_status(&hit).contains("; hit"),
        "{}",
        cache_status(&hit)
    );
    assert_eq!(upstream.price_calls.load(Ordering::SeqCst), 1);

    // Retry outermost: the upstream's 503 is retried through the whole stack.
    let retried = get_as(addr, "carol", "/flaky").await;
    assert_eq!((retried.status, retried.body.as_str()), (200, "flaky #2"));

    // The open circuit's own 503 is the stack's answer: it is not retried.
    breaker.force_open();
    let open = get_as(addr, "carol", "/flaky").await;
    assert_eq!(open.status, 503);
    assert_eq!(open.headers["retry-after"], "30");
    assert_eq!(upstream.flaky_calls.load(Ordering::SeqCst), 2);
    breaker.reset();

    // Innermost, the limiter counts what the cache lets through: the first miss and the
    // two attempts of /flaky so far, so 7 more misses fit in 10 per hour.
    for i in 0..7 {
        let a = get_as(addr, "carol", &format!("/uncached?n={i}")).await;
        assert_eq!(a.status, 200, "miss {i}");
    }
    let failures = breaker.snapshot().failures;
    let limited = get_as(addr, "carol", "/uncached?n=99").await;
    assert_eq!(limited.status, 429);
    assert!(limited.headers.contains_key("retry-after"));
    // The limiter's own 429 is the stack's answer: the retry layer outside does not
    // resend it, and the breaker does not count it.
    assert_eq!(breaker.snapshot().failures, failures);
}
