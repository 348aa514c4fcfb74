//! The `prices.Prices` server: the generated service over the simulated upstream, behind
//!
//! - a rate limit keyed by the `x-api-key` metadata (else the peer's IP), answering
//!   `RESOURCE_EXHAUSTED` with `retry-after` when the quota is spent;
//! - an SLA monitor classifying gRPC statuses;
//! - a circuit breaker answering `UNAVAILABLE` (with `grpc-retry-pushback-ms`) while open;
//!
//! and, beside them, gRPC server reflection (v1), so `grpcurl` and other tools can list
//! and call the service without the `.proto` at hand.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use breaker_layer::CircuitBreakerLayer;
use ratelimit_layer::http::HeaderKey;
use ratelimit_layer::key::key_fn;
use ratelimit_layer::{KeyExtractorExt, Quota, RateLimitLayer, RateLimiter, Subject};
use reliability_core::answer::AsGrpc;
use reliability_core::classify::GrpcClassifier;
use sla_layer::{SlaLayer, SlaMonitor};
use tonic::body::Body;
use tonic::service::LayerExt;
use tonic::transport::Server;
use tonic::transport::server::{TcpConnectInfo, TcpIncoming};
use tonic::{Request, Response, Status};
use tower::{BoxError, ServiceBuilder};

use super::proto::prices_server::{Prices, PricesServer};
use super::proto::{self, GetPriceRequest, PriceReply};
use crate::upstream::{Upstream, UpstreamRequest, bounded};

/// The metadata key the server's rate limit is keyed by.
pub const API_KEY: &str = "x-api-key";

/// `prices.Prices` answered from the simulated upstream's DEX quotes.
#[derive(Debug, Clone)]
pub struct UpstreamPrices {
    upstream: Upstream,
}

impl UpstreamPrices {
    /// The service over `upstream`.
    pub fn new(upstream: Upstream) -> Self {
        Self { upstream }
    }
}

#[tonic::async_trait]
impl Prices for UpstreamPrices {
    async fn get_price(
        &self,
        request: Request<GetPriceRequest>,
    ) -> Result<Response<PriceReply>, Status> {
        let symbol = request.into_inner().symbol;
        let Some(pair) = bounded(&symbol) else {
            return Err(Status::invalid_argument("symbol: 1 to 128 bytes"));
        };
        // The upstream's 503 is the gRPC UNAVAILABLE: retryable, and counted by the breaker.
        let quote = self
            .upstream
            .handle(UpstreamRequest::Quote(pair))
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let price = quote["price"].as_f64().unwrap_or_default();
        Ok(Response::new(PriceReply { symbol, price }))
    }
}

/// How the server's layers are tuned.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Calls per second for a key without its own limit (and for anonymous peers).
    pub quota_per_second: u64,
    /// Keys with a larger limit of their own.
    pub trusted_keys: Vec<(String, u64)>,
    /// Failures in a row that open the server's breaker.
    pub breaker_failures: u32,
    /// How long the server's breaker stays open before it probes.
    pub breaker_open_wait: Duration,
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

/// A bound server and the handles of its layers.
#[derive(Debug, Clone)]
pub struct PriceServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The rate limit's state: per-key quotas and how many calls it refused.
    pub limiter: RateLimiter,
    /// The breaker in front of the service.
    pub breaker: CircuitBreakerLayer<GrpcClassifier, AsGrpc>,
    /// Latency and failure statistics of the calls the limit let through.
    pub sla: SlaMonitor,
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

/// Binds `addr` (port 0 picks one) and builds the server over `upstream`; the returned
/// future answers calls until `shutdown` completes. Call it inside a Tokio runtime.
pub fn bind(
    addr: SocketAddr,
    upstream: Upstream,
    settings: &ServerSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<
    (
        PriceServer,
        impl Future<Output = Result<(), tonic::transport::Error>> + Send + 'static,
    ),
    BoxError,
> {
    let mut limiter = RateLimiter::builder()
        .name("prices-server")
        .quota(Quota::per(
            settings.quota_per_second,
            Duration::from_secs(1),
        )?);
    for (key, per_second) in &settings.trusted_keys {
        limiter = limiter.user_limit(key, Quota::per(*per_second, Duration::from_secs(1))?);
    }
    let limiter = limiter.build()?;
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

    // The layers wrap the price service only, not the whole server: reflection is
    // metadata, so it must neither spend a caller's quota nor tell the breaker and the
    // SLA that the service is healthy, and it stays up while the breaker is open.
    // `named_layer` keeps the service's gRPC name for the router.
    let prices = ServiceBuilder::new()
        .layer(
            RateLimitLayer::new(limiter.clone())
                .key(caller_key()?)
                .grpc(),
        )
        .layer(SlaLayer::new(sla.clone()).classifier(GrpcClassifier))
        .layer(breaker.clone())
        .named_layer(PricesServer::new(UpstreamPrices::new(upstream)));
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    let incoming = TcpIncoming::bind(addr)?;
    let addr = incoming.local_addr()?;
    let serving = Server::builder()
        .add_service(reflection)
        .add_service(prices)
        .serve_with_incoming_shutdown(incoming, shutdown);
    let server = PriceServer {
        addr,
        limiter,
        breaker,
        sla,
    };
    Ok((server, serving))
}

/// Starts the server on `addr` (port 0 picks one) over `upstream`, answering in a task of
/// its own for as long as the runtime runs.
pub async fn start_server(
    addr: SocketAddr,
    upstream: Upstream,
    settings: &ServerSettings,
) -> Result<PriceServer, BoxError> {
    let (server, serving) = bind(addr, upstream, settings, std::future::pending())?;
    tokio::spawn(async move {
        if let Err(e) = serving.await {
            eprintln!("server stopped: {e}");
        }
    });
    Ok(server)
}
