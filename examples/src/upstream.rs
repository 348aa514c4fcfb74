//! A simulated flaky upstream: CEX order books, DEX quotes and social search, driven
//! through a scripted scenario (normal, latency spike, error burst, outage, recovery), with
//! faults that can also be injected at runtime.
//!
//! It is available in process, as a `tower::Service` ([`Upstream`]), and on loopback as
//! an axum app ([`Upstream::router`]). Seeded: the same seed gives the same faults and
//! the same data, so a demo run is reproducible.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The kinds of data source the presets are tuned for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A centralized exchange's order books.
    Cex,
    /// A DEX aggregator's quotes.
    Dex,
    /// A social API's search.
    Social,
}

impl Source {
    /// All three.
    pub const ALL: [Source; 3] = [Source::Cex, Source::Dex, Source::Social];

    /// Typical latency of a healthy call.
    pub fn base_latency(self) -> Duration {
        match self {
            Source::Cex => Duration::from_millis(20),
            Source::Dex => Duration::from_millis(120),
            Source::Social => Duration::from_millis(250),
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Cex => "cex",
            Source::Dex => "dex",
            Source::Social => "social",
        })
    }
}

/// A phase of the scripted scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Healthy: fast, rare errors.
    Normal,
    /// Latency x8.
    LatencySpike,
    /// Half the calls fail.
    ErrorBurst,
    /// Every call fails.
    Outage,
    /// Healthy again, without even the background errors.
    Recovery,
}

impl Phase {
    /// The phase at `progress` (0..1) through the scenario.
    pub fn at(progress: f64) -> Phase {
        match progress {
            p if p < 0.25 => Phase::Normal,
            p if p < 0.40 => Phase::LatencySpike,
            p if p < 0.55 => Phase::ErrorBurst,
            p if p < 0.70 => Phase::Outage,
            _ => Phase::Recovery,
        }
    }

    /// The phase's name.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Normal => "normal",
            Phase::LatencySpike => "latency spike",
            Phase::ErrorBurst => "error burst",
            Phase::Outage => "outage",
            Phase::Recovery => "recovery",
        }
    }

    /// The faults this phase injects.
    pub fn faults(self) -> FaultSettings {
        match self {
            Phase::Normal => FaultSettings {
                error_rate: 0.01,
                latency_factor: 1.0,
                outage: false,
            },
            // Error-free, so the status windows refill with successes only and a run's end
            // shows the recovery: with 1 % of errors, a window of a few dozen calls would
            // often hold one, under a 99 % "degraded" threshold.
            Phase::Recovery => FaultSettings {
                error_rate: 0.0,
                latency_factor: 1.0,
                outage: false,
            },
            Phase::LatencySpike => FaultSettings {
                error_rate: 0.02,
                latency_factor: 8.0,
                outage: false,
            },
            Phase::ErrorBurst => FaultSettings {
                error_rate: 0.5,
                latency_factor: 1.5,
                outage: false,
            },
            Phase::Outage => FaultSettings {
                error_rate: 1.0,
                latency_factor: 0.2,
                outage: true,
            },
        }
    }
}

/// Faults to inject: the body of `POST /admin/upstream/faults`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultSettings {
    /// Share of calls that fail with a 503, 0..=1.
    pub error_rate: f64,
    /// Latency multiplier (1 = normal).
    pub latency_factor: f64,
    /// Every call fails at once.
    pub outage: bool,
}

impl Default for FaultSettings {
    fn default() -> Self {
        Phase::Normal.faults()
    }
}

impl FaultSettings {
    /// Clamps hostile values into range.
    pub fn sanitized(self) -> Self {
        Self {
            error_rate: if self.error_rate.is_finite() {
                self.error_rate.clamp(0.0, 1.0)
            } else {
                0.0
            },
            latency_factor: if self.latency_factor.is_finite() {
                self.latency_factor.clamp(0.0, 100.0)
            } else {
                1.0
            },
            outage: self.outage,
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
    rng: Mutex<SmallRng>,
    error_rate_ppm: AtomicU32,
    latency_factor_milli: AtomicU32,
    outage: AtomicBool,
    calls: [AtomicU64; 3],
    failures: [AtomicU64; 3],
}

/// The simulated upstream. Cheap to clone; clones share faults and counters.
#[derive(Debug, Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

impl Upstream {
    /// A healthy upstream with a seeded random source.
    pub fn new(seed: u64) -> Self {
        let upstream = Self {
            inner: Arc::new(Inner {
                rng: Mutex::new(SmallRng::seed_from_u64(seed)),
                error_rate_ppm: AtomicU32::new(0),
                latency_factor_milli: AtomicU32::new(1000),
                outage: AtomicBool::new(false),
                calls: Default::default(),
                failures: Default::default(),
            }),
        };
        upstream.set_faults(FaultSettings::default());
        upstream
    }

    /// Replaces the injected faults (values are clamped into range).
    pub fn set_faults(&self, faults: FaultSettings) {
        let f = faults.sanitized();
        self.inner
            .error_rate_ppm
            .store((f.error_rate * 1e6) as u32, Ordering::Relaxed);
        self.inner
            .latency_factor_milli
            .store((f.latency_factor * 1e3) as u32, Ordering::Relaxed);
        self.inner.outage.store(f.outage, Ordering::Relaxed);
    }

    /// The faults in force.
    pub fn faults(&self) -> FaultSettings {
        FaultSettings {
            error_rate: f64::from(self.inner.error_rate_ppm.load(Ordering::Relaxed)) / 1e6,
            latency_factor: f64::from(self.inner.latency_factor_milli.load(Ordering::Relaxed))
                / 1e3,
            outage: self.inner.outage.load(Ordering::Relaxed),
        }
    }

    /// Calls that reached the upstream for `source`.
    pub fn calls(&self, source: Source) -> u64 {
        self.inner.calls[source.index()].load(Ordering::Relaxed)
    }

    /// Calls to `source` that failed.
    pub fn failures(&self, source: Source) -> u64 {
        self.inner.failures[source.index()].load(Ordering::Relaxed)
    }

    /// Decides what a call does: its latency and whether it fails.
    fn plan(&self, source: Source) -> (Duration, bool) {
        let faults = self.faults();
        let (jitter, roll) = {
            let mut rng = self.inner.rng.lock();
            (rng.random_range(0.5..1.5), rng.random::<f64>())
        };
        let latency = source
            .base_latency()
            .mul_f64(faults.latency_factor * jitter);
        (latency, faults.outage || roll < faults.error_rate)
    }

    /// Serves one request: waits for its latency (tokio time, so a paused clock skips
    /// it), then answers with data or fails.
    pub async fn handle(&self, request: UpstreamRequest) -> Result<Value, UpstreamError> {
        let source = request.source();
        self.inner.calls[source.index()].fetch_add(1, Ordering::Relaxed);
        let (latency, fails) = self.plan(source);
        tokio::time::sleep(latency).await;
        if fails {
            self.inner.failures[source.index()].fetch_add(1, Ordering::Relaxed);
            return Err(UpstreamError {
                source,
                outage: self.inner.outage.load(Ordering::Relaxed),
            });
        }
        Ok(self.body(&request))
    }

    fn body(&self, request: &UpstreamRequest) -> Value {
        let mut rng = self.inner.rng.lock();
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
            outage: false,
        }
        .sanitized();
        assert_eq!(f.error_rate, 0.0);
        assert_eq!(f.latency_factor, 100.0);
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
