//! The freshness phases through the layer, on paused time: fresh, stale-while-revalidate,
//! stale-if-error, gone; XFetch; adaptive TTLs; negative caching.

mod common;

use std::time::Duration;

use cache_layer::CacheLayer;
use common::{Boom, Key, Upstream, builder, key, secs, settle, stack};
use tokio::time::advance;
use tower::{BoxError, Service, ServiceExt};

async fn get<S>(svc: &mut S, k: &str) -> Result<u64, BoxError>
where
    S: Service<String, Response = u64, Error = BoxError>,
{
    svc.ready().await?.call(k.to_owned()).await
}

#[tokio::test(start_paused = true)]
async fn walks_every_phase_and_edge() {
    let up = Upstream::default();
    let (mut svc, handle) = stack(
        builder()
            .ttl(secs(10))
            .stale_while_revalidate(secs(5))
            .stale_if_error(secs(20)),
        &up,
        Duration::ZERO,
    );
    assert_eq!(get(&mut svc, "k").await.unwrap(), 1, "miss");
    advance(secs(10) - Duration::from_millis(1)).await;
    assert_eq!(get(&mut svc, "k").await.unwrap(), 1, "last ms of freshness");
    assert_eq!(up.calls(), 1);

    // Stale-while-revalidate: the stale copy at once, one refresh behind it.
    advance(Duration::from_millis(1)).await;
    assert_eq!(get(&mut svc, "k").await.unwrap(), 1, "stale served at once");
    settle().await;
    assert_eq!(up.calls(), 2, "one background refresh");
    assert_eq!(get(&mut svc, "k").await.unwrap(), 2, "refreshed value");
    assert_eq!(handle.stats().stale_revalidate, 1);

    // Past the revalidate window, inside stale-if-error: a failure serves the copy.
    up.set_failing(true);
    advance(secs(15)).await;
    assert_eq!(get(&mut svc, "k").await.unwrap(), 2, "stale-if-error");
    assert_eq!(up.calls(), 3, "the caller waited for the upstream");
    assert_eq!(handle.stats().stale_if_error, 1);

    // The last instant of stale-if-error, then gone.
    advance(secs(15) - Duration::from_millis(1)).await;
    assert_eq!(get(&mut svc, "k").await.unwrap(), 2);
    advance(Duration::from_millis(1)).await;
    let err = get(&mut svc, "k").await.unwrap_err();
    assert!(
        err.is::<Boom>(),
        "gone: the upstream error, unchanged: {err}"
    );

    // The upstream is back: a plain miss.
    up.set_failing(false);
    assert_eq!(get(&mut svc, "k").await.unwrap(), 6);
}

#[tokio::test(start_paused = true)]
async fn inside_revalidate_a_success_replaces_a_stale_copy_without_waiting() {
    let up = Upstream::default();
    let (mut svc, handle) = stack(
        builder().ttl(secs(1)).stale_while_revalidate(secs(60)),
        &up,
        secs(3),
    );
    assert_eq!(get(&mut svc, "k").await.unwrap(), 1);
    advance(secs(2)).await;
    // Many callers in the stale window: all answered at once, one refresh runs.
    let mut answers = Vec::new();
    for _ in 0..50 {
        answers.push(tokio::time::timeout(Duration::from_millis(1), get(&mut svc, "k")).await);
    }
    assert!(answers.iter().all(|a| matches!(a, Ok(Ok(1)))));
    assert_eq!(up.calls(), 2, "exactly one background refresh");
    assert_eq!(handle.stats().refreshes, 1);
    settle().await;
    advance(secs(3)).await;
    settle().await;
    assert_eq!(get(&mut svc, "k").await.unwrap(), 2);
}

#[tokio::test(start_paused = true)]
async fn failed_background_refresh_keeps_the_stale_copy() {
    let up = Upstream::default();
    let (mut svc, handle) = stack(
        builder().ttl(secs(1)).stale_while_revalidate(secs(10)),
        &up,
        Duration::ZERO,
    );
    get(&mut svc, "k").await.unwrap();
    up.set_failing(true);
    advance(secs(2)).await;
    assert_eq!(get(&mut svc, "k").await.unwrap(), 1);
    settle().await;
    assert_eq!(handle.stats().refresh_failures, 1);
    assert_eq!(get(&mut svc, "k").await.unwrap(), 1, "still served");
}

#[tokio::test(start_paused = true)]
async fn max_staleness_caps_the_windows() {
    let up = Upstream::default();
    let (mut svc, _) = stack(
        builder()
            .ttl(secs(10))
            .stale_while_revalidate(secs(100))
            .max_staleness(secs(3)),
        &up,
        Duration::ZERO,
    );
    get(&mut svc, "k").await.unwrap();
    up.set_failing(true);
    advance(secs(13)).await;
    assert!(
        get(&mut svc, "k").await.is_err(),
        "3 s past TTL is too stale"
    );
}

#[tokio::test(start_paused = true)]
async fn stale_if_error_defaults_to_twice_the_ttl() {
    let up = Upstream::default();
    let (mut svc, _) = stack(builder().ttl(secs(10)), &up, Duration::ZERO);
    get(&mut svc, "k").await.unwrap();
    up.set_failing(true);
    advance(secs(10 + 20) - Duration::from_millis(1)).await;
    assert_eq!(get(&mut svc, "k").await.unwrap(), 1);
    advance(Duration::from_millis(1)).await;
    assert!(get(&mut svc, "k").await.is_err());
}

#[tokio::test(start_paused = true)]
async fn xfetch_refreshes_early_with_the_formulas_probability() {
    const KEYS: u64 = 600;
    let up = Upstream::default();
    let (svc, handle) = stack(builder().ttl(secs(10)).xfetch(1.0), &up, secs(2));
    // All keys miss at once; each fetch costs 2 s, so every entry has delta = 2 s.
    let fills: Vec<_> = (0..KEYS)
        .map(|i| svc.clone().oneshot(format!("k{i}")))
        .collect();
    let fills = tokio::spawn(futures_util::future::join_all(fills));
    advance(secs(2)).await;
    fills.await.unwrap();
    // 2 s before expiry: P(early) = exp(-remaining / (delta * beta)) = e^-1 ~ 0.368.
    advance(secs(8)).await;
    for i in 0..KEYS {
        svc.clone().oneshot(format!("k{i}")).await.unwrap();
    }
    let early = handle.stats().early_refreshes as f64;
    let expected = KEYS as f64 * (-1.0f64).exp();
    let sd = (KEYS as f64 * 0.368 * 0.632).sqrt();
    assert!(
        (early - expected).abs() < 4.0 * sd,
        "early refreshes {early}, expected {expected:.0} ± {:.0}",
        4.0 * sd
    );

    // Far from expiry nobody refreshes early. With these 2 s fetches even a fresh entry
    // has P = e^-5 per key (a few of 600), so this part uses 1 ms fetches: the largest
    // lead XFetch can draw is delta·β·(-ln f64::MIN_POSITIVE) ≈ 708 ms, so at 2 s
    // before expiry an early refresh is impossible, not merely unlikely.
    let cheap_up = Upstream::default();
    let (cheap, cheap_handle) = stack(
        builder().ttl(secs(10)).xfetch(1.0),
        &cheap_up,
        Duration::from_millis(1),
    );
    let fills: Vec<_> = (0..KEYS)
        .map(|i| cheap.clone().oneshot(format!("k{i}")))
        .collect();
    let fills = tokio::spawn(futures_util::future::join_all(fills));
    advance(Duration::from_millis(2)).await;
    fills.await.unwrap();
    assert_eq!(cheap_up.calls(), KEYS);
    advance(secs(8)).await;
    for i in 0..KEYS {
        cheap.clone().oneshot(format!("k{i}")).await.unwrap();
    }
    let s = cheap_handle.stats();
    assert_eq!(s.early_refreshes, 0, "no early refresh 2 s before expiry");
    assert_eq!(cheap_up.calls(), KEYS, "no upstream call far from expiry");
    assert_eq!(s.hits, KEYS);
    // The same entries close to expiry (a few ms, about delta, left): XFetch is on.
    advance(secs(2) - Duration::from_millis(3)).await;
    for i in 0..KEYS {
        cheap.clone().oneshot(format!("k{i}")).await.unwrap();
    }
    assert!(
        cheap_handle.stats().early_refreshes > 0,
        "close to expiry some refresh early: {:?}",
        cheap_handle.stats()
    );
}

#[tokio::test(start_paused = true)]
async fn adaptive_popularity_grows_on_hits_and_shrinks_on_misses() {
    let up = Upstream::default();
    let (mut svc, handle) = stack(
        builder().ttl(secs(10)).adaptive_ttl(secs(5), secs(20)),
        &up,
        Duration::ZERO,
    );
    get(&mut svc, "k").await.unwrap();
    assert_eq!(handle.remaining_ttl("k"), Some(secs(8)), "miss: 10 × 0.8");
    for _ in 0..10 {
        get(&mut svc, "k").await.unwrap();
    }
    advance(secs(9)).await;
    get(&mut svc, "k").await.unwrap();
    assert_eq!(up.calls(), 2, "expired at 8 s");
    // Ten hits: 8 × 1.2^10 = 49.5 → capped at 20, then × 0.8 for this miss.
    assert_eq!(handle.remaining_ttl("k"), Some(secs(16)));
    // Misses only: down to the floor.
    for _ in 0..10 {
        advance(secs(21)).await;
        handle.invalidate("k");
        get(&mut svc, "k").await.unwrap();
    }
    assert_eq!(handle.remaining_ttl("k"), Some(secs(5)));
}

#[tokio::test(start_paused = true)]
async fn adaptive_volatility_follows_changes() {
    // The upstream answers n / 3: unchanged on most refreshes.
    let up = Upstream::default();
    let layer = CacheLayer::builder(key as Key)
        .ttl(secs(10))
        .stale_while_revalidate(secs(100))
        .adaptive_ttl_by_change(secs(5), secs(60), |a: &u64, b: &u64| a == b)
        .build()
        .unwrap();
    let handle = layer.handle();
    let inner = up
        .service::<String>(Duration::ZERO)
        .map_response(|n| n / 100);
    let mut svc = tower::ServiceBuilder::new().layer(layer).service(inner);
    get(&mut svc, "k").await.unwrap();
    assert_eq!(handle.remaining_ttl("k"), Some(secs(10)));
    advance(secs(11)).await;
    get(&mut svc, "k").await.unwrap();
    settle().await;
    assert_eq!(
        handle.remaining_ttl("k"),
        Some(secs(12)),
        "unchanged: × 1.2"
    );
    handle.put("k", 7).unwrap();
    advance(secs(13)).await;
    get(&mut svc, "k").await.unwrap();
    settle().await;
    assert_eq!(
        handle.remaining_ttl("k"),
        Some(Duration::from_secs_f64(12.0 * 0.8)),
        "changed (7 → 0): × 0.8"
    );
}

async fn lookup_missing<S>(svc: &mut S) -> Option<u64>
where
    S: Service<String, Response = Option<u64>, Error = BoxError>,
{
    svc.ready()
        .await
        .unwrap()
        .call("missing".to_owned())
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn negative_caching_is_opt_in_and_separately_timed() {
    for opt_in in [false, true] {
        let up = Upstream::default();
        let b = CacheLayer::builder(key as Key).ttl(secs(60));
        let b = if opt_in {
            b.negative_caching(secs(2), |v: &Option<u64>| v.is_none())
        } else {
            b.negative_when(|v: &Option<u64>| v.is_none())
        };
        let layer = b.build().unwrap();
        let handle = layer.handle();
        let inner = up
            .service::<String>(Duration::ZERO)
            .map_response(|_| None::<u64>);
        let mut svc = tower::ServiceBuilder::new().layer(layer).service(inner);
        assert_eq!(lookup_missing(&mut svc).await, None);
        assert_eq!(lookup_missing(&mut svc).await, None);
        if opt_in {
            assert_eq!(up.calls(), 1, "negative answer cached");
            assert_eq!(handle.stats().negative_hits, 1);
            advance(secs(2)).await;
            lookup_missing(&mut svc).await;
            assert_eq!(up.calls(), 2, "on its own TTL");
        } else {
            assert_eq!(up.calls(), 2, "not cached by default");
        }
    }
}
