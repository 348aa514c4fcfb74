//! 8 tasks × 10,000 calls on a multi-threaded runtime through one breaker that trips,
//! probes and closes many times: every call is accounted for exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use breaker_layer::{CircuitBreakerLayer, CircuitOpen};
use reliability_core::clock::ManualClock;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};

const TASKS: u64 = 8;
const CALLS: u64 = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_add_up_exactly_count_window() {
    hammer(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_add_up_exactly_time_window() {
    hammer(true).await;
}

async fn hammer(time_window: bool) {
    let clock = ManualClock::new();
    let builder = CircuitBreakerLayer::builder("hammered");
    let builder = if time_window {
        builder.time_window(1)
    } else {
        builder.count_window(20)
    };
    let layer = builder
        .minimum_calls(10)
        .failure_rate(25.0)
        .open_wait(Duration::from_millis(5))
        .half_open_probes(4)
        .success_threshold(2)
        .clock(clock.shared())
        .build()
        .unwrap();
    let upstream_calls = Arc::new(AtomicU64::new(0));
    let counter = upstream_calls.clone();
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(service_fn(move |i: u64| {
            counter.fetch_add(1, Ordering::Relaxed);
            async move {
                // Failure bursts: calls 0..300 of every 1000 fail.
                if i % 1000 < 300 {
                    Err::<u64, BoxError>("burst".into())
                } else {
                    Ok(i)
                }
            }
        }));

    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let mut svc = svc.clone();
        let clock = clock.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut failed, mut rejected) = (0u64, 0u64, 0u64);
            for i in 0..CALLS {
                if i % 50 == 0 {
                    clock.advance(Duration::from_millis(1));
                }
                match svc.ready().await.unwrap().call(i).await {
                    Ok(_) => ok += 1,
                    Err(e) if e.is::<CircuitOpen>() => rejected += 1,
                    Err(_) => failed += 1,
                }
            }
            (ok, failed, rejected)
        }));
    }
    let (mut ok, mut failed, mut rejected) = (0, 0, 0);
    for t in tasks {
        let (o, f, r) = t.await.unwrap();
        ok += o;
        failed += f;
        rejected += r;
    }
    let m = layer.breaker().metrics().counts;
    assert_eq!(ok + failed + rejected, TASKS * CALLS);
    assert_eq!(m.successes, ok);
    assert_eq!(m.failures, failed);
    assert_eq!(m.rejections, rejected);
    assert_eq!(m.calls, ok + failed);
    assert_eq!(upstream_calls.load(Ordering::Relaxed), ok + failed);
    assert!(
        m.state_changes > 10,
        "the breaker should have cycled: {m:?}"
    );
    assert!(rejected > 0);
}
