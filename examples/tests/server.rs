//! The example server through a real socket: routes, `Cache-Status`, per-key and per-IP
//! rate limits with the IETF headers, stale-if-error during an injected outage, and the
//! admin router's token rules.

use std::net::SocketAddr;
use std::time::Duration;

use examples::server::{DEFAULT_CONFIG, ServerConfig, app, serve};
use examples::upstream::Upstream;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const TOKEN: &str = "server-test-token-123";

/// Short TTLs so the test sees an entry go stale within milliseconds.
const FAST: &str = r#"
[keys.k-free]
account = "alice"
tier = "free"

[keys.k-pro]
account = "carol"
tier = "pro"

[reliability.cex.cache]
ttl = "200ms"
stale_while_revalidate = "10ms"
stale_if_error = "30s"
"#;

async fn start(config: &str, token: Option<&str>) -> (SocketAddr, Upstream) {
    let config = ServerConfig::parse(config).unwrap();
    let upstream = Upstream::new(1);
    upstream.set_faults(examples::upstream::FaultSettings {
        error_rate: 0.0,
        latency_factor: 0.05,
        ..examples::upstream::FaultSettings::HEALTHY
    });
    let (router, _) = app(&config, upstream.clone(), token).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, router));
    (addr, upstream)
}

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = client
        .request(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap())
        .await
        .unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Answer {
    send(addr, "GET", path, headers, "").await
}

fn header<'a>(a: &'a Answer, name: &str) -> &'a str {
    a.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header in {:?}", a.headers))
}

#[tokio::test]
async fn routes_answer_with_cache_status() {
    let (addr, upstream) = start(DEFAULT_CONFIG, None).await;
    let key = [("x-api-key", "demo-enterprise-key")];
    for path in [
        "/api/cex/orderbook/BTC-USDT",
        "/api/dex/quote/ETH-USDC",
        "/api/social/search?q=rust",
    ] {
        let first = get(addr, path, &key).await;
        assert_eq!(first.status, 200, "{path}: {}", first.body);
        assert!(
            header(&first, "cache-status").contains("fwd=miss"),
            "{path}"
        );
        let second = get(addr, path, &key).await;
        assert_eq!(second.status, 200);
        assert!(header(&second, "cache-status").contains("; hit"), "{path}");
        assert_eq!(first.body, second.body, "the cached answer is the same");
    }
    assert_eq!(upstream.calls(examples::upstream::Source::Cex), 1);
    let bad = get(
        addr,
        &format!("/api/cex/orderbook/{}", "x".repeat(200)),
        &key,
    )
    .await;
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn free_tier_gets_429_with_ietf_headers_and_pro_does_not() {
    let (addr, _) = start(FAST, None).await;
    let free = [("x-api-key", "k-free")];
    let mut statuses = Vec::new();
    let mut limited = None;
    for i in 0..4 {
        let a = get(addr, &format!("/api/dex/quote/P{i}"), &free).await;
        statuses.push(a.status);
        if a.status == 429 {
            limited = Some(a);
        }
    }
    assert_eq!(&statuses[..2], &[200, 200], "{statuses:?}");
    let limited = limited.expect("the free tier allows 2 per second");
    assert!(header(&limited, "retry-after").parse::<u64>().unwrap() >= 1);
    let policy = header(&limited, "ratelimit-policy");
    assert!(policy.contains(";q=2;w=1"), "{policy}");
    let state = header(&limited, "ratelimit");
    assert!(state.contains(";r=0;t="), "{state}");

    let pro = [("x-api-key", "k-pro")];
    for i in 0..8 {
        assert_eq!(
            get(addr, &format!("/api/dex/quote/Q{i}"), &pro)
                .await
                .status,
            200
        );
    }

    // No key: the free tier per client IP.
    let mut anonymous = Vec::new();
    for i in 0..4 {
        anonymous.push(get(addr, &format!("/api/dex/quote/A{i}"), &[]).await.status);
    }
    assert!(anonymous.contains(&429), "{anonymous:?}");
}

#[tokio::test]
async fn outage_serves_stale_then_fails_fast() {
    let (addr, _) = start(FAST, Some(TOKEN)).await;
    let pro = [("x-api-key", "k-pro")];
    let fresh = get(addr, "/api/cex/orderbook/SOL-USDT", &pro).await;
    assert_eq!(fresh.status, 200);

    let auth = format!("Bearer {TOKEN}");
    let outage = r#"{"error_rate":1.0,"latency_factor":0.05,"outage":true}"#;
    let set = send(
        addr,
        "POST",
        "/admin/upstream/faults",
        &[("authorization", &auth)],
        outage,
    )
    .await;
    assert_eq!(set.status, 200, "{}", set.body);
    // The outage is the upstream's chaos layers', listed by the admin router.
    let chaos = get(
        addr,
        "/admin/chaos/upstream-cex",
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(chaos.status, 200, "{}", chaos.body);
    let chaos: serde_json::Value = serde_json::from_str(&chaos.body).unwrap();
    assert_eq!(chaos["enabled"], true, "{chaos}");
    assert_eq!(chaos["config"]["error_rate"], 1.0, "{chaos}");
    // What is awaited is time itself: the 200 ms TTL running out (a sleep can only end
    // later, never early, so no load breaks it). Polling instead would spend the key's quota.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stale = get(addr, "/api/cex/orderbook/SOL-USDT", &pro).await;
    assert_eq!(stale.status, 200, "stale-if-error answers: {}", stale.body);
    assert_eq!(stale.body, fresh.body);
    assert!(
        header(&stale, "cache-status").contains("fwd=stale"),
        "{:?}",
        stale.headers
    );

    // Keys never cached fail; after the breaker opens they fail fast with Retry-After.
    let mut last = None;
    for i in 0..8 {
        last = Some(get(addr, &format!("/api/cex/orderbook/NEW{i}"), &pro).await);
    }
    let last = last.unwrap();
    assert_eq!(last.status, 503, "{}", last.body);
    assert!(last.body.contains("circuit open"));
    assert!(header(&last, "retry-after").parse::<u64>().unwrap() >= 1);

    let health = get(addr, "/admin/health", &[("authorization", &auth)]).await;
    let health: serde_json::Value = serde_json::from_str(&health.body).unwrap();
    let cex = health["breakers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "cex")
        .unwrap();
    assert_eq!(cex["state"], "OPEN");
    // Every failure the upstream answered was injected by its chaos layer.
    let chaos = get(
        addr,
        "/admin/chaos/upstream-cex",
        &[("authorization", &auth)],
    )
    .await;
    let chaos: serde_json::Value = serde_json::from_str(&chaos.body).unwrap();
    assert!(chaos["counts"]["errors"].as_u64().unwrap() >= 3, "{chaos}");
}

#[tokio::test]
async fn admin_is_off_without_a_token_and_guarded_with_one() {
    let (addr, _) = start(DEFAULT_CONFIG, None).await;
    assert_eq!(get(addr, "/admin/health", &[]).await.status, 404);
    assert_eq!(get(addr, "/dashboard", &[]).await.status, 404);

    let (addr, _) = start(DEFAULT_CONFIG, Some(TOKEN)).await;
    assert_eq!(get(addr, "/admin/health", &[]).await.status, 401);
    assert_eq!(
        send(addr, "POST", "/admin/upstream/faults", &[], "{}")
            .await
            .status,
        401
    );
    let auth = format!("Bearer {TOKEN}");
    let ok = get(addr, "/admin/health", &[("authorization", &auth)]).await;
    assert_eq!(ok.status, 200);
    let metrics = get(addr, "/admin/metrics", &[("authorization", &auth)]).await;
    assert!(metrics.body.contains("_total"), "{}", metrics.body);
    let top = get(addr, "/admin/ratelimit/alice", &[("authorization", &auth)]).await;
    assert_eq!(top.status, 200, "{}", top.body);
    assert_eq!(get(addr, "/dashboard", &[]).await.status, 200);
}
