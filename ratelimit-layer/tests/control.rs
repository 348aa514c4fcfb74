//! Shared control state on real Redis: two limiters with their own connections stand for
//! two instances of a fleet (the multi-process tests are in `examples/tests/fleet.rs`).
//!
//! Real time (loopback sockets): every wait polls for the event with a generous deadline,
//! and the propagation bound is asserted on the measured time.

use std::time::{Duration, Instant};

use ratelimit_layer::{Backend, ControlError, Quota, RateLimiter, RedisBackend, Subject};
use reliability_core::harness::{RedisCluster, RedisServer};
use reliability_core::health::HealthSource;
use reliability_core::redis::RedisConfig;

/// What the issue promises for a change to reach another instance.
const PROPAGATION: Duration = Duration::from_millis(100);
/// How long a wait may take at most before the test gives up.
const DEADLINE: Duration = Duration::from_secs(10);

async fn instance(config: &RedisConfig) -> RateLimiter {
    let backend = RedisBackend::builder(config.clone()).build().await.unwrap();
    assert!(backend.control().is_some());
    RateLimiter::builder().backend(backend).build().unwrap()
}

/// Polls `f` every 2 ms until it holds; returns how long that took.
async fn until<F, Fut>(what: &str, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(
            start.elapsed() < DEADLINE,
            "{what}: not within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    start.elapsed()
}

/// Waits until `b` listens for changes (its first change arrives once subscribed).
async fn listening(a: &RateLimiter, b: &RateLimiter) {
    let probe = format!("probe-{}", rand_suffix());
    b.tier_of(&probe).await;
    a.set_tier(&probe, "basic").await.unwrap();
    until("b subscribed", || async {
        b.tier_of(&probe).await == "basic"
    })
    .await;
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

async fn fleet_shares_rules_and_usage(config: RedisConfig) {
    let a = instance(&config).await;
    let b = instance(&config).await;
    listening(&a, &b).await;

    // B knows acme as free (cached), then A moves acme to pro: B follows within the bound.
    assert_eq!(b.tier_of("acme").await, "free");
    b.check("acme", 1).await.unwrap();
    let start = Instant::now();
    a.set_tier("acme", "pro").await.unwrap();
    until("tier on b", || async { b.tier_of("acme").await == "pro" }).await;
    let took = start.elapsed();
    assert!(took < PROPAGATION, "tier reached b after {took:?}");
    assert_eq!(b.status("acme", None).await.unwrap().policy, "pro");

    // Custom and endpoint limits follow the same way.
    let one = Quota::per(1, Duration::from_secs(3600)).unwrap();
    a.set_user_limit("acme", one).await.unwrap();
    until("limit on b", || async {
        b.status("acme", None).await.unwrap().policy == "user"
    })
    .await;
    a.clear_user_limit("acme").await.unwrap();
    until("cleared on b", || async {
        b.status("acme", None).await.unwrap().policy == "pro"
    })
    .await;
    a.set_endpoint_limit("/search", one).await.unwrap();
    let search = Subject::new("zed").endpoint("/search");
    until("endpoint on b", || async {
        b.resolve("zed", Some("/search")).quota == one
    })
    .await;
    b.check_subject(&search).await.unwrap();
    assert_eq!(
        a.check_subject(&search).await.unwrap_err().policy,
        "endpoint",
        "one endpoint budget for the fleet"
    );
    a.clear_endpoint_limit("/search").await.unwrap();
    until("endpoint cleared on b", || async {
        b.resolve("zed", Some("/search")).quota != one
    })
    .await;

    // An unknown tier changes nothing anywhere.
    assert!(matches!(
        a.set_tier("acme", "platinum").await,
        Err(ControlError::UnknownTier(_))
    ));
    assert_eq!(b.tier_of("acme").await, "pro");

    // Usage: traffic on both instances, read fleet-wide from either.
    a.set_tier("heavy", "enterprise").await.unwrap();
    until("heavy on b", || async {
        b.tier_of("heavy").await == "enterprise"
    })
    .await;
    for _ in 0..7 {
        a.check("heavy", 1).await.unwrap();
    }
    for _ in 0..5 {
        b.check("heavy", 1).await.unwrap();
    }
    b.check("light", 1).await.unwrap();
    b.flush_usage().await.unwrap();
    let top = a.top_users(2).await.unwrap();
    assert_eq!(top[0].0, "heavy");
    assert_eq!(top[0].1.allowed, 12, "both instances' traffic: {top:?}");
    assert_eq!(top.len(), 2);
    assert_eq!(b.usage("heavy").await.unwrap().allowed, 12);
    a.reset("heavy").await.unwrap();
    assert_eq!(b.usage("heavy").await.unwrap().allowed, 0);
    b.clear_usage().await.unwrap();
    assert!(a.top_users(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn single_node_fleet_shares_rules_and_usage() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    fleet_shares_rules_and_usage(server.config().key_prefix("ctl")).await;
}

#[tokio::test]
async fn cluster_fleet_shares_rules_and_usage() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    fleet_shares_rules_and_usage(cluster.config().key_prefix("ctl")).await;
}

#[tokio::test]
async fn hostile_user_ids_keep_to_their_own_keys() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = server.config().key_prefix("hostile");
    let a = instance(&config).await;
    let b = instance(&config).await;
    let huge = "x{y}\n".repeat(2048); // 10 KB
    let users = ["{", "}", "a}{b", "line\nbreak", "fleet", "", &huge, "acme"];
    let tiers = ["basic", "pro", "enterprise"];
    for (i, u) in users.iter().enumerate() {
        a.set_tier(u, tiers[i % 3]).await.unwrap();
    }
    for (i, u) in users.iter().enumerate() {
        assert_eq!(b.tier_of(u).await, tiers[i % 3], "user {i}");
    }
    // One rule key per user, none outside its own hash tag.
    let mut conn = config.connect().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("hostile:rl:ctl:*:rule")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), users.len(), "{keys:?}");
    for k in &keys {
        let tag = &k["hostile:rl:ctl:".len()..k.len() - ":rule".len()];
        assert!(tag.starts_with('{') && tag.ends_with('}'), "{k:?}");
        assert!(!tag[1..tag.len() - 1].contains(['{', '}']), "{k:?}");
    }
}

#[tokio::test]
async fn garbage_in_the_control_keys_is_reported_and_ignored() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = server.config().key_prefix("junk");
    let mut conn = config.connect().await.unwrap();
    let plant = |cmd: &mut redis::Cmd| cmd.clone();
    for cmd in [
        plant(
            redis::cmd("HSET")
                .arg("junk:rl:ctl:{ghost}:rule")
                .arg("tier")
                .arg("platinum"),
        ),
        plant(
            redis::cmd("HSET")
                .arg("junk:rl:ctl:{bent}:rule")
                .arg("limit")
                .arg("g,1,x,1"),
        ),
        plant(redis::cmd("SET").arg("junk:rl:ctl:{typed}:rule").arg("pro")),
        plant(
            redis::cmd("HSET")
                .arg("junk:rl:ctl:{fleet}:endpoints")
                .arg("/e")
                .arg("nope"),
        ),
        plant(
            redis::cmd("SET")
                .arg("junk:rl:ctl:{fleet}:usage")
                .arg("lots"),
        ),
    ] {
        let () = cmd.query_async(&mut conn).await.unwrap();
    }
    let limiter = instance(&config).await;
    for user in ["ghost", "bent", "typed"] {
        assert_eq!(limiter.tier_of(user).await, "free", "{user}");
        limiter.check(user, 1).await.unwrap();
        assert_eq!(limiter.status(user, None).await.unwrap().policy, "free");
    }
    let errors = limiter.snapshot().control_errors;
    assert!(errors >= 3, "garbage counted: {errors}");
    // A usage key of the wrong type: a typed error, not a panic or a wrong figure.
    assert!(limiter.top_users(3).await.is_err());
    // Garbage on the change channel is ignored.
    let mut publisher = config.connect().await.unwrap();
    reliability_core::redis::pubsub::publish(
        &mut publisher,
        "junk:rl:ctl:{fleet}:changes",
        b"\xff",
    )
    .await
    .unwrap();
    assert_eq!(limiter.tier_of("ghost").await, "free");
}

#[tokio::test]
async fn a_dead_store_keeps_the_last_known_rule_and_says_so() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let config = server.config().key_prefix("down");
    let a = instance(&config).await;
    let b = instance(&config).await;
    listening(&a, &b).await;
    a.set_tier("acme", "enterprise").await.unwrap();
    until("b knows acme", || async {
        b.tier_of("acme").await == "enterprise"
    })
    .await;

    server.stop();
    // Requests keep flowing on the fallback; the cached rule still applies.
    b.check("acme", 1).await.unwrap();
    assert_eq!(b.tier_of("acme").await, "enterprise");
    assert!(
        a.set_tier("acme", "basic").await.is_err(),
        "a write the store refuses fails"
    );
    until("stale reported", || async {
        b.snapshot().control_stale || b.snapshot().fallback_active
    })
    .await;
    b.check("newcomer", 1).await.unwrap();
    assert_eq!(b.tier_of("newcomer").await, "free");
    let health = b.health();
    assert_ne!(
        health[0].status,
        reliability_core::health::HealthStatus::Healthy
    );

    server.restart().unwrap();
    // The harness's Redis keeps nothing on disk: the restarted server is empty, so the
    // assignment is written again, as an operator would after such a loss.
    until("b resynchronised", || async {
        let snap = b.snapshot();
        let _ = b.peek(&Subject::new("probe")).await;
        !snap.control_stale && !snap.fallback_active
    })
    .await;
    let health = b.health();
    assert_eq!(
        health[0].status,
        reliability_core::health::HealthStatus::Healthy
    );
    a.set_tier("acme", "basic").await.unwrap();
    until("b follows again", || async {
        b.tier_of("acme").await == "basic"
    })
    .await;
}
