//! Feature `metrics`: the four counters, registered once per layer, count what the
//! snapshot counts.

use std::time::Duration;

use hedge_layer::HedgeLayer;
use reliability_core::captured::CapturedCounters;
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn counters_are_registered_once_and_count_events() {
    let captured = CapturedCounters::default();
    let layer = metrics::with_local_recorder(&captured, || {
        HedgeLayer::builder("quotes")
            .fixed_delay(Duration::from_millis(10))
            .budget_ratio(0.0)
            .budget_reserve(1)
            .build()
            .unwrap()
    });
    let upstream = service_fn(|i: u32| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok::<_, BoxError>(i)
    });
    let svc = ServiceBuilder::new().layer(layer.clone()).service(upstream);
    for i in 0..3 {
        svc.clone().oneshot(i).await.unwrap();
    }
    // One hedge from the reserve; the other two requests are refused by the budget.
    assert_eq!(captured.get("hedge_requests_total{source=quotes}"), (3, 1));
    assert_eq!(captured.get("hedge_sent_total{source=quotes}"), (1, 1));
    assert_eq!(captured.get("hedge_won_total{source=quotes}"), (0, 1));
    assert_eq!(
        captured.get("hedge_budget_refused_total{source=quotes}"),
        (2, 1)
    );
    let snap = layer.hedger().snapshot();
    assert_eq!(
        (
            snap.requests,
            snap.hedges_sent,
            snap.hedges_won,
            snap.budget_refused
        ),
        (3, 1, 0, 2)
    );
}
