//! The one-line HTTP client builder against a real axum server with injected faults:
//! caching rules, stale-if-error, retries, per-host breakers, and revalidation with 304s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use breaker_layer::CircuitOpen;
use bytes::Bytes;
use reliability::cache::AdaptiveConfig;
use reliability::cache::adaptive::AdaptiveRule;
use reliability::client::HttpClient;
use reliability::core::clock::ManualClock;
use reliability::core::health::BreakerState;
use reliability::presets;
use reliability::retry::backoff::{Backoff, Jitter};
use tower::ServiceExt;

#[derive(Clone, Default)]
struct Upstream {
    down: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
    not_modified: Arc<AtomicU64>,
}

async fn quote(
    State(u): State<Upstream>,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let n = u.calls.fetch_add(1, Ordering::SeqCst);
    if u.down.load(Ordering::SeqCst) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "0")],
            "down".into(),
        )
    } else {
        (
            StatusCode::OK,
            [("cache-control", "max-age=60")],
            format!("quote #{n}"),
        )
    }
}

async fn private(State(u): State<Upstream>) -> ([(&'static str, &'static str); 1], String) {
    let n = u.calls.fetch_add(1, Ordering::SeqCst);
    ([("cache-control", "private")], format!("mine #{n}"))
}

/// A timeline with an entity tag: a request that names it gets a 304 (counted apart),
/// with a header that says how often it was checked.
async fn timeline(
    State(u): State<Upstream>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if headers.get("if-none-match").is_some_and(|v| v == "\"t1\"") {
        let n = u.not_modified.fetch_add(1, Ordering::SeqCst) + 1;
        return (
            StatusCode::NOT_MODIFIED,
            [("etag", "\"t1\"".to_owned()), ("x-checked", n.to_string())],
        )
            .into_response();
    }
    u.calls.fetch_add(1, Ordering::SeqCst);
    ([("etag", "\"t1\""), ("x-checked", "0")], "timeline").into_response()
}

/// An answer that varies on `Accept`, which a method-and-URI key cannot tell apart.
async fn varies(
    State(u): State<Upstream>,
    headers: axum::http::HeaderMap,
) -> ([(&'static str, &'static str); 2], String) {
    u.calls.fetch_add(1, Ordering::SeqCst);
    let accept = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    (
        [("cache-control", "max-age=60"), ("vary", "accept")],
        accept.to_owned(),
    )
}

async fn serve(u: Upstream) -> SocketAddr {
    let app = axum::Router::new()
        .route("/quote", get(quote))
        .route("/timeline", get(timeline))
        .route("/varies", get(varies))
        .route("/other/{n}", get(quote))
        .route("/private", get(private))
        .with_state(u);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn get_req(addr: SocketAddr, path: &str) -> http::Request<Bytes> {
    http::Request::get(format!("http://{addr}{path}"))
        .body(Bytes::new())
        .unwrap()
}

#[tokio::test]
async fn dex_http_client_caches_retries_serves_stale_and_opens_per_host() {
    let upstream = Upstream::default();
    let addr = serve(upstream.clone()).await;
    let clock = ManualClock::new();
    let client = presets::dex("aggregator")
        .seed(1)
        .clock(clock.shared())
        .configure(|s| {
            s.cache.ttl = Duration::from_millis(100);
            s.cache.adaptive = Some(AdaptiveConfig {
                rule: AdaptiveRule::Popularity,
                min: Duration::from_millis(50),
                max: Duration::from_millis(200),
            });
            s.cache.stale_while_revalidate = Duration::from_millis(1);
            s.retry.backoff = Backoff::exponential(
                Duration::from_millis(1),
                Duration::from_millis(5),
                Jitter::Decorrelated,
            );
        })
        .http_client(HttpClient::new())
        .unwrap();
    let h = client.handles().clone();

    // A miss, then a hit.
    let first = client
        .clone()
        .oneshot(get_req(addr, "/quote"))
        .await
        .unwrap();
    let second = client
        .clone()
        .oneshot(get_req(addr, "/quote"))
        .await
        .unwrap();
    assert_eq!(first.body(), second.body());
    assert_eq!(upstream.calls.load(Ordering::SeqCst), 1);

    // Credentialed requests and private answers are never shared.
    for _ in 0..2 {
        let mut req = get_req(addr, "/quote");
        req.headers_mut()
            .insert("authorization", "Bearer user-a".parse().unwrap());
        client.clone().oneshot(req).await.unwrap();
        client
            .clone()
            .oneshot(get_req(addr, "/private"))
            .await
            .unwrap();
    }
    assert_eq!(upstream.calls.load(Ordering::SeqCst), 5);

    // Outage: the cached quote is served stale instead of the 503. The manual clock
    // moves past the longest adaptive TTL (200 ms) and the stale-while-revalidate window
    // (1 ms), well inside the preset's stale-if-error window (60 s), so the entry is
    // expired for certain and only a failed upstream call may serve it.
    upstream.down.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_secs(1));
    let cache = h.cache().expect("the preset has a cache");
    let stale_before = cache.stats().stale_if_error;
    let calls_before = upstream.calls.load(Ordering::SeqCst);
    let stale = client
        .clone()
        .oneshot(get_req(addr, "/quote"))
        .await
        .unwrap();
    assert_eq!(stale.status(), 200);
    assert_eq!(stale.body(), first.body(), "stale-if-error");
    assert_eq!(
        cache.stats().stale_if_error,
        stale_before + 1,
        "served stale because the upstream failed, not a fresh hit"
    );
    assert!(
        upstream.calls.load(Ordering::SeqCst) > calls_before,
        "the expired entry went to the (failing) upstream"
    );

    // Uncached paths fail with retries until this host's breaker opens.
    let mut open = false;
    for i in 0..30 {
        match client
            .clone()
            .oneshot(get_req(addr, &format!("/other/{i}")))
            .await
        {
            Ok(res) => assert_eq!(res.status(), 503),
            Err(e) => {
                assert!(e.downcast_ref::<CircuitOpen>().is_some(), "{e}");
                open = true;
                break;
            }
        }
    }
    assert!(open, "the breaker opened");
    assert!(h.retry().snapshot().retries > 0);
    let registry = h.breaker_registry().expect("per-host breakers");
    let (host, breaker) = registry.breakers().into_iter().next().unwrap();
    assert_eq!(host, "127.0.0.1");
    assert_eq!(breaker.state(), BreakerState::Open);
}

#[tokio::test]
async fn a_stale_answer_with_an_etag_is_revalidated_and_a_304_costs_no_body() {
    let upstream = Upstream::default();
    let addr = serve(upstream.clone()).await;
    let clock = ManualClock::new();
    let client = presets::social("timeline")
        .seed(1)
        .clock(clock.shared())
        .configure(|s| {
            // A fixed TTL, and no stale-while-revalidate: the caller itself waits for the
            // revalidation.
            s.cache.ttl = Duration::from_secs(10);
            s.cache.adaptive = None;
            s.cache.stale_while_revalidate = Duration::ZERO;
            s.cache.stale_if_error = Some(Duration::from_secs(600));
        })
        .http_client(HttpClient::new())
        .unwrap();
    let get = || client.clone().oneshot(get_req(addr, "/timeline"));
    let first = get().await.unwrap();
    assert_eq!(first.body(), "timeline");
    // Stale: the caller waits for the upstream, which is asked whether it changed.
    clock.advance(Duration::from_secs(11));
    let revalidated = get().await.unwrap();
    assert_eq!(revalidated.status(), StatusCode::OK);
    assert_eq!(revalidated.body(), "timeline", "the held body");
    assert_eq!(revalidated.headers()["x-checked"], "1", "the 304's headers");
    // Stored fresh again: no upstream call at all.
    let hit = get().await.unwrap();
    assert_eq!(hit.headers()["x-checked"], "1");
    assert_eq!(upstream.calls.load(Ordering::SeqCst), 1, "one full answer");
    assert_eq!(upstream.not_modified.load(Ordering::SeqCst), 1, "one 304");
}

#[tokio::test]
async fn answers_that_vary_and_range_requests_are_not_cached_by_uri() {
    let upstream = Upstream::default();
    let addr = serve(upstream.clone()).await;
    let client = presets::social("feed")
        .seed(1)
        .http_client(HttpClient::new())
        .unwrap();
    let with_accept = |accept: &str| {
        let mut req = get_req(addr, "/varies");
        req.headers_mut().insert("accept", accept.parse().unwrap());
        client.clone().oneshot(req)
    };
    assert_eq!(with_accept("text/html").await.unwrap().body(), "text/html");
    assert_eq!(
        with_accept("application/json").await.unwrap().body(),
        "application/json"
    );
    let mut ranged = get_req(addr, "/quote");
    ranged
        .headers_mut()
        .insert("range", "bytes=0-1".parse().unwrap());
    client.clone().oneshot(ranged).await.unwrap();
    client
        .clone()
        .oneshot(get_req(addr, "/quote"))
        .await
        .unwrap();
    assert_eq!(
        upstream.calls.load(Ordering::SeqCst),
        4,
        "nothing was served from the cache"
    );
}
