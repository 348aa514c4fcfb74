//! The limiter on the in-process backend, through the public API and `ServiceBuilder`.

use std::convert::Infallible;
use std::time::Duration;

use proptest::prelude::*;
use ratelimit_layer::key::key_fn;
use ratelimit_layer::quota::Mode;
use ratelimit_layer::{
    Algorithm, MemoryBackend, Quota, RateLimitLayer, RateLimited, RateLimiter, Reason, Subject,
    WindowConfig,
};
use reliability_core::clock::ManualClock;
use reliability_core::error::is_do_not_retry;
use reliability_core::health::{ComponentDetail, HealthSource};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};

fn echo() -> impl Service<Subject, Response = u32, Error = Infallible, Future = impl Send> + Clone {
    service_fn(|s: Subject| async move { Ok::<_, Infallible>(s.cost) })
}

fn by_subject() -> impl ratelimit_layer::KeyExtractor<Subject> {
    key_fn(|s: &Subject| Some(s.clone()))
}

fn manual(limiter: ratelimit_layer::RateLimiterBuilder) -> (RateLimiter, ManualClock) {
    let clock = ManualClock::new();
    let backend = MemoryBackend::builder()
        .clock(clock.shared())
        .build()
        .unwrap();
    (limiter.backend(backend).build().unwrap(), clock)
}

#[tokio::test]
async fn free_tier_allows_two_per_second_through_a_service() {
    let (limiter, clock) = manual(RateLimiter::builder());
    let mut svc = ServiceBuilder::new()
        .layer(RateLimitLayer::new(limiter.clone()).key(by_subject()))
        .service(echo());
    let alice = Subject::new("alice");
    for _ in 0..2 {
        svc.ready()
            .await
            .unwrap()
            .call(alice.clone())
            .await
            .unwrap();
    }
    let err: BoxError = svc
        .ready()
        .await
        .unwrap()
        .call(alice.clone())
        .await
        .unwrap_err();
    let limited = err.downcast_ref::<RateLimited>().expect("typed error");
    assert_eq!(limited.reason, Reason::Exceeded);
    assert_eq!(limited.policy, "free");
    assert_eq!(limited.retry_after, Some(Duration::from_millis(500)));
    assert!(is_do_not_retry(&*err));
    clock.advance(Duration::from_millis(500));
    svc.ready().await.unwrap().call(alice).await.unwrap();
    // The clone shares the limiter: no Buffer needed.
    let mut other = svc.clone();
    assert!(
        other
            .ready()
            .await
            .unwrap()
            .call(Subject::new("alice"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn tiers_custom_limits_and_the_operations_api() {
    let endpoint_quota = Quota::per(1, Duration::from_secs(60)).unwrap();
    let (limiter, clock) = manual(RateLimiter::builder().endpoint_limit("/search", endpoint_quota));
    assert_eq!(limiter.tiers().len(), 4);
    assert!(limiter.set_tier("bob", "platinum").await.is_err());
    limiter.set_tier("bob", "enterprise").await.unwrap();
    assert_eq!(limiter.tier_of("bob").await, "enterprise");
    for _ in 0..50 {
        limiter.check("bob", 1).await.unwrap();
    }
    assert!(limiter.check("bob", 1).await.is_err());
    let status = limiter.status("bob", None).await.unwrap();
    assert_eq!(status.policy, "enterprise");
    assert_eq!(status.windows[0].remaining, 0);
    assert_eq!(status.windows[1].remaining, 950);
    assert_eq!(status.usage.allowed, 50);
    assert_eq!(status.usage.rejected, 1);

    // Endpoint limit: counted per (user, endpoint), separately from the tier.
    let search = Subject::new("carol").endpoint("/search");
    limiter.check_subject(&search).await.unwrap();
    let e = limiter.check_subject(&search).await.unwrap_err();
    assert_eq!(e.policy, "endpoint");
    limiter.check("carol", 1).await.unwrap();

    // A user's custom limit beats both.
    limiter
        .set_user_limit("carol", Quota::per(100, Duration::from_secs(1)).unwrap())
        .await
        .unwrap();
    limiter.check_subject(&search).await.unwrap();
    limiter.clear_user_limit("carol").await.unwrap();
    assert!(limiter.check_subject(&search).await.is_err());

    // Reset forgets the counted state.
    limiter.reset("bob").await.unwrap();
    limiter.check("bob", 1).await.unwrap();
    assert_eq!(limiter.usage("bob").await.unwrap().allowed, 1);
    assert!(
        limiter
            .top_users(10)
            .await
            .unwrap()
            .iter()
            .any(|(u, _)| u == "bob")
    );

    // Peek never consumes.
    for _ in 0..5 {
        assert!(limiter.peek(&Subject::new("dave")).await.unwrap().allowed);
    }
    assert_eq!(
        limiter.status("dave", None).await.unwrap().windows[0].remaining,
        2
    );

    // A cost above every burst is refused for good.
    let e = limiter.check("erin", 3).await.unwrap_err();
    assert_eq!(e.reason, Reason::CostTooHigh);
    assert_eq!(e.retry_after, None);

    clock.advance(Duration::from_secs(1));
    let snap = limiter.snapshot();
    assert_eq!(snap.backend, "memory");
    assert!(snap.allowed >= 53 && snap.rejected >= 4, "{snap:?}");
    let health = limiter.health();
    assert!(matches!(health[0].detail, ComponentDetail::RateLimit(_)));
}

#[tokio::test(start_paused = true)]
async fn client_mode_waits_then_gives_up() {
    let limiter = RateLimiter::builder()
        .quota(Quota::per(1, Duration::from_millis(100)).unwrap())
        .build()
        .unwrap();
    let layer = RateLimitLayer::new(limiter.clone()).wait_up_to(Duration::from_millis(250));
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|()| async { Ok::<_, Infallible>(()) }));
    let start = tokio::time::Instant::now();
    for _ in 0..3 {
        svc.clone().oneshot(()).await.unwrap();
    }
    assert_eq!(start.elapsed(), Duration::from_millis(200));
    assert_eq!(limiter.snapshot().waited, 2);

    let strict = RateLimiter::builder()
        .quota(Quota::per(1, Duration::from_secs(10)).unwrap())
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(RateLimitLayer::new(strict).wait_up_to(Duration::from_secs(1)))
        .service(service_fn(|()| async { Ok::<_, Infallible>(()) }));
    svc.clone().oneshot(()).await.unwrap();
    let err = svc.oneshot(()).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<RateLimited>().unwrap().reason,
        Reason::WaitExceeded
    );
}

#[test]
fn a_million_keys_stay_bounded_and_are_reclaimed() {
    let clock = ManualClock::new();
    let max_keys = 200_000;
    let backend = MemoryBackend::builder()
        .max_keys(max_keys)
        .clock(clock.shared())
        .build()
        .unwrap();
    let quota = Quota::per(10, Duration::from_secs(1)).unwrap();
    let mut key = String::with_capacity(16);
    for i in 0..1_000_000u32 {
        use std::fmt::Write;
        key.clear();
        let _ = write!(key, "k{i}");
        assert!(backend.decide_now(&key, &quota, 1, Mode::Consume).allowed);
        if i % 100_000 == 0 {
            clock.advance(Duration::from_millis(10));
        }
    }
    let held = ratelimit_layer::Backend::tracked_keys(&backend);
    assert!(held <= max_keys as u64 + 64, "{held} keys held");
    // Bound: about max_keys × 2 × MemoryBackend::BYTES_PER_KEY (map slack) + key bytes: under 64 MB here.
    assert!(
        backend.approx_bytes() < 64 << 20,
        "{} bytes",
        backend.approx_bytes()
    );
    clock.advance(Duration::from_secs(2));
    backend.purge_idle();
    assert_eq!(ratelimit_layer::Backend::tracked_keys(&backend), 0);
}

#[tokio::test]
async fn hostile_subjects_are_bounded() {
    let (limiter, _clock) = manual(RateLimiter::builder());
    let huge = "}\n{".repeat(400_000);
    limiter.check(&huge, 1).await.unwrap();
    limiter.check(&huge, 1).await.unwrap();
    assert_eq!(
        limiter.check(&huge, 1).await.unwrap_err().reason,
        Reason::Exceeded
    );
    assert_eq!(limiter.usage(&huge).await.unwrap().allowed, 2);
    let e = limiter.check("x", u32::MAX).await.unwrap_err();
    assert_eq!(e.reason, Reason::CostTooHigh);
    // A cost of 0 counts as 1.
    limiter
        .check_subject(&Subject::new("zero").cost(0))
        .await
        .unwrap();
    limiter
        .check_subject(&Subject::new("zero").cost(0))
        .await
        .unwrap();
    assert!(
        limiter
            .check_subject(&Subject::new("zero").cost(0))
            .await
            .is_err()
    );
    let backend = MemoryBackend::new();
    backend.decide_now(
        &huge,
        &Quota::per(1, Duration::from_secs(1)).unwrap(),
        1,
        Mode::Consume,
    );
    assert!(
        backend.approx_bytes() < 64 * 1024,
        "{}",
        backend.approx_bytes()
    );
}

#[tokio::test]
async fn inner_errors_pass_through_and_readiness_is_driven() {
    let limiter = RateLimiter::builder()
        .quota(Quota::per(5, Duration::from_secs(1)).unwrap())
        .build()
        .unwrap();
    let failing = service_fn(|()| async { Err::<(), _>(std::io::Error::other("upstream")) });
    let err = ServiceBuilder::new()
        .layer(RateLimitLayer::new(limiter))
        .service(failing)
        .oneshot(())
        .await
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<std::io::Error>().unwrap().to_string(),
        "upstream"
    );
    // poll_ready only asks the inner service: a limit never reserves capacity.
    let limiter = RateLimiter::builder()
        .quota(Quota::per(1, Duration::from_secs(60)).unwrap())
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(RateLimitLayer::new(limiter.clone()))
        .service(echo_unit());
    for _ in 0..10 {
        std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
    }
    assert_eq!(limiter.snapshot().allowed + limiter.snapshot().rejected, 0);
}

fn echo_unit() -> impl Service<(), Response = (), Error = Infallible, Future = impl Send> + Clone {
    service_fn(|()| async { Ok::<_, Infallible>(()) })
}

#[tokio::test]
async fn bad_configuration_is_a_typed_error() {
    let w = WindowConfig {
        limit: 5,
        period: Duration::from_secs(1),
        burst: None,
        algorithm: Algorithm::SlidingWindow,
    };
    assert!(Quota::from_config(&[w]).is_ok());
    assert_eq!(
        Quota::from_config(&[WindowConfig { limit: 0, ..w }])
            .unwrap_err()
            .field,
        "window.limit"
    );
    assert_eq!(
        RateLimiter::builder().name("").build().unwrap_err().field,
        "name"
    );
    let cfg: ratelimit_layer::RateLimiterConfig = toml::from_str(
        r#"
        name = "api"
        default_tier = "free"
        usage_capacity = 10
        max_keys = 1000
        [[tiers.free]]
        limit = 2
        period = "1s"
        [[endpoints."/search"]]
        limit = 1
        period = "1m"
        "#,
    )
    .unwrap();
    let limiter = cfg.build().await.unwrap();
    assert_eq!(limiter.name(), "api");
    assert_eq!(limiter.tiers()[0].windows.len(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    /// Through the limiter: per-second window of the free tier never admits more than its
    /// GCRA bound; peeks and refusals change nothing.
    #[test]
    fn limiter_respects_the_tier(arrivals in proptest::collection::vec((0u64..400, any::<bool>()), 1..120)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let (limiter, clock) = manual(RateLimiter::builder());
            let mut admitted = Vec::new();
            let mut t = 0u64;
            for (gap, peek) in arrivals {
                clock.advance(Duration::from_millis(gap));
                t += gap;
                let before = limiter.status("u", None).await.unwrap();
                if peek {
                    limiter.peek(&Subject::new("u")).await.unwrap();
                    prop_assert_eq!(&limiter.status("u", None).await.unwrap().windows, &before.windows);
                } else if limiter.check("u", 1).await.is_ok() {
                    admitted.push(t);
                } else {
                    prop_assert_eq!(&limiter.status("u", None).await.unwrap().windows, &before.windows);
                }
            }
            // Free tier: 2 per second, burst 2, T = 500 ms.
            for i in 0..admitted.len() {
                for (j, t) in admitted[i..].iter().enumerate() {
                    prop_assert!((j as u64 + 1) <= 2 + (t - admitted[i]) / 500);
                }
            }
            Ok(())
        })?;
    }
}
