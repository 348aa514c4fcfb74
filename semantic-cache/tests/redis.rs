//! Entries and embeddings on a real Redis (started by the shared harness; skipped when
//! `redis-server` is missing): two instances share, a restart rebuilds its index. Real
//! time, as sockets and paused time do not mix.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use cache_layer::codec::BytesCodec;
use common::{Ask, TestEmbedder, Upstream, ask, prompt_of};
use reliability_core::harness::RedisServer;
use reliability_core::redis::RedisConfig;
use semantic_cache::backend::redis::RedisStore;
use semantic_cache::{Lookup, Prompt, SemanticCache, SemanticCacheLayer};
use tower::{ServiceBuilder, ServiceExt};

type Svc = SemanticCache<Upstream, fn(&Ask) -> Option<Prompt>, String>;

/// One instance: its own layer, embedder and upstream, on the shared Redis.
async fn instance(config: &RedisConfig, embedder: Arc<TestEmbedder>, upstream: &Upstream) -> Svc {
    let store = Arc::new(RedisStore::connect(config).await.unwrap());
    let layer = SemanticCacheLayer::builder(prompt_of as fn(&Ask) -> Option<Prompt>, embedder)
        .embedding_tier(store.tier())
        .store(store, BytesCodec)
        .resync_interval(std::time::Duration::ZERO)
        .build()
        .unwrap();
    ServiceBuilder::new().layer(layer).service(upstream.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_through_redis() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = server.config().key_prefix("sem-share");
    let (emb_a, emb_b) = (
        Arc::new(TestEmbedder::default()),
        Arc::new(TestEmbedder::default()),
    );
    let (up_a, up_b) = (Upstream::default(), Upstream::default());
    let a = instance(&config, emb_a.clone(), &up_a).await;
    let b = instance(&config, emb_b.clone(), &up_b).await;

    // B touches the namespace first, so it must catch up later, not at first use.
    assert_eq!(
        b.clone().oneshot(ask("geo", "lima")).await.unwrap().lookup,
        Lookup::Miss
    );
    assert_eq!(
        a.clone().oneshot(ask("geo", "quito")).await.unwrap().lookup,
        Lookup::Miss
    );

    // A's entry answers B by meaning, and by exact key without embedding.
    let r = b.clone().oneshot(ask("geo", "quito@0.97")).await.unwrap();
    assert_eq!(r.value, "answer:quito");
    assert!(matches!(r.lookup, Lookup::Similar { .. }), "{:?}", r.lookup);
    let before = emb_b.texts.load(Ordering::SeqCst);
    let r = b.clone().oneshot(ask("geo", "quito")).await.unwrap();
    assert_eq!(r.lookup, Lookup::Exact);
    assert_eq!(emb_b.texts.load(Ordering::SeqCst), before);
    assert_eq!(up_b.calls(), 1, "only B's own miss");

    // A's vector for "lima" comes from B's embedding in Redis.
    let r = a.clone().oneshot(ask("geo", "lima")).await.unwrap();
    assert_eq!(r.lookup, Lookup::Exact, "B's entry, loaded by A");
    let c = a.handle().embeddings().embed_one("lima").await.unwrap();
    assert_eq!(c.len(), common::DIM);
    assert_eq!(
        emb_a.texts.load(Ordering::SeqCst),
        1,
        "A embedded only quito"
    );
    assert_eq!(a.handle().stats().embeddings.lower_hits, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_reaches_the_other_instance() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = server.config().key_prefix("sem-inval");
    let upstream = Upstream::default();
    let a = instance(&config, Arc::default(), &upstream).await;
    let b = instance(&config, Arc::default(), &upstream).await;
    a.clone().oneshot(ask("geo", "doha")).await.unwrap();
    a.clone().oneshot(ask("geo", "baku")).await.unwrap();
    let r = b.clone().oneshot(ask("geo", "doha@0.99")).await.unwrap();
    assert!(r.lookup.is_hit(), "{:?}", r.lookup);
    assert_eq!(b.handle().len("geo"), 2);

    a.handle().invalidate("geo", "doha").await;
    // B's next miss in the namespace sees the removal and reloads it.
    let r = b.clone().oneshot(ask("geo", "doha@0.98")).await.unwrap();
    assert_eq!(r.lookup, Lookup::Miss);
    assert_eq!(r.value, "answer:doha@0.98");
    assert!(
        b.clone()
            .oneshot(ask("geo", "baku@0.99"))
            .await
            .unwrap()
            .lookup
            .is_hit()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_rebuilds_the_index_from_redis() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = server.config().key_prefix("sem-restart");
    let upstream = Upstream::default();
    {
        let first = instance(&config, Arc::default(), &upstream).await;
        for t in ["oslo", "bern", "kyiv"] {
            first.clone().oneshot(ask("geo", t)).await.unwrap();
        }
        first.handle().invalidate("geo", "bern").await;
    }
    let embedder = Arc::new(TestEmbedder::default());
    let second = instance(&config, embedder.clone(), &upstream).await;
    let r = second
        .clone()
        .oneshot(ask("geo", "kyiv@0.99"))
        .await
        .unwrap();
    assert_eq!(r.value, "answer:kyiv");
    assert_eq!(
        second.handle().len("geo"),
        2,
        "oslo and kyiv; bern was invalidated"
    );
    assert_eq!(second.handle().stats().loaded, 2);
    let r = second.clone().oneshot(ask("geo", "bern")).await.unwrap();
    assert_eq!(r.lookup, Lookup::Miss);
    assert_eq!(upstream.calls(), 4);
    assert_eq!(
        embedder.texts.load(Ordering::SeqCst),
        1,
        "kyiv@0.99 only; bern's vector was in Redis"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_redis_degrades_to_memory() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let config = server.config().key_prefix("sem-down");
    let upstream = Upstream::default();
    let svc = instance(&config, Arc::default(), &upstream).await;
    server.stop();
    let r = svc.clone().oneshot(ask("geo", "riga")).await.unwrap();
    assert_eq!(r.lookup, Lookup::Miss);
    let r = svc.clone().oneshot(ask("geo", "riga@0.99")).await.unwrap();
    assert!(r.lookup.is_hit(), "memory still serves: {:?}", r.lookup);
    assert!(svc.handle().stats().store_errors >= 1);
    use reliability_core::health::{HealthSource, HealthStatus};
    assert_eq!(svc.handle().health()[0].status, HealthStatus::Degraded);
}
