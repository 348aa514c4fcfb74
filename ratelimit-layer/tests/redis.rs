//! The Redis backends against real servers: a single node and a 3-master cluster.
//!
//! These run on real time (sockets and paused time do not mix); quotas use long periods so
//! that the milliseconds between two calls cannot change an answer.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use ratelimit_layer::quota::Mode;
use ratelimit_layer::{
    Algorithm, Backend, FailureMode, Leased, MemoryBackend, Quota, RateLimiter, Reason,
    RedisBackend, Subject, Window, WindowConfig,
};
use reliability_core::harness::{RedisCluster, RedisServer};
use reliability_core::redis::RedisConfig;

fn quotas() -> Vec<Quota> {
    let w = |limit, secs, alg| {
        Window::new(WindowConfig {
            limit,
            period: Duration::from_secs(secs),
            burst: None,
            algorithm: alg,
        })
        .unwrap()
    };
    vec![
        Quota::tiered(2, 60, 1_000, 10_000).unwrap(),
        Quota::new([
            w(5, 3600, Algorithm::Gcra),
            w(3, 7200, Algorithm::SlidingWindow),
        ])
        .unwrap(),
        Quota::new([w(4, 86_400, Algorithm::SlidingWindow)]).unwrap(),
        Quota::new([Window::new(WindowConfig {
            burst: Some(3),
            ..WindowConfig::new(10, Duration::from_secs(3600))
        })
        .unwrap()])
        .unwrap(),
    ]
}

const HOSTILE: &[&str] = &[
    "{",
    "}",
    "a}{b",
    "line\nbreak\r\n",
    "",
    "*",
    "user:{42}",
    "\0",
];

async fn same_decisions_as_memory(config: RedisConfig) {
    let redis = RedisBackend::builder(config.key_prefix("parity"))
        .build()
        .await
        .unwrap();
    let memory = MemoryBackend::new();
    let long = "}".repeat(10 * 1024);
    let subjects: Vec<&str> = HOSTILE
        .iter()
        .copied()
        .chain([long.as_str(), "alice"])
        .collect();
    for (qi, quota) in quotas().iter().enumerate() {
        for subject in &subjects {
            let key = format!("{qi}/{subject}");
            for (step, (cost, mode)) in [
                (1, Mode::Consume),
                (2, Mode::Peek),
                (2, Mode::Consume),
                (1, Mode::Consume),
                (3, Mode::Consume),
                (1, Mode::Peek),
                (1, Mode::Consume),
                (1, Mode::Consume),
            ]
            .into_iter()
            .enumerate()
            {
                let m = memory.decide(&key, quota, cost, mode).await.unwrap();
                let r = redis.decide(&key, quota, cost, mode).await.unwrap();
                assert_eq!(
                    m.allowed, r.allowed,
                    "quota {qi} subject {subject:?} step {step}"
                );
                let rem = |d: &ratelimit_layer::Decision| {
                    d.windows().iter().map(|w| w.remaining).collect::<Vec<_>>()
                };
                assert_eq!(
                    rem(&m),
                    rem(&r),
                    "quota {qi} subject {subject:?} step {step}"
                );
                assert_eq!(m.retry_after == u64::MAX, r.retry_after == u64::MAX);
                assert!(
                    m.retry_after.abs_diff(r.retry_after) < 200_000 || m.retry_after == u64::MAX
                );
            }
        }
    }
    // Distinct hostile subjects never share state.
    let q = Quota::per(1, Duration::from_secs(3600)).unwrap();
    for s in &subjects {
        assert!(
            redis
                .decide(&format!("solo/{s}"), &q, 1, Mode::Consume)
                .await
                .unwrap()
                .allowed,
            "{s:?}"
        );
    }
    assert!(redis.round_trips() > 0);
    assert_eq!(redis.failures(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_decides_like_memory() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    same_decisions_as_memory(server.config()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_decides_like_memory_and_keeps_a_subject_on_one_slot() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    same_decisions_as_memory(cluster.config()).await;
    let backend = RedisBackend::builder(cluster.config().key_prefix("slots"))
        .build()
        .await
        .unwrap();
    assert_eq!(backend.name(), "redis-cluster");
    let quota = Quota::tiered(2, 60, 1_000, 10_000).unwrap();
    let long = "{".repeat(10 * 1024);
    for s in HOSTILE.iter().copied().chain([long.as_str()]) {
        let ports: Vec<u16> = (0..4)
            .map(|i| {
                cluster
                    .master_port_for(&backend.window_key(s, &quota, i).unwrap())
                    .unwrap()
            })
            .collect();
        assert!(
            ports.windows(2).all(|p| p[0] == p[1]),
            "{s:?} spread over {ports:?}"
        );
        let key = backend.window_key(s, &quota, 0).unwrap();
        assert!(
            key.starts_with("slots:rl:{") && key.len() < 200 && !key.contains('\n'),
            "{key}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_reloads_after_flush() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = server.config();
    let backend = RedisBackend::builder(config.clone()).build().await.unwrap();
    let q = Quota::per(3, Duration::from_secs(3600)).unwrap();
    assert!(
        backend
            .decide("k", &q, 1, Mode::Consume)
            .await
            .unwrap()
            .allowed
    );
    let mut conn = config.connect().await.unwrap();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    let d = backend.decide("k", &q, 1, Mode::Consume).await.unwrap();
    assert_eq!(d.windows()[0].remaining, 1, "NOSCRIPT reloaded, state kept");
    assert_eq!(backend.failures(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_falls_back_and_returns_to_redis() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let backend = RedisBackend::builder(server.config().key_prefix("fault"))
        .build()
        .await
        .unwrap();
    // 50 per second, burst 50: the fallback admits at most one burst plus its rate.
    let limiter = RateLimiter::builder()
        .quota(Quota::per(50, Duration::from_secs(1)).unwrap())
        .backend(backend.clone())
        .build()
        .unwrap();
    let subject = Subject::new("client");
    let run = |limiter: RateLimiter, subject: Subject, for_: Duration| async move {
        let (mut admitted, start) = (0u64, Instant::now());
        while start.elapsed() < for_ {
            match limiter.check_subject(&subject).await {
                Ok(_) => admitted += 1,
                Err(e) => assert_eq!(e.reason, Reason::Exceeded, "no request errors in fail-open"),
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        admitted
    };
    let shared = run(limiter.clone(), subject.clone(), Duration::from_millis(300)).await;
    assert!(shared <= 50 + 16, "{shared}");

    server.stop();
    let down_for = Duration::from_millis(600);
    let during = run(limiter.clone(), subject.clone(), down_for).await;
    assert!(limiter.snapshot().fallback_active);
    let health = reliability_core::health::HealthSource::health(&limiter);
    assert_eq!(
        health[0].status,
        reliability_core::health::HealthStatus::Degraded
    );
    assert!(backend.failures() >= 1);
    // Stated factor: a fresh local bucket admits at most burst + rate × time = 50 + 30,
    // i.e. within 2× the shared limit over the outage.
    assert!(
        during <= 50 + 30 + 1,
        "{during} admitted while Redis was down"
    );
    assert!(during > 0, "fail-open keeps answering");

    server.restart().unwrap();
    let back = Instant::now();
    let trips = backend.round_trips();
    loop {
        limiter.check_subject(&Subject::new("probe")).await.ok();
        if !limiter.snapshot().fallback_active && backend.round_trips() > trips {
            break;
        }
        // The promise is "after `recheck_interval` (250 ms) plus one reconnect"; a
        // reconnect on a loaded 2-core machine can take seconds, so the margin is 10 s,
        // measured from the restart.
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "back on Redis within 10 s of the restart"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = backend.round_trips();
    limiter.check_subject(&subject).await.ok();
    assert_eq!(
        backend.round_trips(),
        before + 1,
        "decisions go to Redis again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_rejects_while_down() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let config = ratelimit_layer::RateLimiterConfig {
        redis: Some(server.config()),
        failure_mode: FailureMode::Closed,
        ..Default::default()
    };
    let limiter = config.build().await.unwrap();
    assert_eq!(limiter.snapshot().backend, "redis");
    limiter.check("u", 1).await.unwrap();
    server.stop();
    for _ in 0..5 {
        let e = limiter.check("u", 1).await.unwrap_err();
        assert_eq!(e.reason, Reason::BackendUnavailable);
    }
    assert!(limiter.backend_errors() >= 5);
    let health = reliability_core::health::HealthSource::health(&limiter);
    assert_eq!(
        health[0].status,
        reliability_core::health::HealthStatus::Failed
    );
    server.restart().unwrap();
    // Measured from the restart, with the margin the fail-open test gives the same
    // reconnect: on a loaded 2-core machine a reconnect can take seconds.
    let start = Instant::now();
    while limiter.check("v", 1).await.is_err() {
        assert!(start.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]
    /// On Redis: no window admits more than its limit; refusals and peeks change nothing.
    #[test]
    fn redis_windows_never_exceed_their_limit(
        limits in (1u64..6, 1u64..10),
        ops in proptest::collection::vec((1u64..3, any::<bool>()), 1..40),
    ) {
        let Some(server) = RedisServer::start() else { return Ok(()) };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let backend = RedisBackend::builder(server.config()).build().await.unwrap();
            let w = |limit, alg| Window::new(WindowConfig { limit, period: Duration::from_secs(3600), burst: None, algorithm: alg }).unwrap();
            let quota = Quota::new([w(limits.0, Algorithm::Gcra), w(limits.1, Algorithm::SlidingWindow)]).unwrap();
            let mut admitted = 0;
            for (cost, peek) in ops {
                let before = backend.decide("p", &quota, 1, Mode::Peek).await.unwrap();
                let mode = if peek { Mode::Peek } else { Mode::Consume };
                let d = backend.decide("p", &quota, cost, mode).await.unwrap();
                let after = backend.decide("p", &quota, 1, Mode::Peek).await.unwrap();
                if peek || !d.allowed {
                    prop_assert_eq!(before.windows().iter().map(|w| w.remaining).collect::<Vec<_>>(),
                                    after.windows().iter().map(|w| w.remaining).collect::<Vec<_>>());
                } else {
                    admitted += cost;
                }
            }
            prop_assert!(admitted <= limits.0.min(limits.1));
            Ok(())
        })?;
    }
}

const CHILD_ENV: &str = "RATELIMIT_CHILD_REDIS_URL";

/// One of the processes of `processes_share_one_limit`, which runs it with `--ignored
/// --exact` (it does nothing when run directly without the parent's environment).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child side of processes_share_one_limit"]
async fn multi_process_child() {
    let Ok(url) = std::env::var(CHILD_ENV) else {
        return;
    };
    let secs: u64 = std::env::var("RATELIMIT_CHILD_SECS")
        .unwrap()
        .parse()
        .unwrap();
    let backend = RedisBackend::builder(RedisConfig::single(url).key_prefix("multi"))
        .build()
        .await
        .unwrap();
    let limiter = RateLimiter::builder().quota(Quota::per(20, Duration::from_secs(1)).unwrap());
    let limiter = match std::env::var("RATELIMIT_CHILD_LEASE") {
        Ok(lease) => limiter.backend(
            Leased::new(backend, lease.parse().unwrap(), Duration::from_millis(100)).unwrap(),
        ),
        Err(_) => limiter.backend(backend),
    }
    .build()
    .unwrap();
    let unix_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    };
    let began = unix_ms();
    let start = Instant::now();
    let mut admitted = 0;
    while start.elapsed() < Duration::from_secs(secs) {
        if limiter.check("shared", 1).await.is_ok() {
            admitted += 1;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // The parent bounds the total over the span all children were running, since a
    // loaded machine does not start four processes at the same instant.
    println!("SPAN_MS={began}-{}", unix_ms());
    println!("ADMITTED={admitted}");
}

#[test]
fn processes_share_one_limit() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let secs = 5;
    let exe = std::env::current_exe().unwrap();
    // Processes 2 and 3 lease 5 units per round trip; 0 and 1 decide every request in Redis.
    let children: Vec<_> = (0..4)
        .map(|i| {
            std::process::Command::new(&exe)
                .args([
                    "multi_process_child",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env(CHILD_ENV, server.url())
                .env("RATELIMIT_CHILD_SECS", secs.to_string())
                .env(
                    if i >= 2 {
                        "RATELIMIT_CHILD_LEASE"
                    } else {
                        "RATELIMIT_CHILD_UNUSED"
                    },
                    "5",
                )
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut total = 0;
    let (mut first, mut last) = (u128::MAX, 0u128);
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        let n: u64 = text
            .lines()
            .find_map(|l| l.split("ADMITTED=").nth(1))
            .expect("child output")
            .trim()
            .parse()
            .unwrap();
        let (began, ended) = text
            .lines()
            .find_map(|l| l.split("SPAN_MS=").nth(1))
            .and_then(|span| span.trim().split_once('-'))
            .expect("child span");
        first = first.min(began.parse().unwrap());
        last = last.max(ended.parse().unwrap());
        assert!(n > 0, "every process got some");
        total += n;
    }
    // R = 20/s over the span in which any child was running (measured, not assumed to be
    // 5 s: the children start one after another), plus the GCRA burst of 20, plus the
    // batching bound of the two leasing processes: 2 × 4 × (5 − 1) = 32.
    let span_secs = (last - first) as f64 / 1000.0;
    let bound = (20.0 * span_secs).ceil() as u64 + 20 + 32;
    assert!(
        total <= bound,
        "{total} admitted by 4 processes over {span_secs:.2} s (at most {bound})"
    );
    assert!(total >= 20 * secs / 2, "{total}: the limit was reachable");
}

/// 4 tasks of one process sharing `limit`/s through 10-unit leases for 400 ms:
/// (decisions, admitted, round trips, seconds).
async fn leased_run(server: &RedisServer, prefix: &str, limit: u64) -> (u64, u64, u64, f64) {
    let backend = RedisBackend::builder(server.config().key_prefix(prefix))
        .build()
        .await
        .unwrap();
    let leased = Leased::new(backend.clone(), 10, Duration::from_millis(200)).unwrap();
    let limiter = RateLimiter::builder()
        .quota(Quota::per(limit, Duration::from_secs(1)).unwrap())
        .backend(leased)
        .build()
        .unwrap();
    let start = Instant::now();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                let (mut decisions, mut admitted) = (0u64, 0u64);
                while start.elapsed() < Duration::from_millis(400) {
                    decisions += 1;
                    if limiter.check("shared", 1).await.is_ok() {
                        admitted += 1;
                    }
                    tokio::time::sleep(Duration::from_micros(500)).await;
                }
                (decisions, admitted)
            })
        })
        .collect();
    let (mut decisions, mut admitted) = (0, 0);
    for t in tasks {
        let (d, a) = t.await.unwrap();
        decisions += d;
        admitted += a;
    }
    (
        decisions,
        admitted,
        backend.round_trips(),
        start.elapsed().as_secs_f64(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_cut_round_trips_within_the_stated_bound() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    // Below the limit: one round trip per 10 decisions, nearly.
    let (decisions, admitted, trips, _) = leased_run(&server, "lease-a", 100_000).await;
    assert_eq!(admitted, decisions);
    assert!(
        trips * 5 <= decisions,
        "{trips} round trips for {decisions} decisions"
    );
    // Saturated: the quota's bound (burst 100 + 100/s) plus one process × 4 × (lease − 1).
    let (decisions, admitted, _, secs) = leased_run(&server, "lease-b", 100).await;
    let bound = 100.0 + 100.0 * secs + 36.0;
    assert!(
        (admitted as f64) <= bound,
        "{admitted} admitted, bound {bound}"
    );
    // Dropped chunks under-admit a little; most of the quota stays usable.
    assert!(
        admitted >= 60 && decisions > admitted,
        "{admitted} of {decisions}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layer_over_redis_rejects_and_waits() {
    use ratelimit_layer::RateLimitLayer;
    use tower::{ServiceBuilder, ServiceExt, service_fn};
    let Some(server) = RedisServer::start() else {
        return;
    };
    let backend = RedisBackend::builder(server.config().key_prefix("layer"))
        .build()
        .await
        .unwrap();
    let limiter = RateLimiter::builder()
        .quota(Quota::per(5, Duration::from_secs(3600)).unwrap())
        .backend(backend.clone())
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(RateLimitLayer::new(limiter.clone()))
        .service(service_fn(|n: u32| async move {
            Ok::<_, std::convert::Infallible>(n * 2)
        }));
    for n in 0..5 {
        assert_eq!(svc.clone().oneshot(n).await.unwrap(), n * 2);
    }
    let err = svc.clone().oneshot(9).await.unwrap_err();
    let limited = err.downcast_ref::<ratelimit_layer::RateLimited>().unwrap();
    assert_eq!(limited.reason, Reason::Exceeded);
    assert!(limited.retry_after.unwrap() > Duration::from_secs(600));

    // Client mode on Redis: 20 per 20 s; after the burst, one a second. The 21st call
    // waits unless the burst's 20 round trips took over a second.
    let quick = RateLimiter::builder()
        .quota(Quota::per(20, Duration::from_secs(20)).unwrap())
        .backend(backend)
        .build()
        .unwrap();
    let client = ServiceBuilder::new()
        .layer(RateLimitLayer::new(quick.clone()).wait_up_to(Duration::from_secs(2)))
        .service(service_fn(|()| async {
            Ok::<_, std::convert::Infallible>(())
        }));
    let start = Instant::now();
    for _ in 0..21 {
        client.clone().oneshot(()).await.unwrap();
    }
    assert!(
        start.elapsed() >= Duration::from_millis(40),
        "{:?}",
        start.elapsed()
    );
    assert!(quick.snapshot().waited >= 1);
}

/// A refund (a lease given back on shutdown) leaves a key on Redis exactly as it leaves the
/// same key in memory: as if only the units not given back had been taken. Long periods,
/// so the two clocks' microseconds apart change no count.
#[tokio::test]
async fn refunds_on_redis_match_refunds_in_memory() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let redis = RedisBackend::builder(server.config().key_prefix("refund"))
        .build()
        .await
        .unwrap();
    let memory = MemoryBackend::builder().system_clock().build().unwrap();
    for (i, quota) in quotas().iter().enumerate().skip(1) {
        for key in HOSTILE.iter().take(4) {
            let key = format!("{key}-{i}");
            let mut seen = Vec::new();
            for backend in [&redis as &dyn Backend, &memory] {
                assert!(
                    backend
                        .decide(&key, quota, 3, Mode::Consume)
                        .await
                        .unwrap()
                        .allowed
                );
                backend.refund(&key, quota, 2).await.unwrap();
                let after = backend.decide(&key, quota, 1, Mode::Peek).await.unwrap();
                seen.push(
                    after
                        .windows()
                        .iter()
                        .map(|w| w.remaining)
                        .collect::<Vec<_>>(),
                );
            }
            // As if one unit had been taken: a fresh key after one.
            let fresh = format!("{key}-fresh");
            assert!(
                memory
                    .decide(&fresh, quota, 1, Mode::Consume)
                    .await
                    .unwrap()
                    .allowed
            );
            let one = memory.decide(&fresh, quota, 1, Mode::Peek).await.unwrap();
            let one: Vec<u64> = one.windows().iter().map(|w| w.remaining).collect();
            assert_eq!(seen[0], seen[1], "quota {i}, key {key:?}: redis vs memory");
            assert_eq!(
                seen[1], one,
                "quota {i}, key {key:?}: as if one unit was taken"
            );
        }
    }
    // A key that holds nothing gets nothing: refunding a fresh key leaves it fresh.
    redis.refund("never-seen", &quotas()[1], 5).await.unwrap();
    // (Its sliding window admits 3 at most.)
    let peek = |cost| redis.decide("never-seen", &quotas()[1], cost, Mode::Peek);
    assert!(peek(3).await.unwrap().allowed);
    assert!(!peek(4).await.unwrap().allowed);
}
