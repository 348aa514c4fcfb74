//! Cost of a concurrency limit on the admitted path, in one run: a bare service; our
//! bulkhead against `tower::limit::ConcurrencyLimit` and tower-resilience's bulkhead;
//! our adaptive limiter (Vegas, AIMD) against tower-resilience's adaptive limiter.
//!
//! Every limit is far above the one call in flight, so each call is admitted: the figures
//! are what a layer costs when it is not refusing. Futures are polled by hand with a
//! no-op waker, so they are the layers' own cost, not an executor's.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use concurrency_layer::ConcurrencyLimitLayer;
use concurrency_layer::config::{AimdConfig, VegasConfig};
use criterion::{Criterion, criterion_group, criterion_main};
use tower::{BoxError, Layer, Service, service_fn};

const LIMIT: usize = 1_024;

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

fn bare() -> impl Service<u64, Response = u64, Error = BoxError, Future: Send + 'static>
+ Clone
+ Send
+ Sync
+ 'static {
    service_fn(|i: u64| std::future::ready(Ok::<u64, BoxError>(i)))
}

fn bench_all<S: Service<u64>>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    mut svc: S,
) {
    let mut i = 0u64;
    g.bench_function(name, |b| {
        b.iter(|| {
            i += 1;
            black_box(drive(&mut svc, i).is_ok())
        })
    });
}

/// The fixed-limit admitted path.
///
/// - `bare_service`: the inner `service_fn` alone, for the floor.
/// - `concurrency_layer_bulkhead`: `poll_ready` forwards; `call` reads one atomic (are
///   calls queued?), takes the place with one CAS, clones one `Arc` into the permit; the
///   future's completion does one atomic subtraction and one atomic load. No lock, no
///   allocation, no clock read. (Also a disabled `tracing` span: one callsite check.)
/// - `tower_concurrency_limit`: `poll_ready` acquires a tokio `Semaphore` permit through
///   `PollSemaphore` (a CAS, and an `Arc` clone into the `OwnedSemaphorePermit`); `call`
///   moves the permit into the future, which releases it on drop (semaphore lock-free
///   release when no waiter). No clock read, no allocation.
/// - `tower_resilience_bulkhead` (default: wait without a timeout): `call` clones and
///   replaces the inner service, clones three `Arc`s and boxes the future (`Box::pin`,
///   one allocation); the future acquires an owned semaphore permit, reads the clock four
///   times (`Instant::now` for the start and for each of its two events, `elapsed` at the
///   end) and clones the bulkhead's `String` name into each event (two allocations).
fn bulkhead(c: &mut Criterion) {
    let mut g = c.benchmark_group("bulkhead_admitted");
    bench_all(&mut g, "bare_service", bare());
    let ours = ConcurrencyLimitLayer::builder("bench")
        .limit(LIMIT)
        .build()
        .unwrap();
    bench_all(&mut g, "concurrency_layer_bulkhead", ours.layer(bare()));
    bench_all(
        &mut g,
        "tower_concurrency_limit",
        tower::limit::ConcurrencyLimit::new(bare(), LIMIT),
    );
    let theirs = tower_resilience::bulkhead::BulkheadLayer::builder()
        .max_concurrent_calls(LIMIT)
        .build()
        .unwrap();
    bench_all(&mut g, "tower_resilience_bulkhead", theirs.layer(bare()));
    g.finish();
}

/// The adaptive admitted path, every call sampled.
///
/// - `concurrency_layer_vegas` / `_aimd`: as the bulkhead, plus two clock reads (tokio's
///   `Instant::now` at admission and completion) and one `parking_lot` mutex lock per
///   finished call to add the RTT to the sample window; once per window (100 ms here),
///   the algorithm's update and, if the limit moved, two atomic stores. No allocation.
/// - `tower_resilience_adaptive_vegas` / `_aimd`: `poll_ready` takes a `std` mutex to
///   sync the semaphore with the algorithm's limit and acquires a semaphore permit;
///   `call` reads the clock and boxes the future (one allocation); completion reads the
///   clock, updates the algorithm (its own locks/atomics per sample) and takes the `std`
///   mutex again to release the permit.
fn adaptive(c: &mut Criterion) {
    let mut g = c.benchmark_group("adaptive_admitted");
    let vegas = ConcurrencyLimitLayer::builder("bench")
        .limit(LIMIT)
        .vegas(VegasConfig {
            min_limit: LIMIT,
            max_limit: LIMIT * 2,
            ..VegasConfig::default()
        })
        .build()
        .unwrap();
    bench_all(&mut g, "concurrency_layer_vegas", vegas.layer(bare()));
    let aimd = ConcurrencyLimitLayer::builder("bench")
        .limit(LIMIT)
        .aimd(AimdConfig {
            min_limit: LIMIT,
            max_limit: LIMIT * 2,
            latency_threshold: Duration::from_secs(1),
            ..AimdConfig::default()
        })
        .build()
        .unwrap();
    bench_all(&mut g, "concurrency_layer_aimd", aimd.layer(bare()));

    use tower_resilience::adaptive::{AdaptiveLimiterLayer, Aimd, Vegas};
    let vegas = AdaptiveLimiterLayer::new(
        Vegas::builder()
            .initial_limit(LIMIT)
            .min_limit(LIMIT)
            .max_limit(LIMIT * 2)
            .build()
            .unwrap(),
    );
    bench_all(
        &mut g,
        "tower_resilience_adaptive_vegas",
        vegas.layer(bare()),
    );
    let aimd = AdaptiveLimiterLayer::new(
        Aimd::builder()
            .initial_limit(LIMIT)
            .min_limit(LIMIT)
            .max_limit(LIMIT * 2)
            .latency_threshold(Duration::from_secs(1))
            .build()
            .unwrap(),
    );
    bench_all(&mut g, "tower_resilience_adaptive_aimd", aimd.layer(bare()));
    g.finish();
}

criterion_group!(benches, bulkhead, adaptive);
criterion_main!(benches);
