//! The semantic cache through its public API, stacked with `tower::ServiceBuilder`, with
//! the deterministic test embedder of `common` standing in for the user's model.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cache_layer::codec::BytesCodec;
use common::{Ask, TestEmbedder, Upstream, ask, prompt_of};
use semantic_cache::backend::memory::MemoryStore;
use semantic_cache::{
    CoalescedError, Lookup, SemanticCacheLayer, SemanticCacheLayerBuilder, SemanticResponse,
};
use tower::{ServiceBuilder, ServiceExt};

type Layer = SemanticCacheLayer<fn(&Ask) -> Option<semantic_cache::Prompt>, String>;

fn builder(
    embedder: Arc<TestEmbedder>,
) -> SemanticCacheLayerBuilder<fn(&Ask) -> Option<semantic_cache::Prompt>, String> {
    SemanticCacheLayer::builder(
        prompt_of as fn(&Ask) -> Option<semantic_cache::Prompt>,
        embedder,
    )
}

type Svc =
    semantic_cache::SemanticCache<Upstream, fn(&Ask) -> Option<semantic_cache::Prompt>, String>;

fn stack(layer: &Layer, upstream: &Upstream) -> Svc {
    ServiceBuilder::new()
        .layer(layer.clone())
        .service(upstream.clone())
}

async fn get(svc: &Svc, ns: &'static str, text: &str) -> SemanticResponse<String> {
    svc.clone().oneshot(ask(ns, text)).await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn threshold_edges() {
    let embedder = Arc::new(TestEmbedder::default());
    let layer = builder(embedder).build().unwrap();
    let upstream = Upstream::default();
    let svc = stack(&layer, &upstream);

    assert_eq!(get(&svc, "geo", "paris").await.lookup, Lookup::Miss);
    let at = get(&svc, "geo", "paris@0.95").await;
    assert_eq!(at.value, "answer:paris", "0.95 meets the default threshold");
    let Lookup::Similar { similarity, key } = at.lookup else {
        panic!("expected a semantic hit, got {:?}", at.lookup)
    };
    assert!((similarity - 0.95).abs() < 1e-5, "{similarity}");
    assert!(key.starts_with("sem:"));

    let below = get(&svc, "geo", "paris@0.9499").await;
    assert_eq!(below.lookup, Lookup::Miss, "0.9499 does not");
    assert_eq!(below.value, "answer:paris@0.9499");
    assert_eq!(upstream.calls(), 2);

    let exact = get(&svc, "geo", "paris").await;
    assert_eq!(exact.lookup, Lookup::Exact);
    assert_eq!(exact.lookup.similarity(), Some(1.0));
    let s = layer.handle().stats();
    assert_eq!((s.exact_hits, s.similar_hits, s.misses), (1, 1, 2));
}

#[tokio::test(start_paused = true)]
async fn configured_threshold_applies() {
    let layer = builder(Arc::default()).threshold(0.8).build().unwrap();
    let upstream = Upstream::default();
    let svc = stack(&layer, &upstream);
    get(&svc, "geo", "rome").await;
    assert!(get(&svc, "geo", "rome@0.81").await.lookup.is_hit());
    assert_eq!(get(&svc, "geo", "rome@0.79").await.lookup, Lookup::Miss);
}

#[tokio::test(start_paused = true)]
async fn namespaces_are_isolated() {
    let layer = builder(Arc::default()).build().unwrap();
    let upstream = Upstream::default();
    let svc = stack(&layer, &upstream);
    get(&svc, "agent-a", "weather").await;
    assert_eq!(get(&svc, "agent-b", "weather").await.lookup, Lookup::Miss);
    assert!(get(&svc, "agent-b", "weather@0.99").await.lookup.is_hit());
    assert_eq!(upstream.calls(), 2);
    assert_eq!(layer.handle().len("agent-a"), 1);
    assert_eq!(layer.handle().len("agent-b"), 1);
}

#[tokio::test(start_paused = true)]
async fn entries_expire_after_the_ttl() {
    let layer = builder(Arc::default())
        .ttl(Duration::from_secs(60))
        .build()
        .unwrap();
    let upstream = Upstream::default();
    let svc = stack(&layer, &upstream);
    get(&svc, "geo", "berlin").await;
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(get(&svc, "geo", "berlin").await.lookup, Lookup::Exact);
    assert!(get(&svc, "geo", "berlin@0.97").await.lookup.is_hit());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(get(&svc, "geo", "berlin@0.97").await.lookup, Lookup::Miss);
    let after = get(&svc, "geo", "berlin").await;
    assert_eq!(
        after.value, "answer:berlin@0.97",
        "the expired entry is gone"
    );
    assert!(matches!(after.lookup, Lookup::Similar { .. }));
    assert_eq!(upstream.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn invalidation_removes_vectors() {
    let layer = builder(Arc::default()).build().unwrap();
    let handle = layer.handle();
    let upstream = Upstream::default();
    let svc = stack(&layer, &upstream);
    get(&svc, "geo", "madrid").await;
    get(&svc, "geo", "lisbon").await;
    assert_eq!(handle.len("geo"), 2);
    handle.invalidate("geo", "madrid").await;
    assert_eq!(handle.len("geo"), 1);
    assert_eq!(handle.stats().entries, 1);
    assert_eq!(get(&svc, "geo", "madrid@0.99").await.lookup, Lookup::Miss);
    handle.invalidate_namespace("geo").await;
    assert_eq!(handle.len("geo"), 0);
    assert_eq!(get(&svc, "geo", "lisbon").await.lookup, Lookup::Miss);
    handle.clear().await;
    assert_eq!(handle.stats().entries, 0);
}

/// With the HNSW graph answering from the first entry (`approximate_above(0)`), the
/// threshold, TTL expiry and invalidation behave as with the exact scan.
#[tokio::test(start_paused = true)]
async fn the_approximate_index_keeps_threshold_expiry_and_invalidation() {
    let layer = builder(Arc::default())
        .approximate_above(0)
        .ttl(Duration::from_secs(60))
        .build()
        .unwrap();
    let handle = layer.handle();
    let upstream = Upstream::default();
    let svc = stack(&layer, &upstream);
    for city in ["oslo", "bern", "rome", "kyiv", "riga", "baku"] {
        get(&svc, "geo", city).await;
    }
    assert!(get(&svc, "geo", "oslo@0.95").await.lookup.is_hit());
    assert_eq!(get(&svc, "geo", "oslo@0.9499").await.lookup, Lookup::Miss);
    handle.invalidate("geo", "bern").await;
    assert_eq!(get(&svc, "geo", "bern@0.99").await.lookup, Lookup::Miss);
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(get(&svc, "geo", "rome@0.99").await.lookup, Lookup::Miss);
    assert_eq!(upstream.calls(), 9);
}

#[tokio::test(start_paused = true)]
async fn a_call_in_flight_during_an_invalidation_is_not_stored() {
    let layer = builder(Arc::default()).build().unwrap();
    let handle = layer.handle();
    let upstream = Upstream {
        delay: Duration::from_secs(1),
        ..Upstream::default()
    };
    let svc = stack(&layer, &upstream);
    let slow = tokio::spawn({
        let svc = svc.clone();
        async move { get(&svc, "geo", "oslo").await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    handle.invalidate_namespace("geo").await;
    assert_eq!(slow.await.unwrap().lookup, Lookup::Miss);
    assert_eq!(handle.len("geo"), 0);
}

#[tokio::test(start_paused = true)]
async fn repeated_texts_are_embedded_once() {
    let embedder = Arc::new(TestEmbedder::default());
    let layer = builder(embedder.clone()).build().unwrap();
    let handle = layer.handle();
    let upstream = Upstream::default();
    let svc = stack(&layer, &upstream);
    get(&svc, "a", "vienna").await;
    handle.invalidate("a", "vienna").await;
    get(&svc, "a", "vienna").await; // a miss again, but the vector is cached
    get(&svc, "b", "vienna").await; // another namespace, same model: same vector
    assert_eq!(embedder.texts.load(Ordering::SeqCst), 1);
    assert_eq!(handle.stats().embeddings.memory_hits, 2);

    let batch = handle
        .embeddings()
        .embed(&["x", "y", "x", "vienna"])
        .await
        .unwrap();
    assert_eq!(batch.len(), 4);
    assert_eq!(batch[0], batch[2]);
    assert_eq!(embedder.calls.load(Ordering::SeqCst), 2, "one batched call");
    assert_eq!(
        embedder.texts.load(Ordering::SeqCst),
        3,
        "x and y, once each"
    );
}

#[tokio::test(start_paused = true)]
async fn concurrent_similar_misses_make_one_upstream_call() {
    // A slow embedder: every request opens its flight before any vector is known.
    let embedder = Arc::new(TestEmbedder {
        delay: Duration::from_millis(100),
        ..TestEmbedder::default()
    });
    let layer = builder(embedder.clone()).build().unwrap();
    let upstream = Upstream {
        delay: Duration::from_secs(2),
        ..Upstream::default()
    };
    let svc = stack(&layer, &upstream);
    let texts = ["tokyo", "tokyo@0.99", "tokyo", "tokyo@0.98", "tokyo@0.995"];
    let tasks: Vec<_> = texts
        .iter()
        .map(|t| {
            let svc = svc.clone();
            let t = (*t).to_owned();
            tokio::spawn(async move { get(&svc, "geo", &t).await })
        })
        .collect();
    let mut lookups = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.value, "answer:tokyo");
        lookups.push(r.lookup);
    }
    assert_eq!(upstream.calls(), 1, "{lookups:?}");
    assert_eq!(lookups.iter().filter(|l| **l == Lookup::Miss).count(), 1);
    assert!(
        lookups
            .iter()
            .filter(|l| matches!(l, Lookup::Coalesced { .. }))
            .all(|l| l.similarity().unwrap() >= 0.95)
    );
    assert_eq!(layer.handle().stats().coalesced, 4);
    assert_eq!(
        embedder.texts.load(Ordering::SeqCst),
        4,
        "the two equal texts share one embedding"
    );
}

#[tokio::test(start_paused = true)]
async fn dissimilar_concurrent_misses_do_not_coalesce() {
    let layer = builder(Arc::default()).build().unwrap();
    let upstream = Upstream {
        delay: Duration::from_secs(2),
        ..Upstream::default()
    };
    let svc = stack(&layer, &upstream);
    let a = tokio::spawn({
        let svc = svc.clone();
        async move { get(&svc, "geo", "cairo").await }
    });
    let b = tokio::spawn({
        let svc = svc.clone();
        async move { get(&svc, "geo", "cairo@0.5").await }
    });
    assert_eq!(a.await.unwrap().lookup, Lookup::Miss);
    assert_eq!(b.await.unwrap().lookup, Lookup::Miss);
    assert_eq!(upstream.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_shared_failure_reaches_every_caller() {
    let layer = builder(Arc::default()).build().unwrap();
    let upstream = Upstream {
        delay: Duration::from_secs(1),
        ..Upstream::default()
    };
    let svc = stack(&layer, &upstream);
    let tasks: Vec<_> = ["boom", "boom@0.99"]
        .iter()
        .map(|t| {
            let svc = svc.clone();
            let t = (*t).to_owned();
            tokio::spawn(async move { svc.oneshot(ask("x", &t)).await })
        })
        .collect();
    for t in tasks {
        let e = t.await.unwrap().unwrap_err();
        let shared = e.downcast_ref::<CoalescedError>().expect("shared error");
        assert!(shared.upstream().downcast_ref::<std::io::Error>().is_some());
    }
    assert_eq!(upstream.calls(), 1);
    // Alone, the upstream error passes through unchanged.
    let e = svc.oneshot(ask("x", "boom")).await.unwrap_err();
    assert!(e.downcast_ref::<std::io::Error>().is_some());
}

#[tokio::test(start_paused = true)]
async fn memory_is_bounded() {
    let layer = builder(Arc::default()).max_entries(3).build().unwrap();
    let handle = layer.handle();
    let upstream = Upstream::default();
    let svc = stack(&layer, &upstream);
    for (i, t) in ["a1", "a2", "a3", "a4", "a5"].iter().enumerate() {
        get(&svc, "n", t).await;
        tokio::time::advance(Duration::from_millis(1 + i as u64)).await;
    }
    let s = handle.stats();
    assert_eq!(s.entries, 3);
    assert_eq!(s.evictions, 2);
    assert_eq!(get(&svc, "n", "a5").await.lookup, Lookup::Exact);
    assert_eq!(
        get(&svc, "n", "a1").await.lookup,
        Lookup::Miss,
        "oldest evicted"
    );
    get(&svc, "other", "b1").await;
    assert!(handle.stats().entries <= 3, "bound holds across namespaces");
}

#[tokio::test(start_paused = true)]
async fn restart_rebuilds_the_index_from_the_store() {
    let store = Arc::new(MemoryStore::new());
    let embedder = Arc::new(TestEmbedder::default());
    let first = builder(embedder.clone())
        .store(store.clone(), BytesCodec)
        .build()
        .unwrap();
    let upstream = Upstream::default();
    get(&stack(&first, &upstream), "geo", "athens").await;
    drop(first);
    assert_eq!(store.len("geo"), 1);

    let second = builder(embedder)
        .store(store.clone(), BytesCodec)
        .build()
        .unwrap();
    let svc = stack(&second, &upstream);
    let r = get(&svc, "geo", "athens@0.96").await;
    assert_eq!(r.value, "answer:athens");
    assert!(matches!(r.lookup, Lookup::Similar { .. }), "{:?}", r.lookup);
    assert_eq!(get(&svc, "geo", "athens").await.lookup, Lookup::Exact);
    assert_eq!(upstream.calls(), 1);
    assert_eq!(second.handle().stats().loaded, 1);

    second.handle().invalidate("geo", "athens").await;
    assert_eq!(store.len("geo"), 0, "invalidation reaches the store");
}

#[tokio::test(start_paused = true)]
async fn bad_input_bypasses_or_falls_back() {
    let embedder = Arc::new(TestEmbedder::default());
    let layer = builder(embedder.clone())
        .max_text_bytes(16)
        .max_namespaces(2)
        .build()
        .unwrap();
    let handle = layer.handle();
    let upstream = Upstream::default();
    let svc = stack(&layer, &upstream);
    assert_eq!(get(&svc, "n", "").await.lookup, Lookup::Bypass, "no prompt");
    assert_eq!(
        get(&svc, "n", "a text longer than sixteen bytes")
            .await
            .lookup,
        Lookup::Bypass
    );
    // The embedder fails: the upstream answers, nothing is cached, the cache reports it.
    assert_eq!(get(&svc, "n", "fail!").await.lookup, Lookup::Miss);
    assert_eq!(get(&svc, "n", "fail!").await.lookup, Lookup::Miss);
    // A NaN vector is refused the same way.
    assert_eq!(get(&svc, "n", "nan!").await.lookup, Lookup::Miss);
    assert_eq!(handle.stats().embed_failures, 3);
    assert_eq!(handle.len("n"), 0);
    use reliability_core::health::{HealthSource, HealthStatus};
    assert_eq!(handle.health()[0].status, HealthStatus::Degraded);
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(handle.health()[0].status, HealthStatus::Healthy);
    // Namespaces beyond the bound bypass.
    get(&svc, "m", "ok").await;
    assert_eq!(get(&svc, "third", "ok").await.lookup, Lookup::Bypass);
    assert_eq!(handle.stats().bypassed, 3);
}

#[test]
fn bad_settings_are_refused() {
    let e = builder(Arc::default()).threshold(1.5).build().unwrap_err();
    assert_eq!(e.field, "threshold");
    let e = builder(Arc::default())
        .ttl(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(e.field, "ttl");
}

#[tokio::test(start_paused = true)]
async fn layer_from_a_config_file() {
    let config: semantic_cache::SemanticConfig = serde_json::from_str(
        r#"{"threshold": 0.9, "ttl": "10m", "max_entries": 50, "approximate_above": 1}"#,
    )
    .unwrap();
    assert_eq!(config.approximate_above, 1);
    let layer: Layer = SemanticCacheLayer::from_config(
        config,
        prompt_of as fn(&Ask) -> Option<semantic_cache::Prompt>,
        Arc::new(TestEmbedder::default()),
    )
    .unwrap();
    let upstream = Upstream::default();
    let svc = stack(&layer, &upstream);
    get(&svc, "n", "q").await;
    get(&svc, "n", "r").await;
    assert!(
        get(&svc, "n", "q@0.91").await.lookup.is_hit(),
        "a hit from an index past the config's approximate_above (two nodes: the graph search and the scan agree; the graph itself is tested at scale in index/tests.rs and hnsw.rs)"
    );
}

#[tokio::test]
async fn restart_rebuilds_the_index_from_the_disk_tier() {
    use cache_layer::backend::disk::DiskTier;
    use semantic_cache::backend::tier::TierStore;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l3.redb");
    let upstream = Upstream::default();
    let on_disk = || {
        let disk = Arc::new(DiskTier::open(&path, 64 << 20).unwrap());
        builder(Arc::default())
            .store(Arc::new(TierStore::new(disk)), BytesCodec)
            .build()
            .unwrap()
    };
    {
        let layer = on_disk();
        let svc = stack(&layer, &upstream);
        for t in ["sofia", "dublin", "prague"] {
            get(&svc, "geo", t).await;
        }
        layer.handle().invalidate("geo", "dublin").await;
    } // the process "stops": layer and file handle dropped
    let layer = on_disk();
    let svc = stack(&layer, &upstream);
    let r = get(&svc, "geo", "prague@0.98").await;
    assert_eq!(r.value, "answer:prague");
    assert!(matches!(r.lookup, Lookup::Similar { .. }), "{:?}", r.lookup);
    assert_eq!(layer.handle().len("geo"), 2, "sofia and prague");
    assert_eq!(get(&svc, "geo", "dublin").await.lookup, Lookup::Miss);
    assert_eq!(upstream.calls(), 4);
}
