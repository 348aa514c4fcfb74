//! The layer stacked the way users stack it: `ServiceBuilder`, paused tokio time.

use std::time::Duration;

use reliability_core::classify::{Classification, Outcome, RetryClass, fn_classifier};
use reliability_core::clock::TokioClock;
use reliability_core::error::DoNotRetry;
use sla_layer::{SlaLayer, SlaMonitor};
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};

fn monitor() -> SlaMonitor {
    SlaMonitor::builder("upstream")
        .clock(std::sync::Arc::new(TokioClock))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn records_latency_and_outcome_and_passes_results_through() {
    let m = monitor();
    let svc = ServiceBuilder::new()
        .layer(SlaLayer::new(m.clone()))
        .service(service_fn(|ms: u64| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            if ms >= 300 {
                Err::<u64, BoxError>("too slow".into())
            } else {
                Ok(ms)
            }
        }));
    for _ in 0..9 {
        assert_eq!(svc.clone().oneshot(100).await.unwrap(), 100);
    }
    let err = svc.clone().oneshot(300).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "too slow",
        "the inner error passes through unchanged"
    );

    let r = m.report();
    assert_eq!((r.totals.successes, r.totals.failures), (9, 1));
    let w = r.count_window;
    assert!(
        w.p50 >= Duration::from_millis(100) && w.p50 < Duration::from_millis(101),
        "{w:?}"
    );
    assert!(
        w.max >= Duration::from_millis(300) && w.max < Duration::from_millis(303),
        "{w:?}"
    );
    assert!((w.success_rate() - 0.9).abs() < 1e-9);
}

#[tokio::test(start_paused = true)]
async fn own_rejections_are_ignored_and_custom_classifiers_apply() {
    #[derive(Debug)]
    struct Rejected;
    impl std::fmt::Display for Rejected {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("circuit open")
        }
    }
    impl std::error::Error for Rejected {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&DoNotRetry)
        }
    }
    let m = monitor();
    let svc = ServiceBuilder::new()
        .layer(SlaLayer::new(m.clone()))
        .service(service_fn(|_: ()| async {
            Err::<(), BoxError>(Box::new(Rejected))
        }));
    assert!(svc.oneshot(()).await.is_err());
    let r = m.report();
    assert_eq!((r.totals.failures, r.totals.ignored), (0, 1));

    // A classifier that counts answers >= 500 as failures.
    let m = monitor();
    let classify = fn_classifier(|r: Result<&u16, &BoxError>| match r {
        Ok(code) if *code < 500 => Classification::SUCCESS,
        _ => Classification::failure(RetryClass::Recoverable),
    });
    let svc = ServiceBuilder::new()
        .layer(SlaLayer::new(m.clone()).classifier(classify))
        .service(service_fn(
            |code: u16| async move { Ok::<_, BoxError>(code) },
        ));
    assert_eq!(svc.clone().oneshot(503).await.unwrap(), 503);
    assert_eq!(svc.oneshot(200).await.unwrap(), 200);
    assert_eq!(m.report().totals.failures, 1);
    assert_eq!(m.consecutive_failures(), 0);
    let _ = Outcome::Success;
}

#[tokio::test(start_paused = true)]
async fn dropped_calls_count_as_cancelled() {
    let m = monitor();
    let svc = ServiceBuilder::new()
        .layer(SlaLayer::new(m.clone()))
        .service(service_fn(|_: ()| async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok::<_, BoxError>(())
        }));
    let timed_out = tokio::time::timeout(Duration::from_secs(1), svc.oneshot(())).await;
    assert!(timed_out.is_err());
    let r = m.report();
    assert_eq!(r.totals.cancelled, 1);
    assert_eq!(r.count_window.calls, 0);
}

#[tokio::test(start_paused = true)]
async fn layer_services_are_clone_send_sync_debug() {
    fn assert_bounds<T: Clone + Send + Sync + std::fmt::Debug>(_: &T) {}
    let layer = SlaLayer::new(monitor());
    assert_bounds(&layer);
    let svc = ServiceBuilder::new().layer(layer).service(
        tower::util::service_fn(|x: u8| async move { Ok::<_, BoxError>(x) }).boxed_clone(),
    );
    let _ = svc.oneshot(1).await.unwrap();
}

async fn tenth_fails(i: u32) -> Result<u32, BoxError> {
    tokio::task::yield_now().await;
    if i.is_multiple_of(10) {
        Err("x".into())
    } else {
        Ok(i)
    }
}

/// 8 tasks on a multi-threaded runtime record at once; nothing is lost or counted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_tasks_record_exact_totals() {
    let m = SlaMonitor::builder("shared")
        .count_window(100)
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(SlaLayer::new(m.clone()))
        .service(service_fn(tenth_fails));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move {
                for i in 0..1_000u32 {
                    let _ = svc.clone().oneshot(i).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let r = m.report();
    assert_eq!(r.totals.successes, 7_200);
    assert_eq!(r.totals.failures, 800);
    assert_eq!(r.time_window.calls, 8_000);
    assert_eq!(r.count_window.calls, 100);
}
