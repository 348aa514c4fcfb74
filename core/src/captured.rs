//! [`CapturedCounters`]: a `metrics` recorder for tests (feature `test-util`) that keeps
//! every counter by `name{key=value,...}` and how often it was registered, so a test can
//! assert both a count and "registered once per layer".
//!
//! ```
//! use reliability_core::captured::CapturedCounters;
//!
//! let captured = CapturedCounters::default();
//! let counter = metrics::with_local_recorder(&captured, || {
//!     metrics::counter!("calls_total", "source" => "a")
//! });
//! counter.increment(2);
//! assert_eq!(captured.get("calls_total{source=a}"), (2, 1));
//! assert_eq!(captured.get("other_total{}"), (0, 0));
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

/// Counters by `name{labels}` (labels in registration order, `key=value`, comma-joined),
/// each with the number of times it was registered. Gauges and histograms are dropped.
#[derive(Debug, Default)]
pub struct CapturedCounters {
    counters: Mutex<BTreeMap<String, (Arc<AtomicU64>, u32)>>,
}

impl CapturedCounters {
    /// The value of counter `key` and how often it was registered; `(0, 0)` if never.
    pub fn get(&self, key: &str) -> (u64, u32) {
        let map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key)
            .map_or((0, 0), |(c, n)| (c.load(Ordering::SeqCst), *n))
    }
}

impl Recorder for CapturedCounters {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        let mut map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(name).or_default();
        entry.1 += 1;
        Counter::from_arc(entry.0.clone())
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}
