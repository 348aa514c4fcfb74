//! Full-stack server throughput on cache hits (rate limit → cache → preset stack, with
//! `Cache-Status` and the `RateLimit` headers) against a bare axum server answering the
//! same routes with the same JSON, both on loopback through one pooled hyper client.
//!
//! ```text
//! cargo bench -p examples --bench server -- --warm-up-time 1 --measurement-time 3
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{Path, Query};
use axum::http::header;
use axum::routing::get;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use examples::server::{ServerConfig, app, serve};
use examples::upstream::{FaultSettings, Upstream};
use futures_util::future::join_all;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use ratelimit_layer::Quota;

/// Requests in flight per iteration.
const BATCH: usize = 32;

const PATHS: [&str; 3] = [
    "/api/cex/orderbook/BTC-USDT",
    "/api/dex/quote/ETH-USDC",
    "/api/social/search?q=rust",
];

/// One key whose account gets an unlimited quota, and TTLs that outlast the run (every
/// measured request is a fresh hit).
const CONFIG: &str = r#"
[keys.bench-key]
account = "bench"
tier = "enterprise"

[reliability.cex.cache]
ttl = "10m"

[reliability.dex.cache]
ttl = "10m"

[reliability.social.cache]
ttl = "10m"
"#;

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

async fn fetch(client: &HttpClient, addr: SocketAddr, path: &str) -> (u16, String, Bytes) {
    let req = http::Request::get(format!("http://{addr}{path}"))
        .header("x-api-key", "bench-key")
        .body(Empty::new())
        .unwrap();
    let res = client.request(req).await.unwrap();
    let status = res.status().as_u16();
    let cache = res
        .headers()
        .get("cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (
        status,
        cache,
        res.into_body().collect().await.unwrap().to_bytes(),
    )
}

async fn batch(client: &HttpClient, addr: SocketAddr) {
    let answers = join_all((0..BATCH).map(|i| fetch(client, addr, PATHS[i % PATHS.len()]))).await;
    for (status, _, _) in answers {
        assert_eq!(status, 200);
    }
}

async fn spawn(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, router));
    addr
}

/// A bare axum server with the same routes and extractors, answering the given bodies.
fn bare(bodies: Vec<Bytes>) -> axum::Router {
    let json = move |i: usize| {
        let body: Bytes = bodies[i].clone();
        move || async move { ([(header::CONTENT_TYPE, "application/json")], body) }
    };
    let (cex, dex, social) = (json(0), json(1), json(2));
    axum::Router::new()
        .route(
            "/api/cex/orderbook/{symbol}",
            get(move |Path(_): Path<String>| cex()),
        )
        .route(
            "/api/dex/quote/{pair}",
            get(move |Path(_): Path<String>| dex()),
        )
        .route(
            "/api/social/search",
            get(move |Query(_): Query<std::collections::HashMap<String, String>>| social()),
        )
}

fn server(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let (full, bare) = rt.block_on(async {
        let upstream = Upstream::new(1);
        upstream.set_faults(FaultSettings {
            error_rate: 0.0,
            latency_factor: 0.05,
            ..FaultSettings::HEALTHY
        });
        let config = ServerConfig::parse(CONFIG).unwrap();
        let (router, app) = app(&config, upstream, None).unwrap();
        app.limiter
            .set_user_limit(
                "bench",
                Quota::per(1_000_000, Duration::from_secs(1)).unwrap(),
            )
            .await
            .unwrap();
        let full = spawn(router).await;
        let mut bodies = Vec::new();
        for path in PATHS {
            let (status, _, _) = fetch(&client, full, path).await;
            assert_eq!(status, 200, "{path}");
            let (_, cache, body) = fetch(&client, full, path).await;
            assert!(cache.contains("; hit"), "{path}: {cache}");
            bodies.push(body);
        }
        (full, spawn(bare(bodies)).await)
    });

    let mut group = c.benchmark_group("server_cache_hit");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("full_stack", |b| {
        b.to_async(&rt).iter(|| batch(&client, full));
    });
    group.bench_function("bare_axum", |b| {
        b.to_async(&rt).iter(|| batch(&client, bare));
    });
    group.finish();
}

criterion_group!(benches, server);
criterion_main!(benches);
