//! The layer's counters: atomics for [`HedgeSnapshot`](crate::HedgeSnapshot), and with
//! feature `metrics` the `metrics` facade's handles, registered once per layer.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) won: AtomicU64,
    pub(crate) refused: AtomicU64,
    #[cfg(feature = "metrics")]
    handles: Handles,
}

#[cfg(feature = "metrics")]
#[derive(Debug)]
struct Handles {
    requests: metrics::Counter,
    sent: metrics::Counter,
    won: metrics::Counter,
    refused: metrics::Counter,
}

/// What happened, counted once.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Event {
    Request,
    Sent,
    Won,
    Refused,
}

impl Counters {
    pub(crate) fn new(name: &str) -> Self {
        #[cfg(not(feature = "metrics"))]
        let _ = name;
        #[cfg(feature = "metrics")]
        describe();
        Self {
            requests: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            won: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            #[cfg(feature = "metrics")]
            handles: Handles {
                requests: metrics::counter!("hedge_requests_total", "source" => name.to_owned()),
                sent: metrics::counter!("hedge_sent_total", "source" => name.to_owned()),
                won: metrics::counter!("hedge_won_total", "source" => name.to_owned()),
                refused: metrics::counter!("hedge_budget_refused_total", "source" => name.to_owned()),
            },
        }
    }

    #[inline]
    pub(crate) fn add(&self, event: Event) {
        let counter = match event {
            Event::Request => &self.requests,
            Event::Sent => &self.sent,
            Event::Won => &self.won,
            Event::Refused => &self.refused,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        match event {
            Event::Request => self.handles.requests.increment(1),
            Event::Sent => self.handles.sent.increment(1),
            Event::Won => self.handles.won.increment(1),
            Event::Refused => self.handles.refused.increment(1),
        }
    }
}

/// The families' help texts (`# HELP` in Prometheus).
#[cfg(feature = "metrics")]
fn describe() {
    use metrics::describe_counter;
    describe_counter!(
        "hedge_requests_total",
        "Requests through the hedge layer (hedged or not)."
    );
    describe_counter!(
        "hedge_sent_total",
        "Extra copies sent after the hedge delay."
    );
    describe_counter!(
        "hedge_won_total",
        "Requests answered first by an extra copy (the original was cancelled)."
    );
    describe_counter!(
        "hedge_budget_refused_total",
        "Hedges not sent because the hedge budget was spent."
    );
}
