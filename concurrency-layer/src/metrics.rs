//! The layer's metrics, registered once per layer so a call only touches atomics.
//!
//! With the `metrics` feature, through the [`metrics`](https://docs.rs/metrics) facade
//! (label `source` = the layer's name):
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `concurrency_limit` | gauge | `source` |
//! | `concurrency_in_flight` | gauge | `source` |
//! | `concurrency_admitted_total` | counter | `source` |
//! | `concurrency_rejected_total` | counter | `source`, `priority` |
//! | `concurrency_shadow_rejected_total` | counter | `source` |
//! | `concurrency_queue_wait_seconds` | histogram (calls that queued) | `source` |
//!
//! Without the feature every method here is an empty inline function.

#[cfg(feature = "metrics")]
mod imp {
    use std::fmt;
    use std::time::Duration;

    use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

    use crate::priority::Priority;

    pub(crate) struct Metrics {
        limit: Gauge,
        in_flight: Gauge,
        admitted: Counter,
        rejected: [Counter; 4],
        shadow_rejected: Counter,
        queue_wait: Histogram,
    }

    impl fmt::Debug for Metrics {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Metrics")
        }
    }

    impl Metrics {
        pub(crate) fn new(source: &str) -> Self {
            super::describe();
            let s = source.to_owned();
            Self {
                limit: gauge!("concurrency_limit", "source" => s.clone()),
                in_flight: gauge!("concurrency_in_flight", "source" => s.clone()),
                admitted: counter!("concurrency_admitted_total", "source" => s.clone()),
                rejected: Priority::ALL.map(|p| {
                    counter!(
                        "concurrency_rejected_total",
                        "source" => s.clone(),
                        "priority" => p.as_str()
                    )
                }),
                shadow_rejected: counter!("concurrency_shadow_rejected_total", "source" => s.clone()),
                queue_wait: histogram!("concurrency_queue_wait_seconds", "source" => s),
            }
        }

        #[inline]
        pub(crate) fn limit(&self, limit: usize) {
            self.limit.set(limit as f64);
        }

        #[inline]
        pub(crate) fn admitted(&self) {
            self.admitted.increment(1);
            self.in_flight.increment(1.0);
        }

        #[inline]
        pub(crate) fn released(&self) {
            self.in_flight.decrement(1.0);
        }

        #[inline]
        pub(crate) fn rejected(&self, priority: Priority) {
            self.rejected[priority.index()].increment(1);
        }

        #[inline]
        pub(crate) fn shadow_rejected(&self) {
            self.shadow_rejected.increment(1);
        }

        #[inline]
        pub(crate) fn queue_wait(&self, wait: Duration) {
            self.queue_wait.record(wait.as_secs_f64());
        }
    }
}

#[cfg(not(feature = "metrics"))]
mod imp {
    use std::time::Duration;

    use crate::priority::Priority;

    #[derive(Debug)]
    pub(crate) struct Metrics;

    impl Metrics {
        pub(crate) fn new(_: &str) -> Self {
            Self
        }
        #[inline]
        pub(crate) fn limit(&self, _: usize) {}
        #[inline]
        pub(crate) fn admitted(&self) {}
        #[inline]
        pub(crate) fn released(&self) {}
        #[inline]
        pub(crate) fn rejected(&self, _: Priority) {}
        #[inline]
        pub(crate) fn shadow_rejected(&self) {}
        #[inline]
        pub(crate) fn queue_wait(&self, _: Duration) {}
    }
}

pub(crate) use imp::Metrics;

/// The families' help texts.
#[cfg(feature = "metrics")]
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        "concurrency_limit",
        "The concurrency limit now (moving, when adaptive)."
    );
    describe_gauge!("concurrency_in_flight", "Calls in flight.");
    describe_counter!("concurrency_admitted_total", "Calls admitted.");
    describe_counter!(
        "concurrency_rejected_total",
        "Calls refused (full, queue full, queue timeout, shed), by priority."
    );
    describe_counter!(
        "concurrency_shadow_rejected_total",
        "Calls shadow mode admitted that an enforced limit would have refused."
    );
    describe_histogram!(
        "concurrency_queue_wait_seconds",
        metrics::Unit::Seconds,
        "Time queued calls waited for a place."
    );
}
