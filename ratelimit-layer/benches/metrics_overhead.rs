//! What the `metrics` feature costs on an in-process decision: the same limiter built with
//! a real Prometheus recorder installed and with none; built without the feature, the
//! same decision with no metrics code at all (`decision_feature_off`), the baseline that
//! `cargo xtask bench --report` sets the recorded figure against.

use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
#[cfg(feature = "metrics")]
use metrics_exporter_prometheus::PrometheusBuilder;
use ratelimit_layer::{Quota, RateLimiter, Subject};

const KEYS: usize = 10_000;

fn limiter() -> RateLimiter {
    RateLimiter::builder()
        .name("bench")
        .quota(Quota::per(1_000_000, Duration::from_secs(1)).unwrap())
        .build()
        .unwrap()
}

/// One check on the in-process backend, ready at the first poll.
fn check_now(limiter: &RateLimiter, subject: &Subject) -> bool {
    let check = pin!(limiter.check_subject(subject));
    match check.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result.is_ok(),
        Poll::Pending => unreachable!("the in-process backend answers at once"),
    }
}

/// One in-memory decision per iteration, over 10,000 keys.
///
/// - `decision_prometheus`: the limiter was built while a `PrometheusRecorder` was the
///   recorder, so each decision also adds one to the handle of its
///   `ratelimit_decisions_total{result, tier}` pair, picked by the resolved policy's
///   index (an atomic add; no registry look-up, no label string);
/// - `decision_no_recorder`: built with no recorder installed, its handles are the
///   facade's no-op handles, so each decision pays one branch on an empty handle.
#[cfg(feature = "metrics")]
fn decision_with_and_without_recorder(c: &mut Criterion) {
    let rt = runtime();
    let _guard = rt.enter();
    let recorder = PrometheusBuilder::new().build_recorder();
    let recorded = metrics::with_local_recorder(&recorder, limiter);
    let silent = limiter();
    decisions(
        c,
        &[
            ("decision_prometheus", &recorded),
            ("decision_no_recorder", &silent),
        ],
    );
    assert!(
        recorder
            .handle()
            .render()
            .contains("ratelimit_decisions_total")
    );
}

/// Built without the feature: the same decision with no metrics code at all.
#[cfg(not(feature = "metrics"))]
fn decision_with_and_without_recorder(c: &mut Criterion) {
    let rt = runtime();
    let _guard = rt.enter();
    decisions(c, &[("decision_feature_off", &limiter())]);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// One in-memory decision per iteration over 10,000 keys, for each named limiter.
fn decisions(c: &mut Criterion, limiters: &[(&str, &RateLimiter)]) {
    let subjects: Vec<Subject> = (0..KEYS)
        .map(|i| Subject::new(format!("user-{i}")))
        .collect();
    let mut g = c.benchmark_group("metrics_overhead");
    let mut i = 0;
    for (name, limiter) in limiters {
        g.bench_function(*name, |b| {
            b.iter(|| {
                i = (i + 1) % KEYS;
                black_box(check_now(limiter, &subjects[i]))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, decision_with_and_without_recorder);
criterion_main!(benches);
