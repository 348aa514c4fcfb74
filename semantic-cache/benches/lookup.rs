//! Lookup cost of the semantic cache against its own exact-key hit, measured in one run.
//!
//! - `exact_hit`: a request whose exact key is cached, through the layer (the baseline);
//! - `index_nearest/brute/N`: the exact scan alone over `N` entries of dimension 384;
//! - `index_nearest/hnsw/N`: the HNSW graph's lookup alone over the same entries (the
//!   bench prints how long each index took to build);
//! - `similar_hit/N`: a semantic hit through the layer with `N` entries in the namespace
//!   (exact-key miss, embedding from the embedding cache, the scan, the answer).
//!
//! Run: `cargo bench -p semantic-cache --bench lookup -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use futures_util::future::BoxFuture;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use reliability_core::clock::Instant;
use semantic_cache::index::VectorIndex;
use semantic_cache::vector::normalize;
use semantic_cache::{Embedder, Lookup, Prompt, SemanticCacheLayer};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};

const DIM: usize = 384;

fn random_unit(rng: &mut SmallRng) -> Vec<f32> {
    let mut v: Vec<f32> = (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    normalize(&mut v).expect("random vectors are not zero");
    v
}

/// `e<i>` maps to a random unit vector seeded by `i`; `e<i>'` to the same vector nudged
/// (cosine about 0.99), so it hits entry `i` by meaning.
struct BenchEmbedder;

impl Embedder for BenchEmbedder {
    fn model(&self) -> &str {
        "bench"
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>, BoxError>> {
        Box::pin(async move {
            Ok(texts
                .iter()
                .map(|t| {
                    let nudged = t.ends_with('\'');
                    let i: u64 = t
                        .trim_start_matches('e')
                        .trim_end_matches('\'')
                        .parse()
                        .unwrap_or(0);
                    let mut v = random_unit(&mut SmallRng::seed_from_u64(i));
                    if nudged {
                        v[0] += 0.1;
                    }
                    v
                })
                .collect())
        })
    }
}

/// Embedding-like rows: random points of a 32-dimension latent space mapped into 384
/// dimensions by one fixed random matrix, normalized. Real sentence embeddings occupy a
/// low-dimension part of their space; uniform random 384-dimension vectors (all nearly
/// orthogonal to each other) are the worst case of every graph index, and no cache sees
/// them.
struct Embeddings {
    projection: Vec<Vec<f32>>,
}

const LATENT: usize = 32;

impl Embeddings {
    fn new() -> Self {
        let mut rng = SmallRng::seed_from_u64(99);
        Self {
            projection: (0..LATENT).map(|_| random_unit(&mut rng)).collect(),
        }
    }

    fn row(&self, rng: &mut SmallRng) -> Vec<f32> {
        let mut v = vec![0.0f32; DIM];
        for p in &self.projection {
            let z = rng.random_range(-1.0f32..1.0);
            for (x, y) in v.iter_mut().zip(p) {
                *x += z * y;
            }
        }
        normalize(&mut v).expect("not zero");
        v
    }
}

/// The lookup of a query near one entry (a paraphrase: cosine ≈ 0.97 to it), the case a
/// semantic hit pays for, through the exact scan (`brute`) and the graph (`hnsw`).
fn bench_index(c: &mut Criterion) {
    let mut group = c.benchmark_group("index_nearest");
    let later = Instant::now() + std::time::Duration::from_secs(3600);
    let space = Embeddings::new();
    for n in [1_000usize, 2_000, 5_000, 10_000, 100_000] {
        let mut rng = SmallRng::seed_from_u64(7);
        let rows: Vec<Vec<f32>> = (0..n).map(|_| space.row(&mut rng)).collect();
        let mut query = rows[n / 2].clone();
        for x in &mut query {
            *x += rng.random_range(-0.012f32..0.012);
        }
        normalize(&mut query).expect("not zero");
        for (mode, above) in [("brute", usize::MAX), ("hnsw", 0)] {
            let built = std::time::Instant::now();
            let mut ix = VectorIndex::with_approximate_above(above);
            for (i, row) in rows.iter().enumerate() {
                ix.insert(format!("k{i}").into(), row, later)
                    .expect("same dimension");
            }
            let now = Instant::now();
            let found = ix.nearest(&query, now).expect("live entries");
            eprintln!(
                "index_nearest/{mode}/{n}: built in {:?}, found {} at {}",
                built.elapsed(),
                found.key,
                found.similarity
            );
            group.bench_with_input(BenchmarkId::new(mode, n), &n, |b, _| {
                b.iter(|| black_box(ix.nearest(black_box(&query), now)))
            });
        }
    }
    group.finish();
}

fn bench_layer(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("layer");
    for n in [1_000usize, 10_000] {
        let svc = rt.block_on(async {
            let layer = SemanticCacheLayer::builder(
                |q: &String| Some(Prompt::new("bench", q.clone())),
                BenchEmbedder,
            )
            .max_entries(200_000)
            .approximate_above(2_000)
            .build()
            .expect("valid settings");
            let mut svc = ServiceBuilder::new()
                .layer(layer)
                .service(service_fn(|q: String| async move { Ok::<_, BoxError>(q) }));
            for i in 0..n {
                svc.ready()
                    .await
                    .unwrap()
                    .call(format!("e{i}"))
                    .await
                    .unwrap();
            }
            svc
        });
        if n == 1_000 {
            let id = BenchmarkId::from_parameter("exact_hit");
            hit(&mut group, &rt, id, &svc, "e7", |l| *l == Lookup::Exact);
        }
        let id = BenchmarkId::new("similar_hit", n);
        hit(&mut group, &rt, id, &svc, "e7'", |l| {
            matches!(l, Lookup::Similar { .. })
        });
    }
    group.finish();
}

/// Benchmarks one request of `text` through `svc`, checking how it was answered.
fn hit<S>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    id: BenchmarkId,
    svc: &S,
    text: &'static str,
    expect: fn(&Lookup) -> bool,
) where
    S: Service<String, Response = semantic_cache::SemanticResponse<String>, Error = BoxError>
        + Clone,
{
    group.bench_function(id, |b| {
        b.to_async(rt).iter(|| {
            let mut svc = svc.clone();
            async move {
                let r = svc
                    .ready()
                    .await
                    .unwrap()
                    .call(text.to_owned())
                    .await
                    .unwrap();
                assert!(expect(&r.lookup));
                black_box(r)
            }
        })
    });
}

criterion_group!(benches, bench_index, bench_layer);
criterion_main!(benches);
