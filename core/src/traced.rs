//! [`Traced`]: a `tracing` subscriber for tests (feature `test-util`) that keeps every
//! span (name, level, fields as last recorded) and every event (level, fields, and the
//! span it happened in), so a test can assert what a layer reports and under which names.
//!
//! ```
//! use reliability_core::traced::Traced;
//!
//! let traced = Traced::default();
//! tracing::subscriber::with_default(traced.clone(), || {
//!     let span = tracing::debug_span!("sla", source = "binance", outcome = tracing::field::Empty);
//!     span.in_scope(|| tracing::info!(to = "OPEN", "state changed"));
//!     span.record("outcome", "success");
//! });
//! let spans = traced.spans("sla");
//! assert_eq!(spans.len(), 1);
//! assert_eq!(spans[0].field("source"), Some("binance"));
//! assert_eq!(spans[0].field("outcome"), Some("success"));
//! let events = traced.events();
//! assert_eq!(events[0].field("to"), Some("OPEN"));
//! assert_eq!(events[0].field("message"), Some("state changed"));
//! assert_eq!(events[0].span, Some("sla"));
//! ```

use std::sync::{Arc, Mutex, MutexGuard};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// One span or event as seen: its name (the event's is its metadata name), level and
/// fields in the order they were recorded (a field recorded twice keeps both; the last
/// one wins in [`field`](Self::field)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The span's name, or the event's metadata name.
    pub name: &'static str,
    /// Its level.
    pub level: Level,
    /// Its fields, as `(name, value)`; strings as they are, other values by `Debug`.
    pub fields: Vec<(String, String)>,
    /// For an event, the name of the span it happened in (the innermost entered one).
    pub span: Option<&'static str>,
}

impl Seen {
    /// The last value recorded for field `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Default)]
struct State {
    spans: Vec<Seen>,
    events: Vec<Seen>,
}

/// Keeps every span and event; clones share what they keep. Install it with
/// `tracing::subscriber::with_default` or `set_default` (per thread: a test's runtime
/// must be current-thread, or the subscriber set as the global default).
#[derive(Debug, Clone, Default)]
pub struct Traced {
    state: Arc<Mutex<State>>,
}

thread_local! {
    /// The ids of the spans entered on this thread, innermost last.
    static ENTERED: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Traced {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every span named `name`, in the order they were opened.
    pub fn spans(&self, name: &str) -> Vec<Seen> {
        self.lock()
            .spans
            .iter()
            .filter(|s| s.name == name)
            .cloned()
            .collect()
    }

    /// Every event, in order.
    pub fn events(&self) -> Vec<Seen> {
        self.lock().events.clone()
    }

    /// Every event that carries field `name`, in order.
    pub fn events_with(&self, name: &str) -> Vec<Seen> {
        self.lock()
            .events
            .iter()
            .filter(|e| e.field(name).is_some())
            .cloned()
            .collect()
    }
}

struct Collect<'a>(&'a mut Vec<(String, String)>);

impl Visit for Collect<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
}

fn index(id: &Id) -> usize {
    usize::try_from(id.into_u64()).unwrap_or(usize::MAX) - 1
}

impl Subscriber for Traced {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut fields = Vec::new();
        span.record(&mut Collect(&mut fields));
        let meta = span.metadata();
        let mut state = self.lock();
        state.spans.push(Seen {
            name: meta.name(),
            level: *meta.level(),
            fields,
            span: None,
        });
        Id::from_u64(state.spans.len() as u64)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut state = self.lock();
        if let Some(seen) = state.spans.get_mut(index(span)) {
            values.record(&mut Collect(&mut seen.fields));
        }
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Vec::new();
        event.record(&mut Collect(&mut fields));
        let inside = ENTERED.with(|e| e.borrow().last().copied());
        let mut state = self.lock();
        let span = inside
            .and_then(|id| state.spans.get(index(&Id::from_u64(id))))
            .map(|s| s.name);
        state.events.push(Seen {
            name: event.metadata().name(),
            level: *event.metadata().level(),
            fields,
            span,
        });
    }

    fn enter(&self, span: &Id) {
        ENTERED.with(|e| e.borrow_mut().push(span.into_u64()));
    }

    fn exit(&self, span: &Id) {
        ENTERED.with(|e| {
            let mut entered = e.borrow_mut();
            if let Some(at) = entered.iter().rposition(|id| *id == span.into_u64()) {
                entered.remove(at);
            }
        });
    }
}
