//! The exported families against the limiter's own figures: decisions per tier equal the
//! per-user usage of that tier's users and add up to the snapshot; waits equal the
//! snapshot's; the Redis backend's fallback gauge follows `fallback_active`.
//!
//! Each limiter is built inside `metrics::with_local_recorder`: its handles are registered
//! then, bound to that test's recorder, and record into it from any thread afterwards.

use std::convert::Infallible;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use ratelimit_layer::key::key_fn;
use ratelimit_layer::{
    FailureMode, Quota, RateLimitLayer, RateLimiter, RedisBackend, Subject, Tier, TierTable,
};
use reliability_core::harness::RedisServer;
use tower::{ServiceBuilder, ServiceExt, service_fn};

/// One recorded value: name, labels, value.
type Sample = (String, Vec<(String, String)>, DebugValue);

/// One snapshot of a recorder (reading drains it, so each check reads once).
struct Scrape(Vec<Sample>);

impl Scrape {
    fn of(s: &Snapshotter) -> Self {
        Self(
            s.snapshot()
                .into_vec()
                .into_iter()
                .map(|(k, _, _, v)| {
                    let key = k.key();
                    let labels = key
                        .labels()
                        .map(|l| (l.key().to_owned(), l.value().to_owned()))
                        .collect();
                    (key.name().to_owned(), labels, v)
                })
                .collect(),
        )
    }

    fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<&DebugValue> {
        self.0.iter().find_map(|(n, ls, v)| {
            let same = ls.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, val)| ls.iter().any(|(lk, lv)| lk == k && lv == val));
            (n == name && same).then_some(v)
        })
    }

    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self.find(name, labels) {
            Some(DebugValue::Counter(n)) => *n,
            other => panic!("counter {name}{labels:?}: {other:?}"),
        }
    }

    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.find(name, labels) {
            Some(DebugValue::Gauge(g)) => g.into_inner(),
            other => panic!("gauge {name}{labels:?}: {other:?}"),
        }
    }

    fn observations(&self, name: &str, labels: &[(&str, &str)]) -> usize {
        match self.find(name, labels) {
            Some(DebugValue::Histogram(h)) => h.len(),
            other => panic!("histogram {name}{labels:?}: {other:?}"),
        }
    }

    /// Decisions of `tier` as `(allowed, rejected)`.
    fn decisions(&self, source: &str, tier: &str) -> (u64, u64) {
        let n = |result| {
            self.counter(
                "ratelimit_decisions_total",
                &[("source", source), ("result", result), ("tier", tier)],
            )
        };
        (n("allowed"), n("rejected"))
    }

    /// No label carries a user: only the bounded names the limiter was built with.
    fn assert_bounded_labels(&self, tiers: &[&str]) {
        for (name, labels, _) in &self.0 {
            for (k, v) in labels {
                let ok = match k.as_str() {
                    "source" => true,
                    "tier" => tiers.contains(&v.as_str()) || v == "custom" || v == "endpoint",
                    "result" => v == "allowed" || v == "rejected",
                    _ => false,
                };
                assert!(ok, "{name}: label {k}={v}");
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn decisions_per_tier_equal_usage_and_snapshot() {
    let recorder = DebuggingRecorder::new();
    let tiers = TierTable::new(
        vec![
            Tier::new("free", Quota::per(2, Duration::from_secs(60)).unwrap()).unwrap(),
            Tier::new("pro", Quota::per(5, Duration::from_secs(60)).unwrap()).unwrap(),
        ],
        "free",
    )
    .unwrap();
    let limiter = metrics::with_local_recorder(&recorder, || {
        RateLimiter::builder()
            .name("api")
            .tiers(tiers)
            .build()
            .unwrap()
    });
    limiter.set_tier("bob", "pro").await.unwrap();
    limiter
        .set_user_limit("carol", Quota::per(1, Duration::from_secs(60)).unwrap())
        .await
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(RateLimitLayer::new(limiter.clone()).key(key_fn(|s: &Subject| Some(s.clone()))))
        .service(service_fn(|_: Subject| async { Ok::<_, Infallible>(()) }));
    for (user, calls) in [("alice", 4), ("dave", 1), ("bob", 7), ("carol", 3)] {
        for _ in 0..calls {
            let _ = svc.clone().oneshot(Subject::new(user)).await;
        }
    }

    let m = Scrape::of(&recorder.snapshotter());
    let mut counted = std::collections::HashMap::new();
    for u in ["alice", "dave", "bob", "carol"] {
        counted.insert(u, limiter.usage(u).await.unwrap());
    }
    let usage = |users: &[&str]| {
        users.iter().fold((0, 0), |(a, r), u| {
            let x = counted[u];
            (a + x.allowed, r + x.rejected)
        })
    };
    assert_eq!(usage(&["alice", "dave"]), (3, 2), "the figures themselves");
    assert_eq!(m.decisions("api", "free"), usage(&["alice", "dave"]));
    assert_eq!(m.decisions("api", "pro"), usage(&["bob"]));
    assert_eq!(m.decisions("api", "custom"), usage(&["carol"]));
    assert_eq!(m.decisions("api", "endpoint"), (0, 0));
    let snap = limiter.snapshot();
    let total: (u64, u64) = ["free", "pro", "custom", "endpoint"]
        .iter()
        .map(|t| m.decisions("api", t))
        .fold((0, 0), |(a, r), (x, y)| (a + x, r + y));
    assert_eq!(total, (snap.allowed, snap.rejected));
    assert_eq!(
        m.counter("ratelimit_backend_errors_total", &[("source", "api")]),
        limiter.backend_errors()
    );
    m.assert_bounded_labels(&["free", "pro"]);
}

#[tokio::test(start_paused = true)]
async fn client_mode_waits_equal_the_snapshot() {
    let recorder = DebuggingRecorder::new();
    let limiter = metrics::with_local_recorder(&recorder, || {
        RateLimiter::builder()
            .name("outbound")
            .quota(Quota::per(1, Duration::from_millis(100)).unwrap())
            .build()
            .unwrap()
    });
    let svc = ServiceBuilder::new()
        .layer(RateLimitLayer::new(limiter.clone()).wait_up_to(Duration::from_millis(250)))
        .service(service_fn(|()| async { Ok::<_, Infallible>(()) }));
    for _ in 0..3 {
        svc.clone().oneshot(()).await.unwrap();
    }
    let m = Scrape::of(&recorder.snapshotter());
    let source = [("source", "outbound")];
    assert_eq!(limiter.snapshot().waited, 2);
    assert_eq!(
        m.counter("ratelimit_waits_total", &source),
        limiter.snapshot().waited
    );
    assert_eq!(
        m.observations("ratelimit_wait_duration_seconds", &source),
        2
    );
    // A refusal that is then waited out is still a refusal, in both.
    let snap = limiter.snapshot();
    assert_eq!(
        m.decisions("outbound", "default"),
        (snap.allowed, snap.rejected)
    );
    assert_eq!(snap.allowed, 3);
}

/// Redis down: the gauge turns 1 with `fallback_active`, fail-closed refusals count as
/// backend errors, and round trips equal the backend's own count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_fallback_gauge_and_errors_follow_the_backend() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    // Decision round trips only: control state per process (no rule loads, no flushes).
    let open = RedisBackend::builder(server.config().key_prefix("m-open"))
        .shared_control(false)
        .build()
        .await
        .unwrap();
    let closed = RedisBackend::builder(server.config().key_prefix("m-closed"))
        .shared_control(false)
        .failure_mode(FailureMode::Closed)
        .build()
        .await
        .unwrap();
    let recorder = DebuggingRecorder::new();
    let quota = Quota::per(100, Duration::from_secs(60)).unwrap();
    let (shared, strict) = metrics::with_local_recorder(&recorder, || {
        let build = |name: &str, backend: RedisBackend| {
            RateLimiter::builder()
                .name(name)
                .quota(quota)
                .backend(backend)
                .build()
                .unwrap()
        };
        (build("open", open.clone()), build("closed", closed.clone()))
    });
    let check = |limiter: RateLimiter| async move {
        let _ = limiter.check("u", 1).await;
    };
    check(shared.clone()).await;
    check(strict.clone()).await;
    let m = Scrape::of(&recorder.snapshotter());
    assert_eq!(
        m.gauge("ratelimit_fallback_active", &[("source", "open")]),
        0.0
    );
    assert!(!shared.snapshot().fallback_active);

    server.stop();
    check(shared.clone()).await;
    check(shared.clone()).await;
    check(strict.clone()).await;
    check(strict.clone()).await;
    let m = Scrape::of(&recorder.snapshotter());
    assert!(shared.snapshot().fallback_active);
    assert_eq!(
        m.gauge("ratelimit_fallback_active", &[("source", "open")]),
        1.0
    );
    assert_eq!(
        m.gauge("ratelimit_fallback_active", &[("source", "closed")]),
        0.0,
        "fail-closed has no fallback"
    );
    assert!(strict.backend_errors() >= 1);
    // Counters were drained by the first scrape: they hold what happened since.
    assert_eq!(
        m.counter("ratelimit_backend_errors_total", &[("source", "closed")]),
        strict.backend_errors()
    );
    assert_eq!(
        m.counter("ratelimit_lease_round_trips_total", &[("source", "open")]) + 1,
        open.round_trips(),
        "one round trip before the first scrape"
    );
}
