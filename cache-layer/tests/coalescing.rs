//! Single-flight (1,000 concurrent misses, shared errors, cancelled leaders), invalidation,
//! explicit writes, validation and warming, through the public API.

mod common;

use std::time::Duration;

use cache_layer::{CacheLayer, InvalidKey, PutError, ValidationMode, ValueTooLarge};
use common::{Boom, Key, Upstream, key, paused_runtime, secs, settle, stack};
use futures_util::future::join_all;
use proptest::prelude::*;
use reliability_core::error::find_in_chain;
use tokio::time::advance;
use tower::{Service, ServiceBuilder, ServiceExt};

#[tokio::test(start_paused = true)]
async fn thousand_concurrent_misses_make_one_upstream_call() {
    let up = Upstream::default();
    let (svc, handle) = stack(
        CacheLayer::builder(key as Key),
        &up,
        Duration::from_millis(50),
    );
    let calls: Vec<_> = (0..1000)
        .map(|_| svc.clone().oneshot("hot".to_owned()))
        .collect();
    let answers = join_all(calls).await;
    assert_eq!(up.calls(), 1);
    assert!(answers.iter().all(|a| matches!(a, Ok(1))));
    assert_eq!(handle.stats().coalesced, 999);
    assert_eq!(handle.in_flight(), 0, "the table is empty afterwards");
}

#[tokio::test(start_paused = true)]
async fn everyone_gets_the_same_error() {
    let up = Upstream::default();
    up.set_failing(true);
    let (svc, _) = stack(
        CacheLayer::builder(key as Key),
        &up,
        Duration::from_millis(50),
    );
    let answers = join_all((0..100).map(|_| svc.clone().oneshot("k".to_owned()))).await;
    assert_eq!(up.calls(), 1);
    for a in answers {
        let err = a.unwrap_err();
        assert!(
            find_in_chain::<Boom>(&*err).is_some(),
            "the upstream error is in every chain: {err}"
        );
        assert_eq!(err.to_string(), "upstream boom");
    }
}

#[tokio::test(start_paused = true)]
async fn cancelled_leader_hands_over_at_once() {
    let up = Upstream::default();
    let (mut svc, _) = stack(
        CacheLayer::builder(key as Key),
        &up,
        Duration::from_millis(100),
    );
    let leader = svc.ready().await.unwrap().call("k".to_owned());
    let followers: Vec<_> = (0..10)
        .map(|_| svc.clone().oneshot("k".to_owned()))
        .collect();
    let followers = tokio::spawn(join_all(followers));
    settle().await;
    drop(leader);
    // One follower takes over (one more upstream call); all complete within its delay.
    let answers = tokio::time::timeout(Duration::from_millis(150), followers)
        .await
        .expect("followers do not hang")
        .unwrap();
    assert!(answers.iter().all(|a| matches!(a, Ok(2))), "{answers:?}");
    assert_eq!(up.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn leader_dropped_mid_call_by_a_timeout_above() {
    let up = Upstream::default();
    let (svc, _) = stack(
        CacheLayer::builder(key as Key),
        &up,
        Duration::from_millis(100),
    );
    let leader = tokio::time::timeout(
        Duration::from_millis(10),
        svc.clone().oneshot("k".to_owned()),
    );
    let follower = async {
        settle().await;
        svc.clone().oneshot("k".to_owned()).await
    };
    let (l, f) = tokio::join!(leader, follower);
    assert!(l.is_err(), "the leader timed out");
    assert_eq!(f.unwrap(), 2, "the follower made its own call");
}

#[test]
fn flight_table_is_bounded() {
    let rt = paused_runtime();
    rt.block_on(async {
        let up = Upstream::default();
        let (svc, handle) = stack(
            CacheLayer::builder(key as Key).max_in_flight(4),
            &up,
            Duration::from_millis(10),
        );
        let answers = join_all((0..10).map(|i| svc.clone().oneshot(format!("k{i}")))).await;
        assert!(answers.iter().all(Result::is_ok));
        assert_eq!(handle.stats().flight_overflow, 6);
        assert_eq!(handle.in_flight(), 0);
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// Any number of concurrent callers of one key: exactly one upstream call, one answer,
    /// and every caller but the leader coalesced onto its flight.
    ///
    /// The upstream takes at least 1 ms of paused time, so it is still running when
    /// `join_all` polls the other callers: they miss while the flight is open (with no
    /// delay the leader would finish in its first poll and the others would simply hit
    /// the cache, testing caching, not coalescing).
    #[test]
    fn any_number_of_callers_one_call(n in 1usize..300, delay_ms in 1u64..20) {
        let rt = paused_runtime();
        let (calls, coalesced, answers) = rt.block_on(async {
            let up = Upstream::default();
            let (svc, handle) = stack(
                CacheLayer::builder(key as Key),
                &up,
                Duration::from_millis(delay_ms),
            );
            let answers = join_all((0..n).map(|_| svc.clone().oneshot("k".to_owned()))).await;
            (up.calls(), handle.stats().coalesced, answers)
        });
        prop_assert_eq!(calls, 1);
        prop_assert_eq!(coalesced, n as u64 - 1, "every follower joined the leader's flight");
        prop_assert!(answers.iter().all(|a| matches!(a, Ok(1))));
    }
}

#[tokio::test(start_paused = true)]
async fn invalidation_by_key_prefix_tag_and_all() {
    let up = Upstream::default();
    let (svc, h) = stack(
        CacheLayer::builder(key as Key)
            .tags(|v: &u64| vec![if v.is_multiple_of(2) { "even" } else { "odd" }.to_owned()]),
        &up,
        Duration::ZERO,
    );
    let fill = |keys: &'static [&'static str]| {
        let svc = svc.clone();
        async move {
            for k in keys {
                svc.clone().oneshot((*k).to_owned()).await.unwrap();
            }
        }
    };
    fill(&["user:1", "user:2", "item:1", "item:2"]).await;
    assert_eq!(h.entry_count(), 4);
    h.invalidate("item:1");
    assert!(h.peek("item:1").is_none());
    h.invalidate_prefix("user:");
    assert!(h.peek("user:1").is_none() && h.peek("user:2").is_none());
    assert!(h.peek("item:2").is_some());
    // item:2 was the 4th call: even.
    h.invalidate_tag("odd");
    assert!(h.peek("item:2").is_some());
    h.invalidate_tag("even");
    assert!(h.peek("item:2").is_none());
    fill(&["a", "b"]).await;
    h.clear();
    assert_eq!(h.entry_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_write_discards_the_in_flight_refresh_of_its_key() {
    let up = Upstream::default();
    let (svc, h) = stack(
        CacheLayer::builder(key as Key)
            .ttl(secs(1))
            .stale_while_revalidate(secs(60)),
        &up,
        secs(5),
    );
    let first = tokio::spawn(svc.clone().oneshot("k".to_owned()));
    advance(secs(5)).await;
    assert_eq!(first.await.unwrap().unwrap(), 1);
    advance(secs(2)).await;
    // Stale: a refresh starts (5 s long); a write lands meanwhile.
    assert_eq!(svc.clone().oneshot("k".to_owned()).await.unwrap(), 1);
    settle().await;
    h.put("k", 42).unwrap();
    advance(secs(5)).await;
    settle().await;
    assert_eq!(up.calls(), 2);
    assert_eq!(
        h.peek("k"),
        Some(42),
        "the refresh did not overwrite the write"
    );
    // An invalidation during a miss: the answer is served, not stored.
    h.clear();
    let miss = tokio::spawn(svc.clone().oneshot("k".to_owned()));
    settle().await;
    h.invalidate_prefix("");
    advance(secs(5)).await;
    assert_eq!(miss.await.unwrap().unwrap(), 3);
    assert!(h.peek("k").is_none());
}

#[tokio::test(start_paused = true)]
async fn oversize_values_are_served_counted_and_not_stored() {
    let up = Upstream::default();
    let (svc, h) = stack(
        CacheLayer::builder(key as Key)
            .validation(ValidationMode::Strict)
            .value_size(|v: &u64| if *v == 1 { 1 << 20 } else { 8 }),
        &up,
        Duration::ZERO,
    );
    assert_eq!(svc.clone().oneshot("k".to_owned()).await.unwrap(), 1);
    assert_eq!(h.stats().rejected_too_large, 1);
    assert!(h.peek("k").is_none());
    assert_eq!(svc.clone().oneshot("k".to_owned()).await.unwrap(), 2);
    assert_eq!(h.peek("k"), Some(2));
    assert_eq!(
        h.put("big", 1),
        Err(PutError::Value(ValueTooLarge {
            size: 1 << 20,
            limit: 64 << 10
        }))
    );
}

#[tokio::test(start_paused = true)]
async fn invalid_keys_bypass_the_cache() {
    let up = Upstream::default();
    let (svc, h) = stack(
        CacheLayer::builder(key as Key).validation(ValidationMode::Strict),
        &up,
        Duration::ZERO,
    );
    let long = "k".repeat(300);
    for _ in 0..3 {
        svc.clone().oneshot(long.clone()).await.unwrap();
        svc.clone().oneshot("naïve".to_owned()).await.unwrap();
    }
    assert_eq!(up.calls(), 6, "nothing cached");
    assert_eq!(h.stats().rejected_key, 6);
    assert_eq!(h.put("é", 1), Err(PutError::Key(InvalidKey::BadCharacter)));
    // Relaxed mode accepts the same keys.
    let (svc, _) = stack(
        CacheLayer::builder(key as Key).validation(ValidationMode::Relaxed),
        &up,
        Duration::ZERO,
    );
    svc.clone().oneshot(long.clone()).await.unwrap();
    svc.clone().oneshot(long).await.unwrap();
    assert_eq!(up.calls(), 7);
}

#[tokio::test(start_paused = true)]
async fn no_key_bypasses() {
    let up = Upstream::default();
    let layer = CacheLayer::builder(|k: &String| (!k.starts_with("private")).then(|| k.clone()))
        .build()
        .unwrap();
    let h = layer.handle();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(up.service::<String>(Duration::ZERO));
    for _ in 0..2 {
        svc.clone().oneshot("private:me".to_owned()).await.unwrap();
    }
    assert_eq!(up.calls(), 2);
    assert_eq!(h.stats().bypassed, 2);
}

#[tokio::test(start_paused = true)]
async fn warming_preloads_and_hot_keys_export() {
    let up = Upstream::default();
    let (svc, h) = stack(
        CacheLayer::builder(key as Key),
        &up,
        Duration::from_millis(5),
    );
    let report = svc.warm((0..20).map(|i| format!("k{i}")), 4).await;
    assert_eq!(report.loaded, 20);
    assert_eq!(report.failed, 0);
    assert_eq!(up.calls(), 20);
    for _ in 0..3 {
        svc.clone().oneshot("k7".to_owned()).await.unwrap();
    }
    svc.clone().oneshot("k3".to_owned()).await.unwrap();
    assert_eq!(up.calls(), 20, "all warmed");
    assert_eq!(h.hot_keys(2), vec!["k7".to_owned(), "k3".to_owned()]);
}

#[tokio::test(start_paused = true)]
async fn followers_share_stale_if_error() {
    let up = Upstream::default();
    let (svc, h) = stack(
        CacheLayer::builder(key as Key).ttl(secs(1)),
        &up,
        Duration::from_millis(10),
    );
    svc.clone().oneshot("k".to_owned()).await.unwrap();
    up.set_failing(true);
    advance(secs(1)).await;
    let answers = join_all((0..5).map(|_| svc.clone().oneshot("k".to_owned()))).await;
    assert!(answers.iter().all(|a| matches!(a, Ok(1))), "{answers:?}");
    assert_eq!(up.calls(), 2);
    assert_eq!(h.stats().stale_if_error, 1);
}
