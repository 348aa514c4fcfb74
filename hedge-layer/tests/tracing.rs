//! What a `tracing` subscriber sees of the hedge layer: one `debug` span `hedge` per call
//! with `source`, `hedges` (copies sent after the first) and `outcome` (the copy whose
//! answer was taken, or `failure`), and the copies' own events inside it.

use std::time::Duration;

use hedge_layer::HedgeLayer;
use reliability_core::traced::Traced;
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};
use tracing::Level;

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn each_call_has_a_span_saying_which_copy_answered() {
    let traced = Traced::default();
    let _guard = tracing::subscriber::set_default(traced.clone());
    let layer = HedgeLayer::builder("quotes")
        .fixed_delay(Duration::from_millis(20))
        .budget_reserve(10)
        .build()
        .unwrap();
    // The first copy of request 1 is slow, so its hedge answers; request 2's copies fail.
    let copies = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(move |req: u32| {
            let copy = copies.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                tracing::debug!(req, copy, "copy sent");
                let slow = req == 1 && copy == 1;
                tokio::time::sleep(Duration::from_millis(if slow { 1_000 } else { 5 })).await;
                if req == 2 {
                    return Err::<u32, BoxError>("down".into());
                }
                Ok(req)
            }
        }));

    assert_eq!(svc.clone().oneshot(0).await.unwrap(), 0);
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), 1);
    svc.clone().oneshot(2).await.unwrap_err();

    let spans = traced.spans("hedge");
    let seen: Vec<(Level, [Option<&str>; 3])> = spans
        .iter()
        .map(|s| (s.level, ["source", "hedges", "outcome"].map(|f| s.field(f))))
        .collect();
    assert_eq!(
        seen,
        [
            (Level::DEBUG, [Some("quotes"), Some("0"), Some("primary")]),
            (Level::DEBUG, [Some("quotes"), Some("1"), Some("hedge")]),
            (Level::DEBUG, [Some("quotes"), Some("0"), Some("failure")]),
        ]
    );
    let inside: Vec<_> = traced
        .events_with("copy")
        .into_iter()
        .map(|e| e.span)
        .collect();
    assert_eq!(
        inside,
        [Some("hedge"); 4],
        "first copies and hedges alike are sent inside the call's span"
    );
}
