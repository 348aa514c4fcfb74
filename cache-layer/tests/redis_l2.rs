//! L2 against a real Redis (started by the shared harness; skipped without
//! `redis-server` unless RELIABILITY_REQUIRE_REDIS=1): read-through and promotion, TTL in
//! Redis, pub/sub eviction across two instances, degradation and recovery, resync after a
//! reconnect or a late first subscription, the subscriber's end with its cache, and a
//! 3-master cluster (sharded pub/sub, eviction latency).

mod common;

use std::time::{Duration, Instant};

use cache_layer::backend::redis::RedisTier;
use cache_layer::{Cache, CacheHandle, CacheLayer};
use common::{Key, Upstream, key, pttl, pubsub_count, secs, subscribers, u64_codec, within};
use redis::AsyncCommands;
use reliability_core::harness::{RedisCluster, RedisServer};
use reliability_core::health::{HealthSource, HealthStatus};
use reliability_core::redis::RedisConfig;
use tower::{BoxError, ServiceExt};

type Svc = Cache<tower::util::BoxCloneSyncService<String, u64, BoxError>, Key, u64>;

/// One instance: its own upstream, its own L1, the shared Redis.
async fn instance(config: &RedisConfig, up: &Upstream) -> (Svc, CacheHandle<u64>, RedisTier) {
    instance_with(config, up, None, Duration::ZERO).await
}

/// The same, with distributed single-flight (`lock`) and a slow upstream.
async fn instance_with(
    config: &RedisConfig,
    up: &Upstream,
    lock: Option<Duration>,
    delay: Duration,
) -> (Svc, CacheHandle<u64>, RedisTier) {
    lasting(config, up, lock, delay, secs(10)).await
}

/// The same, with entries fresh for `ttl` (stale-if-error twice as long).
async fn lasting(
    config: &RedisConfig,
    up: &Upstream,
    lock: Option<Duration>,
    delay: Duration,
    ttl: Duration,
) -> (Svc, CacheHandle<u64>, RedisTier) {
    let tier = RedisTier::connect(config).await.unwrap();
    let probe = RedisTier::connect(config).await.unwrap();
    let mut b = CacheLayer::builder(key as Key)
        .ttl(ttl)
        .stale_if_error(ttl * 2)
        .l2(tier, u64_codec());
    if let Some(ttl) = lock {
        b = b.distributed_single_flight(ttl);
    }
    let layer = b.build().unwrap();
    let handle = layer.handle();
    let inner = tower::util::BoxCloneSyncService::new(up.service::<String>(delay));
    (
        tower::ServiceBuilder::new().layer(layer).service(inner),
        handle,
        probe,
    )
}

async fn get(svc: &Svc, k: &str) -> u64 {
    svc.clone().oneshot(k.to_owned()).await.unwrap()
}

#[tokio::test]
async fn read_through_promotion_and_ttl_in_redis() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = server.config().key_prefix("t1");
    let (up_a, up_b) = (Upstream::default(), Upstream::default());
    let (a, _, probe) = instance(&config, &up_a).await;
    let (b, hb, _) = instance(&config, &up_b).await;
    assert_eq!(get(&a, "k").await, 1);
    // Written behind: it appears in Redis with a TTL at the end of the longest window.
    let redis_key = probe.redis_key("k");
    let landed = within(secs(2), || async { pttl(&config, &redis_key).await > 0 }).await;
    assert!(landed.is_some(), "the write reached Redis");
    let ttl = pttl(&config, &redis_key).await;
    assert!(
        ttl > 29_000 && ttl <= 30_000,
        "PTTL {ttl} = TTL 10 s + stale-if-error 20 s"
    );
    // B: L1 miss, L2 hit, no upstream call, then an L1 hit.
    assert_eq!(get(&b, "k").await, 1);
    assert_eq!(get(&b, "k").await, 1);
    assert_eq!(up_b.calls(), 0);
    let s = hb.stats();
    assert_eq!((s.l2_hits, s.hits), (1, 2));
    assert_eq!(hb.snapshot().levels.len(), 2);
}

/// Waits (10 s at most) until B has received an invalidation over pub/sub since
/// `before` messages and no longer holds `k` in L1; the time since `since`, the event
/// that started it.
async fn evicted_by_pubsub(
    hb: &CacheHandle<u64>,
    k: &str,
    before: u64,
    since: Instant,
) -> Option<Duration> {
    within(secs(10), || async {
        hb.stats().pubsub_messages > before && hb.peek(k).is_none()
    })
    .await
    .map(|_| since.elapsed())
}

#[tokio::test]
async fn a_write_on_one_instance_evicts_the_others_l1_over_pubsub() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = server.config().key_prefix("t2");
    let (up_a, up_b) = (Upstream::default(), Upstream::default());
    let (a, ha, probe) = instance(&config, &up_a).await;
    let (b, hb, _) = instance(&config, &up_b).await;
    assert!(
        within(secs(10), || async { subscribers(&config).await >= 2 })
            .await
            .is_some(),
        "both instances subscribed"
    );
    get(&a, "k").await;
    let redis_key = probe.redis_key("k");
    within(secs(10), || async { pttl(&config, &redis_key).await > 0 }).await;
    assert_eq!(get(&b, "k").await, 1);
    assert_eq!(hb.peek("k"), Some(1));

    // Counted messages tell A's invalidation from B's copy merely running out of TTL.
    let before = hb.stats().pubsub_messages;
    let put_at = Instant::now();
    ha.put("k", 99).unwrap();
    let took = evicted_by_pubsub(&hb, "k", before, put_at).await;
    assert!(
        took.is_some(),
        "B's L1 copy evicted by A's message (after {took:?})"
    );
    assert_eq!(get(&b, "k").await, 99, "B reads the new value from L2");
    assert_eq!(up_b.calls(), 0);

    // Tag, prefix and clear-all travel too (as a generation bump in L2).
    let before = hb.stats().pubsub_messages;
    let clear_at = Instant::now();
    ha.clear();
    let took = evicted_by_pubsub(&hb, "k", before, clear_at).await;
    assert!(
        took.is_some(),
        "B's L1 copy evicted by A's clear (after {took:?})"
    );
    assert_eq!(get(&b, "k").await, 1, "L2 emptied too: B asks its upstream");
    assert_eq!(up_b.calls(), 1);
}

#[tokio::test]
async fn redis_down_degrades_to_l1_and_comes_back() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let config = server.config().key_prefix("t3");
    let up = Upstream::default();
    let (a, ha, probe) = instance(&config, &up).await;
    get(&a, "k").await;
    server.stop();
    // A copy exists: no error. A new key: the upstream answers; no error either.
    assert_eq!(get(&a, "k").await, 1);
    let started = Instant::now();
    assert_eq!(get(&a, "new").await, 2);
    assert!(
        started.elapsed() < secs(2),
        "a dead Redis does not hang the miss path"
    );
    assert!(ha.stats().l2_errors >= 1);
    assert_eq!(ha.l2_available(), Some(false));
    assert_eq!(ha.health()[0].status, HealthStatus::Degraded);

    server.restart().unwrap();
    let back = Instant::now();
    let mut i = 0;
    let used_again = within(secs(3), || {
        i += 1;
        let (a, probe, config) = (a.clone(), &probe, &config);
        async move {
            let k = format!("after{i}");
            a.oneshot(k.clone()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            pttl(config, &probe.redis_key(&k)).await > 0
        }
    })
    .await;
    assert!(
        used_again.is_some(),
        "L2 in use again after {:?}",
        back.elapsed()
    );
    assert!(back.elapsed() < secs(3));
}

#[tokio::test]
async fn a_reconnected_subscriber_flushes_its_l1() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let config = server.config().key_prefix("t4");
    let up = Upstream::default();
    let (b, hb, _) = instance(&config, &up).await;
    assert!(
        within(secs(3), || async { subscribers(&config).await >= 1 })
            .await
            .is_some()
    );
    get(&b, "k").await;
    assert!(hb.peek("k").is_some());
    assert_eq!(
        hb.stats().pubsub_resyncs,
        0,
        "a prompt first subscription is no resync"
    );
    server.stop();
    server.restart().unwrap();
    // Invalidations published while B was disconnected are lost to it: it flushes.
    let resynced = within(secs(5), || async { hb.stats().pubsub_resyncs >= 1 }).await;
    assert!(resynced.is_some(), "the subscriber came back");
    assert!(hb.peek("k").is_none(), "L1 flushed on reconnect");
}

#[tokio::test]
async fn cluster_tier_serves_and_survives_a_node_stop() {
    let Some(mut cluster) = RedisCluster::start() else {
        return;
    };
    let config = cluster.config().key_prefix("tc");
    let (up_a, up_b) = (Upstream::default(), Upstream::default());
    let (a, _, probe) = instance(&config, &up_a).await;
    let (b, hb, _) = instance(&config, &up_b).await;
    for i in 0..30 {
        get(&a, &format!("k{i}")).await;
    }
    let last = probe.redis_key("k29");
    within(secs(3), || async { pttl(&config, &last).await > 0 }).await;
    for i in 0..30 {
        assert_eq!(get(&b, &format!("k{i}")).await, i + 1);
    }
    assert_eq!(up_b.calls(), 0, "every key read from the cluster");
    assert_eq!(hb.stats().l2_hits, 30);

    cluster.stop_node(0);
    // Whatever the slot, callers get answers (from L1, L2 or the upstream).
    for i in 0..40 {
        get(&b, &format!("k{i}")).await;
    }
    cluster.restart_node(0).unwrap();
    // Recovered: writes to every master land again.
    let mut i = 0;
    let recovered = within(secs(30), || {
        i += 1;
        let (b, probe, config) = (b.clone(), &probe, &config);
        async move {
            let keys: Vec<String> = (0..6).map(|j| format!("r{i}-{j}")).collect();
            for k in &keys {
                b.clone().oneshot(k.clone()).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            for k in &keys {
                if pttl(config, &probe.redis_key(k)).await <= 0 {
                    return false;
                }
            }
            true
        }
    })
    .await;
    assert!(recovered.is_some(), "the cluster tier recovered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_times_200_concurrent_misses_make_one_upstream_call() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = server.config().key_prefix("t5");
    // One upstream behind both instances, so its counter is the total.
    let up = Upstream::default();
    let lock = Some(secs(2));
    let delay = Duration::from_millis(100);
    let (a, ha, _) = instance_with(&config, &up, lock, delay).await;
    let (b, hb, _) = instance_with(&config, &up, lock, delay).await;
    let calls = (0..200)
        .map(|_| a.clone().oneshot("hot".to_owned()))
        .chain((0..200).map(|_| b.clone().oneshot("hot".to_owned())));
    let answers = futures_util::future::join_all(calls).await;
    assert!(answers.iter().all(|r| matches!(r, Ok(1))));
    assert_eq!(up.calls(), 1, "one upstream call across both instances");
    let waits = ha.stats().l2_lock_waits + hb.stats().l2_lock_waits;
    assert_eq!(waits, 1, "the other instance's leader waited for the lock");
}

#[tokio::test]
async fn a_crashed_lock_holder_blocks_others_only_until_its_lock_expires() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = server.config().key_prefix("t6");
    let up = Upstream::default();
    let (a, _, probe) = instance_with(&config, &up, Some(secs(2)), Duration::ZERO).await;
    // A holder that died mid-call: its lock stays until its TTL (300 ms) runs out.
    let mut conn = config.connect().await.unwrap();
    let _: () = redis::cmd("SET")
        .arg(probe.lock_key("k"))
        .arg("dead-holder")
        .arg("PX")
        .arg(300)
        .query_async(&mut conn)
        .await
        .unwrap();
    let started = Instant::now();
    assert_eq!(a.oneshot("k".to_owned()).await.unwrap(), 1);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < secs(2),
        "waited {waited:?}: until the dead holder's lock expired, not the full wait"
    );
    assert_eq!(up.calls(), 1);
}

#[tokio::test]
async fn write_through_lands_in_every_tier_before_the_answer() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = server.config().key_prefix("t7");
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::default();
    let probe = RedisTier::connect(&config).await.unwrap();
    let layer = CacheLayer::builder(key as Key)
        .ttl(secs(10))
        .write_policy(cache_layer::WritePolicy::WriteThrough)
        .l2(RedisTier::connect(&config).await.unwrap(), u64_codec())
        .l3(
            cache_layer::backend::disk::DiskTier::open(dir.path().join("l3.redb"), 1 << 20)
                .unwrap(),
            u64_codec(),
        )
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(up.service::<String>(Duration::ZERO));
    assert_eq!(svc.oneshot("k".to_owned()).await.unwrap(), 1);
    // No waiting: both copies exist when the caller has its answer.
    assert!(pttl(&config, &probe.redis_key("k")).await > 0, "in Redis");
    assert!(handle.stats().l3_bytes > 0, "on disk");
}

/// The child side of the two-process test: one instance, 200 concurrent misses once the
/// parent says go; prints its upstream call count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by two_processes_times_200_concurrent_misses_make_one_upstream_call"]
async fn distributed_single_flight_child() {
    let Ok(url) = std::env::var("CACHE_DSF_REDIS_URL") else {
        return;
    };
    let config = RedisConfig::single(url).key_prefix("t8");
    let up = Upstream::default();
    let (svc, _, _) = instance_with(&config, &up, Some(secs(3)), Duration::from_millis(300)).await;
    let keys = config.keyspace().unwrap();
    let mut conn = config.connect().await.unwrap();
    let _: () = redis::AsyncCommands::set(&mut conn, keys.fixed("child-ready"), 1)
        .await
        .unwrap();
    while !redis::AsyncCommands::exists::<_, bool>(&mut conn, keys.fixed("go"))
        .await
        .unwrap()
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let calls = (0..200).map(|_| svc.clone().oneshot("hot".to_owned()));
    let answers = futures_util::future::join_all(calls).await;
    assert!(answers.iter().all(|r| matches!(r, Ok(1))));
    println!("child-upstream-calls={}", up.calls());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_times_200_concurrent_misses_make_one_upstream_call() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = server.config().key_prefix("t8");
    let up = Upstream::default();
    let (svc, _, _) = instance_with(&config, &up, Some(secs(3)), Duration::from_millis(300)).await;
    let child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "distributed_single_flight_child",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("CACHE_DSF_REDIS_URL", server.url())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let keys = config.keyspace().unwrap();
    let mut conn = config.connect().await.unwrap();
    let ready = within(secs(20), || {
        let (mut conn, key) = (conn.clone(), keys.fixed("child-ready"));
        async move {
            redis::AsyncCommands::exists::<_, bool>(&mut conn, key)
                .await
                .unwrap_or(false)
        }
    })
    .await;
    assert!(ready.is_some(), "the child process started");
    let _: () = redis::AsyncCommands::set(&mut conn, keys.fixed("go"), 1)
        .await
        .unwrap();
    let calls = (0..200).map(|_| svc.clone().oneshot("hot".to_owned()));
    let answers = futures_util::future::join_all(calls).await;
    assert!(answers.iter().all(|r| matches!(r, Ok(1))));
    let out = tokio::time::timeout(secs(20), child.wait_with_output())
        .await
        .expect("the child finishes")
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let child_calls: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("child-upstream-calls="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count from the child: {text}"));
    assert_eq!(
        up.calls() + child_calls,
        1,
        "one upstream call across two processes"
    );
}

#[tokio::test]
async fn a_dropped_cache_unsubscribes_at_once() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = server.config().key_prefix("t9");
    let up = Upstream::default();
    let (svc, handle, _probe) = instance(&config, &up).await;
    assert!(
        within(secs(10), || async { subscribers(&config).await >= 1 })
            .await
            .is_some(),
        "subscribed"
    );
    get(&svc, "k").await;
    // The service and the handle are the only owners of the engine.
    drop((svc, handle));
    let dropped_at = Instant::now();
    let gone = within(secs(5), || async { subscribers(&config).await == 0 }).await;
    let took = dropped_at.elapsed();
    assert!(gone.is_some(), "still subscribed {took:?} after the drop");
    // No periodic wake-up decides this: the drop itself stops the subscriber.
    assert!(
        took < Duration::from_millis(500),
        "unsubscribed after {took:?}"
    );
}

#[tokio::test]
async fn a_cache_built_while_redis_is_down_subscribes_and_flushes_once_it_is_back() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let config = server.config().key_prefix("t10");
    let tier = RedisTier::connect(&config).await.unwrap();
    server.stop();
    let up = Upstream::default();
    let layer = CacheLayer::builder(key as Key)
        .ttl(secs(60))
        .l2(tier, u64_codec())
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(up.service::<String>(Duration::ZERO));
    // Served from the upstream while Redis is away, and kept in L1.
    assert_eq!(svc.oneshot("k".to_owned()).await.unwrap(), 1);
    assert_eq!(handle.peek("k"), Some(1));
    assert!(handle.stats().l2_errors >= 1, "the cache saw Redis down");
    // The scenario, not a barrier: the outage lasts two connect timeouts, so that the
    // subscriber's attempts fail (or are retried) before Redis comes back.
    tokio::time::sleep(config.connect_timeout * 2).await;
    server.restart().unwrap();
    assert!(
        within(secs(20), || async { subscribers(&config).await >= 1 })
            .await
            .is_some(),
        "subscribed once Redis was back"
    );
    // Invalidations published before the subscription are lost to it: L1 is flushed.
    let flushed = within(secs(5), || async { handle.stats().pubsub_resyncs == 1 }).await;
    assert!(
        flushed.is_some(),
        "the late first subscription counts as a resync"
    );
    assert_eq!(handle.peek("k"), None, "L1 flushed");
}

/// Sharded subscribers of `channel` (`PUBSUB SHARDNUMSUB` on the master of its slot) and
/// classic ones (`PUBSUB NUMSUB` on every node: classic subscriptions are node-local).
async fn cluster_subscribers(cluster: &RedisCluster, channel: &str) -> (i64, i64) {
    async fn count(url: &str, subcommand: &str, channel: &str) -> i64 {
        let Ok(client) = redis::Client::open(url) else {
            return 0;
        };
        let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
            return 0;
        };
        pubsub_count(&mut conn, subcommand, channel).await
    }
    let Ok(port) = cluster.master_port_for(channel) else {
        return (0, 0);
    };
    let sharded = count(&format!("redis://127.0.0.1:{port}"), "SHARDNUMSUB", channel).await;
    let mut classic = 0;
    for url in cluster.urls() {
        classic += count(&url, "NUMSUB", channel).await;
    }
    (sharded, classic)
}

/// Polls every millisecond (10 s at most) until B has received a new invalidation and
/// no longer holds `k` in L1; the time since `since`.
async fn evicted_within(
    hb: &CacheHandle<u64>,
    k: &str,
    before: u64,
    since: Instant,
) -> Option<Duration> {
    while since.elapsed() < secs(10) {
        if hb.stats().pubsub_messages > before && hb.peek(k).is_none() {
            return Some(since.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    None
}

/// Invalidation latency bound on loopback. Measured figures are printed (`--nocapture`).
const EVICTED_WITHIN: Duration = Duration::from_millis(100);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_invalidations_are_sharded_and_evict_the_others_l1_within_100ms() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let config = cluster.config().key_prefix("tcs");
    let (up_a, up_b) = (Upstream::default(), Upstream::default());
    // A long TTL: no copy can run out during the test and fake an eviction.
    let ttl = secs(60);
    let (a, ha, probe) = lasting(&config, &up_a, None, Duration::ZERO, ttl).await;
    let (b, hb, _) = lasting(&config, &up_b, None, Duration::ZERO, ttl).await;
    let channel = probe.channel();
    assert_eq!(channel, "tcs:cache:invalidate");
    let both = within(secs(10), || async {
        cluster_subscribers(&cluster, &channel).await.0 >= 2
    })
    .await;
    assert!(both.is_some(), "both instances subscribed, sharded");
    assert_eq!(
        cluster_subscribers(&cluster, &channel).await,
        (2, 0),
        "sharded subscriptions only, no classic one on any node"
    );

    // B caches K from L2 (A's upstream answer).
    let k = "k";
    assert_eq!(get(&a, k).await, 1);
    let redis_key = probe.redis_key(k);
    within(secs(10), || async { pttl(&config, &redis_key).await > 0 }).await;
    assert_eq!(get(&b, k).await, 1);
    assert_eq!((up_b.calls(), hb.stats().l2_hits), (0, 1));
    assert_eq!(hb.peek(k), Some(1));

    // A well-formed invalidation sent with classic PUBLISH, on every node, reaches nobody.
    let before = hb.stats().pubsub_messages;
    for url in cluster.urls() {
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let heard: i64 = conn
            .publish(&channel, format!("dead|k|0|{k}"))
            .await
            .unwrap();
        assert_eq!(heard, 0, "classic PUBLISH on {url} heard");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        hb.stats().pubsub_messages,
        before,
        "classic messages ignored"
    );
    assert_eq!(hb.peek(k), Some(1));

    // Every kind of invalidation on A evicts B's copy, over sharded pub/sub; B then reads
    // what A left: the put value from L2, else (L2 key deleted, or generation bumped) a
    // new answer from its upstream.
    let mut measured = Vec::new();
    for (kind, then) in [("put", 99), ("key", 1), ("prefix", 2), ("all", 3)] {
        assert!(hb.peek(k).is_some());
        let before = hb.stats().pubsub_messages;
        let at = Instant::now();
        match kind {
            "put" => ha.put(k, 99).unwrap(),
            "key" => ha.invalidate(k),
            "prefix" => ha.invalidate_prefix("k"),
            _ => ha.clear(),
        }
        let took = evicted_within(&hb, k, before, at).await;
        let took = took.unwrap_or_else(|| panic!("B's copy not evicted by A's {kind}"));
        measured.push((kind, took));
        assert_eq!(get(&b, k).await, then, "B after A's {kind}");
    }
    println!("cluster invalidation latency: {measured:?}");
    for (kind, took) in &measured {
        assert!(*took < EVICTED_WITHIN, "{kind}: evicted after {took:?}");
    }
    assert_eq!(up_b.calls(), 3);
    // Every eviction came from a message: none from a resynchronising flush.
    assert_eq!(hb.stats().pubsub_resyncs, 0);
}

/// How many of `keys` (user keys, at `probe`'s generation) exist in Redis, read directly.
async fn existing(config: &RedisConfig, probe: &RedisTier, keys: &[String]) -> i64 {
    let mut conn = config.connect().await.unwrap();
    let names: Vec<String> = keys.iter().map(|k| probe.redis_key(k)).collect();
    redis::cmd("EXISTS")
        .arg(&names)
        .query_async(&mut conn)
        .await
        .unwrap()
}

/// A cache with L2 on `config` and its handle (built in the current runtime).
async fn l2_cache(config: &RedisConfig) -> (CacheLayer<Key, u64>, CacheHandle<u64>) {
    let tier = RedisTier::connect(config).await.unwrap();
    let layer = CacheLayer::builder(key as Key)
        .ttl(secs(60))
        .l2(tier, u64_codec())
        .build()
        .unwrap();
    let handle = layer.handle();
    (layer, handle)
}

#[tokio::test]
async fn flush_returns_once_every_queued_write_is_in_redis() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = server.config().key_prefix("t12");
    let (_layer, handle) = l2_cache(&config).await;
    let probe = RedisTier::connect(&config).await.unwrap();
    let keys: Vec<String> = (0..500).map(|i| format!("k{i}")).collect();
    for (i, k) in keys.iter().enumerate() {
        handle.put(k, i as u64).unwrap();
    }
    handle.invalidate("k0");
    handle.flush().await.unwrap();
    // Right after the flush, not eventually.
    assert_eq!(
        existing(&config, &probe, &keys).await,
        499,
        "every put, and the invalidation, reached Redis"
    );
    assert_eq!(
        handle.stats().pubsub_published,
        501,
        "and every announcement"
    );
    handle.shutdown(secs(5)).await.unwrap();
    // Stopped: later writes are dropped and counted, flush says the writer is gone.
    handle.put("late", 1).unwrap();
    assert_eq!(handle.stats().l2_queue_overflow, 1);
    let err = handle.flush().await.unwrap_err();
    assert_eq!(
        err.tiers,
        vec![cache_layer::TierFlushError::Stopped { tier: "l2" }]
    );
    assert!(
        within(secs(5), || async { subscribers(&config).await == 0 })
            .await
            .is_some(),
        "the subscriber stopped at shutdown"
    );
}

/// A current-thread runtime with I/O and time, built by hand.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn caches_with_l2_in_two_runtimes_one_after_the_other_both_work() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = server.config().key_prefix("t13");
    // Built, used and dropped in a first runtime; a second cache built there outlives it.
    let first = runtime();
    let outlived = first.block_on(async {
        let (_layer, handle) = l2_cache(&config).await;
        let probe = RedisTier::connect(&config).await.unwrap();
        handle.put("a", 1).unwrap();
        handle.flush().await.unwrap();
        assert_eq!(existing(&config, &probe, &["a".to_owned()]).await, 1);
        l2_cache(&config).await.1
    });
    drop(first);
    // Built outside any runtime, a cache with L2 is a typed error, not a panic.
    let tier = runtime().block_on(RedisTier::connect(&config)).unwrap();
    let outside = CacheLayer::builder(key as Key)
        .l2(tier, u64_codec())
        .build();
    assert!(outside.is_err(), "L2 outside a runtime is refused");
    let second = runtime();
    second.block_on(async {
        let (_layer, a) = l2_cache(&config).await;
        let (_layer_b, b) = l2_cache(&config).await;
        let probe = RedisTier::connect(&config).await.unwrap();
        // The writer runs in this runtime...
        a.put("b", 2).unwrap();
        a.flush().await.unwrap();
        assert_eq!(existing(&config, &probe, &["b".to_owned()]).await, 1);
        // ...and so does the subscriber: b's write evicts a's L1 copy.
        assert!(
            within(secs(10), || async { subscribers(&config).await >= 2 })
                .await
                .is_some(),
            "both subscribed in the second runtime"
        );
        assert_eq!(a.peek("b"), Some(2));
        b.put("b", 3).unwrap();
        b.flush().await.unwrap();
        assert!(
            within(secs(2), || async { a.peek("b").is_none() })
                .await
                .is_some(),
            "evicted over pub/sub"
        );
        // The cache whose runtime is gone: no hang, no panic, a typed answer.
        let started = Instant::now();
        outlived.put("c", 3).unwrap();
        assert_eq!(
            outlived.flush().await.unwrap_err().tiers,
            vec![cache_layer::TierFlushError::Stopped { tier: "l2" }]
        );
        assert!(outlived.shutdown(secs(1)).await.is_err());
        assert!(started.elapsed() < secs(1));
        a.shutdown(secs(5)).await.unwrap();
        b.shutdown(secs(5)).await.unwrap();
    });
}

/// The `process_id` Redis reports.
async fn redis_pid(config: &RedisConfig) -> String {
    let mut conn = config.connect().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .unwrap()
        .trim()
        .to_owned()
}

fn signal(pid: &str, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, pid])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

#[tokio::test]
async fn shutdown_with_a_dead_redis_returns_within_its_deadline() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    // Hung (SIGSTOP): commands wait for their response timeout, longer than the deadline.
    let config = server.config().key_prefix("t14").response_timeout(secs(5));
    let pid = redis_pid(&config).await;
    let (_layer, handle) = l2_cache(&config).await;
    signal(&pid, "-STOP");
    for i in 0..100 {
        handle.put(&format!("k{i}"), i).unwrap();
    }
    let deadline = Duration::from_millis(300);
    let started = Instant::now();
    let r = handle.shutdown(deadline).await;
    let took = started.elapsed();
    signal(&pid, "-CONT");
    assert!(
        took < deadline + Duration::from_millis(500),
        "took {took:?}"
    );
    let err = r.unwrap_err();
    assert!(
        matches!(err.tiers[..], [cache_layer::TierFlushError::Deadline { tier: "l2", pending }] if pending >= 99),
        "{err}"
    );

    // Killed: commands fail (or wait to connect); either way within the deadline.
    let config = server.config().key_prefix("t15");
    let (_layer, handle) = l2_cache(&config).await;
    server.stop();
    for i in 0..100 {
        handle.put(&format!("k{i}"), i).unwrap();
    }
    let deadline = secs(1);
    let started = Instant::now();
    let r = handle.shutdown(deadline).await;
    let took = started.elapsed();
    assert!(
        took < deadline + Duration::from_millis(500),
        "took {took:?}"
    );
    assert!(r.is_err(), "nothing reached Redis: {r:?}");
}
