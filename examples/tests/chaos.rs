//! The example server under fire, on loopback with real Redis: an upstream outage during
//! load (stale answers, an open breaker, SLA FAILED then HEALTHY), Redis killed and
//! restarted during load (every request answered, limits back on Redis within a second),
//! and two servers sharing one Redis (limits hold across both, a clear on one clears the
//! other).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use examples::server::{App, ServerConfig, app, app_with_redis, serve};
use examples::upstream::{FaultSettings, Upstream};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use reliability_core::harness::RedisServer;
use reliability_core::redis::RedisConfig;
use serde_json::Value;

const TOKEN: &str = "chaos-test-token-123";
const ENTERPRISE: (&str, &str) = ("x-api-key", "k-ent");
const FREE: (&str, &str) = ("x-api-key", "k-free");

/// Keys on two tiers and a CEX stack tuned to trip and heal within a second or two.
const CONFIG: &str = r#"
[keys.k-ent]
account = "ent"
tier = "enterprise"

[keys.k-free]
account = "alice"
tier = "free"

[reliability.cex.cache]
ttl = "100ms"
stale_while_revalidate = "10ms"
stale_if_error = "30s"

[reliability.cex.breaker]
consecutive_failures = 3
open_wait = "300ms"
success_threshold = 1
half_open_probes = 1

[reliability.cex.sla]
time_window = "1s"
time_interval = "50ms"
status_window = "time"

[reliability.cex.retry]
max_attempts = 2
backoff = { kind = "exponential", base = "5ms", cap = "10ms", jitter = "full" }

[reliability.cex.rate_limit]
window = { limit = 10000, period = "1s" }
max_wait = "10ms"
"#;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn quiet_upstream() -> Upstream {
    let upstream = Upstream::new(7);
    upstream.set_faults(FaultSettings {
        error_rate: 0.0,
        latency_factor: 0.05,
        outage: false,
    });
    upstream
}

async fn start(redis: Option<&RedisConfig>) -> (SocketAddr, Upstream, App) {
    let config = ServerConfig::parse(CONFIG).unwrap();
    let upstream = quiet_upstream();
    let (router, app) = match redis {
        Some(redis) => app_with_redis(&config, upstream.clone(), Some(TOKEN), redis)
            .await
            .unwrap(),
        None => app(&config, upstream.clone(), Some(TOKEN)).unwrap(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, router));
    (addr, upstream, app)
}

struct Answer {
    status: u16,
    cache_status: String,
    body: String,
}

async fn send(
    client: &HttpClient,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
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
    let cache_status = res
        .headers()
        .get("cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        cache_status,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

async fn get(client: &HttpClient, addr: SocketAddr, path: &str, key: (&str, &str)) -> Answer {
    send(client, addr, "GET", path, &[key], "").await
}

async fn admin(
    client: &HttpClient,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Value {
    let auth = format!("Bearer {TOKEN}");
    let a = send(
        client,
        addr,
        method,
        path,
        &[("authorization", &auth)],
        body,
    )
    .await;
    assert_eq!(a.status, 200, "{path}: {}", a.body);
    serde_json::from_str(&a.body).unwrap()
}

/// The `field` of the entry named `name` in the health report's `list`.
fn named<'a>(report: &'a Value, list: &str, name: &str, field: &str) -> &'a str {
    report[list]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().is_some_and(|n| n.contains(name)))
        .unwrap_or_else(|| panic!("no {name} in {list}: {report}"))[field]
        .as_str()
        .unwrap_or_default()
}

/// Polls `check` every 20 ms until it holds or `limit` passes.
async fn eventually<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// Background load: `tasks` loops of requests over a few keys until stopped; returns every
/// status seen.
fn load(
    addr: SocketAddr,
    tasks: usize,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<BTreeMap<u16, u64>>> {
    (0..tasks)
        .map(|t| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let client = client();
                let mut seen = BTreeMap::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = if t % 2 == 0 { ENTERPRISE } else { FREE };
                    let path = match i % 3 {
                        0 => format!("/api/cex/orderbook/S{}", i % 4),
                        1 => format!("/api/dex/quote/P{}", i % 4),
                        _ => format!("/api/social/search?q=q{}", i % 4),
                    };
                    *seen
                        .entry(get(&client, addr, &path, key).await.status)
                        .or_insert(0) += 1;
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                seen
            })
        })
        .collect()
}

async fn finish(handles: Vec<tokio::task::JoinHandle<BTreeMap<u16, u64>>>) -> BTreeMap<u16, u64> {
    let mut total = BTreeMap::new();
    for h in handles {
        for (status, n) in h.await.unwrap() {
            *total.entry(status).or_insert(0) += n;
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_outage_serves_stale_opens_the_breaker_and_heals() {
    let (addr, _upstream, _app) = start(None).await;
    let c = client();
    let cached = "/api/cex/orderbook/BTC-USDT";
    assert_eq!(get(&c, addr, cached, ENTERPRISE).await.status, 200);

    let stop = Arc::new(AtomicBool::new(false));
    let background = load(addr, 4, stop.clone());
    let outage = r#"{"error_rate": 1.0, "latency_factor": 0.05, "outage": true}"#;
    admin(&c, addr, "POST", "/admin/upstream/faults", outage).await;

    // The cached key goes stale and is served stale while the upstream is down.
    let stale = eventually(Duration::from_secs(3), || async {
        let a = get(&c, addr, cached, ENTERPRISE).await;
        a.status == 200 && a.cache_status.contains("fwd=stale")
    })
    .await;
    assert!(stale.is_some(), "a stale answer during the outage");

    // Misses fail until the breaker opens and the SLA turns FAILED.
    let mut i = 0;
    let tripped = eventually(Duration::from_secs(3), || {
        i += 1;
        let c = &c;
        async move {
            let a = get(c, addr, &format!("/api/cex/orderbook/M{i}"), ENTERPRISE).await;
            assert!(matches!(a.status, 502 | 503), "{} {}", a.status, a.body);
            let h = admin(c, addr, "GET", "/admin/health", "").await;
            named(&h, "breakers", "cex", "state") == "OPEN"
                && named(&h, "sources", "cex", "status") == "FAILED"
        }
    })
    .await;
    assert!(tripped.is_some(), "breaker OPEN and SLA FAILED");
    let open = get(&c, addr, "/api/cex/orderbook/OPEN", ENTERPRISE).await;
    assert_eq!(
        open.status, 503,
        "an open circuit answers 503: {}",
        open.body
    );

    // Recovery: the breaker probes after 300 ms, closes, and the 1 s window forgets.
    let healthy = r#"{"error_rate": 0.0, "latency_factor": 0.05, "outage": false}"#;
    admin(&c, addr, "POST", "/admin/upstream/faults", healthy).await;
    let recovered = Instant::now();
    let mut i = 0;
    let healed = eventually(Duration::from_secs(5), || {
        i += 1;
        let c = &c;
        async move {
            get(c, addr, &format!("/api/cex/orderbook/R{i}"), ENTERPRISE).await;
            let h = admin(c, addr, "GET", "/admin/health", "").await;
            named(&h, "breakers", "cex", "state") == "CLOSED"
                && named(&h, "sources", "cex", "status") == "HEALTHY"
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let statuses = finish(background).await;
    println!("outage load statuses: {statuses:?}");
    assert!(
        healed.is_some(),
        "HEALTHY again after recovery ({:?} since)",
        recovered.elapsed()
    );
    println!(
        "healed {:?} after the upstream recovered",
        recovered.elapsed()
    );
    for status in statuses.keys() {
        assert!(
            matches!(status, 200 | 429 | 502 | 503),
            "unexpected {status}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_during_load() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let config = redis.config().key_prefix("chaos-restart");
    let (addr, _upstream, app) = start(Some(&config)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let background = load(addr, 6, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!app.limiter.snapshot().fallback_active, "on Redis at first");

    redis.stop();
    let fell_back = eventually(Duration::from_secs(2), || async {
        app.limiter.snapshot().fallback_active
    })
    .await;
    assert!(
        fell_back.is_some(),
        "the limiter falls back while Redis is down"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;

    redis.restart().unwrap();
    // Measured from the restart; "recheck interval plus one reconnect", with a margin a
    // loaded machine holds.
    let back = eventually(Duration::from_secs(10), || async {
        !app.limiter.snapshot().fallback_active
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let statuses = finish(background).await;
    println!("statuses during the Redis restart: {statuses:?}; back on Redis after {back:?}");
    let back = back.expect("limits back on Redis");
    assert!(
        back <= Duration::from_secs(10),
        "back on Redis within 10 s of the restart, took {back:?}"
    );
    assert!(statuses.get(&200).copied().unwrap_or(0) > 0);
    for status in statuses.keys() {
        assert!(
            matches!(status, 200 | 429),
            "unexpected {status}: {statuses:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_limits_and_cache_clears() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let config = redis.config().key_prefix("chaos-shared");
    let (a, _, _) = start(Some(&config)).await;
    let (b, _, _) = start(Some(&config)).await;
    share_limits_and_clears(a, b).await;
}

/// A `server` process, killed on drop.
struct Process(std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the `server` binary on a free port with `--redis`; returns its address.
fn spawn_server(config: &std::path::Path, redis: &str) -> (Process, SocketAddr) {
    spawn_server_with(config, &["--redis", redis])
}

/// Starts the `server` binary on a free port with `redis_args`; returns its address.
fn spawn_server_with(config: &std::path::Path, redis_args: &[&str]) -> (Process, SocketAddr) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_server"))
        .args(["--addr", "127.0.0.1:0"])
        .args(redis_args)
        .arg("--config")
        .arg(config)
        .env("ADMIN_TOKEN", TOKEN)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let process = Process(child);
    let mut lines = std::io::BufReader::new(stderr).lines();
    let line = lines
        .find_map(|l| l.ok().filter(|l| l.starts_with("listening on http://")))
        .expect("the server prints its address");
    let addr = line["listening on http://".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // Keep reading so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (process, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_server_processes_share_limits_and_cache_clears() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let file = std::env::temp_dir().join(format!("chaos-server-{}.toml", std::process::id()));
    std::fs::write(&file, CONFIG).unwrap();
    let (path, url) = (file.clone(), redis.url());
    let ((_pa, a), (_pb, b)) =
        tokio::task::spawn_blocking(move || (spawn_server(&path, &url), spawn_server(&path, &url)))
            .await
            .unwrap();
    share_limits_and_clears(a, b).await;
    tier_and_usage_are_fleet_wide(&[a, b]).await;
    let _ = std::fs::remove_file(file);
}

/// Three server processes on a real 3-master Redis Cluster (`--redis-cluster`): one
/// truth for tiers, usage, limits and cache clears, whichever server a request reaches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_server_processes_on_a_cluster_share_one_truth() {
    let Some(cluster) = reliability_core::harness::RedisCluster::start() else {
        return;
    };
    let file = std::env::temp_dir().join(format!("fleet-server-{}.toml", std::process::id()));
    std::fs::write(&file, CONFIG).unwrap();
    let seeds = cluster.urls().join(",");
    let path = file.clone();
    let servers = tokio::task::spawn_blocking(move || {
        (0..3)
            .map(|_| spawn_server_with(&path, &["--redis-cluster", &seeds]))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let addrs: Vec<SocketAddr> = servers.iter().map(|(_, a)| *a).collect();
    share_limits_and_clears(addrs[0], addrs[1]).await;
    tier_and_usage_are_fleet_wide(&addrs).await;
    let _ = std::fs::remove_file(file);
}

/// A tier set through one server's admin router holds on every other within 100 ms, and
/// top users read on any server count the traffic sent to all of them.
async fn tier_and_usage_are_fleet_wide(servers: &[SocketAddr]) {
    let c = client();
    let user = format!("acct-{}", std::process::id());
    for &s in servers {
        let status = admin(&c, s, "GET", &format!("/admin/ratelimit/{user}"), "").await;
        assert_eq!(status["tier"], "free", "{status}");
    }
    let set_on = servers[0];
    let began = Instant::now();
    admin(
        &c,
        set_on,
        "PUT",
        &format!("/admin/ratelimit/{user}/tier"),
        r#"{"tier":"pro"}"#,
    )
    .await;
    for &s in &servers[1..] {
        loop {
            let status = admin(&c, s, "GET", &format!("/admin/ratelimit/{user}"), "").await;
            if status["tier"] == "pro" {
                break;
            }
            assert!(
                began.elapsed() < Duration::from_secs(10),
                "{s} never saw the tier"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let took = began.elapsed();
    assert!(
        took < Duration::from_millis(100),
        "the tier reached every server after {took:?}"
    );

    // Enterprise traffic on every server: the top list on each counts all of it.
    for (i, &s) in servers.iter().enumerate() {
        for j in 0..(i + 2) {
            let answer = get(&c, s, &format!("/api/dex/quote/U{i}-{j}"), ENTERPRISE).await;
            assert_eq!(answer.status, 200, "{}", answer.body);
        }
    }
    let sent: u64 = (0..servers.len() as u64).map(|i| i + 2).sum();
    for &s in servers {
        let mut seen = 0;
        let began = Instant::now();
        while began.elapsed() < Duration::from_secs(10) {
            let top = admin(&c, s, "GET", "/admin/ratelimit?top=5", "").await;
            seen = top["top"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["user"] == "ent")
                .map_or(0, |e| e["usage"]["allowed"].as_u64().unwrap());
            // Flushed every 250 ms by each server; earlier traffic of "ent" counts too.
            if seen >= sent {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            seen >= sent,
            "{s} counts {seen} of at least {sent} requests of ent"
        );
    }
}

async fn share_limits_and_clears(a: SocketAddr, b: SocketAddr) {
    let c = client();
    // Warm both (first connections, lazy state) so the burst below is quick.
    for server in [a, b] {
        assert_eq!(
            get(&c, server, "/api/dex/quote/WARM", ENTERPRISE)
                .await
                .status,
            200
        );
    }

    // The free tier's 2/s holds across both servers.
    let began = Instant::now();
    let mut admitted = 0;
    for i in 0..6 {
        let server = if i % 2 == 0 { a } else { b };
        let answer = get(&c, server, &format!("/api/dex/quote/F{i}"), FREE).await;
        assert!(matches!(answer.status, 200 | 429), "{}", answer.body);
        admitted += u32::from(answer.status == 200);
    }
    let spent = began.elapsed();
    println!("free tier across two servers: {admitted} of 6 admitted in {spent:?}");
    // 2 at once, then 2 per second of the burst, plus one for a window boundary.
    let bound = 3 + (spent.as_secs_f64() * 2.0) as u32;
    assert!(
        admitted <= bound,
        "{admitted} admitted across both servers in {spent:?} (at most {bound})"
    );
    // And the limit is not refusing everybody: the tier's burst of 2 gets through.
    assert!(admitted >= 2, "only {admitted} of 6 admitted");

    // A clear on one server clears the other's L1 (and the shared L2). The social route
    // keeps the preset's 300 s TTL (only the CEX cache is shortened in this config), so
    // b's copy cannot expire by itself during the test: only the clear can make it miss.
    let path = "/api/social/search?q=clear-me";
    let first = get(&c, a, path, ENTERPRISE).await;
    assert!(
        first.cache_status.contains("fwd=miss"),
        "{}",
        first.cache_status
    );
    let warm = eventually(Duration::from_secs(2), || async {
        get(&c, b, path, ENTERPRISE)
            .await
            .cache_status
            .contains("hit")
    })
    .await;
    assert!(warm.is_some(), "b serves the entry from the cache");
    let cleared = admin(&c, a, "POST", "/admin/cache/clear", "").await;
    assert_eq!(cleared["cleared"], true);
    let missed = eventually(Duration::from_secs(2), || async {
        get(&c, b, path, ENTERPRISE)
            .await
            .cache_status
            .contains("fwd=miss")
    })
    .await;
    println!("b missed {missed:?} after the clear on a");
    assert!(missed.is_some(), "b misses after the clear on a");
}
