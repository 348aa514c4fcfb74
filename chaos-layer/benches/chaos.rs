//! Cost of a chaos layer that injects nothing, in one run: a bare service, the layer
//! disabled, and the layer enabled with every rate at zero.
//!
//! Futures are polled by hand with a no-op waker (none of these paths touches a timer),
//! so the figures are the layer's own cost, not an executor's.

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use chaos_layer::ChaosLayer;
use criterion::{Criterion, criterion_group, criterion_main};
use tower::{Layer, Service, service_fn};

fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        std::hint::spin_loop();
    }
}

/// One request through a tower service: `poll_ready`, `call`, and the future.
#[inline]
fn drive<S: Service<u64>>(svc: &mut S, i: u64) -> Result<S::Response, S::Error> {
    block_on(std::future::poll_fn(|cx| svc.poll_ready(cx)))?;
    block_on(svc.call(i))
}

fn bare() -> impl Service<u64, Response = u64, Error = Infallible> + Clone {
    service_fn(|i: u64| std::future::ready(Ok::<u64, Infallible>(i)))
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("chaos/nothing injected");

    // The bare service: `poll_ready`, `call` and the ready future of a `service_fn`.
    group.bench_function("bare", |b| {
        let mut svc = bare();
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            black_box(drive(&mut svc, i).unwrap())
        })
    });

    // Disabled: one relaxed atomic load, then the inner future wrapped as it is (a tag
    // more than the bare future).
    group.bench_function("chaos disabled", |b| {
        let mut svc = ChaosLayer::builder("bench")
            .error_rate(0.5)
            .build()
            .unwrap()
            .layer(bare());
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            black_box(drive(&mut svc, i).unwrap())
        })
    });

    // Enabled at rate 0: the flag, an `ArcSwap` load of the plan (which says it is idle),
    // a debug span (none: no subscriber), and the inner future boxed with it.
    group.bench_function("chaos enabled, rate 0", |b| {
        let mut svc = ChaosLayer::builder("bench")
            .enabled(true)
            .build()
            .unwrap()
            .layer(bare());
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            black_box(drive(&mut svc, i).unwrap())
        })
    });

    // Enabled at a 1 % error rate: also the call's number from an atomic counter and a
    // seeded `SmallRng` for its draws; one call in a hundred answers an `InjectedFault`.
    group.bench_function("chaos enabled, 1% errors", |b| {
        let mut svc = ChaosLayer::builder("bench")
            .enabled(true)
            .error_rate(0.01)
            .build()
            .unwrap()
            .layer(bare());
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            black_box(drive(&mut svc, i).is_ok())
        })
    });

    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
