//! The `prices.Prices` client: the generated `PricesClient` over a channel wrapped, outermost
//! first, in an SLA monitor, gRPC retries (UNAVAILABLE and RESOURCE_EXHAUSTED, waiting as
//! long as an open server breaker's pushback asks) and a breaker of its own, which does not
//! count a spent quota against the server.

use std::net::SocketAddr;
use std::time::Duration;

use breaker_layer::{Breaker, CircuitBreaker, CircuitBreakerLayer};
use reliability_core::answer::AsGrpc;
use reliability_core::classify::{Classification, Classify, GrpcClassifier};
use retry_layer::backoff::{Backoff, Jitter};
use retry_layer::grpc::{GrpcPolicy, GrpcRetryLayer};
use retry_layer::http::BufferRequest;
use retry_layer::{Retry, RetryHandle};
use sla_layer::{Sla, SlaLayer, SlaMonitor};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tower::{BoxError, ServiceBuilder};

use super::proto::prices_client::PricesClient;
use super::proto::{GetPriceRequest, PriceReply};
use super::service::API_KEY;

/// The client breaker's judge: gRPC statuses as usual, except RESOURCE_EXHAUSTED, which
/// says this caller spent its own quota, not that the server is failing; it counts neither
/// way (the retry layer still retries it, and the SLA still sees it fail).
#[derive(Debug, Clone, Copy, Default)]
pub struct QuotaIsNotFailure;

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

/// One caller of `prices.Prices`, identified by its API key.
#[derive(Clone)]
pub struct PriceClient {
    api_key: MetadataValue<Ascii>,
    grpc: PricesClient<ClientStack>,
    sla: SlaMonitor,
    retry: RetryHandle,
    breaker: Breaker,
}

impl PriceClient {
    /// A client of the server at `addr`, calling with `api_key`; `seed` drives its
    /// backoff jitter.
    pub async fn connect(addr: SocketAddr, api_key: &str, seed: u64) -> Result<Self, BoxError> {
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
            grpc: PricesClient::new(stack),
            sla,
            retry: retry.handle(),
            breaker: breaker.breaker().clone(),
        })
    }

    /// Asks for the price of `symbol`.
    pub async fn get_price(&self, symbol: &str) -> Result<PriceReply, Status> {
        let mut request = Request::new(GetPriceRequest {
            symbol: symbol.to_owned(),
        });
        request.metadata_mut().insert(API_KEY, self.api_key.clone());
        self.grpc
            .clone()
            .get_price(request)
            .await
            .map(Response::into_inner)
    }

    /// What this caller saw: latencies and failures of its calls, retries included.
    pub fn sla(&self) -> &SlaMonitor {
        &self.sla
    }

    /// Its retry layer's counters.
    pub fn retry(&self) -> &RetryHandle {
        &self.retry
    }

    /// Its own breaker.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }
}

impl std::fmt::Debug for PriceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PriceClient")
            .field("api_key", &self.api_key)
            .field("breaker", &self.breaker.snapshot().state)
            .finish_non_exhaustive()
    }
}
