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

# The social API's own quota (5 per 5 s by default) out of the way of the load.
[reliability.social.rate_limit]
window = { limit = 10000, period = "1s" }
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

/// Sets the simulated upstream's latency to `factor` times its normal (no errors).
async fn upstream_latency(c: &common::HttpClient, addr: SocketAddr, factor: f64) {
    let faults = format!(r#"{{"error_rate": 0.0, "latency_factor": {factor}, "outage": false}}"#);
    admin(c, addr, "POST", "/admin/upstream/faults", &faults).await;
}

/// Waits until the server reports a social call in flight: the signal then lands on a
/// request being served, not on a guess.
async fn until_in_flight(c: &common::HttpClient, addr: SocketAddr) {
    let started = eventually(Duration::from_secs(10), || async {
        in_flight(&admin(c, addr, "GET", "/admin/health", "").await, "social") >= 1
    })
    .await;
    assert!(
        started.is_some(),
        "the slow call never reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_requests_in_flight_finish_then_exits_0() {
    let (mut process, addr) = server("drain", &["--drain", "20s"]).await;
    let c = client();
    // A slow upstream: a social search takes about a second (its attempt timeout is 10 s).
    upstream_latency(&c, addr, 4.0).await;
    let slow = {
        let c = c.clone();
        tokio::spawn(
            async move { get(&c, addr, "/api/social/search?q=in-flight", ENTERPRISE).await },
        )
    };
    until_in_flight(&c, addr).await;
    process.terminate();

    // The request in flight is answered in full: `get` fails the test on a reset.
    let answer = slow.await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        answer.cache_status.contains("fwd=miss"),
        "{}",
        answer.cache_status
    );
    let status = tokio::task::spawn_blocking(move || process.wait_exit(Duration::from_secs(30)))
        .await
        .unwrap()
        .expect("the server exits after the drain");
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
    upstream_latency(&c, addr, 10.0).await;
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
    until_in_flight(&c, addr).await;
    process.terminate();
    let status = tokio::task::spawn_blocking(move || process.wait_exit(Duration::from_secs(20)))
        .await
        .unwrap()
        .expect("the server exits at the deadline");
    assert_eq!(status.code(), Some(1), "exit status {status:?}");
    slow.abort();
}

/// SIGTERM during write-behind load: every answer the clients got before the signal (and
/// the ones in flight, which the drain finishes) was written behind to Redis and to disk
/// before the exit, so a new server on the same Redis serves each from its cache, and so
/// does one on the same `--disk`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_write_behind_loses_no_acknowledged_entry() {
    let Some(redis) = reliability_core::harness::RedisServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().to_str().unwrap().to_owned();
    let url = redis.url();
    let (mut first, addr) = server("write-behind", &["--redis", &url, "--disk", &disk]).await;
    let c = client();
    upstream_latency(&c, addr, 0.02).await;

    // Four clients, each on keys of its own, until the signal.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acknowledged = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|t| {
            let (c, stop, acknowledged) = (c.clone(), stop.clone(), acknowledged.clone());
            tokio::spawn(async move {
                let mut cached = Vec::new();
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let path = format!("/api/social/search?q=wb-{t}-{i}");
                    let answer = search(&c, addr, &path).await;
                    match answer {
                        Some(a) if a.status == 200 => {
                            cached.push(path);
                            acknowledged.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            i += 1;
                        }
                        // Over the tier's 50/s or the upstream quota: not stored, not
                        // acknowledged; the same key again shortly.
                        Some(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                        // Refused once the listener closed: never acknowledged.
                        None => break,
                    }
                }
                cached
            })
        })
        .collect();
    let busy = eventually(Duration::from_secs(20), || async {
        acknowledged.load(std::sync::atomic::Ordering::Relaxed) >= 100
    })
    .await;
    assert!(busy.is_some(), "the clients got 100 answers");
    // Redis holds every write for 150 ms (well under the 500 ms response timeout, so on a
    // loaded machine too none fails): the write-behind queues are not empty when the
    // signal lands, and only a drain that waits for them keeps their entries.
    let paused = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &redis.port().to_string(),
            "CLIENT",
            "PAUSE",
            "150",
            "WRITE",
        ])
        .output()
        .expect("redis-cli runs");
    assert!(paused.status.success(), "{paused:?}");
    first.terminate();
    let status = tokio::task::spawn_blocking(move || first.wait_exit(Duration::from_secs(30)))
        .await
        .unwrap()
        .expect("the server exits after the drain");
    assert!(status.success(), "exit status {status:?}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut cached = Vec::new();
    for client in clients {
        cached.extend(client.await.unwrap());
    }
    assert!(cached.len() >= 100, "{} answers", cached.len());

    // Each tier alone: Redis without the disk, then the disk without Redis.
    for args in [vec!["--redis", url.as_str()], vec!["--disk", disk.as_str()]] {
        let (_again, addr) = server("write-behind-again", &args).await;
        let mut missed = Vec::new();
        for path in &cached {
            // The tier's 50/s holds here too: a refused read is asked again.
            let mut a = search(&c, addr, path)
                .await
                .expect("the new server answers");
            while a.status == 429 {
                tokio::time::sleep(Duration::from_millis(25)).await;
                a = search(&c, addr, path)
                    .await
                    .expect("the new server answers");
            }
            if a.status != 200 || !a.cache_status.contains("hit") {
                missed.push(format!("{path}: {} {}", a.status, a.cache_status));
            }
        }
        assert!(
            missed.is_empty(),
            "{} of {} acknowledged entries not found with {args:?}: {:?}",
            missed.len(),
            cached.len(),
            &missed[..missed.len().min(5)]
        );
    }
}

/// A search with a fixed `Host` (the cache key holds it, and each server has its own port);
/// `None` when the connection fails.
async fn search(c: &common::HttpClient, addr: SocketAddr, path: &str) -> Option<common::Answer> {
    common::try_send(
        c,
        addr,
        "GET",
        path,
        &[ENTERPRISE, ("host", "api.example")],
        "",
    )
    .await
}
