//! Cost of a hedge layer when no hedge fires (the inner service answers at once), in one
//! run: a bare service, our layer, tower's `Hedge` and tower-resilience's hedge.
//!
//! Each side runs on one current-thread tokio runtime (hedging needs timers), and every
//! iteration drives `ready().await` then `call(i).await` on the same service.

use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use hedge_layer::HedgeLayer;
use tower::{Layer, Service, ServiceExt, service_fn};

fn bare()
-> impl Service<u64, Response = u64, Error = Infallible, Future: Send> + Clone + Send + Sync {
    service_fn(|i: u64| std::future::ready(Ok::<u64, Infallible>(i)))
}

/// Runs `iters` calls through `svc` on `rt` and returns the time they took.
fn measure<S>(rt: &tokio::runtime::Runtime, mut svc: S, iters: u64) -> Duration
where
    S: Service<u64, Response = u64>,
    S::Error: std::fmt::Debug,
{
    rt.block_on(async move {
        // Warm up: a percentile layer needs its samples before it would hedge at all.
        for i in 0..200 {
            svc.ready().await.unwrap().call(i).await.unwrap();
        }
        let start = Instant::now();
        for i in 0..iters {
            black_box(svc.ready().await.unwrap().call(i).await.unwrap());
        }
        start.elapsed()
    })
}

/// Every request may be hedged.
#[derive(Clone)]
struct CloneAll;

impl tower::hedge::Policy<u64> for CloneAll {
    fn clone_request(&self, req: &u64) -> Option<u64> {
        Some(*req)
    }

    fn can_retry(&self, _req: &u64) -> bool {
        true
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("hedge/no hedge fired");

    // The bare service: `ready` and `call` of a `service_fn` answering at once.
    group.bench_function("bare", |b| b.iter_custom(|n| measure(&rt, bare(), n)));

    // Ours, p95 delay after 100 samples: per call, one counter increment, one budget
    // deposit, a clone of the request and of the inner service for the hedge plan, one
    // clock read, and on the answer a clock read and a short lock to record its latency.
    group.bench_function("hedge-layer p95", |b| {
        let layer = HedgeLayer::builder("bench")
            .percentile(95.0)
            .build()
            .unwrap();
        b.iter_custom(|n| measure(&rt, layer.layer(bare()), n))
    });

    // Ours, fixed delay: the same without recording latencies.
    group.bench_function("hedge-layer fixed", |b| {
        let layer = HedgeLayer::builder("bench")
            .fixed_delay(Duration::from_millis(50))
            .build()
            .unwrap();
        b.iter_custom(|n| measure(&rt, layer.layer(bare()), n))
    });

    // tower's `Hedge` (p95 after 100 samples, 10 s rotation): per call, a request clone,
    // a `Select` of the first copy and a `Delay`ed `AsyncFilter` copy, each through a
    // `Latency` recorder that locks its histogram when the answer comes.
    group.bench_function("tower Hedge p95", |b| {
        b.iter_custom(|n| {
            let svc = tower::hedge::Hedge::new::<u64>(
                bare(),
                CloneAll,
                100,
                0.95,
                Duration::from_secs(10),
            );
            measure(&rt, svc, n)
        })
    });

    // tower-resilience's hedge (fixed 50 ms delay, one hedge): per call, a clone of the
    // inner service and the request, and a boxed future that races the first copy
    // against the hedge timer.
    group.bench_function("tower-resilience hedge", |b| {
        let layer = tower_resilience::hedge::HedgeLayer::builder()
            .delay(Duration::from_millis(50))
            .max_hedged_attempts(2)
            .build();
        b.iter_custom(|n| measure(&rt, layer.layer(bare()), n))
    });

    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
