//! Rolling windows: the last N calls, and the last T seconds as a ring of per-interval
//! histograms. Pure: no clock, no locks; every method takes `now` in nanoseconds.
//!
//! # Which calls a window counts
//!
//! - **Count window**: the `n` most recent calls by completion time, successes and
//!   failures alike (ignored outcomes are not calls for the SLA).
//! - **Time window** of length `T` cut into intervals of length `g` (`T / g` slots): the
//!   calls of the current, partial interval and of the `T / g - 1` intervals before it.
//!   So a call older than `T` **never** counts, and a call younger than `T - g` always
//!   does. This is the usual trade of sliding windows built from buckets (Prometheus'
//!   summaries, HdrHistogram's interval recorders): reads merge `T / g` small histograms
//!   instead of keeping every sample.
//!
//! Percentiles use HdrHistogram's definition: the value at quantile `q` is the smallest
//! recorded value that at least `ceil(q * n)` samples are less than or equivalent to,
//! reported as the highest value equivalent to it at the histogram's precision.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Latencies larger than this are recorded as this: it bounds each histogram's memory
/// (about 35 buckets at 2 significant figures) whatever an upstream does.
pub const MAX_TRACKED_LATENCY: Duration = Duration::from_secs(3600);
const MAX_TRACKED_NS: u64 = MAX_TRACKED_LATENCY.as_nanos() as u64;

/// A histogram of nanoseconds that grows with the largest value it has seen.
pub(crate) fn new_histogram<T: hdrhistogram::Counter>(sigfig: u8) -> Histogram<T> {
    // `new` only fails for sigfig > 5, which the builder rejects.
    Histogram::new(sigfig)
        .unwrap_or_else(|_| Histogram::new(2).expect("2 significant figures is valid"))
}

/// Records `n` samples of `value` (already clamped), growing the histogram as needed.
#[inline]
fn put<T: hdrhistogram::Counter>(hist: &mut Histogram<T>, value: u64, n: T) {
    // Growing cannot fail for values clamped to an hour; should it, clamping keeps the count.
    if hist.record_n(value, n).is_err() {
        hist.saturating_record_n(value, n);
    }
}

/// Latency clamped to what the histograms track.
#[inline]
pub(crate) fn clamp_latency(ns: u64) -> u64 {
    ns.min(MAX_TRACKED_NS)
}

/// Successes, failures and latencies of one interval (or one shard's share of it).
#[derive(Debug, Clone)]
pub(crate) struct IntervalData {
    pub(crate) hist: Histogram<u32>,
    pub(crate) successes: u64,
    pub(crate) failures: u64,
}

impl IntervalData {
    pub(crate) fn new(sigfig: u8) -> Self {
        Self {
            hist: new_histogram(sigfig),
            successes: 0,
            failures: 0,
        }
    }

    #[inline]
    pub(crate) fn record(&mut self, latency_ns: u64, success: bool) {
        put(&mut self.hist, clamp_latency(latency_ns), 1);
        if success {
            self.successes += 1;
        } else {
            self.failures += 1;
        }
    }

    pub(crate) fn reset(&mut self) {
        self.hist.reset();
        self.successes = 0;
        self.failures = 0;
    }

    fn is_empty(&self) -> bool {
        self.successes == 0 && self.failures == 0
    }

    fn absorb(&mut self, other: &IntervalData) {
        for v in other.hist.iter_recorded() {
            put(&mut self.hist, v.value_iterated_to(), v.count_at_value());
        }
        self.successes += other.successes;
        self.failures += other.failures;
    }
}

/// The completed intervals of a time window, one slot per interval, reused in a ring.
#[derive(Debug)]
pub(crate) struct TimeRing {
    slots: Vec<Option<(u64, IntervalData)>>,
}

impl TimeRing {
    pub(crate) fn new(slots: usize) -> Self {
        Self {
            slots: (0..slots).map(|_| None).collect(),
        }
    }

    pub(crate) fn len(&self) -> u64 {
        self.slots.len() as u64
    }

    /// Adds one shard's data for interval `index`. Data of an interval the ring has
    /// already moved past (its slot holds a newer interval) is expired and dropped.
    pub(crate) fn flush(&mut self, index: u64, data: &IntervalData, sigfig: u8) {
        if data.is_empty() {
            return;
        }
        let pos = (index % self.len()) as usize;
        match &mut self.slots[pos] {
            Some((tag, slot)) if *tag == index => slot.absorb(data),
            Some((tag, _)) if *tag > index => {}
            Some((tag, slot)) => {
                *tag = index;
                slot.reset();
                slot.absorb(data);
            }
            empty @ None => {
                let mut slot = IntervalData::new(sigfig);
                slot.absorb(data);
                *empty = Some((index, slot));
            }
        }
    }

    /// Adds to `acc` every interval inside the window that ends with interval `current`.
    pub(crate) fn collect(&self, current: u64, acc: &mut Accumulator) {
        for (tag, slot) in self.slots.iter().flatten() {
            if in_window(*tag, current, self.len()) {
                acc.add_interval(slot);
            }
        }
    }
}

/// Whether interval `index` is one of the `slots` intervals ending with `current`.
#[inline]
pub(crate) fn in_window(index: u64, current: u64, slots: u64) -> bool {
    index <= current && current - index < slots
}

/// One finished call in a count window: completion time, latency and outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CallEntry {
    pub(crate) at_ns: u64,
    pub(crate) latency_ns: u64,
    pub(crate) success: bool,
}

/// The last `capacity` calls of one shard.
#[derive(Debug)]
pub(crate) struct CountRing {
    entries: Vec<CallEntry>,
    capacity: usize,
    next: usize,
}

impl CountRing {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: Vec::new(),
            capacity: capacity.max(1),
            next: 0,
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, entry: CallEntry) {
        if self.entries.len() < self.capacity {
            // Grows to `capacity` once; no allocation after the first `capacity` calls.
            self.entries.push(entry);
        } else {
            self.entries[self.next] = entry;
            self.next += 1;
            if self.next == self.capacity {
                self.next = 0;
            }
        }
    }

    pub(crate) fn entries(&self) -> &[CallEntry] {
        &self.entries
    }
}

/// Stats of the `n` most recent calls among `entries` (the shards' count rings).
pub(crate) fn count_window(mut entries: Vec<CallEntry>, n: usize, sigfig: u8) -> WindowStats {
    if entries.len() > n {
        entries.select_nth_unstable_by(n, |a, b| b.at_ns.cmp(&a.at_ns));
        entries.truncate(n);
    }
    let mut acc = Accumulator::new(sigfig);
    for e in &entries {
        acc.add_call(e.latency_ns, e.success);
    }
    acc.stats()
}

/// Merges intervals (or single calls) read from shards and rings.
#[derive(Debug)]
pub(crate) struct Accumulator {
    hist: Histogram<u64>,
    successes: u64,
    failures: u64,
}

impl Accumulator {
    pub(crate) fn new(sigfig: u8) -> Self {
        Self {
            hist: new_histogram(sigfig),
            successes: 0,
            failures: 0,
        }
    }

    pub(crate) fn add_interval(&mut self, data: &IntervalData) {
        for v in data.hist.iter_recorded() {
            put(
                &mut self.hist,
                v.value_iterated_to(),
                u64::from(v.count_at_value()),
            );
        }
        self.successes += data.successes;
        self.failures += data.failures;
    }

    pub(crate) fn add_call(&mut self, latency_ns: u64, success: bool) {
        put(&mut self.hist, clamp_latency(latency_ns), 1);
        if success {
            self.successes += 1;
        } else {
            self.failures += 1;
        }
    }

    pub(crate) fn stats(&self) -> WindowStats {
        let calls = self.successes + self.failures;
        let q = |q: f64| {
            if calls == 0 {
                Duration::ZERO
            } else {
                Duration::from_nanos(self.hist.value_at_quantile(q))
            }
        };
        WindowStats {
            calls,
            successes: self.successes,
            failures: self.failures,
            p50: q(0.50),
            p95: q(0.95),
            p99: q(0.99),
            max: if calls == 0 {
                Duration::ZERO
            } else {
                Duration::from_nanos(self.hist.max())
            },
        }
    }
}

/// Figures of one rolling window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowStats {
    /// Calls counted (successes and failures).
    pub calls: u64,
    /// Successful calls.
    pub successes: u64,
    /// Failed calls.
    pub failures: u64,
    /// Median latency (zero without calls).
    pub p50: Duration,
    /// 95th percentile latency.
    pub p95: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Largest latency, at the histogram's precision.
    pub max: Duration,
}

impl WindowStats {
    /// Successes over calls, 0..=1; 1 when there were no calls (no evidence of failure).
    pub fn success_rate(&self) -> f64 {
        if self.calls == 0 {
            1.0
        } else {
            self.successes as f64 / self.calls as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn count_window_keeps_the_most_recent() {
        let entries: Vec<CallEntry> = (0..10)
            .map(|i| CallEntry {
                at_ns: i,
                latency_ns: (i + 1) * MS,
                success: i >= 5,
            })
            .collect();
        let s = count_window(entries, 4, 3);
        assert_eq!((s.calls, s.successes, s.failures), (4, 4, 0));
        assert!(s.max >= Duration::from_millis(10) && s.max < Duration::from_micros(10_100));
        assert!(s.p50 >= Duration::from_millis(8) && s.p50 < Duration::from_micros(8_100));
    }

    #[test]
    fn count_ring_overwrites_oldest() {
        let mut r = CountRing::new(3);
        for i in 0..5 {
            r.push(CallEntry {
                at_ns: i,
                latency_ns: 1,
                success: true,
            });
        }
        let mut at: Vec<u64> = r.entries().iter().map(|e| e.at_ns).collect();
        at.sort_unstable();
        assert_eq!(at, vec![2, 3, 4]);
    }

    #[test]
    fn time_ring_drops_expired_flushes() {
        let mut ring = TimeRing::new(3);
        let mut d = IntervalData::new(2);
        d.record(MS, true);
        ring.flush(5, &d, 2);
        // Interval 2 shares slot 2 with interval 5 and is older: dropped.
        ring.flush(2, &d, 2);
        let mut acc = Accumulator::new(2);
        ring.collect(5, &mut acc);
        assert_eq!(acc.stats().calls, 1);
        let mut acc = Accumulator::new(2);
        ring.collect(8, &mut acc);
        assert_eq!(
            acc.stats().calls,
            0,
            "interval 5 is out of the window ending at 8"
        );
    }

    #[test]
    fn empty_window_is_all_zero_and_fully_successful() {
        let s = Accumulator::new(2).stats();
        assert_eq!(s, WindowStats::default());
        assert_eq!(s.success_rate(), 1.0);
    }

    #[test]
    fn huge_latency_is_clamped() {
        let mut acc = Accumulator::new(2);
        acc.add_call(u64::MAX, true);
        assert!(acc.stats().max <= MAX_TRACKED_LATENCY + MAX_TRACKED_LATENCY / 50);
    }
}
