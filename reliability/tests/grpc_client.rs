//! The one-line gRPC client builder against a real tonic server with injected faults:
//! retries of UNAVAILABLE, the breaker opening and failing fast, the SLA status during an
//! outage and after recovery, and attempt timeouts as DEADLINE_EXCEEDED.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use reliability::config::{SourceSettings, StatusWindow, WindowConfig};
use reliability::core::clock::ManualClock;
use reliability::core::health::{BreakerState, HealthStatus};
use reliability::grpc::GrpcReliableClient;
use reliability::retry::backoff::{Backoff, Jitter};
use reliability::{Error, presets};
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;
use tower::{BoxError, Service};

#[derive(Clone, PartialEq, prost::Message)]
struct QuoteRequest {
    #[prost(string, tag = "1")]
    pair: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct QuoteReply {
    #[prost(string, tag = "1")]
    pair: String,
    #[prost(uint64, tag = "2")]
    serial: u64,
}

const GET_QUOTE: &str = "/quotes.Quotes/GetQuote";

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The server's faults, switched by the test.
#[derive(Clone, Default)]
struct Quotes {
    down: Arc<AtomicBool>,
    fail_next: Arc<AtomicU32>,
    slow: Arc<AtomicBool>,
    /// Failures ask the client not to retry (`grpc-retry-pushback-ms: -1`).
    no_retry: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
    /// The first call (serial 0) takes five seconds.
    slow_first: Arc<AtomicBool>,
    /// Calls whose handler was dropped before it answered (the client gave up on them).
    cancelled: Arc<AtomicU64>,
    /// Calls that ran to their answer.
    answered: Arc<AtomicU64>,
    /// The `grpc-timeout` each call arrived with, in order.
    timeouts: Arc<std::sync::Mutex<Vec<Option<String>>>>,
}

/// Counts a handler dropped before it answered.
struct Cancelled(Arc<AtomicU64>);

impl Drop for Cancelled {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl NamedService for Quotes {
    const NAME: &'static str = "quotes.Quotes";
}

impl tonic::server::UnaryService<QuoteRequest> for Quotes {
    type Response = QuoteReply;
    type Future = BoxFuture<Result<tonic::Response<QuoteReply>, Status>>;

    fn call(&mut self, request: tonic::Request<QuoteRequest>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let serial = this.calls.fetch_add(1, Ordering::SeqCst);
            let transient = this
                .fail_next
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if transient || this.down.load(Ordering::SeqCst) {
                let mut status = Status::unavailable("down");
                if this.no_retry.load(Ordering::SeqCst) {
                    status
                        .metadata_mut()
                        .insert("grpc-retry-pushback-ms", "-1".parse().unwrap());
                }
                return Err(status);
            }
            if this.slow.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            let guard = Cancelled(this.cancelled.clone());
            if serial == 0 && this.slow_first.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            std::mem::forget(guard);
            this.answered.fetch_add(1, Ordering::SeqCst);
            let pair = request.into_inner().pair;
            Ok(tonic::Response::new(QuoteReply { pair, serial }))
        })
    }
}

impl Service<http::Request<Body>> for Quotes {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let this = self.clone();
        let timeout = request
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        this.timeouts.lock().unwrap().push(timeout);
        Box::pin(async move {
            if request.uri().path() != GET_QUOTE {
                return Ok(Status::unimplemented("unknown method").into_http());
            }
            let mut grpc =
                tonic::server::Grpc::new(ProstCodec::<QuoteReply, QuoteRequest>::default());
            Ok(grpc.unary(this, request).await)
        })
    }
}

async fn serve(quotes: Quotes) -> SocketAddr {
    let incoming = TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = incoming.local_addr().unwrap();
    let router = Server::builder().add_service(quotes);
    tokio::spawn(async move { router.serve_with_incoming(incoming).await.unwrap() });
    addr
}

/// The DEX preset with short retries; the breaker's open wait and the SLA's one-second
/// time window follow `clock`, so an outage and its recovery fit in a test.
async fn client(addr: SocketAddr, clock: &ManualClock) -> GrpcReliableClient {
    client_with(addr, clock, |_| {}).await
}

/// [`client`] with more overrides.
async fn client_with(
    addr: SocketAddr,
    clock: &ManualClock,
    more: impl FnOnce(&mut SourceSettings),
) -> GrpcReliableClient {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    presets::dex("quotes")
        .configure(|s| {
            s.breaker.consecutive_failures = Some(3);
            s.breaker.open_wait = Duration::from_secs(5);
            s.breaker.success_threshold = 1;
            s.breaker.half_open_probes = 1;
            s.retry.max_attempts = 3;
            s.retry.backoff = Backoff::exponential(
                Duration::from_millis(1),
                Duration::from_millis(5),
                Jitter::Decorrelated,
            );
            // 10,000 a second, 1,000 at once.
            s.rate_limit.window = WindowConfig::new(1_000, Duration::from_millis(100));
            s.attempt_timeout = Duration::from_millis(200);
            s.sla.time_window = Duration::from_secs(1);
            s.sla.time_interval = Duration::from_millis(50);
            s.sla.status_window = StatusWindow::Time;
            s.sla.thresholds.max_consecutive_failures = 3;
            more(s);
        })
        .seed(7)
        .clock(clock.shared())
        .grpc_client(channel)
        .unwrap()
}

async fn get_quote(client: &GrpcReliableClient, pair: &str) -> Result<QuoteReply, Status> {
    let mut grpc = tonic::client::Grpc::new(client.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    grpc.unary(
        tonic::Request::new(QuoteRequest { pair: pair.into() }),
        http::uri::PathAndQuery::from_static(GET_QUOTE),
        ProstCodec::<QuoteRequest, QuoteReply>::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn calls_succeed_and_transient_unavailable_is_retried() {
    let quotes = Quotes::default();
    let clock = ManualClock::new();
    let client = client(serve(quotes.clone()).await, &clock).await;

    let reply = get_quote(&client, "ETH-USDC").await.unwrap();
    assert_eq!(reply.pair, "ETH-USDC");
    assert_eq!(quotes.calls.load(Ordering::SeqCst), 1);

    quotes.fail_next.store(2, Ordering::SeqCst);
    let reply = get_quote(&client, "SOL-USDC").await.unwrap();
    assert_eq!(reply.pair, "SOL-USDC");
    assert_eq!(
        reply.serial, 3,
        "two UNAVAILABLE answers, then the third attempt"
    );
    assert_eq!(quotes.calls.load(Ordering::SeqCst), 4);

    let handles = client.handles();
    assert_eq!(handles.retry().snapshot().retries, 2);
    assert!(handles.cache().is_none());
    assert_eq!(handles.breaker_trips(), 0);
    assert_eq!(handles.sla().report().totals.failures, 2);
}

#[tokio::test]
async fn outage_opens_the_breaker_then_the_client_recovers() {
    let quotes = Quotes::default();
    let clock = ManualClock::new();
    let client = client(serve(quotes.clone()).await, &clock).await;
    get_quote(&client, "ETH-USDC").await.unwrap();

    quotes.down.store(true, Ordering::SeqCst);
    let mut last = None;
    for _ in 0..5 {
        let status = get_quote(&client, "ETH-USDC").await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        last = Some(status);
        if client.handles().breaker().unwrap().snapshot().state == BreakerState::Open {
            break;
        }
    }
    let handles = client.handles();
    assert_eq!(
        handles.breaker().unwrap().snapshot().state,
        BreakerState::Open
    );
    assert_eq!(handles.breaker_trips(), 1);
    assert_ne!(handles.sla().status(), HealthStatus::Healthy);
    assert!(last.is_some());

    // Open: the call fails at once, locally, and is not retried.
    let seen = quotes.calls.load(Ordering::SeqCst);
    let retries = handles.retry().snapshot().retries;
    let status = get_quote(&client, "ETH-USDC").await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(quotes.calls.load(Ordering::SeqCst), seen, "no call left");
    assert_eq!(handles.retry().snapshot().retries, retries);
    let err = Error::from(BoxError::from(status));
    assert!(err.is_circuit_open());
    assert_eq!(err.to_grpc_status().code(), Code::Unavailable);
    assert!(matches!(
        handles.sla().status(),
        HealthStatus::Degraded | HealthStatus::Failed
    ));

    // Recovery: after the open wait a probe goes through and closes the circuit; once
    // the outage has left the SLA's time window and enough calls have been measured
    // (`min_calls`: a thinner window is UNKNOWN) the status is healthy again.
    quotes.down.store(false, Ordering::SeqCst);
    clock.advance(Duration::from_secs(5));
    get_quote(&client, "ETH-USDC").await.unwrap();
    assert_eq!(
        handles.breaker().unwrap().snapshot().state,
        BreakerState::Closed
    );
    let mut healthy = false;
    for _ in 0..80 {
        get_quote(&client, "ETH-USDC").await.unwrap();
        if handles.sla().status() == HealthStatus::Healthy {
            healthy = true;
            break;
        }
        clock.advance(Duration::from_millis(250));
    }
    assert!(healthy, "SLA status {:?}", handles.sla().status());
}

#[tokio::test]
async fn slow_attempts_end_as_deadline_exceeded() {
    let quotes = Quotes::default();
    let clock = ManualClock::new();
    let client = client(serve(quotes.clone()).await, &clock).await;
    quotes.slow.store(true, Ordering::SeqCst);

    let status = get_quote(&client, "ETH-USDC").await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(
        quotes.calls.load(Ordering::SeqCst),
        3,
        "each attempt timed out"
    );
    let err = Error::from(BoxError::from(status));
    assert!(err.is_timeout());
}

#[tokio::test]
async fn pushback_asking_not_to_retry_is_honoured() {
    let quotes = Quotes::default();
    let clock = ManualClock::new();
    let client = client(serve(quotes.clone()).await, &clock).await;
    quotes.fail_next.store(2, Ordering::SeqCst);
    quotes.no_retry.store(true, Ordering::SeqCst);

    let status = get_quote(&client, "ETH-USDC").await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(quotes.calls.load(Ordering::SeqCst), 1, "not retried");
    assert_eq!(client.handles().retry().snapshot().retries, 0);
}

#[tokio::test]
/// Our quota at the upstream is spent: UNAVAILABLE (the upstream is unavailable to us for
/// now), unlike a caller over its own limit (RESOURCE_EXHAUSTED).
async fn spent_client_quota_fails_locally_as_unavailable() {
    let quotes = Quotes::default();
    let clock = ManualClock::new();
    let client = client_with(serve(quotes.clone()).await, &clock, |s| {
        s.rate_limit.window = WindowConfig::new(1, Duration::from_secs(1));
        s.rate_limit.max_wait = Duration::from_millis(10);
    })
    .await;

    get_quote(&client, "ETH-USDC").await.unwrap();
    let status = get_quote(&client, "ETH-USDC").await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        quotes.calls.load(Ordering::SeqCst),
        1,
        "the server saw one call"
    );
    let handles = client.handles();
    assert_eq!(handles.retry().snapshot().retries, 0);
    assert_eq!(handles.breaker().unwrap().snapshot().failures, 0);
    let err = Error::from(BoxError::from(status));
    assert!(err.is_rate_limited());
    assert!(err.is_quota_spent());
    assert!(!err.is_caller_limited());
    assert!(err.retry_after().is_some());
}

/// A call with 150 ms left (the caller's `set_timeout`): each attempt tells the server the
/// time it has left, less on the retry than on the first try; and a call that cannot
/// finish in time answers DEADLINE_EXCEEDED by its deadline, not after every attempt.
#[tokio::test]
async fn the_callers_deadline_reaches_the_server_and_bounds_the_call() {
    let quotes = Quotes::default();
    let clock = ManualClock::new();
    let client = client(serve(quotes.clone()).await, &clock).await;

    quotes.fail_next.store(1, Ordering::SeqCst);
    let mut grpc = tonic::client::Grpc::new(client.clone());
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(QuoteRequest {
        pair: "ETH-USDC".into(),
    });
    request.set_timeout(Duration::from_millis(150));
    let reply = grpc
        .unary(
            request,
            http::uri::PathAndQuery::from_static(GET_QUOTE),
            ProstCodec::<QuoteRequest, QuoteReply>::default(),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.serial, 1, "one UNAVAILABLE, then the retry");
    let seen: Vec<Duration> = quotes
        .timeouts
        .lock()
        .unwrap()
        .iter()
        .map(|t| {
            let t = t.as_deref().expect("every attempt carries a grpc-timeout");
            reliability::core::deadline::parse_grpc_timeout(t).expect("well formed")
        })
        .collect();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen.iter()
            .all(|t| *t <= Duration::from_millis(150) && !t.is_zero()),
        "at most the caller's 150 ms: {seen:?}"
    );
    assert!(seen[1] < seen[0], "the retry has less time left: {seen:?}");

    // The server is slow (2 s); the caller allows 300 ms. Attempts time out at 200 ms, and
    // the call ends at its deadline, not after three attempts.
    quotes.slow.store(true, Ordering::SeqCst);
    let before = quotes.calls.load(Ordering::SeqCst);
    let mut request = tonic::Request::new(QuoteRequest {
        pair: "SOL-USDC".into(),
    });
    request.set_timeout(Duration::from_millis(300));
    grpc.ready().await.unwrap();
    let started = std::time::Instant::now();
    let status = grpc
        .unary(
            request,
            http::uri::PathAndQuery::from_static(GET_QUOTE),
            ProstCodec::<QuoteRequest, QuoteReply>::default(),
        )
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "answered at the deadline (with a margin for a loaded machine), took {took:?}"
    );
    let attempts = quotes.calls.load(Ordering::SeqCst) - before;
    assert!(attempts <= 2, "no attempt after the deadline: {attempts}");
}

/// A slow call through real tonic is hedged: the second copy (its request body replayed
/// by the layer) answers, the first is cancelled on the server, and no call the client
/// gave up on runs to its end.
#[tokio::test]
async fn a_slow_call_is_hedged_and_the_loser_is_cancelled_on_the_server() {
    let quotes = Quotes::default();
    quotes.slow_first.store(true, Ordering::SeqCst);
    let clock = ManualClock::new();
    let client = client_with(serve(quotes.clone()).await, &clock, |s| {
        s.attempt_timeout = Duration::from_secs(10);
        s.hedge.delay = reliability::hedge::HedgeDelay::Fixed {
            after: Duration::from_millis(50),
        };
    })
    .await;

    let started = std::time::Instant::now();
    let reply = get_quote(&client, "ETH-USDC").await.unwrap();
    // The hedge's answer, with the pair its replayed body carried; well before the first
    // copy's five seconds.
    assert_eq!(reply.serial, 1);
    assert_eq!(reply.pair, "ETH-USDC");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let hedges = client
        .handles()
        .hedger()
        .expect("a hedged preset")
        .snapshot();
    assert_eq!(
        (hedges.hedges_sent, hedges.hedges_won),
        (1, 1),
        "{hedges:?}"
    );

    // The first copy's stream was reset: its handler is dropped, not run to its end.
    let waited = std::time::Instant::now();
    while quotes.cancelled.load(Ordering::SeqCst) == 0 {
        assert!(
            waited.elapsed() < Duration::from_secs(4),
            "the losing call was never cancelled on the server"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(quotes.answered.load(Ordering::SeqCst), 1);
    assert_eq!(quotes.calls.load(Ordering::SeqCst), 2);
}
