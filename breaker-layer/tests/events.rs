//! What a `tracing` subscriber sees of a breaker: a `debug` span per call (`source`,
//! `outcome`) and an event per state change (`source`, `from`, `to`, `cause`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use breaker_layer::CircuitBreakerLayer;
use reliability_core::clock::ManualClock;
use reliability_core::health::BreakerState;
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

type Fields = Vec<(String, String)>;
/// A span's name, level and fields.
type SpanSeen = (&'static str, Level, Fields);

/// Keeps every event's fields, and every span's name and fields (as last recorded).
#[derive(Default, Clone)]
struct Capture {
    events: Arc<Mutex<Vec<(Level, Fields)>>>,
    spans: Arc<Mutex<Vec<SpanSeen>>>,
}

struct Collect<'a>(&'a mut Fields);

impl Visit for Collect<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut fields = Vec::new();
        span.record(&mut Collect(&mut fields));
        let meta = span.metadata();
        let mut spans = self.spans.lock().unwrap();
        spans.push((meta.name(), *meta.level(), fields));
        Id::from_u64(spans.len() as u64)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut spans = self.spans.lock().unwrap();
        let index = usize::try_from(span.into_u64()).unwrap() - 1;
        values.record(&mut Collect(&mut spans[index].2));
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Vec::new();
        event.record(&mut Collect(&mut fields));
        self.events
            .lock()
            .unwrap()
            .push((*event.metadata().level(), fields));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn field<'a>(fields: &'a Fields, name: &str) -> Option<&'a str> {
    fields
        .iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "current_thread")]
async fn transitions_and_calls_reach_a_subscriber_with_stable_fields() {
    let capture = Capture::default();
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

    let events = capture.events.lock().unwrap().clone();
    let changes: Vec<(Level, [&str; 4])> = events
        .iter()
        .filter(|(_, f)| field(f, "to").is_some())
        .map(|(level, f)| {
            (
                *level,
                ["source", "from", "to", "cause"].map(|n| field(f, n).unwrap_or("-")),
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

    let spans = capture.spans.lock().unwrap().clone();
    let calls: Vec<(&str, Level, &str, &str)> = spans
        .iter()
        .map(|(name, level, f)| {
            (
                *name,
                *level,
                field(f, "source").unwrap_or("-"),
                field(f, "outcome").unwrap_or("-"),
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
