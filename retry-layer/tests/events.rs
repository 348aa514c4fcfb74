//! What a `tracing` subscriber sees of a retried call: one `debug` span `retry` whose
//! fields (`source`, `outcome`, `attempt`, `reason`) are stable names.

use reliability_core::traced::Traced;
use retry_layer::RetryLayer;
use retry_layer::budget::BudgetConfig;
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};
use tracing::Level;

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn one_span_per_call_with_its_outcome_attempts_and_reason() {
    let traced = Traced::default();
    let _guard = tracing::subscriber::set_default(traced.clone());
    let layer = RetryLayer::builder()
        .name("binance")
        .max_attempts(3)
        .budget(BudgetConfig::Unlimited)
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|ok: bool| async move {
            if ok {
                Ok(())
            } else {
                Err::<(), BoxError>("unavailable".into())
            }
        }));
    svc.clone().oneshot(true).await.unwrap();
    svc.oneshot(false).await.unwrap_err();

    let spans: Vec<(&str, Level, Vec<String>)> = traced
        .spans("retry")
        .into_iter()
        .map(|s| {
            let texts = s.fields.iter().map(|(n, v)| format!("{n}={v}")).collect();
            (s.name, s.level, texts)
        })
        .collect();
    let expected = |fields: &[&str]| {
        let texts = fields.iter().map(|f| f.to_string()).collect::<Vec<_>>();
        ("retry", Level::DEBUG, texts)
    };
    assert_eq!(
        spans,
        [
            expected(&["source=binance", "outcome=success", "attempt=1"]),
            expected(&[
                "source=binance",
                "outcome=failure",
                "attempt=3",
                "reason=attempts_exhausted"
            ]),
        ]
    );
}
