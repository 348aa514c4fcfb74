//! A queued call and its own deadline, on a paused clock: built `with_deadlines`, the
//! queue gives up at the earlier of its timeout and the call's deadline; at the deadline
//! the refusal is a timeout (504 in HTTP mode), not overload, and the call never reaches
//! the service. Without a deadline, or before it, the queue behaves as before.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use concurrency_layer::{BulkheadFull, ConcurrencyLimitLayer, Rejection};
use reliability_core::deadline::Deadline;
use reliability_core::failure::{Failure, FailureKind};
use tokio::sync::Notify;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt, service_fn};

type Req = http::Request<()>;

/// Calls wait for `release`; each call that reaches the service is counted.
fn held(
    release: Arc<Notify>,
    reached: Arc<AtomicU64>,
) -> impl Service<Req, Response = http::Response<String>, Error = Infallible, Future: Send> + Clone
{
    service_fn(move |_: Req| {
        let (release, reached) = (release.clone(), reached.clone());
        reached.fetch_add(1, Ordering::SeqCst);
        async move {
            release.notified().await;
            Ok(http::Response::new("done".to_owned()))
        }
    })
}

fn with_deadline(after: Duration) -> Req {
    let mut req = http::Request::new(());
    req.extensions_mut()
        .insert(Deadline::after(Instant::now(), after));
    req
}

#[tokio::test(start_paused = true)]
async fn a_queued_call_gives_up_at_its_deadline_as_a_timeout() {
    let layer = ConcurrencyLimitLayer::builder("deadline")
        .limit(1)
        .queue(4, Duration::from_secs(10))
        .with_deadlines()
        .build()
        .unwrap();
    let (release, reached) = (Arc::new(Notify::new()), Arc::new(AtomicU64::new(0)));
    let svc = layer.layer(held(release.clone(), reached.clone()));
    let first = tokio::spawn(svc.clone().oneshot(http::Request::new(())));
    tokio::task::yield_now().await;

    // Queued with 100 ms left: refused at 100 ms, long before the 10 s queue timeout.
    let started = Instant::now();
    let err = svc
        .clone()
        .oneshot(with_deadline(Duration::from_millis(100)))
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_millis(100));
    let full = err.downcast_ref::<BulkheadFull>().expect("typed");
    assert_eq!(full.rejection(), Rejection::DeadlineExceeded);
    assert_eq!(full.retry_after(), None);
    let failure = std::error::Error::source(full)
        .and_then(|s| s.downcast_ref::<Failure>())
        .copied()
        .unwrap();
    assert_eq!(failure.kind(), FailureKind::TimedOut);
    assert_eq!(reached.load(Ordering::SeqCst), 1, "only the first call ran");

    // A deadline later than the queue timeout leaves the timeout in charge.
    let layer_short = ConcurrencyLimitLayer::builder("short")
        .limit(1)
        .queue(4, Duration::from_millis(50))
        .with_deadlines()
        .build()
        .unwrap();
    let release_short = Arc::new(Notify::new());
    let short = layer_short.layer(held(release_short.clone(), reached.clone()));
    let holder = tokio::spawn(short.clone().oneshot(http::Request::new(())));
    tokio::task::yield_now().await;
    let err = short
        .clone()
        .oneshot(with_deadline(Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<BulkheadFull>().unwrap().rejection(),
        Rejection::QueueTimeout
    );

    // A queued call whose place frees before its deadline is served.
    let waiting = tokio::spawn(svc.clone().oneshot(with_deadline(Duration::from_secs(1))));
    tokio::task::yield_now().await;
    release.notify_one();
    first.await.unwrap().unwrap();
    tokio::task::yield_now().await;
    release.notify_one();
    waiting.await.unwrap().unwrap();
    release_short.notify_one();
    holder.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn in_http_mode_the_deadline_refusal_is_a_504() {
    let layer = ConcurrencyLimitLayer::builder("http")
        .limit(1)
        .queue(4, Duration::from_secs(10))
        .http()
        .with_deadlines()
        .build()
        .unwrap();
    let (release, reached) = (Arc::new(Notify::new()), Arc::new(AtomicU64::new(0)));
    let svc = layer.layer(held(release.clone(), reached));
    let first = tokio::spawn(svc.clone().oneshot(http::Request::new(())));
    tokio::task::yield_now().await;
    let res = svc
        .clone()
        .oneshot(with_deadline(Duration::from_millis(250)))
        .await
        .unwrap();
    assert_eq!(res.status(), http::StatusCode::GATEWAY_TIMEOUT);
    assert!(res.headers().get(http::header::RETRY_AFTER).is_none());
    release.notify_one();
    first.await.unwrap().unwrap();
}
