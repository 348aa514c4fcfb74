//! The gRPC example: the binary end to end (both rejections mapped, the run recovers); the
//! server in process answering RESOURCE_EXHAUSTED once a key's quota is spent and
//! UNAVAILABLE while its breaker is open; and `grpc serve` as a real process that a client
//! generated from the same `.proto`, and a reflection client, can call.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use examples::grpc::proto::prices_client::PricesClient;
use examples::grpc::proto::{GetPriceRequest, PriceReply};
use examples::grpc::{API_KEY, PriceServer, ServerSettings, start_server};
use examples::upstream::{FaultSettings, Source, Upstream};
use futures_util::stream;
use ratelimit_layer::Quota;
use reliability_core::health::BreakerState;
use tonic::Code;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

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

/// One call from a bare client (the generated one, no retries or breaker of its own), so
/// the server's answer shows as is.
async fn get_price(addr: SocketAddr, key: &str) -> Result<PriceReply, tonic::Status> {
    let mut client = PricesClient::connect(format!("http://{addr}"))
        .await
        .expect("the server accepts");
    let mut request = tonic::Request::new(GetPriceRequest {
        symbol: "ETH-USDC".into(),
    });
    request.metadata_mut().insert(API_KEY, key.parse().unwrap());
    client
        .get_price(request)
        .await
        .map(tonic::Response::into_inner)
}

async fn start(quota_per_second: u64, faults: FaultSettings) -> (PriceServer, Upstream) {
    let settings = ServerSettings {
        quota_per_second,
        breaker_failures: 3,
        breaker_open_wait: Duration::from_secs(30),
        ..Default::default()
    };
    let upstream = Upstream::new(1);
    upstream.set_faults(faults);
    let server = start_server(
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
    ..FaultSettings::HEALTHY
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_answers_resource_exhausted_when_the_quota_is_spent() {
    let (server, _) = start(3, HEALTHY).await;
    // What is under test is the answer to a spent quota, not the quota's rate: at 3 per
    // second, the fourth call would pass if the four took over 333 ms, as they may on a
    // loaded machine. Three calls an hour cannot refill during the test.
    server
        .limiter
        .set_user_limit("alice", Quota::per(3, Duration::from_secs(3600)).unwrap())
        .await
        .unwrap();
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

/// The `grpc serve` child process, killed when the test ends, passing or not.
struct ServeProcess(Child);

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port free a moment ago on loopback.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    listener.local_addr().unwrap().port()
}

/// Starts `grpc serve` on a free port and waits, polling, until it accepts connections.
async fn spawn_serve(extra: &[&str]) -> (ServeProcess, SocketAddr) {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let child = Command::new(env!("CARGO_BIN_EXE_grpc"))
        .args(["serve", "--addr", &addr.to_string()])
        .args(extra)
        .stdout(Stdio::null())
        .spawn()
        .expect("grpc serve starts");
    let mut process = ServeProcess(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if let Some(status) = process.0.try_wait().unwrap() {
            panic!("grpc serve exited before accepting: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "grpc serve never accepted on {addr}"
        );
        // The pause between attempts, not a guess at the start-up time.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (process, addr)
}

/// Asks the server's reflection what `grpcurl` asks: the services it serves, then the
/// file that declares `prices.Prices` (what a call needs to encode its request).
async fn reflect(addr: SocketAddr) -> (Vec<String>, Vec<u8>) {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("the server accepts");
    let mut client = ServerReflectionClient::new(channel);
    let ask = |request| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let questions = [
        ask(MessageRequest::ListServices(String::new())),
        ask(MessageRequest::FileContainingSymbol("prices.Prices".into())),
    ];
    let mut replies = client
        .server_reflection_info(stream::iter(questions))
        .await
        .expect("reflection answers")
        .into_inner();
    let mut next = async || {
        let reply = replies.message().await.expect("a reply");
        reply.expect("one reply per question").message_response
    };
    let services = match next().await {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("not a service list: {other:?}"),
    };
    let file = match next().await {
        Some(MessageResponse::FileDescriptorResponse(files)) => files.file_descriptor_proto,
        other => panic!("not a file descriptor: {other:?}"),
    };
    (services, file.concat())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_alone_for_any_grpc_client() {
    let (mut process, addr) = spawn_serve(&["--quota", "5", "--error-rate", "0"]).await;

    let reply = get_price(addr, "carol").await.expect("a price");
    assert_eq!(reply.symbol, "ETH-USDC");
    assert!(reply.price > 0.0, "{reply:?}");

    // A quota of 5 per second: calls sent together spend it, however slow the machine is
    // to send them one by one, and the refusal says when to come back. The deadline only
    // bounds a failing run.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("the server accepts");
    let deadline = Instant::now() + Duration::from_secs(30);
    let refused = loop {
        let calls = (0..20).map(|_| {
            let mut client = PricesClient::new(channel.clone());
            async move {
                let mut request = tonic::Request::new(GetPriceRequest {
                    symbol: "ETH-USDC".into(),
                });
                request
                    .metadata_mut()
                    .insert(API_KEY, "carol".parse().unwrap());
                client.get_price(request).await
            }
        });
        let results = futures_util::future::join_all(calls).await;
        if let Some(status) = results.into_iter().find_map(Result::err) {
            break status;
        }
        assert!(Instant::now() < deadline, "the quota never ran out");
    };
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.metadata().get("retry-after").is_some(),
        "{refused:?}"
    );
    // Another key still has its own quota.
    assert!(get_price(addr, "dave").await.is_ok());

    // Reflection answers from outside the rate limit, so carol's spent quota does not
    // matter: it lists the service and serves the file that declares it.
    let (services, file) = reflect(addr).await;
    assert!(
        services.iter().any(|s| s == "prices.Prices"),
        "{services:?}"
    );
    assert!(
        services
            .iter()
            .any(|s| s == "grpc.reflection.v1.ServerReflection"),
        "{services:?}"
    );
    let declares = |name: &[u8]| file.windows(name.len()).any(|w| w == name);
    assert!(
        declares(b"prices.proto") && declares(b"GetPrice"),
        "{file:?}"
    );

    // SIGTERM stops it cleanly (the guard kills it otherwise).
    if cfg!(unix) {
        let pid = process.0.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = process.0.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "grpc serve ignored SIGTERM");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(status.success(), "{status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_unavailable_with_pushback_during_an_outage() {
    let (_process, addr) = spawn_serve(&["--outage"]).await;
    // The upstream's failures first, then the open breaker's own refusal.
    let mut last = None;
    for _ in 0..10 {
        let status = get_price(addr, "erin").await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        if status.metadata().get("grpc-retry-pushback-ms").is_some() {
            last = Some(status);
            break;
        }
    }
    let refused = last.expect("the breaker opened within 10 calls");
    assert!(refused.message().contains("prices-server"), "{refused:?}");
}
