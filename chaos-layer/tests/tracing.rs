//! What a `tracing` subscriber sees of the chaos layer: while it is enabled, one `debug`
//! span `chaos` per call with `source`, `fault` and `delay_ms`; while it is disabled,
//! none.

use chaos_layer::ChaosLayer;
use reliability_core::traced::Traced;
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn enabled_calls_have_a_span_naming_the_fault() {
    let traced = Traced::default();
    let _guard = tracing::subscriber::set_default(traced.clone());
    let layer = ChaosLayer::builder("upstream")
        .error_rate(0.5)
        .seed(7)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|i: u32| async move {
            tracing::debug!(i, "upstream called");
            Ok::<_, BoxError>(i)
        }));

    svc.clone().oneshot(0).await.unwrap();
    assert!(
        traced.spans("chaos").is_empty(),
        "a disabled layer opens no span"
    );

    handle.enable();
    let mut answers = Vec::new();
    for i in 0..20 {
        answers.push(svc.clone().oneshot(i).await.is_ok());
    }
    let spans = traced.spans("chaos");
    assert_eq!(spans.len(), 20, "one span per call while enabled");
    for (span, ok) in spans.iter().zip(&answers) {
        assert_eq!(span.field("source"), Some("upstream"));
        assert_eq!(span.field("delay_ms"), Some("0"));
        let fault = if *ok { "none" } else { "error" };
        assert_eq!(span.field("fault"), Some(fault), "{span:?}");
    }
    assert!(
        answers.iter().any(|ok| *ok) && answers.iter().any(|ok| !ok),
        "a 50 % rate over 20 calls both injects and passes: {answers:?}"
    );
    let passed = answers.iter().filter(|ok| **ok).count();
    let inside: Vec<_> = traced
        .events_with("i")
        .into_iter()
        .skip(1)
        .map(|e| e.span)
        .collect();
    assert_eq!(
        inside,
        vec![Some("chaos"); passed],
        "a call let through reaches the upstream inside its span"
    );
}
