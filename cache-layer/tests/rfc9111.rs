//! The RFC 9111 mode through a real axum server on loopback, time on an injected clock:
//! revalidation with validators and 304s, request directives, Vary, roles, HEAD, unsafe
//! methods, RFC 5861, and malformed freshness.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use cache_layer::http::{CacheRole, HttpCacheLayer};
use common::client::Http;
use parking_lot::Mutex;
use reliability_core::clock::{Clock, ManualClock};

/// An origin whose answers each test scripts by path, counting what it sent.
#[derive(Clone)]
struct Origin {
    clock: ManualClock,
    /// Per path: full answers (anything but 304), and 304s.
    sent: Arc<Mutex<HashMap<String, (u64, u64)>>>,
    /// Per path: the `If-None-Match` of the last request.
    last_inm: Arc<Mutex<HashMap<String, String>>>,
    /// Whether `/flaky` answers 503.
    failing: Arc<Mutex<bool>>,
    /// What `/slow` waits for before it answers.
    gate: Arc<tokio::sync::Semaphore>,
    /// Requests that reached `/slow`.
    arrived: Arc<std::sync::atomic::AtomicU64>,
}

impl Origin {
    fn full(&self, path: &str) -> u64 {
        self.sent.lock().get(path).map_or(0, |c| c.0)
    }

    fn not_modified(&self, path: &str) -> u64 {
        self.sent.lock().get(path).map_or(0, |c| c.1)
    }

    fn inm(&self, path: &str) -> String {
        self.last_inm.lock().get(path).cloned().unwrap_or_default()
    }

    async fn handle(self, req: Request) -> Response {
        // Nothing of the request is held across the awaits below.
        let (path, method, inm, accept_encoding) = {
            let header = |name: &str| common::client::header_of(req.headers(), name);
            (
                req.uri().path().to_owned(),
                req.method().clone(),
                header("if-none-match"),
                header("accept-encoding"),
            )
        };
        drop(req);
        self.last_inm.lock().insert(path.clone(), inm.clone());
        let date = httpdate::fmt_http_date(self.clock.wall());
        let n = self.full(&path) + 1;
        if method == Method::POST {
            // Not counted: the counters are of reads.
            return "written".into_response();
        }
        let mut resp = match (method, path.as_str()) {
            (_, "/etag") if inm == "\"v1\"" => {
                // The resource has not changed; its metadata has.
                let version = self.not_modified(&path) + 2;
                (
                    StatusCode::NOT_MODIFIED,
                    [
                        ("cache-control", "max-age=1".to_owned()),
                        ("etag", "\"v1\"".to_owned()),
                        ("x-version", version.to_string()),
                    ],
                )
                    .into_response()
            }
            (_, "/etag") => (
                [
                    ("cache-control", "max-age=1"),
                    ("etag", "\"v1\""),
                    ("x-version", "1"),
                ],
                "hello",
            )
                .into_response(),
            (_, "/slow") => {
                self.arrived
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _pass = self.gate.acquire().await.unwrap();
                ([("cache-control", "max-age=60")], format!("n={n}")).into_response()
            }
            (_, "/cookie") => (
                [
                    ("cache-control", "max-age=60"),
                    ("set-cookie", "sid=secret"),
                ],
                format!("n={n}"),
            )
                .into_response(),
            (_, "/obs-text") => {
                let mut r = format!("n={n}").into_response();
                let cc =
                    http::HeaderValue::from_bytes(b"private, max-age=600, x=\"\xe9\"").unwrap();
                r.headers_mut().insert("cache-control", cc);
                r.headers_mut()
                    .append("cache-control", "max-age=600".parse().unwrap());
                r
            }
            (_, "/unsolicited-304") => StatusCode::NOT_MODIFIED.into_response(),
            (_, "/fresh") => ([("cache-control", "max-age=60")], format!("n={n}")).into_response(),
            (_, "/private") => {
                ([("cache-control", "private, max-age=60")], format!("n={n}")).into_response()
            }
            (_, "/vary") => (
                [("cache-control", "max-age=60"), ("vary", "Accept-Encoding")],
                format!("{accept_encoding}#{n}"),
            )
                .into_response(),
            (_, "/quoted-dup") => (
                [(
                    "cache-control",
                    "max-age=\"5\", max-age=99999999999999999999",
                )],
                format!("n={n}"),
            )
                .into_response(),
            (_, "/overflow") => (
                [("cache-control", "max-age=99999999999999999999999999")],
                format!("n={n}"),
            )
                .into_response(),
            (_, "/two-expires") => {
                let later = httpdate::fmt_http_date(self.clock.wall() + Duration::from_secs(600));
                let mut r = format!("n={n}").into_response();
                r.headers_mut().append("expires", later.parse().unwrap());
                r.headers_mut().append("expires", later.parse().unwrap());
                r
            }
            (_, "/huge-vary") => {
                let names = (0..40)
                    .map(|i| format!("x-h{i}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                (
                    [("cache-control", "max-age=60".to_owned()), ("vary", names)],
                    format!("n={n}"),
                )
                    .into_response()
            }
            (_, "/swr") => (
                [("cache-control", "max-age=1, stale-while-revalidate=30")],
                format!("n={n}"),
            )
                .into_response(),
            (_, "/flaky") if *self.failing.lock() => {
                (StatusCode::SERVICE_UNAVAILABLE, "down").into_response()
            }
            (_, "/flaky") => (
                [("cache-control", "max-age=1, stale-if-error=60")],
                format!("n={n}"),
            )
                .into_response(),
            (_, "/revalidate") if *self.failing.lock() => {
                (StatusCode::SERVICE_UNAVAILABLE, "down").into_response()
            }
            (_, "/revalidate") => (
                [(
                    "cache-control",
                    "max-age=1, must-revalidate, stale-if-error=60",
                )],
                format!("n={n}"),
            )
                .into_response(),
            _ => StatusCode::NOT_FOUND.into_response(),
        };
        if !resp.headers().contains_key("date") {
            resp.headers_mut().insert("date", date.parse().unwrap());
        }
        let mut sent = self.sent.lock();
        let counts = sent.entry(path).or_default();
        if resp.status() == StatusCode::NOT_MODIFIED {
            counts.1 += 1;
        } else {
            counts.0 += 1;
        }
        resp
    }
}

struct Setup {
    http: Http,
    origin: Origin,
    clock: ManualClock,
    handle: cache_layer::CacheHandle<cache_layer::http::CachedResponse>,
}

/// The origin behind a cache of `role` (named `edge`), served on loopback.
async fn setup(role: CacheRole) -> Setup {
    setup_with(role, |b| b).await
}

async fn setup_with(
    role: CacheRole,
    customize: impl FnOnce(
        cache_layer::http::HttpCacheLayerBuilder,
    ) -> cache_layer::http::HttpCacheLayerBuilder,
) -> Setup {
    let clock = ManualClock::new();
    let layer = customize(
        HttpCacheLayer::builder()
            .name("edge")
            .clock(clock.shared())
            .rfc9111(role),
    )
    .build()
    .unwrap();
    let handle = layer.handle();
    let origin = Origin {
        clock: clock.clone(),
        sent: Arc::default(),
        last_inm: Arc::default(),
        failing: Arc::default(),
        gate: Arc::new(tokio::sync::Semaphore::new(0)),
        arrived: Arc::default(),
    };
    let handler = origin.clone();
    let app = Router::new()
        .fallback(move |req: Request| handler.clone().handle(req))
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Setup {
        http: Http::new(addr),
        origin,
        clock,
        handle,
    }
}

#[tokio::test]
async fn a_stale_entry_is_revalidated_with_its_etag_and_a_304_updates_it() {
    let s = setup(CacheRole::Shared).await;
    let first = s.http.get("/etag", &[]).await;
    assert_eq!(
        (first.status, first.body.as_str()),
        (StatusCode::OK, "hello")
    );
    assert_eq!(first.cache_status, "edge; fwd=uri-miss; stored");
    let hit = s.http.get("/etag", &[]).await;
    assert_eq!(hit.body, "hello");
    assert_eq!(hit.header("age"), "0");
    assert!(
        hit.cache_status.starts_with("edge; hit"),
        "{}",
        hit.cache_status
    );

    s.clock.advance(Duration::from_secs(2));
    let revalidated = s.http.get("/etag", &[]).await;
    assert_eq!(
        s.origin.inm("/etag"),
        "\"v1\"",
        "asked with the stored ETag"
    );
    assert_eq!(
        revalidated.status,
        StatusCode::OK,
        "the caller asked unconditionally"
    );
    assert_eq!(revalidated.body, "hello", "the stored body");
    assert_eq!(revalidated.header("x-version"), "2", "the 304's headers");
    // ttl: what is left of max-age=1 after the apparent age (Date has whole seconds).
    assert!(
        revalidated
            .cache_status
            .starts_with("edge; fwd=stale; fwd-status=304; stored; ttl="),
        "{}",
        revalidated.cache_status
    );
    // Freshened: served from the store again, with the new headers.
    let again = s.http.get("/etag", &[]).await;
    assert!(
        again.cache_status.starts_with("edge; hit"),
        "{}",
        again.cache_status
    );
    assert_eq!(again.header("x-version"), "2");
    assert_eq!(s.origin.full("/etag"), 1, "one full transfer");
    assert_eq!(s.origin.not_modified("/etag"), 1);
}

#[tokio::test]
async fn the_callers_own_matching_etag_gets_a_304_from_the_store() {
    let s = setup(CacheRole::Shared).await;
    s.http.get("/etag", &[]).await;
    let a = s
        .http
        .get("/etag", &[("if-none-match", "W/\"v0\", \"v1\"")])
        .await;
    assert_eq!(a.status, StatusCode::NOT_MODIFIED);
    assert_eq!((a.header("etag").as_str(), a.body.as_str()), ("\"v1\"", ""));
    let b = s.http.get("/etag", &[("if-none-match", "\"other\"")]).await;
    assert_eq!((b.status, b.body.as_str()), (StatusCode::OK, "hello"));
    assert_eq!(s.origin.full("/etag") + s.origin.not_modified("/etag"), 1);
}

#[tokio::test]
async fn a_304_to_an_unconditional_request_is_passed_on_and_not_stored() {
    let s = setup(CacheRole::Shared).await;
    for _ in 0..2 {
        let a = s.http.get("/unsolicited-304", &[]).await;
        assert_eq!(a.status, StatusCode::NOT_MODIFIED);
    }
    assert_eq!(
        s.origin.not_modified("/unsolicited-304"),
        2,
        "nothing was stored"
    );
}

#[tokio::test]
async fn request_directives_are_honoured() {
    let s = setup(CacheRole::Shared).await;
    let none = s
        .http
        .get("/fresh", &[("cache-control", "only-if-cached")])
        .await;
    assert_eq!(none.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        s.origin.full("/fresh"),
        0,
        "only-if-cached never goes upstream"
    );
    s.http.get("/fresh", &[]).await;
    let cached = s
        .http
        .get("/fresh", &[("cache-control", "only-if-cached")])
        .await;
    assert_eq!(cached.body, "n=1");

    s.clock.advance(Duration::from_secs(30));
    let forced = s.http.get("/fresh", &[("cache-control", "no-cache")]).await;
    assert_eq!(forced.body, "n=2", "no-cache goes upstream");
    assert!(
        forced.cache_status.contains("fwd=request"),
        "{}",
        forced.cache_status
    );
    s.clock.advance(Duration::from_secs(30));
    let young = s
        .http
        .get("/fresh", &[("cache-control", "max-age=10")])
        .await;
    assert_eq!(young.body, "n=3", "older than the request's max-age");
    let fresh_enough = s
        .http
        .get("/fresh", &[("cache-control", "min-fresh=70")])
        .await;
    assert_eq!(fresh_enough.body, "n=4", "not fresh for 70 s more");
    s.clock.advance(Duration::from_secs(65));
    let stale_ok = s
        .http
        .get("/fresh", &[("cache-control", "max-stale=10")])
        .await;
    assert_eq!(stale_ok.body, "n=4", "5 s stale is within max-stale");
    assert!(stale_ok.cache_status.contains("detail=max-stale"));
    let pragma = s.http.get("/fresh", &[("pragma", "no-cache")]).await;
    assert_eq!(pragma.body, "n=5");
}

#[tokio::test]
async fn a_shared_cache_never_stores_private_answers_and_a_private_one_does() {
    let shared = setup(CacheRole::Shared).await;
    shared.http.get("/private", &[]).await;
    assert_eq!(shared.http.get("/private", &[]).await.body, "n=2");
    let private = setup(CacheRole::Private).await;
    private.http.get("/private", &[]).await;
    assert_eq!(private.http.get("/private", &[]).await.body, "n=1");
}

#[tokio::test]
async fn vary_keeps_variants_apart_and_compares_normalised_values() {
    let s = setup(CacheRole::Shared).await;
    let gzip = s
        .http
        .get("/vary", &[("accept-encoding", "gzip, br")])
        .await;
    let none = s.http.get("/vary", &[]).await;
    let same = s.http.get("/vary", &[("accept-encoding", "GZIP,br")]).await;
    let two_lines = s
        .http
        .get(
            "/vary",
            &[("accept-encoding", "gzip"), ("accept-encoding", "br")],
        )
        .await;
    let absent_again = s.http.get("/vary", &[]).await;
    assert_eq!(gzip.body, "gzip, br#1");
    assert_eq!(none.body, "#2");
    assert!(
        none.cache_status.contains("fwd=vary-miss"),
        "{}",
        none.cache_status
    );
    assert_eq!(same.body, "gzip, br#1");
    assert_eq!(two_lines.body, "gzip, br#1");
    assert_eq!(absent_again.body, "#2");
    assert_eq!(s.origin.full("/vary"), 2);
}

#[tokio::test]
async fn head_is_answered_from_a_stored_get_and_an_unsafe_method_invalidates() {
    let s = setup(CacheRole::Shared).await;
    s.http.get("/fresh", &[]).await;
    let head = s.http.send(Method::HEAD, "/fresh", &[]).await;
    assert_eq!((head.status, head.body.as_str()), (StatusCode::OK, ""));
    assert!(
        head.cache_status.starts_with("edge; hit"),
        "{}",
        head.cache_status
    );
    let post = s.http.post("/fresh", &[]).await;
    assert_eq!(post.cache_status, "edge; fwd=method");
    assert_eq!(
        s.http.get("/fresh", &[]).await.body,
        "n=2",
        "invalidated by the POST"
    );
}

#[tokio::test]
async fn stale_while_revalidate_serves_at_once_and_refreshes_behind() {
    let s = setup(CacheRole::Shared).await;
    s.http.get("/swr", &[]).await;
    s.clock.advance(Duration::from_secs(5));
    let stale = s.http.get("/swr", &[]).await;
    assert_eq!(stale.body, "n=1");
    assert!(stale.cache_status.contains("detail=stale-while-revalidate"));
    // The refresh runs behind: wait for the origin to see it, then for the store.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let a = s.http.get("/swr", &[]).await;
        if a.body == "n=2" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no background refresh"
        );
        tokio::task::yield_now().await;
    }
    assert_eq!(s.origin.full("/swr"), 2, "one refresh");
}

#[tokio::test]
async fn stale_if_error_comes_from_the_response_and_must_revalidate_forbids_it() {
    let s = setup(CacheRole::Shared).await;
    s.http.get("/flaky", &[]).await;
    s.http.get("/revalidate", &[]).await;
    *s.origin.failing.lock() = true;
    s.clock.advance(Duration::from_secs(5));
    let served = s.http.get("/flaky", &[]).await;
    assert_eq!(
        (served.status, served.body.as_str()),
        (StatusCode::OK, "n=1")
    );
    assert!(
        served.cache_status.contains("detail=stale-if-error"),
        "{}",
        served.cache_status
    );
    // must-revalidate: the failure goes to the caller, never the stale copy.
    let refused = s.http.get("/revalidate", &[]).await;
    assert_eq!(
        (refused.status, refused.body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "down")
    );
}

#[tokio::test]
async fn malformed_freshness_follows_the_rfc_and_never_panics() {
    let s = setup(CacheRole::Shared).await;
    // max-age="5" (quoted, read) wins over the later duplicate: fresh for 5 s.
    s.http.get("/quoted-dup", &[]).await;
    s.clock.advance(Duration::from_secs(4));
    assert_eq!(s.http.get("/quoted-dup", &[]).await.body, "n=1");
    s.clock.advance(Duration::from_secs(2));
    assert_eq!(s.http.get("/quoted-dup", &[]).await.body, "n=2");
    // An overflowing max-age is 2^31 s, not a wrap-around.
    s.http.get("/overflow", &[]).await;
    s.clock.advance(Duration::from_secs(300 * 24 * 3600));
    assert_eq!(s.http.get("/overflow", &[]).await.body, "n=1");
    // Two Expires fields: already expired, and with no validator not kept at all.
    s.http.get("/two-expires", &[]).await;
    assert_eq!(s.http.get("/two-expires", &[]).await.body, "n=2");
    // A Vary list longer than any real one: not stored.
    s.http.get("/huge-vary", &[]).await;
    assert_eq!(s.http.get("/huge-vary", &[]).await.body, "n=2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_of_one_uri_make_one_upstream_call() {
    let s = Arc::new(setup(CacheRole::Shared).await);
    let callers: Vec<_> = (0..5)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.http.get("/slow", &[]).await })
        })
        .collect();
    // Release the origin once the four followers wait for the leader's call.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s.handle.stats().coalesced < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "the misses were not collapsed"
        );
        tokio::task::yield_now().await;
    }
    s.origin.gate.add_permits(5);
    let mut collapsed = 0;
    for caller in callers {
        let a = caller.await.unwrap();
        assert_eq!(a.body, "n=1");
        collapsed += usize::from(a.cache_status.contains("collapsed"));
    }
    assert_eq!(collapsed, 4, "every follower says it was collapsed");
    assert_eq!(s.origin.full("/slow"), 1);
}

#[tokio::test]
async fn a_shared_cache_stores_cookie_setting_answers_only_when_told_to() {
    let s = setup(CacheRole::Shared).await;
    s.http.get("/cookie", &[]).await;
    assert_eq!(
        s.http.get("/cookie", &[]).await.body,
        "n=2",
        "one user's cookie is not shared"
    );
    let opted = setup_with(CacheRole::Shared, |b| b.store_set_cookie()).await;
    opted.http.get("/cookie", &[]).await;
    assert_eq!(opted.http.get("/cookie", &[]).await.body, "n=1");
}

#[tokio::test]
async fn an_unreadable_cache_control_field_is_taken_to_forbid_storing() {
    let s = setup(CacheRole::Shared).await;
    s.http.get("/obs-text", &[]).await;
    assert_eq!(s.http.get("/obs-text", &[]).await.body, "n=2");
}

#[tokio::test]
async fn a_header_named_by_connection_cannot_choose_the_variant() {
    let s = setup(CacheRole::Shared).await;
    // The upstream never sees Accept-Encoding: its answer is the one for no encoding.
    let poisoned = s
        .http
        .get(
            "/vary",
            &[
                ("accept-encoding", "gzip"),
                ("connection", "accept-encoding"),
            ],
        )
        .await;
    assert_eq!(poisoned.body, "#1");
    let gzip = s.http.get("/vary", &[("accept-encoding", "gzip")]).await;
    assert_eq!(
        gzip.body, "gzip#2",
        "not the answer stored for another variant"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_overtaken_by_an_invalidation_is_not_stored() {
    let s = Arc::new(setup(CacheRole::Shared).await);
    let reader = {
        let s = s.clone();
        tokio::spawn(async move { s.http.get("/slow", &[]).await })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s.origin.arrived.load(std::sync::atomic::Ordering::SeqCst) < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the read never reached the origin"
        );
        tokio::task::yield_now().await;
    }
    // A write to the URI succeeds while the read is in flight.
    assert_eq!(s.http.post("/slow", &[]).await.status, StatusCode::OK);
    s.origin.gate.add_permits(2);
    assert_eq!(reader.await.unwrap().body, "n=1");
    assert_eq!(
        s.http.get("/slow", &[]).await.body,
        "n=2",
        "the older answer was not kept"
    );
}
