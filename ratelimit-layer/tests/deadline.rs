//! Client mode and a request's own deadline, on a paused clock: built `with_deadlines`, a
//! refused request waits for its turn only if the turn comes before its deadline (and
//! `max_wait`); otherwise it is refused at once, the spent quota being the cause.

use std::time::Duration;

use ratelimit_layer::{Quota, RateLimitLayer, RateLimited, RateLimiter, Reason};
use reliability_core::deadline::Deadline;
use tokio::time::Instant;
use tower::{ServiceBuilder, ServiceExt, service_fn};

fn with_deadline(after: Duration) -> http::Request<()> {
    let mut req = http::Request::new(());
    req.extensions_mut()
        .insert(Deadline::after(Instant::now(), after));
    req
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_wait_that_would_outlast_the_deadline_is_not_begun() {
    let limiter = RateLimiter::builder()
        .quota(Quota::per(1, Duration::from_secs(1)).unwrap())
        .build()
        .unwrap();
    let client = ServiceBuilder::new()
        .layer(
            RateLimitLayer::new(limiter.clone())
                .wait_up_to(Duration::from_secs(5))
                .with_deadlines(),
        )
        .service(service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>("ok")
        }));

    // The quota's one call.
    client
        .clone()
        .oneshot(http::Request::new(()))
        .await
        .unwrap();

    // The next turn is a second away; 300 ms left: refused at once, not at the deadline.
    let started = Instant::now();
    let err = client
        .clone()
        .oneshot(with_deadline(Duration::from_millis(300)))
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::ZERO);
    let refused = err.downcast_ref::<RateLimited>().expect("typed");
    assert_eq!(refused.reason, Reason::WaitExceeded);
    assert_eq!(limiter.snapshot().waited, 0);

    // 2 s left: it waits for its turn and is served before the deadline.
    let started = Instant::now();
    let deadline = Duration::from_secs(2);
    assert_eq!(
        client
            .clone()
            .oneshot(with_deadline(deadline))
            .await
            .unwrap(),
        "ok"
    );
    assert!(started.elapsed() > Duration::ZERO && started.elapsed() <= deadline);
    assert_eq!(limiter.snapshot().waited, 1);

    // No deadline: `max_wait` alone decides, as before.
    let started = Instant::now();
    client.oneshot(http::Request::new(())).await.unwrap();
    assert!(started.elapsed() > Duration::ZERO);
}
