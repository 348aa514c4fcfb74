//! The L1 hit path through the layer against moka's own `get`, and the hit ratio on a
//! Zipf(1.0) key stream against moka alone.

use std::hint::black_box;
use std::time::Duration;

use cache_layer::CacheLayer;
use criterion::{Criterion, criterion_group, criterion_main};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tower::{BoxError, Service, ServiceExt, service_fn};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[allow(clippy::ptr_arg)] // the key function takes the request type
fn key(k: &String) -> Option<String> {
    Some(k.clone())
}

/// moka configured as L1 configures it: per-entry expiry and an eviction listener.
struct OneHour;

impl moka::Expiry<String, u64> for OneHour {
    fn expire_after_create(&self, _: &String, _: &u64, _: std::time::Instant) -> Option<Duration> {
        Some(Duration::from_secs(3600))
    }
}

fn hit_path(c: &mut Criterion) {
    let rt = runtime();
    let hot = "price:BTC-USDT".to_owned();

    let future_cache: moka::future::Cache<String, u64> = moka::future::Cache::new(10_000);
    let sync_cache: moka::sync::Cache<String, u64> = moka::sync::Cache::new(10_000);
    rt.block_on(future_cache.insert(hot.clone(), 42));
    sync_cache.insert(hot.clone(), 42);
    let l1_config: moka::sync::Cache<String, u64> = moka::sync::Cache::builder()
        .max_capacity(10_000)
        .expire_after(OneHour)
        .eviction_listener(|_, _, _| {})
        .build();
    l1_config.insert(hot.clone(), 42);

    let layer = CacheLayer::builder(key as fn(&String) -> Option<String>)
        .ttl(Duration::from_secs(3600))
        .build()
        .unwrap();
    let bare = service_fn(|_: String| async { Ok::<u64, BoxError>(42) });
    let mut svc = tower::ServiceBuilder::new().layer(layer).service(bare);
    rt.block_on(svc.ready()).unwrap();
    rt.block_on(svc.call(hot.clone())).unwrap();
    let mut bare = bare;

    let mut g = c.benchmark_group("l1_hit");
    g.bench_function("moka_future_get", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(future_cache.get(black_box(&hot)).await) })
    });
    g.bench_function("moka_future_get_with_key_clone", |b| {
        b.to_async(&rt).iter(|| async {
            let k = black_box(&hot).clone();
            black_box(future_cache.get(&k).await)
        })
    });
    g.bench_function("moka_sync_get", |b| {
        b.iter(|| black_box(sync_cache.get(black_box(&hot))))
    });
    g.bench_function("moka_sync_get_l1_config", |b| {
        b.iter(|| black_box(l1_config.get(black_box(&hot))))
    });
    g.bench_function("layer_hit", |b| {
        b.to_async(&rt).iter(|| {
            let req = black_box(&hot).clone();
            let fut = svc.call(req);
            async move { black_box(fut.await.unwrap()) }
        })
    });
    g.bench_function("bare_service", |b| {
        b.to_async(&rt).iter(|| {
            let req = black_box(&hot).clone();
            let fut = bare.call(req);
            async move { black_box(fut.await.unwrap()) }
        })
    });
    g.finish();
}

/// Zipf(s = 1.0) over `n` keys by inverse CDF.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for i in 1..=n {
            sum += 1.0 / i as f64;
            cdf.push(sum);
        }
        for v in &mut cdf {
            *v /= sum;
        }
        Self { cdf }
    }

    fn sample(&self, rng: &mut SmallRng) -> usize {
        let u: f64 = rng.random();
        self.cdf.partition_point(|c| *c < u)
    }
}

fn hit_ratio(c: &mut Criterion) {
    const KEYS: usize = 100_000;
    const CAPACITY: u64 = 1_000;
    const REQUESTS: usize = 200_000;
    let zipf = Zipf::new(KEYS);
    let stream: Vec<String> = {
        let mut rng = SmallRng::seed_from_u64(7);
        (0..REQUESTS)
            .map(|_| format!("k{}", zipf.sample(&mut rng)))
            .collect()
    };

    let moka_alone: moka::sync::Cache<String, u64> = moka::sync::Cache::new(CAPACITY);
    let mut moka_hits = 0usize;
    for k in &stream {
        if moka_alone.get(k).is_some() {
            moka_hits += 1;
        } else {
            moka_alone.insert(k.clone(), 1);
        }
    }

    let rt = runtime();
    let layer = CacheLayer::builder(key as fn(&String) -> Option<String>)
        .ttl(Duration::from_secs(3600))
        .max_entries(CAPACITY)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|_: String| async { Ok::<u64, BoxError>(1) }));
    rt.block_on(async {
        for k in &stream {
            svc.clone().oneshot(k.clone()).await.unwrap();
        }
    });
    let s = handle.stats();
    let ours = s.hits as f64 / (s.hits + s.misses) as f64;
    let theirs = moka_hits as f64 / REQUESTS as f64;
    println!(
        "zipf(1.0) hit ratio over {REQUESTS} requests, {KEYS} keys, {CAPACITY} entries: \
         layer {:.2}%, moka alone {:.2}%, difference {:+.2} points",
        ours * 100.0,
        theirs * 100.0,
        (ours - theirs) * 100.0
    );
    let _ = c;
}

criterion_group!(benches, hit_path, hit_ratio);
criterion_main!(benches);
