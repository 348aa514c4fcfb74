//! What a `tracing` subscriber sees of a breaker: a `debug` span per call (`source`,
//! `outcome`) and an event per state change (`source`, `from`, `to`, `cause`).

use std::time::Duration;

use breaker_layer::CircuitBreakerLayer;
use reliability_core::clock::ManualClock;
use reliability_core::health::BreakerState;
use reliability_core::traced::Traced;
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};
use tracing::Level;

#[tokio::test(flavor = "current_thread")]
async fn transitions_and_calls_reach_a_subscriber_with_stable_fields() {
    let capture = Traced::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let clock = ManualClock::new();
    let layer = CircuitBreakerLayer::builder("binance")
        .consecutive_failures(2)
        .open_wait(Duration::from_secs(30))
        .half_open_probes(1)
        .success_threshold(1)
        .clock(clock.shared())
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(service_fn(|ok: bool| async move {
            if ok {
                Ok(())
            } else {
                Err::<(), BoxError>("down".into())
            }
        }));
    for _ in 0..2 {
        assert!(svc.clone().oneshot(false).await.is_err());
    }
    assert!(svc.clone().oneshot(true).await.is_err()); // rejected
    clock.advance(Duration::from_secs(30));
    svc.clone().oneshot(true).await.unwrap(); // the probe closes
    assert_eq!(layer.breaker().state(), BreakerState::Closed);

    let events = capture.events_with("to");
    let changes: Vec<(Level, [&str; 4])> = events
        .iter()
        .map(|e| {
            (
                e.level,
                ["source", "from", "to", "cause"].map(|n| e.field(n).unwrap_or("-")),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            (
                Level::WARN,
                ["binance", "closed", "open", "consecutive_failures"]
            ),
            (
                Level::INFO,
                ["binance", "open", "half_open", "open_wait_elapsed"]
            ),
            (
                Level::INFO,
                ["binance", "half_open", "closed", "probes_succeeded"]
            ),
        ]
    );

    let spans = capture.spans("circuit_breaker");
    let calls: Vec<(&str, Level, &str, &str)> = spans
        .iter()
        .map(|s| {
            (
                s.name,
                s.level,
                s.field("source").unwrap_or("-"),
                s.field("outcome").unwrap_or("-"),
            )
        })
        .collect();
    let span = |outcome| ("circuit_breaker", Level::DEBUG, "binance", outcome);
    assert_eq!(
        calls,
        [
            span("failure"),
            span("failure"),
            span("rejected"),
            span("success")
        ]
    );
}
