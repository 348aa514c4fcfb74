//! Success-path overhead: a bare service, tower's own `Retry` with a trivial policy, and
//! this crate's `Retry` (default settings, and with the clock-reading features on).
//!
//! Every future here is ready at once, so each call is driven by one poll with a no-op
//! waker: the figures are the layers' own cost, not an executor's.
//!
//! With `--features metrics`, group `metrics` compares the default layer built with no
//! recorder installed (per call, a branch on the empty `retry_attempts_total` handle)
//! against one built under a `metrics_exporter_prometheus::PrometheusRecorder` (per
//! call, one relaxed atomic add on that exporter's counter); a success makes one attempt
//! and moves nothing else. Without the feature, the same group holds the same call built
//! with no metrics code at all (`success_feature_off`).

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use retry_layer::RetryLayer;
use retry_layer::budget::{BudgetConfig, RatioBudgetConfig};
use tower::retry::budget::{Budget, TpsBudget};
use tower::{Layer, Service, service_fn};

fn call_once<S: Service<u64>>(svc: &mut S, req: u64) -> S::Response {
    let mut cx = Context::from_waker(Waker::noop());
    let Poll::Ready(Ok(())) = svc.poll_ready(&mut cx) else {
        panic!("not ready")
    };
    let mut future = pin!(svc.call(req));
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(res)) => res,
        _ => panic!("not answered at once"),
    }
}

/// tower's `Retry` with the least policy that can work: never retry a success, copy the
/// request with `Clone`.
#[derive(Clone)]
struct Trivial;

impl tower::retry::Policy<u64, u64, Infallible> for Trivial {
    type Future = Ready<()>;

    fn retry(&mut self, _: &mut u64, result: &mut Result<u64, Infallible>) -> Option<Ready<()>> {
        match result {
            Ok(_) => None,
            Err(_) => Some(ready(())),
        }
    }

    fn clone_request(&mut self, req: &u64) -> Option<u64> {
        Some(*req)
    }
}

/// tower's `Retry` as one would deploy it against amplification: the policy deposits
/// into tower's own `TpsBudget` on success and withdraws before a retry.
#[derive(Clone)]
struct Budgeted(Arc<TpsBudget>);

impl tower::retry::Policy<u64, u64, Infallible> for Budgeted {
    type Future = Ready<()>;

    fn retry(&mut self, _: &mut u64, result: &mut Result<u64, Infallible>) -> Option<Ready<()>> {
        match result {
            Ok(_) => {
                self.0.deposit();
                None
            }
            Err(_) => self.0.withdraw().then(|| ready(())),
        }
    }

    fn clone_request(&mut self, req: &u64) -> Option<u64> {
        Some(*req)
    }
}

fn upstream()
-> impl Service<u64, Response = u64, Error = Infallible, Future = Ready<Result<u64, Infallible>>> + Clone
{
    service_fn(|x: u64| ready(Ok::<_, Infallible>(x.wrapping_add(1))))
}

fn success_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("success_path");
    let mut bare = upstream();
    group.bench_function("bare", |b| b.iter(|| call_once(&mut bare, black_box(7))));

    let mut tower_retry = tower::retry::RetryLayer::new(Trivial).layer(upstream());
    group.bench_function("tower_retry", |b| {
        b.iter(|| call_once(&mut tower_retry, black_box(7)))
    });

    let budget = Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2));
    let mut tower_budgeted = tower::retry::RetryLayer::new(Budgeted(budget)).layer(upstream());
    group.bench_function("tower_retry_tps_budget", |b| {
        b.iter(|| call_once(&mut tower_budgeted, black_box(7)))
    });

    let mut ours = RetryLayer::builder().build().unwrap().layer(upstream());
    group.bench_function("retry_layer", |b| {
        b.iter(|| call_once(&mut ours, black_box(7)))
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let mut timed = RetryLayer::builder()
        .max_elapsed(Duration::from_secs(10))
        .budget(BudgetConfig::Ratio(RatioBudgetConfig::default()))
        .build()
        .unwrap()
        .layer(upstream());
    group.bench_function("retry_layer_ratio_budget_max_elapsed", |b| {
        b.iter(|| call_once(&mut timed, black_box(7)))
    });
    group.finish();
}

/// The success path with and without a recorder behind the handles (module docs).
#[cfg(feature = "metrics")]
fn metrics_overhead(c: &mut Criterion) {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let exposition = recorder.handle();
    let noop = RetryLayer::builder().name("bench").build().unwrap();
    let recorded = metrics::with_local_recorder(&recorder, || {
        RetryLayer::builder().name("bench").build().unwrap()
    });
    let mut group = c.benchmark_group("metrics");
    for (name, layer) in [("no_recorder", &noop), ("prometheus_recorder", &recorded)] {
        let mut svc = layer.layer(upstream());
        group.bench_function(format!("success_{name}"), |b| {
            b.iter(|| call_once(&mut svc, black_box(7)))
        });
    }
    group.finish();
    assert!(
        exposition
            .render()
            .contains("retry_attempts_total{source=\"bench\"}"),
        "the recorder saw the attempts"
    );
}

/// Built without the feature: the same success path with no metrics code at all.
#[cfg(not(feature = "metrics"))]
fn metrics_overhead(c: &mut Criterion) {
    let layer = RetryLayer::builder().name("bench").build().unwrap();
    let mut group = c.benchmark_group("metrics");
    let mut svc = layer.layer(upstream());
    group.bench_function("success_feature_off", |b| {
        b.iter(|| call_once(&mut svc, black_box(7)))
    });
    group.finish();
}

criterion_group!(benches, success_path, metrics_overhead);
criterion_main!(benches);
