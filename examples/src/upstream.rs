//! A simulated flaky upstream: CEX order books, DEX quotes and social search, driven
//! through a scripted scenario (normal, latency spike, error burst, outage, recovery), with
//! faults that can also be injected at runtime.
//!
//! The upstream is a healthy service (seeded data, each source's own latency) behind one
//! [`ChaosLayer`] per source, named `upstream-cex`, `upstream-dex` and `upstream-social`:
//! every injected fault (failed calls, an outage, the slow calls of a latency spike) is
//! that layer's. [`Upstream::set_faults`] (the body of `POST /admin/upstream/faults`)
//! translates a [`FaultSettings`] into each source's [`ChaosConfig`]; the handles
//! ([`Upstream::chaos`]) also let the admin router switch and tune each layer on its own.
//!
//! It is available in process, as a `tower::Service` ([`Upstream`]), and on loopback as
//! an axum app ([`Upstream::router`]). Seeded: the same seed gives the same faults and
//! the same data for the same sequence of calls, so a demo run is reproducible.

mod scenario;

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use reliability::chaos::{Chaos, ChaosConfig, ChaosHandle, ChaosLayer, LatencyDistribution};
use serde::Deserialize;
use serde_json::{Value, json};
use tower::{Layer, Service, ServiceExt};

pub use scenario::{FaultSettings, Phase, Source};

impl FaultSettings {
    /// The chaos configuration of `source` for these faults (sanitize first), seeded
    /// with `seed`.
    pub fn chaos(&self, source: Source, seed: u64) -> ChaosConfig {
        let base = source.base_latency().mul_f64(self.latency_factor);
        let delayed = self.delay_factor > 0.0 || (self.slow_rate > 0.0 && self.slow_factor > 0.0);
        let error_rate = if self.outage { 1.0 } else { self.error_rate };
        ChaosConfig {
            enabled: error_rate > 0.0 || delayed,
            seed,
            error_rate,
            response_rate: 0.0,
            latency_rate: if delayed { 1.0 } else { 0.0 },
            latency: LatencyDistribution::TwoPoint {
                fast: base.mul_f64(self.delay_factor),
                slow: base.mul_f64(self.slow_factor),
                slow_share: self.slow_rate,
            },
        }
    }
}

/// A request to the upstream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UpstreamRequest {
    /// `GET /cex/orderbook/{symbol}`.
    OrderBook(String),
    /// `GET /dex/quote/{pair}`.
    Quote(String),
    /// `GET /social/search?q=`.
    Search(String),
}

impl UpstreamRequest {
    /// The source this request goes to.
    pub fn source(&self) -> Source {
        match self {
            UpstreamRequest::OrderBook(_) => Source::Cex,
            UpstreamRequest::Quote(_) => Source::Dex,
            UpstreamRequest::Search(_) => Source::Social,
        }
    }

    /// A cache key for this request.
    pub fn key(&self) -> String {
        match self {
            UpstreamRequest::OrderBook(s) => format!("cex:orderbook:{s}"),
            UpstreamRequest::Quote(p) => format!("dex:quote:{p}"),
            UpstreamRequest::Search(q) => format!("social:search:{q}"),
        }
    }
}

/// Why a simulated call failed (the upstream's 503).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamError {
    /// The source that failed.
    pub source: Source,
    /// Whether the failure is an outage (nothing answers) rather than one bad call.
    pub outage: bool,
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.outage {
            write!(f, "{} upstream unavailable (outage)", self.source)
        } else {
            write!(f, "{} upstream answered 503", self.source)
        }
    }
}

impl std::error::Error for UpstreamError {}

#[derive(Debug)]
struct Inner {
    seed: u64,
    rng: Mutex<SmallRng>,
    // The settings last applied, for `faults()`; written only under this lock.
    faults: Mutex<FaultSettings>,
    latency_factor_milli: AtomicU32,
    calls: [AtomicU64; 3],
    failures: [AtomicU64; 3],
}

/// The healthy upstream: each source's own latency (jittered, times the pace), then its
/// data. It never fails: failures are the chaos layers'.
#[derive(Debug, Clone)]
struct Healthy {
    inner: Arc<Inner>,
}

impl tower::Service<UpstreamRequest> for Healthy {
    type Response = Value;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Value, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: UpstreamRequest) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move {
            let pace = f64::from(inner.latency_factor_milli.load(Ordering::Relaxed)) / 1e3;
            let jitter = inner.rng.lock().random_range(0.5..1.5);
            let latency = request.source().base_latency().mul_f64(pace * jitter);
            // tokio time, so a paused clock skips it.
            tokio::time::sleep(latency).await;
            Ok(body(&inner, &request))
        })
    }
}

/// The simulated upstream. Cheap to clone; clones share faults and counters.
#[derive(Debug, Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
    chaos: Arc<[Chaos<Healthy>; 3]>,
}

impl Upstream {
    /// A healthy upstream with a seeded random source.
    pub fn new(seed: u64) -> Self {
        let inner = Arc::new(Inner {
            seed,
            rng: Mutex::new(SmallRng::seed_from_u64(seed)),
            faults: Mutex::new(FaultSettings::HEALTHY),
            latency_factor_milli: AtomicU32::new(1000),
            calls: Default::default(),
            failures: Default::default(),
        });
        let chaos = Source::ALL.map(|source| {
            ChaosLayer::builder(format!("upstream-{source}"))
                .build()
                .expect("the default chaos settings are valid")
                .layer(Healthy {
                    inner: inner.clone(),
                })
        });
        let upstream = Self {
            inner,
            chaos: Arc::new(chaos),
        };
        upstream.set_faults(FaultSettings::default());
        upstream
    }

    /// Replaces the injected faults (values are clamped into range): each source's chaos
    /// layer gets its share, seeded from the upstream's seed, so the same seed and the
    /// same calls give the same faults after every change.
    pub fn set_faults(&self, faults: FaultSettings) {
        let f = faults.sanitized();
        let mut current = self.inner.faults.lock();
        self.inner
            .latency_factor_milli
            .store((f.latency_factor * 1e3) as u32, Ordering::Relaxed);
        for source in Source::ALL {
            let seed = self.inner.seed ^ (source.index() as u64 + 1).wrapping_mul(0x9E37_79B9);
            self.chaos(source)
                .apply(f.chaos(source, seed))
                .expect("sanitized faults make a valid chaos configuration");
        }
        *current = f;
    }

    /// The faults last set by [`set_faults`](Self::set_faults).
    pub fn faults(&self) -> FaultSettings {
        *self.inner.faults.lock()
    }

    /// The chaos layer in front of `source` (named `upstream-{source}`).
    pub fn chaos(&self, source: Source) -> ChaosHandle {
        self.chaos[source.index()].handle()
    }

    /// Calls that reached the upstream for `source`.
    pub fn calls(&self, source: Source) -> u64 {
        self.inner.calls[source.index()].load(Ordering::Relaxed)
    }

    /// Calls to `source` that failed.
    pub fn failures(&self, source: Source) -> u64 {
        self.inner.failures[source.index()].load(Ordering::Relaxed)
    }

    /// Serves one request through its source's chaos layer: the healthy upstream's
    /// latency, any injected delay, then data or an injected failure.
    pub async fn handle(&self, request: UpstreamRequest) -> Result<Value, UpstreamError> {
        let source = request.source();
        self.inner.calls[source.index()].fetch_add(1, Ordering::Relaxed);
        let mut chaos = self.chaos[source.index()].clone();
        let result = chaos
            .ready()
            .await
            .expect("never fails")
            .call(request)
            .await;
        result.map_err(|_injected| {
            self.inner.failures[source.index()].fetch_add(1, Ordering::Relaxed);
            UpstreamError {
                source,
                outage: self.inner.faults.lock().outage,
            }
        })
    }

    /// The upstream as an axum app on its own (`/cex/orderbook/{symbol}`,
    /// `/dex/quote/{pair}`, `/social/search?q=`, `POST /faults`, `GET /faults`).
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .route("/cex/orderbook/{symbol}", get(http_orderbook))
            .route("/dex/quote/{pair}", get(http_quote))
            .route("/social/search", get(http_search))
            .route("/faults", post(http_set_faults).get(http_get_faults))
            .with_state(self.clone())
    }
}

fn body(inner: &Inner, request: &UpstreamRequest) -> Value {
    let mut rng = inner.rng.lock();
    match request {
        UpstreamRequest::OrderBook(symbol) => {
            let mid: f64 = rng.random_range(100.0..200.0);
            let level = |side: f64, i: u32, rng: &mut SmallRng| {
                json!([
                    mid + side * 0.01 * f64::from(i + 1),
                    rng.random_range(0.1..5.0)
                ])
            };
            let bids: Vec<Value> = (0..5).map(|i| level(-1.0, i, &mut rng)).collect();
            let asks: Vec<Value> = (0..5).map(|i| level(1.0, i, &mut rng)).collect();
            json!({ "symbol": symbol, "bids": bids, "asks": asks })
        }
        UpstreamRequest::Quote(pair) => json!({
            "pair": pair,
            "price": rng.random_range(0.5..2.0),
            "liquidity_usd": rng.random_range(1e5..1e7),
            "route": ["uniswap-v3", "curve"],
        }),
        UpstreamRequest::Search(q) => json!({
            "query": q,
            "results": (0..3).map(|i| json!({ "id": rng.random::<u32>(), "rank": i })).collect::<Vec<_>>(),
        }),
    }
}

/// A bounded, printable user string for upstream requests (symbols, pairs, queries).
pub fn bounded(s: &str) -> Option<String> {
    (!s.is_empty() && s.len() <= 128).then(|| s.to_owned())
}

async fn respond(upstream: Upstream, request: Option<UpstreamRequest>) -> Response {
    let Some(request) = request else {
        return (StatusCode::BAD_REQUEST, "bad request").into_response();
    };
    match upstream.handle(request).await {
        Ok(body) => Json(body).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "1")],
            e.to_string(),
        )
            .into_response(),
    }
}

async fn http_orderbook(State(u): State<Upstream>, Path(symbol): Path<String>) -> Response {
    respond(u, bounded(&symbol).map(UpstreamRequest::OrderBook)).await
}

async fn http_quote(State(u): State<Upstream>, Path(pair): Path<String>) -> Response {
    respond(u, bounded(&pair).map(UpstreamRequest::Quote)).await
}

#[derive(Deserialize)]
struct SearchQuery {
    q: String,
}

async fn http_search(State(u): State<Upstream>, Query(q): Query<SearchQuery>) -> Response {
    respond(u, bounded(&q.q).map(UpstreamRequest::Search)).await
}

async fn http_set_faults(
    State(u): State<Upstream>,
    Json(faults): Json<FaultSettings>,
) -> Json<FaultSettings> {
    u.set_faults(faults);
    Json(u.faults())
}

async fn http_get_faults(State(u): State<Upstream>) -> Json<FaultSettings> {
    Json(u.faults())
}

impl tower::Service<UpstreamRequest> for Upstream {
    type Response = Value;
    type Error = UpstreamError;
    type Future = BoxFuture<'static, Result<Value, UpstreamError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: UpstreamRequest) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.handle(request).await })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn outage_fails_every_call_and_recovery_heals() {
        let u = Upstream::new(1);
        u.set_faults(Phase::Outage.faults());
        for _ in 0..20 {
            assert!(
                u.handle(UpstreamRequest::Quote("ETH-USDC".into()))
                    .await
                    .is_err()
            );
        }
        u.set_faults(FaultSettings {
            error_rate: 0.0,
            ..Phase::Recovery.faults()
        });
        let v = u
            .handle(UpstreamRequest::OrderBook("BTC-USDT".into()))
            .await
            .unwrap();
        assert_eq!(v["symbol"], "BTC-USDT");
        assert_eq!(u.calls(Source::Dex), 20);
        assert_eq!(u.failures(Source::Dex), 20);
    }

    #[test]
    fn hostile_faults_are_clamped() {
        let f = FaultSettings {
            error_rate: f64::NAN,
            latency_factor: 1e12,
            slow_rate: f64::INFINITY,
            ..FaultSettings::HEALTHY
        }
        .sanitized();
        assert_eq!(f.error_rate, 0.0);
        assert_eq!(f.latency_factor, 100.0);
        assert_eq!(f.slow_rate, 0.0);
        for source in Source::ALL {
            f.chaos(source, 1).validate().unwrap();
        }
    }

    /// The latency spike is the CEX chaos layer's: every call delayed, one in 25 by the
    /// slow tail; back to healthy, the layer is off.
    #[tokio::test(start_paused = true)]
    async fn the_spike_is_injected_by_the_chaos_layer() {
        let u = Upstream::new(3);
        u.set_faults(FaultSettings {
            error_rate: 0.0,
            ..Phase::LatencySpike.faults()
        });
        let handle = u.chaos(Source::Cex);
        assert_eq!(handle.name(), "upstream-cex");
        assert!(handle.is_enabled());
        let ms = Duration::from_millis;
        let mut slow = 0;
        for _ in 0..2_000 {
            let started = tokio::time::Instant::now();
            u.handle(UpstreamRequest::OrderBook("BTC-USDT".into()))
                .await
                .unwrap();
            let took = started.elapsed();
            // 10 to 30 ms of the healthy upstream, then 60 ms, or 600 ms for the tail.
            assert!(took >= ms(70) && took <= ms(631), "{took:?}");
            if took > ms(300) {
                slow += 1;
            }
        }
        // 4 % of 2,000 is 80, with a standard deviation of about 9.
        assert!((45..=115).contains(&slow), "{slow} slow calls");
        assert_eq!(handle.counts().latencies, 2_000);
        assert_eq!(handle.counts().errors, 0);
        u.set_faults(FaultSettings::HEALTHY);
        assert!(!handle.is_enabled());
    }

    #[tokio::test(start_paused = true)]
    async fn same_seed_same_answers() {
        let a = Upstream::new(7);
        let b = Upstream::new(7);
        for _ in 0..5 {
            let r = UpstreamRequest::Search("rust".into());
            assert_eq!(a.handle(r.clone()).await, b.handle(r).await);
        }
    }
}
