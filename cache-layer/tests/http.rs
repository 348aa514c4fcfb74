//! The HTTP mode through a real axum server on loopback: Cache-Status, Vary, no-store,
//! private, credential isolation, body cap, stale-if-error, virtual hosts, invalidation by
//! unsafe requests.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use cache_layer::http::{HttpCacheLayer, HttpCacheLayerBuilder, UpstreamError};
use common::client::{Answer, Http};
use http_body_util::{BodyExt, Full};
use parking_lot::Mutex;
use reliability_core::clock::ManualClock;
use tower::{BoxError, Layer, ServiceExt};

#[derive(Clone, Default)]
struct Upstream {
    calls: Arc<Mutex<HashMap<String, u64>>>,
    failing: Arc<AtomicBool>,
}

impl Upstream {
    /// GETs of `path` that reached the upstream.
    fn calls(&self, path: &str) -> u64 {
        self.calls_of("GET", path)
    }

    fn calls_of(&self, method: &str, path: &str) -> u64 {
        let key = format!("{method} {path}");
        self.calls.lock().get(&key).copied().unwrap_or(0)
    }

    async fn handle(self, req: Request) -> Response {
        let path = req.uri().path().to_owned();
        let n = {
            let mut calls = self.calls.lock();
            let c = calls.entry(format!("{} {path}", req.method())).or_default();
            *c += 1;
            *c
        };
        let header = |name: &str| common::client::header_of(req.headers(), name);
        let cc = |v: &'static str| [("cache-control", v)];
        if req.method() != Method::GET && req.method() != Method::HEAD {
            // Writes answer with the status and Location the test asks for.
            let status = header("x-status").parse().unwrap_or(200);
            let mut resp = (StatusCode::from_u16(status).unwrap(), "done").into_response();
            if let Ok(loc) = HeaderValue::from_str(&header("x-location"))
                && !loc.is_empty()
            {
                resp.headers_mut().insert("location", loc);
            }
            return resp;
        }
        match path.as_str() {
            "/host" => (cc("max-age=60"), header("host")).into_response(),
            "/item" | "/item2" => (cc("max-age=60"), format!("n={n}")).into_response(),
            "/public" => (cc("max-age=60"), format!("n={n}")).into_response(),
            "/vary" => (
                [("cache-control", "max-age=60"), ("vary", "accept")],
                header("accept"),
            )
                .into_response(),
            "/private" => (cc("private, max-age=60"), format!("n={n}")).into_response(),
            "/nostore" => (cc("no-store"), format!("n={n}")).into_response(),
            "/cookie" => ([("set-cookie", "session=secret")], format!("n={n}")).into_response(),
            "/me" => (cc("max-age=60"), header("authorization")).into_response(),
            "/big" => (cc("max-age=60"), "x".repeat(4096)).into_response(),
            "/missing" => (StatusCode::NOT_FOUND, format!("n={n}")).into_response(),
            "/flaky" if self.failing.load(Ordering::SeqCst) => {
                (StatusCode::SERVICE_UNAVAILABLE, "down").into_response()
            }
            "/flaky" => (cc("max-age=1"), format!("n={n}")).into_response(),
            _ => StatusCode::NOT_FOUND.into_response(),
        }
    }
}

async fn serve(layer: HttpCacheLayer) -> (SocketAddr, Upstream) {
    let up = Upstream::default();
    let handler_up = up.clone();
    let app = Router::new()
        .fallback(move |req: Request| handler_up.clone().handle(req))
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, up)
}

fn builder(clock: &ManualClock) -> HttpCacheLayerBuilder {
    HttpCacheLayer::builder()
        .name("edge")
        .ttl(Duration::from_secs(30))
        .vary(["accept"])
        .max_body_bytes(1024)
        .clock(clock.shared())
}

#[tokio::test]
async fn cache_status_vary_and_storage_rules() {
    let clock = ManualClock::new();
    let layer = builder(&clock)
        .negative_ttl(Duration::from_secs(5))
        .build()
        .unwrap();
    let handle = layer.handle();
    let (addr, up) = serve(layer).await;
    let http = Http::new(addr);

    let a = http.get("/public", &[]).await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "n=1"));
    assert_eq!(a.cache_status, "edge; fwd=miss; stored");
    clock.advance(Duration::from_secs(12));
    let b = http.get("/public", &[]).await;
    assert_eq!(b.body, "n=1");
    assert_eq!(
        b.cache_status, "edge; hit; ttl=48",
        "max-age=60 wins over the 30 s default"
    );
    assert_eq!(up.calls("/public"), 1);

    // Vary: one entry per Accept value.
    let html = http.get("/vary", &[("accept", "text/html")]).await;
    let json = http.get("/vary", &[("accept", "application/json")]).await;
    let html_again = http.get("/vary", &[("accept", "text/html")]).await;
    assert_eq!(
        (html.body.as_str(), json.body.as_str()),
        ("text/html", "application/json")
    );
    assert_eq!(html_again.body, "text/html");
    assert!(html_again.cache_status.contains("hit"));
    assert_eq!(up.calls("/vary"), 2);

    // no-store, private and Set-Cookie are never stored.
    for path in ["/nostore", "/private", "/cookie"] {
        let first = http.get(path, &[]).await;
        let second = http.get(path, &[]).await;
        assert_eq!(first.cache_status, "edge; fwd=miss", "{path}");
        assert_eq!(second.body, "n=2", "{path} went upstream again");
    }

    // A body over the cap streams through intact and is not stored.
    for _ in 0..2 {
        let big = http.get("/big", &[]).await;
        assert_eq!(big.body.len(), 4096);
    }
    assert_eq!(up.calls("/big"), 2);

    // 404 is a negative answer, on its own TTL.
    http.get("/missing", &[]).await;
    let again = http.get("/missing", &[]).await;
    assert_eq!(
        (again.status, again.body.as_str()),
        (StatusCode::NOT_FOUND, "n=1")
    );
    clock.advance(Duration::from_secs(5));
    assert_eq!(http.get("/missing", &[]).await.body, "n=2");

    assert!(handle.snapshot().hits >= 3);
}

#[tokio::test]
async fn credentialed_requests_bypass_by_default() {
    let clock = ManualClock::new();
    let (addr, up) = serve(builder(&clock).build().unwrap()).await;
    let http = Http::new(addr);
    let alice = http.get("/me", &[("authorization", "Bearer alice")]).await;
    let bob = http.get("/me", &[("authorization", "Bearer bob")]).await;
    let cookie = http.get("/me", &[("cookie", "sid=carol")]).await;
    assert_eq!(alice.body, "Bearer alice");
    assert_eq!(
        bob.body, "Bearer bob",
        "Alice's answer is never served to Bob"
    );
    assert_eq!(cookie.body, "");
    assert_eq!(bob.cache_status, "edge; fwd=bypass");
    assert_eq!(up.calls("/me"), 3);
}

#[tokio::test]
async fn credential_identity_gives_each_user_their_own_entries() {
    let clock = ManualClock::new();
    let layer = builder(&clock)
        .credential_identity(|h: &HeaderMap| {
            let token = h.get("authorization")?.to_str().ok()?;
            Some(token.strip_prefix("Bearer ")?.to_owned())
        })
        .build()
        .unwrap();
    let (addr, up) = serve(layer).await;
    let http = Http::new(addr);
    let alice = [("authorization", "Bearer alice")];
    let bob = [("authorization", "Bearer bob")];
    assert_eq!(http.get("/me", &alice).await.body, "Bearer alice");
    let alice_again = http.get("/me", &alice).await;
    assert_eq!(alice_again.body, "Bearer alice");
    assert!(alice_again.cache_status.contains("hit"));
    let b = http.get("/me", &bob).await;
    assert_eq!(b.body, "Bearer bob");
    assert!(b.cache_status.contains("fwd=miss"));
    assert_eq!(up.calls("/me"), 2);
    // Credentials the identity function does not recognise bypass.
    let odd = http.get("/me", &[("authorization", "Basic eA==")]).await;
    assert_eq!(odd.cache_status, "edge; fwd=bypass");
}

#[tokio::test]
async fn stale_if_error_serves_the_last_good_response() {
    let clock = ManualClock::new();
    let layer = builder(&clock)
        .stale_if_error(Duration::from_secs(60))
        .build()
        .unwrap();
    let (addr, up) = serve(layer).await;
    let http = Http::new(addr);
    assert_eq!(http.get("/flaky", &[]).await.body, "n=1");
    up.failing.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_secs(3));
    let stale = http.get("/flaky", &[]).await;
    assert_eq!((stale.status, stale.body.as_str()), (StatusCode::OK, "n=1"));
    assert_eq!(
        stale.cache_status,
        "edge; fwd=stale; ttl=-2; detail=stale-if-error"
    );
    assert_eq!(up.calls("/flaky"), 2);
    // Past the window the upstream's 503 goes through.
    clock.advance(Duration::from_secs(60));
    let down = http.get("/flaky", &[]).await;
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(down.cache_status, "edge; fwd=miss");
}

#[tokio::test]
async fn body_type_is_usable_directly() {
    // The cached body type works with any http-body consumer.
    let body = cache_layer::http::CachedBody::full("abc");
    let copy = body.clone();
    assert_eq!(copy.collect().await.unwrap().to_bytes(), "abc");
    let _ = Body::new(body);
}

#[tokio::test]
async fn responses_are_shared_between_instances_through_redis() {
    use cache_layer::backend::redis::RedisTier;
    use reliability_core::harness::RedisServer;
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = server.config().key_prefix("http");
    let mut instances = Vec::new();
    for _ in 0..2 {
        let tier = RedisTier::connect(&config).await.unwrap();
        let layer = HttpCacheLayer::builder()
            .name("edge")
            .ttl(Duration::from_secs(30))
            .l2(tier, Some(Duration::from_secs(1)))
            .build()
            .unwrap();
        instances.push(serve(layer).await);
    }
    let (a, up_a) = &instances[0];
    let (b, up_b) = &instances[1];
    // Both instances stand behind one name (they listen on different ports).
    let host = [("host", "api.example")];
    assert_eq!(Http::new(*a).get("/public", &host).await.body, "n=1");
    // Once the write-behind lands in Redis, B answers from L2 without its upstream.
    let probe = RedisTier::connect(&config).await.unwrap();
    let redis_key = probe.redis_key("GET http://api.example/public");
    let mut conn = config.connect().await.unwrap();
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&redis_key)
            .query_async(&mut conn)
            .await
            .unwrap();
        if ttl > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let answer = Http::new(*b).get("/public", &host).await;
    assert_eq!(answer.body, "n=1");
    assert!(
        answer.cache_status.starts_with("edge; hit; ttl=5"),
        "{}",
        answer.cache_status
    );
    assert_eq!(up_a.calls("/public"), 1);
    assert_eq!(up_b.calls("/public"), 0);

    // A POST through A invalidates B's copy too (L2 delete, then pub/sub to B's L1).
    assert_eq!(
        Http::new(*a).post("/public", &host).await.status,
        StatusCode::OK
    );
    let start = std::time::Instant::now();
    let after = loop {
        let answer = Http::new(*b).get("/public", &host).await;
        if !answer.cache_status.contains("hit") || start.elapsed() > Duration::from_secs(2) {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(after.cache_status, "edge; fwd=miss; stored");
    assert_eq!(up_b.calls("/public"), 1);
}

#[tokio::test]
async fn virtual_hosts_never_share_entries() {
    let clock = ManualClock::new();
    let (addr, up) = serve(builder(&clock).build().unwrap()).await;
    let http = Http::new(addr);
    let a = http.get("/host", &[("host", "a.example")]).await;
    let b = http.get("/host", &[("host", "b.example")]).await;
    assert_eq!(
        (a.body.as_str(), b.body.as_str()),
        ("a.example", "b.example"),
        "b.example is never served a.example's page"
    );
    assert_eq!(b.cache_status, "edge; fwd=miss; stored");
    // Host case and the default port do not make another host (RFC 9110 §4.2.3).
    let a_again = http.get("/host", &[("host", "A.Example:80")]).await;
    assert_eq!(a_again.body, "a.example");
    assert!(
        a_again.cache_status.contains("hit"),
        "{}",
        a_again.cache_status
    );
    let b_again = http.get("/host", &[("host", "b.example")]).await;
    assert_eq!(b_again.body, "b.example");
    assert!(
        b_again.cache_status.contains("hit"),
        "{}",
        b_again.cache_status
    );
    assert_eq!(up.calls("/host"), 2);
    // A Host that tries to smuggle a key separator bypasses instead.
    let odd = http.get("/host", &[("host", "a.example|accept=")]).await;
    assert_eq!(odd.cache_status, "edge; fwd=bypass");
}

#[tokio::test]
async fn successful_unsafe_requests_invalidate_their_uri() {
    // With Vary a URI has many entries (prefix invalidation); without, one per method.
    for vary in [true, false] {
        let clock = ManualClock::new();
        let mut b = HttpCacheLayer::builder()
            .name("edge")
            .ttl(Duration::from_secs(30))
            .clock(clock.shared());
        if vary {
            b = b.vary(["accept"]);
        }
        let (addr, up) = serve(b.build().unwrap()).await;
        let http = Http::new(addr);
        let html = [("accept", "text/html")];
        let hit = |a: &Answer| a.cache_status.contains("hit");
        let variants = if vary { 2 } else { 1 };

        assert_eq!(http.get("/item", &[]).await.body, "n=1");
        http.get("/item", &html).await;
        http.get("/item2", &[]).await;
        http.send(Method::HEAD, "/item", &[]).await;
        assert_eq!(up.calls("/item"), variants, "vary={vary}");
        assert!(hit(&http.get("/item", &html).await));
        assert!(hit(&http.send(Method::HEAD, "/item", &[]).await));

        // A POST to another URI, one answered 500, one to another host: /item stays.
        assert_eq!(http.post("/item2", &[]).await.status, StatusCode::OK);
        let failed = http.post("/item", &[("x-status", "500")]).await;
        assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
        http.post("/item", &[("host", "other.example")]).await;
        for headers in [&[][..], &html[..]] {
            let still = http.get("/item", headers).await;
            assert!(hit(&still), "vary={vary}: {}", still.cache_status);
        }
        assert_eq!(up.calls("/item"), variants);
        // The successful POST to /item2 did invalidate /item2.
        assert_eq!(http.get("/item2", &[]).await.body, "n=2");

        // A 2xx POST to /item: every GET variant and HEAD of /item goes upstream again,
        // and /item2 (whose key /item is a prefix of) is untouched.
        let post = http.post("/item", &[]).await;
        assert_eq!(
            (post.status, post.cache_status.as_str()),
            (StatusCode::OK, "edge; fwd=bypass")
        );
        let fresh = http.get("/item", &[]).await;
        assert_eq!(fresh.cache_status, "edge; fwd=miss; stored", "vary={vary}");
        assert_eq!(fresh.body, format!("n={}", variants + 1));
        if vary {
            assert!(!hit(&http.get("/item", &html).await));
        }
        assert!(!hit(&http.send(Method::HEAD, "/item", &[]).await));
        assert_eq!(up.calls_of("HEAD", "/item"), 2);
        let other = http.get("/item2", &[]).await;
        assert!(hit(&other), "vary={vary}: {}", other.cache_status);
        assert_eq!(other.body, "n=2");
    }
}

#[tokio::test]
async fn locations_and_other_unsafe_methods_invalidate() {
    let clock = ManualClock::new();
    let (addr, up) = serve(builder(&clock).build().unwrap()).await;
    let http = Http::new(addr);
    http.get("/item", &[]).await;
    http.get("/item2", &[]).await;

    // 201 Created with Location /item: that URI is invalidated too.
    let created = http
        .post("/items", &[("x-status", "201"), ("x-location", "/item")])
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(http.get("/item", &[]).await.body, "n=2");
    // Another origin's Location is left alone (RFC 9111 §4.4).
    let elsewhere = [("x-location", "http://other.example/item2")];
    http.send(Method::DELETE, "/items", &elsewhere).await;
    assert!(http.get("/item2", &[]).await.cache_status.contains("hit"));
    // PUT, PATCH, DELETE and unknown methods are unsafe; a 3xx is a success.
    let mut n = 1;
    for method in ["PUT", "PATCH", "DELETE", "PURGE"] {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        assert_eq!(
            http.send(m, "/item2", &[("x-status", "303")]).await.status,
            StatusCode::SEE_OTHER
        );
        n += 1;
        assert_eq!(
            http.get("/item2", &[]).await.body,
            format!("n={n}"),
            "{method}"
        );
    }
    assert_eq!(up.calls("/item2"), 5);
}

#[tokio::test]
async fn unsafe_requests_are_never_stored() {
    let clock = ManualClock::new();
    let (addr, up) = serve(builder(&clock).build().unwrap()).await;
    let http = Http::new(addr);
    for _ in 0..2 {
        let post = http.post("/item", &[]).await;
        assert_eq!(post.cache_status, "edge; fwd=bypass");
    }
    assert_eq!(up.calls_of("POST", "/item"), 2);
}

/// An upstream whose readiness fails while `down` is set.
#[derive(Clone, Default)]
struct Unready {
    down: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
}

impl tower::Service<http::Request<Body>> for Unready {
    type Response = http::Response<Full<Bytes>>;
    type Error = BoxError;
    type Future = std::future::Ready<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.down.load(Ordering::SeqCst) {
            return Poll::Ready(Err("overloaded".into()));
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<Body>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let resp = http::Response::builder()
            .header("cache-control", "max-age=60")
            .body(Full::new(Bytes::from_static(b"up")))
            .unwrap();
        std::future::ready(Ok(resp))
    }
}

#[tokio::test]
async fn a_readiness_error_is_a_502_without_calling_the_upstream() {
    let upstream = Unready::default();
    let clock = ManualClock::new();
    let svc = builder(&clock).build().unwrap().layer(upstream.clone());
    let send = |method: Method, path: &str| {
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        svc.clone().oneshot(req)
    };
    let cached = send(Method::GET, "/cached").await.unwrap();
    assert_eq!(cached.into_body().collect().await.unwrap().to_bytes(), "up");
    upstream.down.store(true, Ordering::SeqCst);
    // Misses (GET) and bypasses (POST) answer 502 with the readiness error.
    for (method, path) in [(Method::GET, "/miss"), (Method::POST, "/cached")] {
        let resp = send(method.clone(), path).await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY, "{method} {path}");
        let err = resp.extensions().get::<UpstreamError>().unwrap();
        assert_eq!(err.0.to_string(), "overloaded");
    }
    // Hits are still served: they need no upstream.
    let hit = send(Method::GET, "/cached").await.unwrap();
    assert_eq!(hit.status(), StatusCode::OK);
    assert_eq!(upstream.calls.load(Ordering::SeqCst), 1);
}
