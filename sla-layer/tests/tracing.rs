//! What a `tracing` subscriber sees of the SLA layer: one `debug` span `sla` per call with
//! `source` and `outcome` (success, failure, ignored), the inner service's own events
//! inside it, and an event per status change with `source`, `from` and `to`.

use std::sync::Arc;
use std::time::Duration;

use reliability_core::clock::TokioClock;
use reliability_core::error::DoNotRetry;
use reliability_core::traced::Traced;
use sla_layer::{SlaLayer, SlaMonitor};
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};
use tracing::Level;

#[derive(Debug)]
struct Rejected;
impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("rejected by a layer below")
    }
}
impl std::error::Error for Rejected {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&DoNotRetry)
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn each_call_has_a_span_with_its_outcome_and_status_changes_are_events() {
    let traced = Traced::default();
    let _guard = tracing::subscriber::set_default(traced.clone());
    let monitor = SlaMonitor::builder("binance")
        .clock(Arc::new(TokioClock))
        .count_window(10)
        .min_calls(1)
        .max_consecutive_failures(2)
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(SlaLayer::new(monitor.clone()))
        .service(service_fn(|what: &'static str| async move {
            tracing::debug!(what, "upstream called");
            tokio::time::sleep(Duration::from_millis(5)).await;
            match what {
                "ok" => Ok(()),
                "rejected" => Err::<(), BoxError>(Box::new(Rejected)),
                _ => Err("down".into()),
            }
        }));

    svc.clone().oneshot("ok").await.unwrap();
    assert_eq!(monitor.report().status.as_str(), "HEALTHY");
    svc.clone().oneshot("rejected").await.unwrap_err();
    for _ in 0..2 {
        svc.clone().oneshot("fail").await.unwrap_err();
    }
    assert_eq!(monitor.report().status.as_str(), "FAILED");

    let spans = traced.spans("sla");
    let seen: Vec<(Level, Option<&str>, Option<&str>)> = spans
        .iter()
        .map(|s| (s.level, s.field("source"), s.field("outcome")))
        .collect();
    assert_eq!(
        seen,
        [
            (Level::DEBUG, Some("binance"), Some("success")),
            (Level::DEBUG, Some("binance"), Some("ignored")),
            (Level::DEBUG, Some("binance"), Some("failure")),
            (Level::DEBUG, Some("binance"), Some("failure")),
        ],
        "one span per call, its outcome recorded when the call ends"
    );
    let called: Vec<_> = traced
        .events_with("what")
        .into_iter()
        .map(|e| e.span)
        .collect();
    assert_eq!(
        called,
        [Some("sla"); 4],
        "the inner service runs inside the call's span"
    );

    let changes: Vec<(Level, Vec<String>)> = traced
        .events_with("to")
        .iter()
        .map(|e| {
            let fields = ["source", "from", "to"].map(|n| e.field(n).unwrap_or("-").to_owned());
            (e.level, fields.to_vec())
        })
        .collect();
    assert_eq!(
        changes.last(),
        Some(&(
            Level::ERROR,
            vec!["binance".into(), "HEALTHY".into(), "FAILED".into()]
        )),
        "the change to FAILED is an error-level event with its fields: {changes:?}"
    );
}
