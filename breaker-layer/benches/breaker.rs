//! Cost of a breaker on the CLOSED path, in one run: a bare service, our breaker (count
//! and time windows), failsafe's `call`, and tower-resilience's circuit breaker; then the
//! same with two threads sharing one breaker.
//!
//! Futures are polled by hand with a no-op waker, so the figures are the layers' own
//! cost, not an executor's.
//!
//! With `--features metrics`, group `metrics` compares one breaker built with no recorder
//! installed (its handles are no-ops: per call, a branch on each empty handle it moves:
//! the success counter) against one built under a
//! `metrics_exporter_prometheus::PrometheusRecorder` (per call, one relaxed atomic add on
//! the exporter's `breaker_calls_total{outcome="success"}` counter), and a rejected call
//! of each (the `breaker_rejected_total` add). Without the feature, the same group holds
//! the same two calls built with no metrics code at all (`*_feature_off`).

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use breaker_layer::CircuitBreakerLayer;
use criterion::{Criterion, criterion_group, criterion_main};
use failsafe::CircuitBreaker as _;
use tower::{BoxError, Layer, Service, service_fn};

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

fn bare() -> impl Service<u64, Response = u64, Error = BoxError, Future: Send> + Clone + Send + Sync
{
    service_fn(|i: u64| std::future::ready(Ok::<u64, BoxError>(i)))
}

fn ours_count() -> impl Service<u64, Response = u64, Error = BoxError> + Clone + Send + Sync {
    CircuitBreakerLayer::builder("bench")
        .build()
        .unwrap()
        .layer(bare())
}

fn ours_time() -> impl Service<u64, Response = u64, Error = BoxError> + Clone + Send + Sync {
    CircuitBreakerLayer::builder("bench")
        .time_window(60)
        .build()
        .unwrap()
        .layer(bare())
}

fn tower_resilience() -> impl Service<u64, Response = u64> + Clone + Send {
    tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.5)
        .sliding_window_size(100)
        .build()
        .unwrap()
        .layer(bare())
}

#[inline(never)]
fn plain_call(i: u64) -> Result<u64, ()> {
    Ok(black_box(i))
}

fn single_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("closed_path");
    let mut i = 0u64;
    let mut svc = bare();
    g.bench_function("bare_service", |b| {
        b.iter(|| {
            i += 1;
            black_box(drive(&mut svc, i).unwrap())
        })
    });
    let mut svc = ours_count();
    g.bench_function("breaker_layer_count_window", |b| {
        b.iter(|| {
            i += 1;
            black_box(drive(&mut svc, i).unwrap())
        })
    });
    let mut svc = ours_time();
    g.bench_function("breaker_layer_time_window", |b| {
        b.iter(|| {
            i += 1;
            black_box(drive(&mut svc, i).unwrap())
        })
    });
    let mut svc = tower_resilience();
    g.bench_function("tower_resilience", |b| {
        b.iter(|| {
            i += 1;
            black_box(drive(&mut svc, i).is_ok())
        })
    });
    // The machine's floor for any shared-state breaker: one `Arc` clone and drop (the
    // future must reach the breaker after the call) and one atomic add.
    let shared = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    g.bench_function("floor_arc_clone_plus_one_atomic_add", |b| {
        b.iter(|| {
            let s = black_box(shared.clone());
            s.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        })
    });
    // What a time window adds: one read of the breaker's clock (tokio's, which carries
    // its test-util paused-clock check in this build because dev-dependencies enable it).
    g.bench_function("floor_tokio_instant_now", |b| {
        b.iter(|| black_box(tokio::time::Instant::now()))
    });
    g.bench_function("bare_fn_call", |b| {
        b.iter(|| {
            i += 1;
            black_box(plain_call(i).unwrap())
        })
    });
    // The pure core alone: admit and record, no tower plumbing, no `Arc`.
    let t0 = tokio::time::Instant::now();
    let machine = breaker_layer::state::StateMachine::new(Default::default(), t0);
    g.bench_function("state_machine_admit_and_record", |b| {
        b.iter(|| {
            let permit = machine.try_acquire(|| t0, |_| {}).unwrap();
            black_box(machine.record(
                black_box(permit),
                reliability_core::classify::Outcome::Success,
                || t0,
                |_| {},
            ));
        })
    });
    let fs = failsafe::Config::new().build();
    g.bench_function("failsafe_call", |b| {
        b.iter(|| {
            i += 1;
            black_box(fs.call(|| plain_call(i)).is_ok())
        })
    });
    g.finish();
}

/// Two threads, one shared breaker: `iters` calls on each, timed together.
fn two_threads<S>(make: impl Fn() -> S) -> impl FnMut(u64) -> Duration
where
    S: Service<u64> + Clone + Send + 'static,
{
    let svc = make();
    move |iters| {
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(3));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let mut svc = svc.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    for i in 0..iters {
                        let _ = black_box(drive(&mut svc, i).is_ok());
                    }
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for h in handles {
            h.join().unwrap();
        }
        start.elapsed()
    }
}

fn contended(c: &mut Criterion) {
    let mut g = c.benchmark_group("closed_path_2_threads");
    g.bench_function("bare_service", |b| b.iter_custom(two_threads(bare)));
    g.bench_function("breaker_layer_count_window", |b| {
        b.iter_custom(two_threads(ours_count))
    });
    g.bench_function("breaker_layer_time_window", |b| {
        b.iter_custom(two_threads(ours_time))
    });
    g.bench_function("tower_resilience", |b| {
        b.iter_custom(two_threads(tower_resilience))
    });
    let fs = failsafe::Config::new().build();
    g.bench_function("failsafe_call", |b| {
        b.iter_custom(|iters| {
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(3));
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let fs = fs.clone();
                    let barrier = barrier.clone();
                    std::thread::spawn(move || {
                        barrier.wait();
                        for i in 0..iters {
                            let _ = black_box(fs.call(|| plain_call(i)).is_ok());
                        }
                    })
                })
                .collect();
            barrier.wait();
            let start = Instant::now();
            for h in handles {
                h.join().unwrap();
            }
            start.elapsed()
        })
    });
    g.finish();
}

/// The same CLOSED-path call and OPEN-path rejection with and without a recorder behind
/// the handles (see the module docs).
#[cfg(feature = "metrics")]
fn metrics_overhead(c: &mut Criterion) {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let exposition = recorder.handle();
    let noop = CircuitBreakerLayer::builder("bench").build().unwrap();
    let recorded = metrics::with_local_recorder(&recorder, || {
        CircuitBreakerLayer::builder("bench").build().unwrap()
    });
    let mut g = c.benchmark_group("metrics");
    let mut i = 0u64;
    for (name, layer) in [("no_recorder", &noop), ("prometheus_recorder", &recorded)] {
        let mut svc = layer.layer(bare());
        g.bench_function(format!("closed_call_{name}"), |b| {
            b.iter(|| {
                i += 1;
                black_box(drive(&mut svc, i).unwrap())
            })
        });
        layer.breaker().isolate();
        g.bench_function(format!("rejected_call_{name}"), |b| {
            b.iter(|| {
                i += 1;
                black_box(drive(&mut svc, i).is_err())
            })
        });
        layer.breaker().release();
    }
    g.finish();
    assert!(
        exposition
            .render()
            .contains("breaker_calls_total{source=\"bench\",outcome=\"success\"}"),
        "the recorder saw the calls"
    );
}

/// Built without the feature: the same calls with no metrics code at all, the baseline
/// that `cargo xtask bench --report` sets the recorded figures against.
#[cfg(not(feature = "metrics"))]
fn metrics_overhead(c: &mut Criterion) {
    let layer = CircuitBreakerLayer::builder("bench").build().unwrap();
    let mut g = c.benchmark_group("metrics");
    let mut i = 0u64;
    let mut svc = layer.layer(bare());
    g.bench_function("closed_call_feature_off", |b| {
        b.iter(|| {
            i += 1;
            black_box(drive(&mut svc, i).unwrap())
        })
    });
    layer.breaker().isolate();
    g.bench_function("rejected_call_feature_off", |b| {
        b.iter(|| {
            i += 1;
            black_box(drive(&mut svc, i).is_err())
        })
    });
    g.finish();
}

criterion_group!(benches, single_thread, contended, metrics_overhead);
criterion_main!(benches);
