//! Background graph rebuilds never block lookups, and writes made during one survive it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cache_layer::codec::BytesCodec;
use futures_util::future::BoxFuture;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use semantic_cache::backend::EntryStore;
use semantic_cache::backend::Record;
use semantic_cache::backend::memory::MemoryStore;
use semantic_cache::vector::normalize;
use semantic_cache::{Embedder, Lookup, Prompt, SemanticCacheLayer};
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};

const DIM: usize = 384;
const ENTRIES: u64 = 10_000;

fn random_unit(seed: u64) -> Vec<f32> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut v: Vec<f32> = (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    normalize(&mut v).unwrap();
    v
}

/// `e<i>` maps to a random unit vector seeded by `i`; `e<i>'` to the same vector nudged
/// (cosine about 0.99), so it hits entry `i` by meaning and not by its exact key.
struct Seeded;

impl Embedder for Seeded {
    fn model(&self) -> &str {
        "seeded"
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>, BoxError>> {
        Box::pin(async move {
            Ok(texts
                .iter()
                .map(|t| {
                    let i: u64 = t[1..].trim_end_matches('\'').parse().unwrap_or(0);
                    let mut v = random_unit(i);
                    if t.ends_with('\'') {
                        v[0] += 0.1;
                    }
                    v
                })
                .collect())
        })
    }
}

/// A lookup issued while a 10,000-entry namespace's graph is being built completes well
/// within a timeout much shorter than the build (the rebuild is observed to be still
/// running afterwards), and entries inserted during the build are found through the new
/// graph once it is swapped in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_are_not_blocked_by_a_rebuild_and_inserts_during_it_survive() {
    let store = Arc::new(MemoryStore::new());
    for i in 0..ENTRIES {
        let record = Record {
            key: format!("sem:{i:032x}"),
            vector: random_unit(i).into(),
            value: Bytes::from(format!("v{i}")),
            stored_at: SystemTime::now(),
            ttl: Duration::from_secs(3600),
        };
        store.save("ns", &record).await.unwrap();
    }
    let layer =
        SemanticCacheLayer::builder(|q: &String| Some(Prompt::new("ns", q.clone())), Seeded)
            .threshold(0.9)
            .max_entries(2 * ENTRIES)
            .approximate_above(ENTRIES as usize - 1)
            .resync_interval(Duration::from_secs(3600))
            .store(store.clone(), BytesCodec)
            .build()
            .unwrap();
    let handle = layer.handle();
    let mut rebuilds = handle.rebuilds();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|q: String| async move {
            Ok::<_, BoxError>(format!("up:{q}"))
        }));

    // The first request loads the namespace; its 10,000th entry starts the graph's build.
    let first = svc.clone().oneshot("e5'".to_owned()).await.unwrap();
    assert_eq!(first.value, "v5");
    tokio::time::timeout(
        Duration::from_secs(60),
        rebuilds.wait_for(|r| r.started >= 1),
    )
    .await
    .expect("a rebuild starts")
    .unwrap();

    // A lookup on another task: the test's own thread times it, so a worker blocked on a
    // lock shows as a timeout.
    let started = std::time::Instant::now();
    let lookup = tokio::spawn(svc.clone().oneshot("e7'".to_owned()));
    let hit = tokio::time::timeout(Duration::from_millis(500), lookup)
        .await
        .expect("the lookup is not blocked by the rebuild")
        .unwrap()
        .unwrap();
    let took = started.elapsed();
    assert_eq!(hit.value, "v7");
    assert!(
        matches!(hit.lookup, Lookup::Similar { .. }),
        "{:?}",
        hit.lookup
    );

    // Inserts during the rebuild.
    for j in 0..20u64 {
        let r = svc
            .clone()
            .oneshot(format!("n{}", 1_000_000 + j))
            .await
            .unwrap();
        assert_eq!(r.lookup, Lookup::Miss);
    }
    assert_eq!(
        rebuilds.borrow().finished,
        0,
        "the lookup ({took:?}) and the inserts happened during the rebuild"
    );

    tokio::time::timeout(
        Duration::from_secs(120),
        rebuilds.wait_for(|r| r.finished >= 1),
    )
    .await
    .expect("the rebuild ends")
    .unwrap();
    assert_eq!(rebuilds.borrow().swapped, 1, "the new graph was swapped in");
    for j in 0..20u64 {
        let text = format!("n{}'", 1_000_000 + j);
        let r = svc.clone().oneshot(text.clone()).await.unwrap();
        assert_eq!(
            r.value,
            format!("up:n{}", 1_000_000 + j),
            "{text}: {:?}",
            r.lookup
        );
        assert!(
            matches!(r.lookup, Lookup::Similar { .. }),
            "{text}: {:?}",
            r.lookup
        );
    }
    let old = svc.clone().oneshot("e9'".to_owned()).await.unwrap();
    assert_eq!(old.value, "v9");
    assert_eq!(handle.len("ns"), ENTRIES as usize + 20);
}
