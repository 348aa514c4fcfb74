//! Feature `metrics`: `chaos_injected_total{source, fault}`, registered once per layer.

use std::time::Duration;

use chaos_layer::{ChaosLayer, LatencyDistribution};
use reliability_core::captured::CapturedCounters;
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn injections_are_counted_by_fault() {
    let captured = CapturedCounters::default();
    let layer = metrics::with_local_recorder(&captured, || {
        ChaosLayer::builder("orders")
            .error_rate(0.5)
            .response_rate(0.5)
            .respond_with(|| u32::MAX)
            .latency(
                1.0,
                LatencyDistribution::Fixed {
                    delay: Duration::from_millis(1),
                },
            )
            .enabled(true)
            .build()
            .unwrap()
    });
    let upstream = service_fn(|i: u32| async move { Ok::<_, BoxError>(i) });
    let svc = ServiceBuilder::new().layer(layer.clone()).service(upstream);
    for i in 0..200 {
        let _ = svc.clone().oneshot(i).await;
    }
    let counts = layer.handle().counts();
    let error = captured.get("chaos_injected_total{source=orders,fault=error}");
    let response = captured.get("chaos_injected_total{source=orders,fault=response}");
    let latency = captured.get("chaos_injected_total{source=orders,fault=latency}");
    assert_eq!(error, (counts.errors, 1));
    assert_eq!(response, (counts.responses, 1));
    assert_eq!(latency, (200, 1));
    assert_eq!(error.0 + response.0, 200);
}
