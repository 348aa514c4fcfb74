//! Recording cost: raw `hdrhistogram` record (the baseline) against our record path
//! through the layer, on 1 and 2 threads, plus the clock reads it contains.
//!
//! With `--features metrics`, group `metrics` compares one monitor built with no recorder
//! installed (per call, a branch on the empty `sla_calls_total{outcome="success"}`
//! handle) against one built under a `metrics_exporter_prometheus::PrometheusRecorder`
//! (per call, one relaxed atomic add on that counter), and what a publish costs (a
//! report, then a dozen gauge stores). Without the feature, the same group holds the same
//! call built with no metrics code at all (`layer_call_feature_off`).

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::sync::{Arc, Barrier, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use hdrhistogram::Histogram;
use reliability_core::clock::TokioClock;
use sla_layer::{Sla, SlaLayer, SlaMonitor};
use tower::{Layer, Service};

/// The cheapest possible inner service, so the figures are the layer's own.
#[derive(Clone, Debug)]
struct Echo;

impl Service<u64> for Echo {
    type Response = u64;
    type Error = Infallible;
    type Future = Ready<Result<u64, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, x: u64) -> Self::Future {
        ready(Ok(x))
    }
}

fn call_once<S: Service<u64>>(svc: &mut S, x: u64) {
    let mut cx = Context::from_waker(Waker::noop());
    let fut = pin!(svc.call(x));
    let _ = black_box(fut.poll(&mut cx));
}

fn monitor(clock: bool) -> SlaMonitor {
    let b = SlaMonitor::builder("bench").evaluation_interval(Duration::from_secs(1));
    let b = if clock {
        b.clock(Arc::new(TokioClock))
    } else {
        b
    };
    b.build().unwrap()
}

fn layered(m: &SlaMonitor) -> Sla<Echo> {
    SlaLayer::new(m.clone()).layer(Echo)
}

/// Runs `per_thread(iters)` on `threads` threads at once; the wall time of the slowest.
fn on_threads(threads: usize, iters: u64, per_thread: impl Fn(u64) + Sync) -> Duration {
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    let start = Instant::now();
                    per_thread(iters);
                    start.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .max()
            .unwrap()
    })
}

/// `iters` calls through the layer on each of `threads` threads, each with its own clone
/// of the service, as server tasks would have.
fn layer_on_threads(m: &SlaMonitor, threads: usize, iters: u64) -> Duration {
    on_threads(threads, iters, |n| {
        let mut svc = layered(m);
        for i in 0..n {
            call_once(&mut svc, i);
        }
    })
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("record");

    let mut h = Histogram::<u64>::new(2).unwrap();
    let mut x = 1_000u64;
    g.bench_function("raw_hdrhistogram_record", |b| {
        b.iter(|| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1) % 10_000_000 + 1;
            h.record(black_box(x)).unwrap();
        })
    });

    let q = quanta::Clock::new();
    g.bench_function("clock_quanta_now", |b| b.iter(|| black_box(q.now())));
    g.bench_function("clock_quanta_raw", |b| b.iter(|| black_box(q.raw())));
    g.bench_function("clock_std_instant_now", |b| {
        b.iter(|| black_box(std::time::Instant::now()))
    });
    g.bench_function("clock_tokio_instant_now", |b| {
        b.iter(|| black_box(tokio::time::Instant::now()))
    });

    let mut echo = Echo;
    g.bench_function("bare_service_call", |b| b.iter(|| call_once(&mut echo, 7)));

    let m = monitor(false);
    let mut svc = layered(&m);
    g.bench_function("layer_call_1_thread", |b| b.iter(|| call_once(&mut svc, 7)));

    // A hand-moved clock costs almost nothing to read: the path without the clock reads.
    let manual = reliability_core::clock::ManualClock::new();
    let m_manual = SlaMonitor::builder("bench")
        .clock(manual.shared())
        .build()
        .unwrap();
    let mut svc_manual = layered(&m_manual);
    g.bench_function("layer_call_1_thread_manual_clock", |b| {
        b.iter(|| {
            manual.advance(Duration::from_nanos(50));
            call_once(&mut svc_manual, 7)
        })
    });

    let m_tokio = monitor(true);
    let mut svc_tokio = layered(&m_tokio);
    g.bench_function("layer_call_1_thread_tokio_clock", |b| {
        b.iter(|| call_once(&mut svc_tokio, 7))
    });

    // Two threads at once, then one thread through the same harness.
    let m2 = monitor(false);
    g.bench_function("layer_call_2_threads", |b| {
        b.iter_custom(|iters| layer_on_threads(&m2, 2, iters))
    });
    // The same path with a single shard: what one monitor-wide lock would cost.
    let m1 = SlaMonitor::builder("bench").shards(1).build().unwrap();
    g.bench_function("layer_call_2_threads_one_shard", |b| {
        b.iter_custom(|iters| layer_on_threads(&m1, 2, iters))
    });
    g.bench_function("layer_call_1_thread_same_harness", |b| {
        b.iter_custom(|iters| layer_on_threads(&m2, 1, iters))
    });

    // Control for the machine: private histograms, nothing shared. If this does not
    // scale, neither can anything else on this box.
    let private = |threads: usize, iters: u64| {
        on_threads(threads, iters, |n| {
            let mut h = Histogram::<u64>::new(2).unwrap();
            for i in 0..n {
                h.record(black_box(i % 10_000_000 + 1)).unwrap();
            }
            black_box(h.len());
        })
    };
    g.bench_function("private_hdrhistogram_2_threads", |b| {
        b.iter_custom(|iters| private(2, iters))
    });
    g.bench_function("private_hdrhistogram_1_thread_same_harness", |b| {
        b.iter_custom(|iters| private(1, iters))
    });

    // What a single shared histogram behind one lock costs on two threads.
    let shared = Mutex::new(Histogram::<u64>::new(2).unwrap());
    g.bench_function("global_mutex_hdrhistogram_2_threads", |b| {
        b.iter_custom(|iters| {
            on_threads(2, iters, |n| {
                for i in 0..n {
                    shared.lock().unwrap().record(i % 10_000_000 + 1).unwrap();
                }
            })
        })
    });
    g.finish();
}

/// The record path with and without a recorder behind the handles (module docs).
#[cfg(feature = "metrics")]
fn metrics_overhead(c: &mut Criterion) {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let exposition = recorder.handle();
    let noop = monitor(false);
    let recorded = metrics::with_local_recorder(&recorder, || monitor(false));
    let mut g = c.benchmark_group("metrics");
    for (name, m) in [("no_recorder", &noop), ("prometheus_recorder", &recorded)] {
        let mut svc = layered(m);
        g.bench_function(format!("layer_call_{name}"), |b| {
            b.iter(|| call_once(&mut svc, 7))
        });
    }
    metrics::with_local_recorder(&recorder, || {
        g.bench_function("publish_prometheus_recorder", |b| {
            b.iter(|| recorded.publish_metrics())
        });
    });
    g.finish();
    let text = exposition.render();
    assert!(
        text.contains("sla_calls_total{source=\"bench\",outcome=\"success\"}")
            && text.contains("sla_status{source=\"bench\""),
        "the recorder saw the calls and the publish"
    );
}

/// Built without the feature: the same record path with no metrics code at all.
#[cfg(not(feature = "metrics"))]
fn metrics_overhead(c: &mut Criterion) {
    let m = monitor(false);
    let mut g = c.benchmark_group("metrics");
    let mut svc = layered(&m);
    g.bench_function("layer_call_feature_off", |b| {
        b.iter(|| call_once(&mut svc, 7))
    });
    g.finish();
}

criterion_group!(benches, bench, metrics_overhead);
criterion_main!(benches);
