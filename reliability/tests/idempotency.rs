//! The preset HTTP client never sends a non-idempotent request twice unless it says it may
//! be repeated, against a real axum server that answers 503 to the first call of each
//! request; and an unsafe request evicts the cached answers of its URI.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use bytes::Bytes;
use reliability::client::HttpClient;
use reliability::presets::{self, HttpReliableClient};
use reliability::retry::backoff::{Backoff, Jitter};
use std::sync::Mutex;
use tower::ServiceExt;

/// Per `METHOD path`: the `Idempotency-Key` of every call (empty when absent).
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<HashMap<String, Vec<String>>>>);

impl Seen {
    fn calls(&self, method: &str, path: &str) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .get(&format!("{method} {path}"))
            .cloned()
            .unwrap_or_default()
    }
}

/// 503 to the first call of each `METHOD path`, then 200 with a body naming the call.
async fn flaky_once(State(seen): State<Seen>, req: Request) -> (StatusCode, String) {
    let key = format!("{} {}", req.method(), req.uri().path());
    let idem = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let n = {
        let mut seen = seen.0.lock().unwrap();
        let calls = seen.entry(key.clone()).or_default();
        calls.push(idem);
        calls.len()
    };
    if n == 1 {
        (StatusCode::SERVICE_UNAVAILABLE, "try again".into())
    } else {
        (StatusCode::OK, format!("{key} #{n}"))
    }
}

async fn serve(seen: Seen) -> SocketAddr {
    let app = axum::Router::new().fallback(flaky_once).with_state(seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn client() -> HttpReliableClient {
    presets::cex("orders")
        .configure(|s| {
            // Real sockets, real time: a short backoff keeps the test fast.
            s.retry.backoff = Backoff::exponential(
                Duration::from_millis(1),
                Duration::from_millis(5),
                Jitter::Full,
            );
        })
        .http_client(HttpClient::new())
        .unwrap()
}

fn request(
    method: &str,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> http::Request<Bytes> {
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Bytes::from_static(b"{\"qty\":1}")).unwrap()
}

async fn send(client: &HttpReliableClient, req: http::Request<Bytes>) -> u16 {
    let res = tokio::time::timeout(Duration::from_secs(10), client.clone().oneshot(req))
        .await
        .expect("no hang")
        .expect("an answer");
    res.status().as_u16()
}

#[tokio::test]
async fn get_is_retried_post_is_not() {
    let seen = Seen::default();
    let addr = serve(seen.clone()).await;
    let client = client();

    assert_eq!(send(&client, request("GET", addr, "/book", &[])).await, 200);
    assert_eq!(seen.calls("GET", "/book").len(), 2);

    assert_eq!(
        send(&client, request("POST", addr, "/order", &[])).await,
        503
    );
    assert_eq!(seen.calls("POST", "/order").len(), 1, "a POST is sent once");

    assert_eq!(
        send(&client, request("PATCH", addr, "/order/1", &[])).await,
        503
    );
    assert_eq!(seen.calls("PATCH", "/order/1").len(), 1);

    assert_eq!(
        send(&client, request("PUT", addr, "/order/2", &[])).await,
        200
    );
    assert_eq!(seen.calls("PUT", "/order/2").len(), 2, "PUT is idempotent");
}

#[tokio::test]
async fn post_with_idempotency_key_is_retried_with_the_same_key() {
    let seen = Seen::default();
    let addr = serve(seen.clone()).await;
    let client = client();
    let req = request(
        "POST",
        addr,
        "/order",
        &[("idempotency-key", "8e03978e-40d5")],
    );
    assert_eq!(send(&client, req).await, 200);
    assert_eq!(
        seen.calls("POST", "/order"),
        vec!["8e03978e-40d5".to_owned(), "8e03978e-40d5".to_owned()]
    );
}

#[tokio::test]
async fn post_opted_in_per_request_is_retried() {
    let seen = Seen::default();
    let addr = serve(seen.clone()).await;
    let client = client();
    let mut req = request("POST", addr, "/replayable", &[]);
    req.extensions_mut()
        .insert(reliability::retry::http::RetryNonIdempotent);
    assert_eq!(send(&client, req).await, 200);
    assert_eq!(seen.calls("POST", "/replayable").len(), 2);
}

#[tokio::test]
async fn an_unsafe_request_evicts_the_cached_answer_of_its_uri() {
    let seen = Seen::default();
    let addr = serve(seen.clone()).await;
    let client = client();

    // The first GET is a 503 then a 200 (stored); the second is a hit.
    assert_eq!(send(&client, request("GET", addr, "/item", &[])).await, 200);
    assert_eq!(send(&client, request("GET", addr, "/item", &[])).await, 200);
    assert_eq!(seen.calls("GET", "/item").len(), 2);
    assert_eq!(client.handles().cache_hits(), 1);

    // A failed POST evicts nothing: the answer is still the stored one.
    assert_eq!(
        send(&client, request("POST", addr, "/item", &[])).await,
        503
    );
    assert_eq!(send(&client, request("GET", addr, "/item", &[])).await, 200);
    assert_eq!(seen.calls("GET", "/item").len(), 2);

    // A successful unsafe request to another URI evicts nothing either.
    let put = request("PUT", addr, "/item-2", &[]);
    assert_eq!(send(&client, put).await, 200);
    assert_eq!(send(&client, request("GET", addr, "/item", &[])).await, 200);
    assert_eq!(seen.calls("GET", "/item").len(), 2);

    // A successful PUT to the URI does: the next GET reaches the upstream.
    assert_eq!(send(&client, request("PUT", addr, "/item", &[])).await, 200);
    assert_eq!(send(&client, request("GET", addr, "/item", &[])).await, 200);
    assert_eq!(seen.calls("GET", "/item").len(), 3);
    // Unsafe requests are never answered from the cache.
    assert_eq!(seen.calls("PUT", "/item").len(), 2);
}
