//! A tonic service and its client with the reliability layers stacked on both sides.
//!
//! The server answers `/prices.Prices/GetPrice` from the simulated upstream, behind
//!
//! - a rate limit keyed by the `x-api-key` metadata (else the peer's IP), answering
//!   `RESOURCE_EXHAUSTED` when the quota is spent;
//! - an SLA monitor classifying gRPC statuses;
//! - a circuit breaker answering `UNAVAILABLE` (with `grpc-retry-pushback-ms`) while open.
//!
//! The client's channel is wrapped in an SLA monitor, gRPC retries (UNAVAILABLE and
//! RESOURCE_EXHAUSTED, waiting as long as an open server breaker's pushback asks) and its
//! own breaker, which does not count a spent quota against the server.
//!
//! A scripted session then runs against it: steady traffic, a burst from a noisy client that
//! spends its quota, an upstream outage that opens the breakers, and the recovery. The
//! summary shows what each side saw.
//!
//! ```text
//! cargo run -p examples --bin grpc
//! cargo run -p examples --bin grpc -- --requests 100 --seed 7
//! cargo run -p examples --bin grpc -- --addr 127.0.0.1:50051 --json
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use breaker_layer::grpc::AsGrpc;
use breaker_layer::{Breaker, CircuitBreaker, CircuitBreakerLayer};
use examples::upstream::{FaultSettings, Phase, Upstream, UpstreamRequest, bounded};
use ratelimit_layer::http::HeaderKey;
use ratelimit_layer::key::key_fn;
use ratelimit_layer::{KeyExtractorExt, Quota, RateLimitLayer, RateLimiter, Subject};
use reliability_core::classify::{Classification, Classify, GrpcClassifier};
use retry_layer::backoff::{Backoff, Jitter};
use retry_layer::grpc::{GrpcPolicy, GrpcRetryLayer};
use retry_layer::http::BufferRequest;
use retry_layer::{Retry, RetryHandle};
use serde_json::{Value, json};
use sla_layer::{Sla, SlaLayer, SlaMonitor};
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::server::{TcpConnectInfo, TcpIncoming};
use tonic::transport::{Channel, Server};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;
use tower::{BoxError, Service, ServiceBuilder};

/// `prices.GetPriceRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PriceRequest {
    /// A pair such as `ETH-USDC`.
    #[prost(string, tag = "1")]
    pub(crate) symbol: String,
}

/// `prices.PriceReply`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PriceReply {
    /// The pair asked for.
    #[prost(string, tag = "1")]
    pub(crate) symbol: String,
    /// Its price.
    #[prost(double, tag = "2")]
    pub(crate) price: f64,
}

const GET_PRICE: &str = "/prices.Prices/GetPrice";

/// The metadata key the server's rate limit is keyed by.
pub(crate) const API_KEY: &str = "x-api-key";

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The `prices.Prices` service over the simulated upstream.
#[derive(Clone)]
struct Prices {
    upstream: Upstream,
}

impl NamedService for Prices {
    const NAME: &'static str = "prices.Prices";
}

impl tonic::server::UnaryService<PriceRequest> for Prices {
    type Response = PriceReply;
    type Future = BoxFuture<Result<tonic::Response<PriceReply>, Status>>;

    fn call(&mut self, request: tonic::Request<PriceRequest>) -> Self::Future {
        let upstream = self.upstream.clone();
        Box::pin(async move {
            let symbol = request.into_inner().symbol;
            let Some(pair) = bounded(&symbol) else {
                return Err(Status::invalid_argument("symbol: 1 to 128 bytes"));
            };
            // The upstream's 503 is the gRPC UNAVAILABLE: retryable, and counted by the breaker.
            let quote = upstream
                .handle(UpstreamRequest::Quote(pair))
                .await
                .map_err(|e| Status::unavailable(e.to_string()))?;
            let price = quote["price"].as_f64().unwrap_or_default();
            Ok(tonic::Response::new(PriceReply { symbol, price }))
        })
    }
}

impl Service<http::Request<Body>> for Prices {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            if request.uri().path() != GET_PRICE {
                return Ok(Status::unimplemented("unknown method").into_http());
            }
            let mut grpc =
                tonic::server::Grpc::new(ProstCodec::<PriceReply, PriceRequest>::default());
            Ok(grpc.unary(this, request).await)
        })
    }
}

/// How the server's layers are tuned.
#[derive(Debug, Clone)]
pub(crate) struct ServerSettings {
    /// Calls per second for a key without its own limit (and for anonymous peers).
    pub(crate) quota_per_second: u64,
    /// Keys with a larger limit of their own.
    pub(crate) trusted_keys: Vec<(String, u64)>,
    /// Failures in a row that open the server's breaker.
    pub(crate) breaker_failures: u32,
    /// How long the server's breaker stays open before it probes.
    pub(crate) breaker_open_wait: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            quota_per_second: 20,
            trusted_keys: vec![("steady-client".to_owned(), 2_000)],
            breaker_failures: 5,
            breaker_open_wait: Duration::from_millis(200),
        }
    }
}

/// A running server and the handles of its layers.
pub(crate) struct PriceServer {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    pub(crate) limiter: RateLimiter,
    pub(crate) breaker: CircuitBreakerLayer<GrpcClassifier, AsGrpc>,
    pub(crate) sla: SlaMonitor,
}

/// The rate-limit key: the caller's API key, else its IP address.
fn caller_key() -> Result<impl ratelimit_layer::KeyExtractor<http::Request<Body>>, BoxError> {
    let peer = key_fn(|request: &http::Request<Body>| {
        let peer = request
            .extensions()
            .get::<TcpConnectInfo>()?
            .remote_addr()?;
        Some(Subject::new(format!("ip:{}", peer.ip())))
    });
    Ok(HeaderKey::new(API_KEY)?.or(peer))
}

/// Starts the server on `addr` (port 0 picks one) over `upstream`.
pub(crate) async fn start_server(
    addr: SocketAddr,
    upstream: Upstream,
    settings: &ServerSettings,
) -> Result<PriceServer, BoxError> {
    let limiter = RateLimiter::builder()
        .name("prices-server")
        .quota(Quota::per(
            settings.quota_per_second,
            Duration::from_secs(1),
        )?)
        .build()?;
    for (key, per_second) in &settings.trusted_keys {
        limiter.set_user_limit(key, Quota::per(*per_second, Duration::from_secs(1))?);
    }
    let sla = SlaMonitor::builder("prices-server")
        .count_window(50)
        .p95(Duration::from_millis(50))
        .max_consecutive_failures(u64::from(settings.breaker_failures))
        .build()?;
    let breaker = CircuitBreakerLayer::builder("prices-server")
        .grpc()
        .consecutive_failures(settings.breaker_failures)
        .open_wait(settings.breaker_open_wait)
        .build()?;

    let incoming = TcpIncoming::bind(addr)?;
    let addr = incoming.local_addr()?;
    let router = Server::builder()
        .layer(
            RateLimitLayer::new(limiter.clone())
                .key(caller_key()?)
                .grpc(),
        )
        .layer(SlaLayer::new(sla.clone()).classifier(GrpcClassifier))
        .layer(breaker.clone())
        .add_service(Prices { upstream });
    tokio::spawn(async move {
        if let Err(e) = router.serve_with_incoming(incoming).await {
            eprintln!("server stopped: {e}");
        }
    });
    Ok(PriceServer {
        addr,
        limiter,
        breaker,
        sla,
    })
}

/// The client breaker's judge: gRPC statuses as usual, except RESOURCE_EXHAUSTED, which
/// says this caller spent its own quota, not that the server is failing; it counts neither
/// way (the retry layer still retries it, and the SLA still sees it fail).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct QuotaIsNotFailure;

impl<B, E: 'static> Classify<http::Response<B>, E> for QuotaIsNotFailure {
    fn classify_full(&self, result: Result<&http::Response<B>, &E>) -> Classification {
        let quota = |res: &http::Response<B>| {
            res.headers()
                .get("grpc-status")
                .is_some_and(|code| code == "8")
        };
        match result {
            Ok(res) if quota(res) => Classification::IGNORE,
            _ => GrpcClassifier.classify_full(result),
        }
    }
}

/// The client's channel under its layers, outermost first: what the caller sees is
/// timed, then retried, and every attempt passes the breaker.
type ClientStack = Sla<
    BufferRequest<Retry<CircuitBreaker<Channel, QuotaIsNotFailure, AsGrpc>, GrpcPolicy>>,
    GrpcClassifier,
>;

/// One client: its channel wrapped in SLA, retry and breaker layers.
#[derive(Clone)]
pub(crate) struct PriceClient {
    api_key: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    grpc: tonic::client::Grpc<ClientStack>,
    sla: SlaMonitor,
    retry: RetryHandle,
    breaker: Breaker,
}

impl PriceClient {
    /// A client of the server at `addr`, calling with `api_key`.
    pub(crate) async fn connect(
        addr: SocketAddr,
        api_key: &str,
        seed: u64,
    ) -> Result<Self, BoxError> {
        let channel = Channel::from_shared(format!("http://{addr}"))?
            .connect()
            .await?;
        let name = format!("prices-client:{api_key}");
        let sla = SlaMonitor::builder(name.clone())
            .count_window(50)
            .p95(Duration::from_millis(100))
            .build()?;
        // Pushback waits are clamped short: a demo, not a production budget.
        let retry = GrpcRetryLayer::grpc_builder()
            .name(name.clone())
            .max_attempts(3)
            .backoff(Backoff::exponential(
                Duration::from_millis(5),
                Duration::from_millis(40),
                Jitter::Full,
            ))
            .max_retry_after(Duration::from_millis(25))
            .seed(seed)
            .build()?;
        let breaker = CircuitBreakerLayer::builder(name)
            .grpc()
            .classifier(QuotaIsNotFailure)
            .consecutive_failures(8)
            .open_wait(Duration::from_millis(150))
            .build()?;
        let stack = ServiceBuilder::new()
            .layer(SlaLayer::new(sla.clone()).classifier(GrpcClassifier))
            .layer(retry.clone())
            .layer(breaker.clone())
            .service(channel);
        Ok(Self {
            api_key: api_key.parse()?,
            grpc: tonic::client::Grpc::new(stack),
            sla,
            retry: retry.handle(),
            breaker: breaker.breaker().clone(),
        })
    }

    /// Asks for one price.
    pub(crate) async fn get_price(&self, symbol: &str) -> Result<PriceReply, Status> {
        let mut client = self.grpc.clone();
        client
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("not ready: {e}")))?;
        let mut request = tonic::Request::new(PriceRequest {
            symbol: symbol.to_owned(),
        });
        request.metadata_mut().insert(API_KEY, self.api_key.clone());
        client
            .unary(
                request,
                http::uri::PathAndQuery::from_static(GET_PRICE),
                ProstCodec::<PriceRequest, PriceReply>::default(),
            )
            .await
            .map(tonic::Response::into_inner)
    }
}

/// Final statuses of the calls a client made.
#[derive(Debug, Default)]
struct Tally {
    calls: AtomicU64,
    ok: AtomicU64,
    unavailable: AtomicU64,
    resource_exhausted: AtomicU64,
    other: AtomicU64,
}

impl Tally {
    fn record(&self, result: &Result<PriceReply, Status>) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let slot = match result {
            Ok(_) => &self.ok,
            Err(s) if s.code() == Code::Unavailable => &self.unavailable,
            Err(s) if s.code() == Code::ResourceExhausted => &self.resource_exhausted,
            Err(_) => &self.other,
        };
        slot.fetch_add(1, Ordering::Relaxed);
    }

    fn json(&self) -> Value {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        json!({
            "calls": n(&self.calls),
            "ok": n(&self.ok),
            "unavailable": n(&self.unavailable),
            "resource_exhausted": n(&self.resource_exhausted),
            "other": n(&self.other),
        })
    }
}

fn sla_json(monitor: &SlaMonitor) -> Value {
    let report = monitor.report();
    let w = report.count_window;
    let ms = |d: Duration| (d.as_secs_f64() * 1e4).round() / 10.0;
    json!({
        "status": report.status.as_str(),
        "calls": report.totals.successes + report.totals.failures,
        "failures": report.totals.failures,
        "p50_ms": ms(w.p50),
        "p95_ms": ms(w.p95),
        "p99_ms": ms(w.p99),
    })
}

fn breaker_json(breaker: &Breaker) -> Value {
    let s = breaker.snapshot();
    json!({
        "state": s.state,
        "rejections": s.rejections,
        "state_changes": s.state_changes,
    })
}

/// The upstream's faults in `phase`, with latencies shortened so a run takes seconds.
fn faults(phase: Phase) -> FaultSettings {
    let f = phase.faults();
    FaultSettings {
        latency_factor: f.latency_factor * 0.05,
        ..f
    }
}

/// The command line.
#[derive(Debug)]
struct Args {
    addr: SocketAddr,
    requests: u32,
    seed: u64,
    json: bool,
}

const USAGE: &str = "usage: grpc [--addr 127.0.0.1:0] [--requests 200] [--seed N] [--json]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        requests: 200,
        seed: 42,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--addr" => {
                let v = it.next().ok_or("--addr needs host:port")?;
                args.addr = v.parse().map_err(|e| format!("--addr: {e}"))?;
            }
            "--requests" => {
                let v = it.next().ok_or("--requests needs a number")?;
                args.requests = v.parse().map_err(|e| format!("--requests: {e}"))?;
                if !(20..=100_000).contains(&args.requests) {
                    return Err("--requests: 20 to 100000".into());
                }
            }
            "--seed" => {
                let v = it.next().ok_or("--seed needs a number")?;
                args.seed = v.parse().map_err(|e| format!("--seed: {e}"))?;
            }
            "--json" => args.json = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(args)
}

/// The scripted session: steady calls paced a few milliseconds apart; at 30 % a noisy
/// client bursts past its quota; from 45 % to 65 % the upstream is down; then it recovers.
async fn run(args: &Args) -> Result<Value, BoxError> {
    let upstream = Upstream::new(args.seed);
    upstream.set_faults(faults(Phase::Normal));
    let settings = ServerSettings::default();
    let server = start_server(args.addr, upstream.clone(), &settings).await?;
    let say = |line: String| {
        if !args.json {
            println!("{line}");
        }
    };
    say(format!("prices server on {}", server.addr));

    let steady = PriceClient::connect(server.addr, "steady-client", args.seed).await?;
    let noisy =
        PriceClient::connect(server.addr, "noisy-client", args.seed.wrapping_add(1)).await?;
    let (steady_tally, noisy_tally) = (Tally::default(), Tally::default());

    let n = args.requests;
    let burst_at = n * 30 / 100;
    let outage = (n * 45 / 100)..(n * 65 / 100);
    let mut tick = tokio::time::interval(Duration::from_millis(4));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = tokio::time::Instant::now();
    for i in 0..n {
        tick.tick().await;
        if i == burst_at {
            let burst = settings.quota_per_second * 3;
            say(format!(
                "[{i:>4}] burst: noisy-client sends {burst} calls at once (quota {}/s)",
                settings.quota_per_second
            ));
            let calls = (0..burst).map(|_| noisy.get_price("SOL-USDC"));
            for result in futures_util::future::join_all(calls).await {
                noisy_tally.record(&result);
            }
        }
        if i == outage.start {
            say(format!("[{i:>4}] upstream outage begins"));
            upstream.set_faults(faults(Phase::Outage));
        }
        if i == outage.end {
            say(format!("[{i:>4}] upstream recovers"));
            upstream.set_faults(faults(Phase::Recovery));
        }
        let result = steady.get_price("ETH-USDC").await;
        steady_tally.record(&result);
    }

    let (steady_calls, noisy_calls) = (steady_tally.json(), noisy_tally.json());
    let totals = |key: &str| {
        steady_calls[key].as_u64().unwrap_or(0) + noisy_calls[key].as_u64().unwrap_or(0)
    };
    let server_breaker = server.breaker.breaker().snapshot();
    let limits = server.limiter.snapshot();
    Ok(json!({
        "elapsed_ms": started.elapsed().as_millis() as u64,
        "calls": totals("calls"),
        "ok": totals("ok"),
        "unavailable": totals("unavailable"),
        "resource_exhausted": totals("resource_exhausted"),
        "other": totals("other"),
        "client_retries": steady.retry.snapshot().retries
            + noisy.retry.snapshot().retries,
        "clients": {
            "steady-client": {
                "tally": steady_calls,
                "retries": steady.retry.snapshot().retries,
                "breaker": breaker_json(&steady.breaker),
                "sla": sla_json(&steady.sla),
            },
            "noisy-client": {
                "tally": noisy_calls,
                "retries": noisy.retry.snapshot().retries,
                "breaker": breaker_json(&noisy.breaker),
                "sla": sla_json(&noisy.sla),
            },
        },
        "server": {
            "resource_exhausted_sent": limits.rejected,
            "unavailable_sent_by_breaker": server_breaker.rejections,
            "upstream_failures": upstream.failures(examples::upstream::Source::Dex),
            "breaker": breaker_json(server.breaker.breaker()),
            "sla": sla_json(&server.sla),
        },
    }))
}

/// A JSON value as a table cell: strings without quotes.
fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn breaker_cell(breaker: &Value) -> Value {
    Value::from(format!(
        "{} ({})",
        cell(&breaker["state"]),
        breaker["state_changes"]
    ))
}

fn print_row(cells: [&Value; 11]) {
    let c = cells.map(cell);
    println!(
        "{:<14} {:>6} {:>6} {:>11} {:>18} {:>7} {:>17} {:>7} {:>7} {:>7}  {}",
        c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10]
    );
}

fn print_summary(s: &Value) {
    println!();
    println!(
        "calls {}  ok {}  unavailable {}  resource_exhausted {}  other {}  client retries {}  ({} ms)",
        s["calls"],
        s["ok"],
        s["unavailable"],
        s["resource_exhausted"],
        s["other"],
        s["client_retries"],
        s["elapsed_ms"]
    );
    println!();
    let dash = Value::from("-");
    let header = [
        "side",
        "calls",
        "ok",
        "unavailable",
        "resource_exhausted",
        "retries",
        "breaker (changes)",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "sla",
    ]
    .map(Value::from);
    print_row(header.each_ref());
    for (name, c) in s["clients"].as_object().into_iter().flatten() {
        let t = &c["tally"];
        print_row([
            &Value::from(name.as_str()),
            &t["calls"],
            &t["ok"],
            &t["unavailable"],
            &t["resource_exhausted"],
            &c["retries"],
            &breaker_cell(&c["breaker"]),
            &c["sla"]["p50_ms"],
            &c["sla"]["p95_ms"],
            &c["sla"]["p99_ms"],
            &c["sla"]["status"],
        ]);
    }
    let srv = &s["server"];
    print_row([
        &Value::from("server (sent)"),
        &srv["sla"]["calls"],
        &dash,
        &srv["unavailable_sent_by_breaker"],
        &srv["resource_exhausted_sent"],
        &dash,
        &breaker_cell(&srv["breaker"]),
        &srv["sla"]["p50_ms"],
        &srv["sla"]["p95_ms"],
        &srv["sla"]["p99_ms"],
        &srv["sla"]["status"],
    ]);
    println!();
    println!(
        "server: RESOURCE_EXHAUSTED sent {} (rate limit), UNAVAILABLE sent {} (breaker open), \
         upstream failures {}, breaker state changes {}",
        srv["resource_exhausted_sent"],
        srv["unavailable_sent_by_breaker"],
        srv["upstream_failures"],
        srv["breaker"]["state_changes"],
    );
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    match run(&args).await {
        Ok(summary) if args.json => println!("{summary}"),
        Ok(summary) => print_summary(&summary),
        Err(e) => {
            eprintln!("grpc demo failed: {e}");
            std::process::exit(1);
        }
    }
}
