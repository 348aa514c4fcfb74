//! The gRPC example: the binary end to end (both rejections mapped, the run recovers), and
//! the server in process answering RESOURCE_EXHAUSTED once a key's quota is spent and
//! UNAVAILABLE while its breaker is open.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use examples::upstream::{FaultSettings, Source, Upstream};
use reliability_core::health::BreakerState;
use tonic::Code;

#[path = "../src/bin/grpc.rs"]
#[allow(dead_code)]
mod app;

#[test]
fn scripted_session_maps_both_rejections_and_recovers() {
    let out = Command::new(env!("CARGO_BIN_EXE_grpc"))
        .args(["--requests", "120", "--seed", "5", "--json"])
        .output()
        .expect("grpc runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or_else(|| panic!("number in {s}"));

    assert!(n(&s["calls"]) >= 120, "{s}");
    assert!(n(&s["ok"]) > 0, "{s}");
    // The noisy client's burst was refused with RESOURCE_EXHAUSTED by the server's limit...
    assert!(n(&s["server"]["resource_exhausted_sent"]) > 0, "{s}");
    assert!(n(&s["resource_exhausted"]) > 0, "{s}");
    // ...and the outage opened the server's breaker, which answered UNAVAILABLE.
    assert!(n(&s["server"]["unavailable_sent_by_breaker"]) > 0, "{s}");
    assert!(n(&s["unavailable"]) > 0, "{s}");
    assert!(n(&s["server"]["breaker"]["state_changes"]) >= 2, "{s}");
    assert!(n(&s["client_retries"]) > 0, "{s}");
    // The recovery closed every breaker again.
    assert_eq!(s["server"]["breaker"]["state"], "CLOSED", "{s}");
    assert_eq!(
        s["clients"]["steady-client"]["breaker"]["state"], "CLOSED",
        "{s}"
    );
    for side in [&s["server"]["sla"], &s["clients"]["steady-client"]["sla"]] {
        for key in ["status", "p50_ms", "p95_ms", "p99_ms"] {
            assert!(!side[key].is_null(), "{key} missing in {side}");
        }
    }
}

#[test]
fn bad_arguments_are_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_grpc"))
        .args(["--requests", "lots"])
        .output()
        .expect("grpc runs");
    assert_eq!(out.status.code(), Some(2));
}

/// One call from a bare client (no retries or breaker of its own), so the server's answer
/// shows as is.
async fn get_price(addr: SocketAddr, key: &str) -> Result<app::PriceReply, tonic::Status> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.unwrap();
    let mut request = tonic::Request::new(app::PriceRequest {
        symbol: "ETH-USDC".into(),
    });
    request
        .metadata_mut()
        .insert(app::API_KEY, key.parse().unwrap());
    client
        .unary(
            request,
            http::uri::PathAndQuery::from_static("/prices.Prices/GetPrice"),
            tonic_prost::ProstCodec::<app::PriceRequest, app::PriceReply>::default(),
        )
        .await
        .map(tonic::Response::into_inner)
}

async fn start(quota_per_second: u64, faults: FaultSettings) -> (app::PriceServer, Upstream) {
    let settings = app::ServerSettings {
        quota_per_second,
        breaker_failures: 3,
        breaker_open_wait: Duration::from_secs(30),
        ..Default::default()
    };
    let upstream = Upstream::new(1);
    upstream.set_faults(faults);
    let server = app::start_server(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        upstream.clone(),
        &settings,
    )
    .await
    .unwrap();
    (server, upstream)
}

const HEALTHY: FaultSettings = FaultSettings {
    error_rate: 0.0,
    latency_factor: 0.0,
    outage: false,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_answers_resource_exhausted_when_the_quota_is_spent() {
    let (server, _) = start(3, HEALTHY).await;
    for _ in 0..3 {
        let reply = get_price(server.addr, "alice").await.unwrap();
        assert_eq!(reply.symbol, "ETH-USDC");
        assert!(reply.price > 0.0);
    }
    let refused = get_price(server.addr, "alice").await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("rate limited"), "{refused:?}");
    // Another key has its own quota; the refusal reached neither the breaker nor the SLA.
    assert!(get_price(server.addr, "bob").await.is_ok());
    assert_eq!(server.limiter.snapshot().rejected, 1);
    assert_eq!(server.breaker.breaker().snapshot().failures, 0);
    assert_eq!(server.sla.report().totals.successes, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_answers_unavailable_while_its_breaker_is_open() {
    let outage = FaultSettings {
        outage: true,
        ..HEALTHY
    };
    let (server, upstream) = start(100, outage).await;
    for _ in 0..3 {
        let failed = get_price(server.addr, "alice").await.unwrap_err();
        assert_eq!(failed.code(), Code::Unavailable, "{failed:?}");
        assert!(failed.message().contains("outage"), "{failed:?}");
    }
    assert_eq!(server.breaker.breaker().state(), BreakerState::Open);
    let refused = get_price(server.addr, "alice").await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("prices-server"), "{refused:?}");
    let pushback = refused
        .metadata()
        .get("grpc-retry-pushback-ms")
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .expect("a pushback");
    assert!(pushback > 0 && pushback <= 30_000, "{pushback}");
    // The open breaker answered without calling the upstream.
    assert_eq!(upstream.calls(Source::Dex), 3);
}
