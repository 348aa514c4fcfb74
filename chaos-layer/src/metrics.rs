//! The layer's counters: atomics for [`ChaosCounts`](crate::ChaosCounts), and with feature
//! `metrics` the `chaos_injected_total{source, fault}` handles, registered once per layer.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) error: AtomicU64,
    pub(crate) latency: AtomicU64,
    pub(crate) response: AtomicU64,
    #[cfg(feature = "metrics")]
    handles: [metrics::Counter; 3],
}

/// What was injected, counted once.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Injection {
    Error = 0,
    Latency = 1,
    Response = 2,
}

impl Counters {
    pub(crate) fn new(name: &str) -> Self {
        #[cfg(not(feature = "metrics"))]
        let _ = name;
        #[cfg(feature = "metrics")]
        metrics::describe_counter!(
            "chaos_injected_total",
            "Faults injected by the chaos layer, by fault (error, latency, response)."
        );
        #[cfg(feature = "metrics")]
        let handle = |fault: &'static str| metrics::counter!("chaos_injected_total", "source" => name.to_owned(), "fault" => fault);
        Self {
            error: AtomicU64::new(0),
            latency: AtomicU64::new(0),
            response: AtomicU64::new(0),
            #[cfg(feature = "metrics")]
            handles: [handle("error"), handle("latency"), handle("response")],
        }
    }

    #[inline]
    pub(crate) fn add(&self, injection: Injection) {
        let counter = match injection {
            Injection::Error => &self.error,
            Injection::Latency => &self.latency,
            Injection::Response => &self.response,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        self.handles[injection as usize].increment(1);
    }
}
