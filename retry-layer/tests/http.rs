//! HTTP retries: `Retry-After`, idempotency, body buffering, budget marks; on paused time
//! with in-process services, and against a real axum server on loopback.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body::{Body, Frame};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use reliability_core::classify::HttpClassifier;
use retry_layer::backoff::Backoff;
use retry_layer::budget::{BudgetConfig, TokenBucketConfig};
use retry_layer::http::{HttpRetryLayer, Idempotent, RetryNonIdempotent};
use retry_layer::{ClassifierPolicy, RetryLayer, RetryStopped, StopReason};
use tokio::time::Instant;
use tower::{ServiceBuilder, ServiceExt, service_fn};

const MS: Duration = Duration::from_millis(1);

/// An in-process upstream answering `statuses` in turn (then 200), with optional headers
/// on the failures; it records when each call came and the body it carried.
#[derive(Clone, Default)]
struct Script {
    calls: Arc<AtomicU32>,
    log: Arc<Mutex<Vec<(Instant, Bytes)>>>,
}

impl Script {
    fn service(
        &self,
        statuses: &'static [u16],
        header: Option<(&'static str, String)>,
    ) -> impl tower::Service<
        Request<Full<Bytes>>,
        Response = Response<()>,
        Error = Infallible,
        Future: Send,
    > + Clone
    + Send {
        let this = self.clone();
        service_fn(move |req: Request<Full<Bytes>>| {
            let this = this.clone();
            let header = header.clone();
            async move {
                let n = this.calls.fetch_add(1, Ordering::SeqCst) as usize;
                let body = req.into_body().collect().await.unwrap().to_bytes();
                this.log.lock().unwrap().push((Instant::now(), body));
                let status = statuses.get(n).copied().unwrap_or(200);
                let mut res = Response::builder().status(status);
                if status != 200
                    && let Some((name, value)) = header
                {
                    res = res.header(name, value);
                }
                Ok::<_, Infallible>(res.body(()).unwrap())
            }
        })
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    fn gaps(&self) -> Vec<Duration> {
        let log = self.log.lock().unwrap();
        log.windows(2).map(|w| w[1].0 - w[0].0).collect()
    }
}

fn layer() -> HttpRetryLayer {
    HttpRetryLayer::builder()
        .backoff(Backoff::constant(10 * MS))
        .max_retry_after(Duration::from_secs(5))
        .build()
        .unwrap()
}

fn get() -> Request<Full<Bytes>> {
    Request::get("/book").body(Full::default()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn retry_after_delta_seconds_is_honoured() {
    let script = Script::default();
    let up = script.service(&[503], Some(("retry-after", "2".into())));
    let svc = ServiceBuilder::new().layer(layer()).service(up);
    let res = svc.oneshot(get()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(script.gaps(), [Duration::from_secs(2)]);
}

/// An IMF-fixdate `secs` seconds from now.
fn http_date_in(secs: u64) -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + secs;
    let (days, rem) = (t / 86_400, t % 86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{weekday}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        months[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[tokio::test(start_paused = true)]
async fn retry_after_http_date_is_honoured() {
    let script = Script::default();
    let up = script.service(&[503], Some(("retry-after", http_date_in(3))));
    let svc = ServiceBuilder::new().layer(layer()).service(up);
    svc.oneshot(get()).await.unwrap();
    let gap = script.gaps()[0];
    // Whole seconds on the wire: between 2 and 3 s from now.
    assert!(
        gap >= Duration::from_secs(2) && gap <= Duration::from_secs(3),
        "{gap:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn hostile_retry_after_values_are_clamped_or_ignored() {
    for (value, expected) in [
        ("99999999999", Duration::from_secs(5)),
        ("Fri, 31 Dec 9999 23:59:59 GMT", Duration::from_secs(5)),
        ("soon", 10 * MS),
        ("-3", 10 * MS),
        ("1e9", 10 * MS),
    ] {
        let script = Script::default();
        let up = script.service(&[503], Some(("retry-after", value.into())));
        let svc = ServiceBuilder::new().layer(layer()).service(up);
        svc.oneshot(get()).await.unwrap();
        assert_eq!(script.gaps(), [expected], "Retry-After: {value}");
    }
}

#[tokio::test(start_paused = true)]
async fn non_idempotent_methods_need_a_key_or_an_opt_in() {
    let post = || {
        Request::post("/orders")
            .body(Full::new(Bytes::from("buy")))
            .unwrap()
    };

    let script = Script::default();
    let svc = ServiceBuilder::new()
        .layer(layer())
        .service(script.service(&[503], None));
    let res = svc.oneshot(post()).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(script.calls(), 1, "POST is not retried");
    let stopped = res.extensions().get::<RetryStopped>().unwrap();
    assert_eq!(stopped.reason, StopReason::NotReplayable);

    let script = Script::default();
    let svc = ServiceBuilder::new()
        .layer(layer())
        .service(script.service(&[503], None));
    let mut keyed = post();
    keyed
        .headers_mut()
        .insert("idempotency-key", "8e03978e".parse().unwrap());
    assert_eq!(svc.oneshot(keyed).await.unwrap().status(), 200);
    assert_eq!(script.calls(), 2, "an Idempotency-Key makes POST retryable");
    let bodies: Vec<_> = script
        .log
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.1.clone())
        .collect();
    assert_eq!(
        bodies,
        [Bytes::from("buy"), Bytes::from("buy")],
        "same body twice"
    );

    let script = Script::default();
    let svc = ServiceBuilder::new()
        .layer(layer())
        .service(script.service(&[503], None));
    let mut marked = post();
    marked.extensions_mut().insert(RetryNonIdempotent);
    assert_eq!(svc.oneshot(marked).await.unwrap().status(), 200);
    assert_eq!(
        script.calls(),
        2,
        "the per-request opt-in makes POST retryable"
    );

    let script = Script::default();
    let svc = ServiceBuilder::new()
        .layer(layer())
        .service(script.service(&[503], None));
    let mut blank = post();
    blank
        .headers_mut()
        .insert("idempotency-key", "".parse().unwrap());
    assert_eq!(svc.oneshot(blank).await.unwrap().status(), 503);
    assert_eq!(script.calls(), 1, "an empty key identifies nothing");

    let script = Script::default();
    let opted_in = HttpRetryLayer::builder()
        .retry_non_idempotent(true)
        .backoff(Backoff::constant(MS))
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(opted_in)
        .service(script.service(&[503], None));
    let patch = Request::patch("/orders/1").body(Full::default()).unwrap();
    assert_eq!(svc.oneshot(patch).await.unwrap().status(), 200);
    assert_eq!(script.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn budget_exhaustion_marks_the_response() {
    let script = Script::default();
    let layer = HttpRetryLayer::builder()
        .backoff(Backoff::constant(MS))
        .budget(BudgetConfig::TokenBucket(TokenBucketConfig {
            capacity: 9,
            timeout_cost: 9,
            ..Default::default()
        }))
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(script.service(&[503, 503, 503, 503], None));
    let res = svc.oneshot(get()).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(script.calls(), 2, "one retry paid, the second refused");
    let stopped = res.extensions().get::<RetryStopped>().unwrap();
    assert_eq!(
        (stopped.attempts, stopped.reason),
        (2, StopReason::BudgetExhausted)
    );
    assert_eq!(handle.snapshot().budget_exhausted, 1);
}

/// A body of `n` chunks of `size` bytes with no length known in advance.
struct Chunks {
    left: usize,
    size: usize,
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        self.left -= 1;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; self.size])))))
    }
}

type Boxed = BoxBody<Bytes, Infallible>;

/// A real axum server on loopback: `/flaky` fails its first `failures` calls with 503 and
/// echoes the body length it received.
async fn serve(failures: u32) -> (String, Arc<AtomicU32>) {
    let hits = Arc::new(AtomicU32::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().route(
        "/flaky",
        axum::routing::any(move |body: Bytes| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                let status = if n < failures { 503 } else { 200 };
                (
                    StatusCode::from_u16(status).unwrap(),
                    body.len().to_string(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/flaky"), hits)
}

fn client() -> Client {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

async fn text(res: Response<hyper::body::Incoming>) -> String {
    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn real_server_small_body_is_replayed() {
    let (url, hits) = serve(2).await;
    let layer = HttpRetryLayer::builder()
        .backoff(Backoff::constant(MS))
        .max_body_bytes(1024)
        .build()
        .unwrap();
    let svc = ServiceBuilder::new().layer(layer).service(client());
    let body: Boxed = Chunks { left: 4, size: 100 }.boxed();
    let req = Request::put(&url).body(body).unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    assert_eq!(text(res).await, "400", "the whole body on the last attempt");
}

#[tokio::test]
async fn real_server_body_over_the_cap_is_sent_once_intact() {
    let (url, hits) = serve(1).await;
    let layer = HttpRetryLayer::builder()
        .backoff(Backoff::constant(MS))
        .max_body_bytes(1024)
        .build()
        .unwrap();
    let svc = ServiceBuilder::new().layer(layer.clone()).service(client());
    // Unknown length: read up to the cap, then sent as prefix + rest.
    let body: Boxed = Chunks {
        left: 10,
        size: 300,
    }
    .boxed();
    let res = svc
        .clone()
        .oneshot(Request::put(&url).body(body).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 503, "not retried");
    assert_eq!(
        res.extensions().get::<RetryStopped>().unwrap().reason,
        StopReason::NotReplayable
    );
    assert_eq!(text(res).await, "3000", "every byte arrived");
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // Known length over the cap: never read by the layer at all.
    let body: Boxed = Full::new(Bytes::from(vec![b'y'; 5000])).boxed();
    let res = svc
        .oneshot(Request::put(&url).body(body).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(text(res).await, "5000");
    assert_eq!(layer.handle().snapshot().retries, 0);
}

#[tokio::test]
async fn real_server_connection_refused_is_retried_then_returned() {
    // Bind then drop: nobody listens on this port any more.
    let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let layer = HttpRetryLayer::builder()
        .backoff(Backoff::constant(MS))
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = ServiceBuilder::new().layer(layer).service(client());
    let req = Request::get(format!("http://{addr}/"))
        .body(Boxed::default())
        .unwrap();
    let err = svc.oneshot(req).await.unwrap_err();
    assert!(err.to_string().contains("client error"), "{err}");
    assert_eq!(handle.snapshot().attempts, 3);
}

/// A real axum server on loopback that answers 503 to the first call of each distinct
/// request (method and path) and 200 after; it records the `Idempotency-Key` of every call.
#[derive(Clone, Default)]
struct FirstCallFails {
    keys: Arc<Mutex<HashMap<String, Vec<Option<String>>>>>,
}

impl FirstCallFails {
    /// Serves on 127.0.0.1:0; the base URL.
    async fn serve(&self) -> String {
        let keys = self.keys.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, _body: Bytes| {
                let keys = keys.clone();
                async move {
                    let key = headers
                        .get("idempotency-key")
                        .map(|v| v.to_str().unwrap().to_owned());
                    let mut keys = keys.lock().unwrap();
                    let calls = keys.entry(format!("{method} {}", uri.path())).or_default();
                    calls.push(key);
                    if calls.len() == 1 {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    }
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    /// The `Idempotency-Key` of each call of `method path`, in order.
    fn keys(&self, method: &str, path: &str) -> Vec<Option<String>> {
        let keys = self.keys.lock().unwrap();
        keys.get(&format!("{method} {path}"))
            .cloned()
            .unwrap_or_default()
    }

    fn calls(&self, method: &str, path: &str) -> usize {
        self.keys(method, path).len()
    }
}

/// How a test request asks to be retried.
#[derive(Clone, Copy)]
enum Ask {
    Nothing,
    Key(&'static str),
    OptIn,
}

fn request<B>(method: Method, url: String, ask: Ask, body: B) -> Request<B> {
    let mut req = Request::builder().method(method).uri(url);
    if let Ask::Key(key) = ask {
        req = req.header("idempotency-key", key);
    }
    let mut req = req.body(body).unwrap();
    if let Ask::OptIn = ask {
        req.extensions_mut().insert(RetryNonIdempotent);
    }
    req
}

#[tokio::test]
async fn real_server_http_layer_retries_only_what_may_be_replayed() {
    let upstream = FirstCallFails::default();
    let base = upstream.serve().await;
    let layer = HttpRetryLayer::builder()
        .backoff(Backoff::constant(MS))
        .build()
        .unwrap();
    let svc = ServiceBuilder::new().layer(layer).service(client());
    let send = |method: Method, path: &str, ask: Ask| {
        let req = request(method, format!("{base}{path}"), ask, Boxed::default());
        svc.clone().oneshot(req)
    };

    let res = send(Method::GET, "/get", Ask::Nothing).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(upstream.calls("GET", "/get"), 2, "GET is retried");

    let res = send(Method::POST, "/post", Ask::Nothing).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(upstream.calls("POST", "/post"), 1, "POST is sent once");
    assert_eq!(
        res.extensions().get::<RetryStopped>().unwrap().reason,
        StopReason::NotReplayable
    );

    let res = send(Method::POST, "/keyed", Ask::Key("k1")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        upstream.keys("POST", "/keyed"),
        [Some("k1".to_owned()), Some("k1".to_owned())],
        "a keyed POST is retried, with the same key on every attempt"
    );

    let res = send(Method::POST, "/opted-in", Ask::OptIn).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        upstream.calls("POST", "/opted-in"),
        2,
        "an opted-in POST is retried"
    );
}

type Client =
    hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Boxed>;

/// The hyper client behind a map from `Request<Bytes>` to its body type.
type BytesClient = tower::util::MapRequest<Client, fn(Request<Bytes>) -> Request<Boxed>>;

/// The facade's way: a whole `Request<Bytes>`, cloned for each attempt by `retry`'s policy.
fn buffered<P>(retry: RetryLayer<P>) -> retry_layer::Retry<BytesClient, P> {
    let to_body: fn(Request<Bytes>) -> Request<Boxed> = |req| req.map(|b| Full::new(b).boxed());
    ServiceBuilder::new()
        .layer(retry)
        .map_request(to_body)
        .service(client())
}

#[tokio::test]
async fn real_server_buffered_requests_follow_the_same_rule() {
    let upstream = FirstCallFails::default();
    let base = upstream.serve().await;
    let guarded = buffered(
        RetryLayer::builder()
            .policy(Idempotent::new(
                ClassifierPolicy::new(HttpClassifier::new()),
            ))
            .backoff(Backoff::constant(MS))
            .build()
            .unwrap(),
    );
    let send = |method: Method, path: &str, ask: Ask| {
        let req = request(method, format!("{base}{path}"), ask, Bytes::from("order"));
        guarded.clone().oneshot(req)
    };

    let res = send(Method::GET, "/get", Ask::Nothing).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(upstream.calls("GET", "/get"), 2, "GET is retried");

    let res = send(Method::POST, "/post", Ask::Nothing).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(upstream.calls("POST", "/post"), 1, "POST is sent once");

    let res = send(Method::POST, "/keyed", Ask::Key("k1")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        upstream.keys("POST", "/keyed"),
        [Some("k1".to_owned()), Some("k1".to_owned())],
        "a keyed POST is retried, with the same key on every attempt"
    );

    let res = send(Method::POST, "/opted-in", Ask::OptIn).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        upstream.calls("POST", "/opted-in"),
        2,
        "an opted-in POST is retried"
    );

    // Why the wrapper exists: the plain policy clones any request, POST included.
    let unguarded = buffered(
        RetryLayer::builder()
            .policy(ClassifierPolicy::new(HttpClassifier::new()))
            .backoff(Backoff::constant(MS))
            .build()
            .unwrap(),
    );
    let req = request(
        Method::POST,
        format!("{base}/unguarded"),
        Ask::Nothing,
        Bytes::from("order"),
    );
    assert_eq!(unguarded.oneshot(req).await.unwrap().status(), 200);
    assert_eq!(upstream.calls("POST", "/unguarded"), 2);
}
