//! What a `tracing` subscriber sees of a retried call: one `debug` span `retry` whose
//! fields (`source`, `outcome`, `attempt`, `reason`) are stable names.

use std::sync::{Arc, Mutex};

use retry_layer::RetryLayer;
use retry_layer::budget::BudgetConfig;
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Each span's name, level and `field=value` texts, in the order recorded.
type Spans = Arc<Mutex<Vec<(&'static str, Level, Vec<String>)>>>;

struct Capture(Spans);

struct Texts<'a>(&'a mut Vec<String>);

impl Visit for Texts<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push(format!("{}={value:?}", field.name()));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push(format!("{}={value}", field.name()));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut texts = Vec::new();
        span.record(&mut Texts(&mut texts));
        let mut spans = self.0.lock().unwrap();
        spans.push((span.metadata().name(), *span.metadata().level(), texts));
        Id::from_u64(spans.len() as u64)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        let index = usize::try_from(span.into_u64()).unwrap() - 1;
        values.record(&mut Texts(&mut self.0.lock().unwrap()[index].2));
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn one_span_per_call_with_its_outcome_attempts_and_reason() {
    let spans = Spans::default();
    let _guard = tracing::subscriber::set_default(Capture(spans.clone()));
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

    let spans = spans.lock().unwrap().clone();
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
