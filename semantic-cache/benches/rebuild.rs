//! Lookup latency while a 10,000-entry namespace's HNSW graph is being built in the
//! background, against the same lookups with no rebuild, in one run.
//!
//! - `rebuild/lookup_idle`: a semantic hit (exact-key miss, cached embedding, exact scan of
//!   10,000 entries of dimension 384, the answer) with no rebuild;
//! - `rebuild/lookup_during`: the same lookup while the namespace's graph is built from a
//!   snapshot on a blocking thread (a fresh namespace is loaded whenever the previous
//!   build has ended, outside the measured time).
//!
//! Before criterion's functions, the bench prints p50 and p99 of 2,000 single lookups of
//! each kind and the p99 ratio (during / idle): a lookup must not wait for the build.
//!
//! Run: `cargo bench -p semantic-cache --bench rebuild -- --warm-up-time 1 --measurement-time 3`

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use cache_layer::codec::BytesCodec;
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::future::BoxFuture;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use semantic_cache::backend::memory::MemoryStore;
use semantic_cache::backend::{EntryStore, Record};
use semantic_cache::vector::normalize;
use semantic_cache::{Embedder, Lookup, Prompt, Rebuilds, SemanticCacheLayer};
use tokio::runtime::Runtime;
use tokio::sync::watch;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};

const DIM: usize = 384;
const ENTRIES: u64 = 10_000;
const SAMPLES: usize = 2_000;

fn random_unit(seed: u64) -> Vec<f32> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut v: Vec<f32> = (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    normalize(&mut v).expect("random vectors are not zero");
    v
}

/// `e<i>` maps to a random unit vector seeded by `i`; `e<i>'` to the same one nudged.
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

type Svc =
    tower::util::BoxCloneSyncService<String, semantic_cache::SemanticResponse<String>, BoxError>;

fn store() -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::new());
    futures_util::FutureExt::now_or_never(async {
        for i in 0..ENTRIES {
            let record = Record {
                key: format!("sem:{i:032x}"),
                vector: random_unit(i).into(),
                value: Bytes::from(format!("v{i}")),
                stored_at: SystemTime::now(),
                ttl: Duration::from_secs(3600),
            };
            store.save("ns", &record).await.expect("memory store");
        }
    })
    .expect("the memory store answers at once");
    store
}

/// A layer over `store`; with `graph`, loading the namespace crosses `approximate_above`
/// and starts a background build of its graph.
fn layer(store: &Arc<MemoryStore>, graph: bool) -> (Svc, watch::Receiver<Rebuilds>) {
    let layer =
        SemanticCacheLayer::builder(|q: &String| Some(Prompt::new("ns", q.clone())), Seeded)
            .threshold(0.9)
            .max_entries(2 * ENTRIES)
            .approximate_above(if graph {
                ENTRIES as usize - 1
            } else {
                usize::MAX
            })
            .resync_interval(Duration::from_secs(3600))
            .store(store.clone(), BytesCodec)
            .build()
            .expect("valid settings");
    let rebuilds = layer.handle().rebuilds();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|q: String| async move {
            Ok::<_, BoxError>(format!("up:{q}"))
        }));
    (tower::util::BoxCloneSyncService::new(svc), rebuilds)
}

async fn lookup(svc: &Svc, i: u64) -> Duration {
    let t = Instant::now();
    let r = svc
        .clone()
        .oneshot(format!("e{}'", i % 100))
        .await
        .expect("upstream answers");
    let took = t.elapsed();
    assert!(matches!(r.lookup, Lookup::Similar { .. }), "{:?}", r.lookup);
    took
}

/// Loads a fresh namespace whose graph is being built, once the build has started.
async fn rebuilding(store: &Arc<MemoryStore>) -> (Svc, watch::Receiver<Rebuilds>) {
    let (svc, mut rebuilds) = layer(store, true);
    let mut warm = svc.clone();
    warm.ready().await.expect("ready");
    warm.call("e0'".to_owned())
        .await
        .expect("loads the namespace");
    rebuilds
        .wait_for(|r| r.started >= 1)
        .await
        .expect("rebuilds reported");
    for i in 0..100 {
        svc.clone()
            .oneshot(format!("e{i}'"))
            .await
            .expect("warm embeddings");
    }
    (svc, rebuilds)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn p99_ratio(rt: &Runtime, store: &Arc<MemoryStore>) {
    let (idle_svc, _) = layer(store, false);
    let mut idle = rt.block_on(async {
        for i in 0..100 {
            lookup(&idle_svc, i).await;
        }
        let mut out = Vec::with_capacity(SAMPLES);
        for i in 0..SAMPLES as u64 {
            out.push(lookup(&idle_svc, i).await);
        }
        out
    });
    let (mut during, builds) = rt.block_on(async {
        let mut out = Vec::with_capacity(SAMPLES);
        let mut builds = 0;
        while out.len() < SAMPLES {
            let (svc, rebuilds) = rebuilding(store).await;
            builds += 1;
            let mut i = 0;
            while rebuilds.borrow().finished == 0 && out.len() < SAMPLES {
                out.push(lookup(&svc, i).await);
                i += 1;
            }
        }
        (out, builds)
    });
    idle.sort();
    during.sort();
    let (i50, i99) = (percentile(&idle, 0.5), percentile(&idle, 0.99));
    let (d50, d99) = (percentile(&during, 0.5), percentile(&during, 0.99));
    println!(
        "rebuild: {SAMPLES} lookups over {ENTRIES} entries (dim {DIM}): idle p50 {i50:?} p99 {i99:?}; \
         during a graph build ({builds} build(s)) p50 {d50:?} p99 {d99:?}; p99 ratio {:.2}",
        d99.as_secs_f64() / i99.as_secs_f64()
    );
}

fn bench_rebuild(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let store = store();
    p99_ratio(&rt, &store);

    let mut group = c.benchmark_group("rebuild");
    let (idle, _) = layer(&store, false);
    rt.block_on(async {
        for i in 0..100 {
            lookup(&idle, i).await;
        }
    });
    group.bench_function("lookup_idle", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let idle = idle.clone();
            async move {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    total += lookup(&idle, i).await;
                }
                total
            }
        })
    });
    let current = Arc::new(parking_lot::Mutex::new(
        None::<(Svc, watch::Receiver<Rebuilds>)>,
    ));
    group.bench_function("lookup_during", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let store = store.clone();
            let current = current.clone();
            async move {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    let running = current
                        .lock()
                        .clone()
                        .filter(|(_, r)| r.borrow().finished == 0);
                    let (svc, _) = match running {
                        Some(s) => s,
                        None => {
                            let s = rebuilding(&store).await;
                            *current.lock() = Some(s.clone());
                            s
                        }
                    };
                    total += lookup(&svc, i).await;
                }
                total
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench_rebuild);
criterion_main!(benches);
