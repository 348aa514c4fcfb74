//! The example server under fire, on loopback with real Redis: an upstream outage during
//! load (stale answers, an open breaker, SLA FAILED then HEALTHY), Redis killed and
//! restarted during load (every request answered, limits back on Redis within a second),
//! two servers sharing one Redis (limits hold across both, a clear on one clears the
//! other), and server processes on a real 3+3 Redis Cluster: one limit, tier, usage table,
//! breaker and cache for the fleet, and a master SIGKILLed under traffic.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod common;

use common::{
    HttpClient, Process, TOKEN, admin, client, eventually, get, named, send, spawn_server,
    spawn_server_with,
};
use examples::server::{App, ServerConfig, app, app_with_redis, serve};
use examples::upstream::{FaultSettings, Upstream};
use reliability_core::harness::{RedisCluster, RedisServer};
use reliability_core::redis::RedisConfig;

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

fn quiet_upstream() -> Upstream {
    let upstream = Upstream::new(7);
    upstream.set_faults(FaultSettings {
        error_rate: 0.0,
        latency_factor: 0.05,
        ..FaultSettings::HEALTHY
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

/// Background load: `tasks` loops of requests over a few keys, round robin over
/// `servers`, `pause` apart, until stopped; returns every status seen. Even tasks send the
/// enterprise key, odd ones the free key.
fn load(
    servers: &[SocketAddr],
    tasks: usize,
    pause: Duration,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<BTreeMap<u16, u64>>> {
    (0..tasks)
        .map(|t| {
            let stop = stop.clone();
            let servers = servers.to_vec();
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
                    let addr = servers[(i as usize + t) % servers.len()];
                    *seen
                        .entry(get(&client, addr, &path, key).await.status)
                        .or_insert(0) += 1;
                    i += 1;
                    tokio::time::sleep(pause).await;
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
    let _one = ONE_AT_A_TIME.lock().await;
    let (addr, _upstream, _app) = start(None).await;
    let c = client();
    let cached = "/api/cex/orderbook/BTC-USDT";
    assert_eq!(get(&c, addr, cached, ENTERPRISE).await.status, 200);

    let stop = Arc::new(AtomicBool::new(false));
    let background = load(&[addr], 4, Duration::from_millis(5), stop.clone());
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
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let config = redis.config().key_prefix("chaos-restart");
    let (addr, _upstream, app) = start(Some(&config)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let background = load(&[addr], 6, Duration::from_millis(5), stop.clone());
    // The load is flowing and the limiter decides on Redis before Redis goes away.
    let flowing = eventually(Duration::from_secs(10), || async {
        let s = app.limiter.snapshot();
        s.allowed + s.rejected >= 20
    })
    .await;
    assert!(flowing.is_some(), "the load reaches the limiter");
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
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let config = redis.config().key_prefix("chaos-shared");
    let (a, _, _) = start(Some(&config)).await;
    let (b, _, _) = start(Some(&config)).await;
    share_limits_and_clears(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_server_processes_share_limits_and_cache_clears() {
    let _one = ONE_AT_A_TIME.lock().await;
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

/// The cluster tests' configuration: the shared one, plus breakers linked across the
/// fleet and an account that nothing else uses (so its quota starts full).
fn fleet_config() -> String {
    format!(
        "{CONFIG}\n[keys.k-burst]\naccount = \"burst\"\ntier = \"enterprise\"\n\n[fleet]\nshare_breakers = true\n"
    )
}

/// `n` server processes on `cluster` (`--redis-cluster` with every node as a seed).
async fn fleet(cluster: &RedisCluster, n: usize, name: &str) -> (Vec<Process>, Vec<SocketAddr>) {
    let file = std::env::temp_dir().join(format!("{name}-{}.toml", std::process::id()));
    std::fs::write(&file, fleet_config()).unwrap();
    let seeds = cluster.urls().join(",");
    let servers = tokio::task::spawn_blocking(move || {
        let servers: Vec<_> = (0..n)
            .map(|_| spawn_server_with(&file, &["--redis-cluster", &seeds]))
            .collect();
        let _ = std::fs::remove_file(file);
        servers
    })
    .await
    .unwrap();
    servers.into_iter().unzip()
}

/// Three server processes on a real Redis Cluster of 3 masters, each with a replica
/// (`--redis-cluster`): one truth for tiers, usage, limits, breakers and cache clears,
/// whichever server a request reaches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_server_processes_on_a_cluster_share_one_truth() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(cluster) = RedisCluster::start_with_replicas() else {
        return;
    };
    let (_servers, addrs) = fleet(&cluster, 3, "fleet-truth").await;
    share_limits_and_clears(addrs[0], addrs[1]).await;
    tier_and_usage_are_fleet_wide(&addrs).await;
    one_limit_for_three_servers_is_held_and_tight(&addrs).await;
    a_trip_on_one_server_opens_the_breaker_on_all(&addrs).await;
}

/// One master of the cluster is SIGKILLed while three servers take traffic: no request
/// on the cached and limited routes gets a 5xx (the limiter fails open to its local
/// fallback, the caches fall through to the upstream), and within 5 s of the replica's
/// promotion every server decides on Redis again, reads the shared control state again,
/// and a clear on one server reaches another's L1 again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_master_killed_under_traffic_costs_no_5xx_and_the_fleet_is_back_within_5s() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(mut cluster) = RedisCluster::start_with_replicas() else {
        return;
    };
    let (_servers, addrs) = fleet(&cluster, 3, "fleet-failover").await;
    let c = client();
    for &s in &addrs {
        assert_eq!(
            limiter_health(&c, s).await,
            (false, false),
            "{s} starts on Redis"
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    // Enterprise traffic well under its 50/s (so it reaches the caches), free traffic
    // well over its 2/s (so the limiter refuses).
    let background = load(&addrs, 4, Duration::from_millis(100), stop.clone());
    // Traffic on every server before the kill, so the kill lands under load.
    let busy = eventually(Duration::from_secs(10), || async {
        let mut all = true;
        for &s in &addrs {
            let h = admin(&c, s, "GET", "/admin/health", "").await;
            all &= h["rate_limits"][0]["allowed"].as_u64().unwrap_or(0) >= 5;
        }
        all
    })
    .await;
    assert!(busy.is_some(), "traffic reaches every server");

    // The master that holds the enterprise account's limiter state: every one of its
    // requests needs it.
    let victim = cluster.master_for_key("{ent}").unwrap();
    tokio::task::block_in_place(|| {
        // Not first `wait_replicas_synced`: under traffic the offsets never meet, and
        // losing the last unreplicated counts is part of what a failover does.
        cluster.kill_master(victim).unwrap();
    });
    // Some server notices (its limiter falls back or its control state goes stale), so
    // the recovery below is a recovery, not a state that never changed.
    let noticed = eventually(Duration::from_secs(10), || async {
        let mut any = false;
        for &s in &addrs {
            any |= limiter_health(&c, s).await != (false, false);
        }
        any
    })
    .await;
    let took = tokio::task::block_in_place(|| cluster.wait_failover(Duration::from_secs(30)))
        .expect("a replica is promoted");
    let promoted = Instant::now();
    println!("failover {took:?} after the kill; a server noticed after {noticed:?}");
    assert!(noticed.is_some(), "no server noticed the dead master");

    // Back on the shared state within 5 s of the promotion, on every server.
    for &s in &addrs {
        loop {
            let now = limiter_health(&c, s).await;
            if now == (false, false) {
                break;
            }
            assert!(
                promoted.elapsed() < Duration::from_secs(5),
                "{s} is not back on Redis 5 s after the promotion: (fallback, stale) = {now:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // The shared truth works again: a tier set on one server reaches the others, and a
    // clear on one evicts another's L1 copy.
    let user = format!("after-failover-{}", std::process::id());
    set_tier_everywhere(&c, &addrs, &user, "pro", promoted, Duration::from_secs(5)).await;
    clear_reaches_the_other(
        &c,
        addrs[2],
        addrs[1],
        "after-failover",
        Duration::from_secs(5),
    )
    .await;
    let back = promoted.elapsed();
    stop.store(true, Ordering::Relaxed);
    let statuses = finish(background).await;
    println!(
        "statuses across the failover: {statuses:?}; shared state back {back:?} after the promotion"
    );
    assert!(
        back < Duration::from_secs(5),
        "shared state back {back:?} after the promotion"
    );
    // Both paths ran through the failover: cached answers and the limiter's refusals.
    assert!(statuses.get(&200).copied().unwrap_or(0) > 0, "{statuses:?}");
    assert!(statuses.get(&429).copied().unwrap_or(0) > 0, "{statuses:?}");
    for status in statuses.keys() {
        assert!(
            matches!(status, 200 | 429),
            "unexpected {status}: {statuses:?}"
        );
    }
}

/// The tests here run one at a time: each starts Redis nodes and servers and holds bounds
/// of milliseconds, and two at once on two cores would test the machine, not the fleet.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The limiter's `(fallback_active, control_stale)` as the server's health reports them.
async fn limiter_health(c: &HttpClient, server: SocketAddr) -> (bool, bool) {
    let h = admin(c, server, "GET", "/admin/health", "").await;
    let l = &h["rate_limits"][0];
    (
        l["fallback_active"].as_bool().unwrap(),
        l["control_stale"].as_bool().unwrap(),
    )
}

/// Three servers hammer one account (enterprise: 50 per second with a burst of 50, 1,000
/// per minute) for two seconds. Decisions are made in Redis, one script per request, so
/// the fleet admits what one server would: at most the burst plus the rate over the time
/// spent (plus one for the request in flight at each end), and, since the demand is far
/// above the limit, at least 90 % of it.
async fn one_limit_for_three_servers_is_held_and_tight(servers: &[SocketAddr]) {
    const BURST: f64 = 50.0;
    const RATE: f64 = 50.0;
    let began = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..9)
        .map(|t| {
            let server = servers[t % servers.len()];
            let stop = stop.clone();
            tokio::spawn(async move {
                let c = client();
                let (mut admitted, mut sent) = (0u64, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    let a = get(&c, server, "/api/dex/quote/BURST", ("x-api-key", "k-burst")).await;
                    assert!(matches!(a.status, 200 | 429), "{} {}", a.status, a.body);
                    admitted += u64::from(a.status == 200);
                    sent += 1;
                }
                (admitted, sent)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut admitted, mut sent) = (0, 0);
    for t in tasks {
        let (a, s) = t.await.unwrap();
        admitted += a;
        sent += s;
    }
    let spent = began.elapsed().as_secs_f64();
    let bound = BURST + RATE * spent + 2.0;
    println!(
        "one limit, three servers: {admitted} of {sent} admitted in {spent:.2} s (bound {bound:.0})"
    );
    assert!(
        sent as f64 > 2.0 * bound,
        "the demand ({sent}) must be far above the limit ({bound:.0}) for the bound to mean anything"
    );
    assert!(
        admitted as f64 <= bound,
        "{admitted} admitted across three servers in {spent:.2} s, bound {bound:.0}"
    );
    // Lower side: what the limit allows over the whole time, less 10 %.
    let floor = 0.9 * (BURST + RATE * (spent - 0.1).max(0.0));
    assert!(
        admitted as f64 >= floor,
        "only {admitted} admitted across three servers in {spent:.2} s, at least {floor:.0} expected"
    );
}

/// A trip forced on one server's CEX breaker opens the CEX breaker of every other server
/// within 100 ms, and they reject at once.
async fn a_trip_on_one_server_opens_the_breaker_on_all(servers: &[SocketAddr]) {
    let c = client();
    let h = admin(&c, servers[0], "GET", "/admin/health", "").await;
    let name = h["breakers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_owned())
        .find(|n| n.contains("cex"))
        .expect("a cex breaker");
    for &s in servers {
        let h = admin(&c, s, "GET", "/admin/health", "").await;
        assert_eq!(named(&h, "breakers", "cex", "state"), "CLOSED", "{s}");
    }
    let began = Instant::now();
    admin(
        &c,
        servers[0],
        "POST",
        &format!("/admin/breakers/{name}/open"),
        "",
    )
    .await;
    for &s in &servers[1..] {
        loop {
            let h = admin(&c, s, "GET", "/admin/health", "").await;
            if named(&h, "breakers", "cex", "state") == "OPEN" {
                break;
            }
            assert!(
                began.elapsed() < Duration::from_secs(10),
                "{s} never opened"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let took = began.elapsed();
    // Rejected without calling the upstream (a symbol no cache holds).
    let rejected = get(
        &c,
        servers[1],
        "/api/cex/orderbook/NEVER-CACHED",
        ENTERPRISE,
    )
    .await;
    println!("the trip on one server opened every other after {took:?}");
    assert!(
        took < Duration::from_millis(100),
        "the trip reached every server after {took:?}"
    );
    assert_eq!(rejected.status, 503, "{}", rejected.body);
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
    let began = Instant::now();
    set_tier_everywhere(&c, servers, &user, "pro", began, Duration::from_secs(10)).await;
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

    clear_reaches_the_other(&c, a, b, "share", Duration::from_millis(100)).await;
}

/// A clear through `a`'s admin router evicts `b`'s L1 copy (and the shared L2 entry)
/// within `limit` of the clear. The social route keeps the preset's 300 s TTL (only the
/// CEX cache is shortened in this config), so b's copy cannot expire by itself: only the
/// clear can make it miss.
async fn clear_reaches_the_other(
    c: &HttpClient,
    a: SocketAddr,
    b: SocketAddr,
    tag: &str,
    limit: Duration,
) {
    let path = format!("/api/social/search?q=clear-{tag}-{}", std::process::id());
    let first = get(c, a, &path, ENTERPRISE).await;
    assert!(
        first.cache_status.contains("fwd=miss"),
        "{}",
        first.cache_status
    );
    let warm = eventually(Duration::from_secs(2), || async {
        get(c, b, &path, ENTERPRISE)
            .await
            .cache_status
            .contains("hit")
    })
    .await;
    assert!(warm.is_some(), "b serves the entry from the cache");
    // From L1 now: the hit above copied it there.
    let held = get(c, b, &path, ENTERPRISE).await;
    assert!(held.cache_status.contains("hit"), "{}", held.cache_status);

    let began = Instant::now();
    let cleared = admin(c, a, "POST", "/admin/cache/clear", "").await;
    assert_eq!(cleared["cleared"], true);
    // Measured to the start of the request that missed (its upstream call, which a miss
    // makes, is not part of the eviction).
    let took = loop {
        let asked = began.elapsed();
        if get(c, b, &path, ENTERPRISE)
            .await
            .cache_status
            .contains("fwd=miss")
        {
            break asked;
        }
        assert!(
            began.elapsed() < limit.max(Duration::from_secs(5)) * 2,
            "b still serves its copy {:?} after the clear on a",
            began.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    println!("b missed {took:?} after the clear on a");
    assert!(
        took < limit,
        "b missed {took:?} after the clear on a, limit {limit:?}"
    );
}

/// Sets `user`'s tier through the first server's admin router and waits until every other
/// server reports it, failing once `limit` has passed since `since`.
async fn set_tier_everywhere(
    c: &HttpClient,
    servers: &[SocketAddr],
    user: &str,
    tier: &str,
    since: Instant,
    limit: Duration,
) {
    let path = format!("/admin/ratelimit/{user}");
    let body = serde_json::json!({ "tier": tier }).to_string();
    // Right after a failover a write can still meet the dead master (503) until the
    // client refreshes its slot map; the promise is the bound, so it is tried again.
    let auth = format!("Bearer {TOKEN}");
    loop {
        let put = send(
            c,
            servers[0],
            "PUT",
            &format!("{path}/tier"),
            &[("authorization", &auth)],
            &body,
        )
        .await;
        if put.status == 200 {
            break;
        }
        assert!(
            put.status == 503 && since.elapsed() < limit,
            "setting {user}'s tier: {} {}",
            put.status,
            put.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for &s in &servers[1..] {
        while admin(c, s, "GET", &path, "").await["tier"] != tier {
            assert!(
                since.elapsed() < limit,
                "{s} did not see {user}'s tier {tier} within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}
