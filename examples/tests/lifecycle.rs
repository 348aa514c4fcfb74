//! The example server's lifecycle, through its binary: on SIGTERM it stops accepting, lets
//! the requests in flight finish, writes what is queued and exits 0.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Process, admin, client, eventually, get, spawn_server_with};
use serde_json::Value;

const ENTERPRISE: (&str, &str) = ("x-api-key", "k-ent");

const CONFIG: &str = r#"
[keys.k-ent]
account = "ent"
tier = "enterprise"
"#;

/// A `server` process on a config file of its own (removed once started).
async fn server(name: &str, args: &[&str]) -> (Process, SocketAddr) {
    let file = std::env::temp_dir().join(format!("{name}-{}.toml", std::process::id()));
    std::fs::write(&file, CONFIG).unwrap();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let started = spawn_server_with(&file, &args);
        let _ = std::fs::remove_file(&file);
        started
    })
    .await
    .unwrap()
}

/// Calls in flight to the upstream of `source`, as its bulkhead reports them.
fn in_flight(health: &Value, source: &str) -> u64 {
    health["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["detail"]["type"] == "concurrency")
        .filter(|c| c["name"].as_str().is_some_and(|n| n.contains(source)))
        .map(|c| c["detail"]["in_flight"].as_u64().unwrap_or(0))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_requests_in_flight_finish_then_exits_0() {
    let (mut process, addr) = server("drain", &["--drain", "20s"]).await;
    let c = client();
    // A slow upstream: a social search takes about a second (its attempt timeout is 10 s).
    admin(
        &c,
        addr,
        "POST",
        "/admin/upstream/faults",
        r#"{"error_rate": 0.0, "latency_factor": 4.0, "outage": false}"#,
    )
    .await;
    let slow = {
        let c = c.clone();
        tokio::spawn(
            async move { get(&c, addr, "/api/social/search?q=in-flight", ENTERPRISE).await },
        )
    };
    // The signal goes once the server says the call is in flight, not after a guess.
    let started = eventually(Duration::from_secs(10), || async {
        in_flight(&admin(&c, addr, "GET", "/admin/health", "").await, "social") >= 1
    })
    .await;
    assert!(
        started.is_some(),
        "the slow call never reached the upstream"
    );
    process.terminate();

    // The request in flight is answered in full: `get` fails the test on a reset.
    let answer = slow.await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        answer.cache_status.contains("fwd=miss"),
        "{}",
        answer.cache_status
    );
    let status = tokio::task::spawn_blocking(move || {
        let status = process.wait_exit(Duration::from_secs(30));
        (status, process)
    })
    .await
    .unwrap();
    let (status, _process) = status;
    let status = status.expect("the server exits after the drain");
    assert!(status.success(), "exit status {status:?}");
    // And it no longer accepts.
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "{addr} still accepts after the stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_deadline_that_passes_exits_1() {
    let (mut process, addr) = server("drain-deadline", &["--drain", "200ms"]).await;
    let c = client();
    // Slower than the deadline: about 2.5 s per social search.
    admin(
        &c,
        addr,
        "POST",
        "/admin/upstream/faults",
        r#"{"error_rate": 0.0, "latency_factor": 10.0, "outage": false}"#,
    )
    .await;
    let slow = {
        let c = c.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(
                Duration::from_secs(30),
                get(&c, addr, "/api/social/search?q=abandoned", ENTERPRISE),
            )
            .await;
        })
    };
    let started = eventually(Duration::from_secs(10), || async {
        in_flight(&admin(&c, addr, "GET", "/admin/health", "").await, "social") >= 1
    })
    .await;
    assert!(
        started.is_some(),
        "the slow call never reached the upstream"
    );
    process.terminate();
    let status = tokio::task::spawn_blocking(move || process.wait_exit(Duration::from_secs(20)))
        .await
        .unwrap()
        .expect("the server exits at the deadline");
    assert_eq!(status.code(), Some(1), "exit status {status:?}");
    slow.abort();
}
