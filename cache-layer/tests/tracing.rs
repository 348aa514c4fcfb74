//! The layer's span: one `cache` span per call at `debug`, with `source`, `cache.status`
//! and `outcome` recorded, seen by a subscriber that keeps every span's fields.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::{Upstream, builder, paused_runtime, secs, stack};
use tower::ServiceExt;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// A span's name and its fields.
type Opened = (&'static str, BTreeMap<String, String>);

/// Every span opened, in order (its id is its place, from 1).
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<Opened>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl Subscriber for Spans {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut fields = BTreeMap::new();
        span.record(&mut Fields(&mut fields));
        let mut all = self.0.lock().unwrap();
        all.push((span.metadata().name(), fields));
        Id::from_u64(all.len() as u64)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut all = self.0.lock().unwrap();
        let i = usize::try_from(span.into_u64()).unwrap() - 1;
        values.record(&mut Fields(&mut all[i].1));
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn one_span_per_call_with_status_and_outcome() {
    let spans = Spans::default();
    tracing::subscriber::with_default(spans.clone(), || {
        paused_runtime().block_on(async {
            let up = Upstream::default();
            let (svc, _) = stack(
                builder()
                    .name("prices")
                    .ttl(secs(10))
                    .stale_while_revalidate(secs(5)),
                &up,
                std::time::Duration::ZERO,
            );
            svc.clone().oneshot("k".to_owned()).await.unwrap(); // miss
            svc.clone().oneshot("k".to_owned()).await.unwrap(); // hit
            tokio::time::advance(secs(11)).await;
            svc.clone().oneshot("k".to_owned()).await.unwrap(); // stale
            up.set_failing(true);
            svc.oneshot("other".to_owned()).await.unwrap_err(); // miss, error
        });
    });
    let all = spans.0.lock().unwrap();
    let calls: Vec<(&str, &str)> = all
        .iter()
        .filter(|(name, _)| *name == "cache")
        .map(|(_, f)| {
            assert_eq!(f["source"], "prices");
            (f["cache.status"].as_str(), f["outcome"].as_str())
        })
        .collect();
    assert_eq!(
        calls,
        [
            ("miss", "ok"),
            ("hit", "ok"),
            ("stale", "ok"),
            ("miss", "error")
        ]
    );
}
