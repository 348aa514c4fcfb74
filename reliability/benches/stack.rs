//! A full preset stack on the cache-hit path against the bare service, in one run.
//!
//! `cargo bench -p reliability --bench stack`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use reliability::presets;
use tower::{BoxError, Service, ServiceExt, service_fn};

/// Times `iters` ready-then-call rounds of `svc` on one key.
async fn rounds<S>(mut svc: S, iters: u64) -> Duration
where
    S: Service<String, Response = u64, Error = BoxError>,
{
    let start = Instant::now();
    for _ in 0..iters {
        svc.ready().await.expect("ready");
        black_box(
            svc.call(black_box("BTC-USDT".to_owned()))
                .await
                .expect("ok"),
        );
    }
    start.elapsed()
}

fn stack(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let bare = service_fn(|symbol: String| async move { Ok::<_, BoxError>(symbol.len() as u64) });
    let client = rt.block_on(async {
        let client = presets::cex("bench")
            .wrap(bare, |s: &String| Some(s.clone()))
            .expect("preset");
        // Warm the cache.
        client
            .clone()
            .oneshot("BTC-USDT".to_owned())
            .await
            .expect("miss");
        client
    });

    let mut group = c.benchmark_group("preset_cache_hit");
    group.bench_function("bare_service", |b| {
        b.to_async(&rt).iter_custom(|iters| rounds(bare, iters));
    });
    group.bench_function("cex_preset_hit", |b| {
        b.to_async(&rt)
            .iter_custom(|iters| rounds(client.clone(), iters));
    });
    group.finish();
}

criterion_group!(benches, stack);
criterion_main!(benches);
