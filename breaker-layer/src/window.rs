//! Sliding windows of call outcomes: the last N calls, or the last T seconds.
//!
//! Both windows keep a running total next to their slots, so that recording a call and
//! reading the window's failure and slow-call counts are O(1): a call that leaves the
//! window is subtracted as it is evicted, never recounted.
//!
//! Both are lock-free: every slot and total is an atomic, and the totals stay equal to the
//! sum of the slots because every slot change is paired with the same change to the totals
//! (a slot is swapped, never read-then-written). Under concurrency two calls can race for
//! the same slot of a count window, or land on either side of a second boundary of a time
//! window; the window then drops or shifts one call, while the totals still match the
//! slots exactly. Single-threaded, both windows are exact; the property tests check that.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};

use crossbeam_utils::CachePadded;

/// Calls in a window, and how many of them failed or were slow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Calls recorded in the window.
    pub calls: u64,
    /// Failed calls among them.
    pub failures: u64,
    /// Slow calls among them (failed or not).
    pub slow: u64,
}

impl Tally {
    /// Failures over calls, percent (0 when the window is empty).
    #[inline]
    pub fn failure_rate(&self) -> f64 {
        percent(self.failures, self.calls)
    }

    /// Slow calls over calls, percent (0 when the window is empty).
    pub fn slow_call_rate(&self) -> f64 {
        percent(self.slow, self.calls)
    }
}

fn percent(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 * 100.0 / den as f64
    }
}

const CALL: u8 = 1;
const FAILURE: u8 = 2;
const SLOW: u8 = 4;

/// One call as stored in a count-window slot.
#[inline]
fn slot_bits(failure: bool, slow: bool) -> u8 {
    CALL | if failure { FAILURE } else { 0 } | if slow { SLOW } else { 0 }
}

/// Calls and failures share one word (calls in the high half) so that one atomic add
/// moves both; slow calls, rarer, have their own.
#[inline]
fn packed(bits: u8) -> u64 {
    (u64::from(bits & CALL) << 32) | u64::from((bits & FAILURE) >> 1)
}

#[inline]
fn unpack(word: u64, slow: u64) -> Tally {
    Tally {
        calls: word >> 32,
        failures: word & u64::from(u32::MAX),
        slow,
    }
}

/// Running totals of a window.
#[derive(Debug, Default)]
struct Totals {
    calls_failures: AtomicU64,
    slow: AtomicU64,
}

impl Totals {
    /// Adds `new` and removes `old` (slot bit patterns). Wrapping arithmetic on the packed
    /// word is exact because no field of the result is negative.
    #[inline]
    fn replace(&self, old: u8, new: u8) {
        if old == new {
            return;
        }
        let delta = packed(new).wrapping_sub(packed(old));
        if delta != 0 {
            self.calls_failures.fetch_add(delta, Relaxed);
        }
        match (old & SLOW != 0, new & SLOW != 0) {
            (false, true) => {
                self.slow.fetch_add(1, Relaxed);
            }
            (true, false) => {
                self.slow.fetch_sub(1, Relaxed);
            }
            _ => {}
        }
    }

    #[inline]
    fn tally(&self) -> Tally {
        unpack(self.calls_failures.load(Relaxed), self.slow.load(Relaxed))
    }
}

/// The last `size` calls.
///
/// A ring of one-byte slots; memory is `size` bytes.
#[derive(Debug)]
pub struct CountWindow {
    slots: Box<[AtomicU8]>,
    /// Calls ever recorded (never reset): the ring position, and a free call counter.
    /// Written by every call, so kept off the cache lines that are only read.
    recorded: CachePadded<AtomicU64>,
    /// `u64::MAX / len + 1`, so the ring position needs no division (Lemire's fastmod).
    reciprocal: u64,
    totals: Totals,
}

impl CountWindow {
    /// A window of the last `size` calls (`size` is at least 1).
    pub fn new(size: u32) -> Self {
        let size = size.max(1);
        Self {
            slots: (0..size).map(|_| AtomicU8::new(0)).collect(),
            recorded: CachePadded::new(AtomicU64::new(0)),
            reciprocal: (u64::MAX / u64::from(size)).wrapping_add(1),
            totals: Totals::default(),
        }
    }

    /// How many calls the window holds when full.
    pub fn size(&self) -> u32 {
        self.slots.len() as u32
    }

    /// Calls recorded since creation, clears included.
    #[inline]
    pub fn recorded(&self) -> u64 {
        self.recorded.load(Relaxed)
    }

    /// `n mod size` without a division.
    #[inline]
    fn slot_of(&self, n: u32) -> usize {
        let low = self.reciprocal.wrapping_mul(u64::from(n));
        ((u128::from(low) * self.slots.len() as u128) >> 64) as usize
    }

    /// Records a call, evicting the oldest when the window is full.
    #[inline]
    pub fn record(&self, failure: bool, slow: bool) {
        // The ring position wraps with the low 32 bits of the count: once every four
        // billion calls the ring restarts at slot 0, which only changes which old call is
        // overwritten next.
        let n = self.recorded.fetch_add(1, Relaxed) as u32;
        let slot = &self.slots[self.slot_of(n)];
        let new = slot_bits(failure, slow);
        // In a steady state the evicted call looks like the new one: no write at all. A
        // racing writer may then overwrite the slot; the window drops one call and the
        // totals still match the slots.
        if slot.load(Relaxed) != new {
            let old = slot.swap(new, Relaxed);
            self.totals.replace(old, new);
        }
    }

    /// The calls in the window.
    #[inline]
    pub fn tally(&self) -> Tally {
        self.totals.tally()
    }

    /// Empties the window.
    pub fn clear(&self) {
        for slot in self.slots.iter() {
            let old = slot.swap(0, Relaxed);
            self.totals.replace(old, 0);
        }
    }
}

/// One second of a time window.
#[derive(Debug, Default)]
struct Bucket {
    calls_failures: AtomicU64,
    slow: AtomicU64,
}

/// The calls of the last `seconds` seconds: the current second and the `seconds - 1`
/// before it, in one bucket per second.
///
/// Seconds are counted from an origin the owner chooses (the breaker's creation). Memory
/// is `seconds` buckets of 16 bytes; recording is O(1) and eviction is amortised O(1): each
/// bucket is cleared once per pass of time over it, however long the window stood idle.
#[derive(Debug)]
pub struct TimeWindow {
    buckets: Box<[Bucket]>,
    /// The newest second the window has moved to.
    head: AtomicU64,
    totals: Totals,
}

impl TimeWindow {
    /// A window of the last `seconds` seconds (at least 1).
    pub fn new(seconds: u32) -> Self {
        let seconds = seconds.max(1);
        Self {
            buckets: (0..seconds).map(|_| Bucket::default()).collect(),
            head: AtomicU64::new(0),
            totals: Totals::default(),
        }
    }

    /// The window's length in seconds.
    pub fn seconds(&self) -> u32 {
        self.buckets.len() as u32
    }

    /// Records a call made during second `second`.
    #[inline]
    pub fn record(&self, second: u64, failure: bool, slow: bool) {
        let second = self.advance(second);
        let bits = slot_bits(failure, slow);
        let bucket = &self.buckets[(second % self.buckets.len() as u64) as usize];
        // Totals first, bucket second: a concurrent eviction can then only subtract what
        // the totals already hold, so they never underflow.
        self.totals.replace(0, bits);
        bucket.calls_failures.fetch_add(packed(bits), Relaxed);
        if slow {
            bucket.slow.fetch_add(1, Relaxed);
        }
    }

    /// The calls in the window as of second `second`.
    #[inline]
    pub fn tally(&self, second: u64) -> Tally {
        self.advance(second);
        self.totals.tally()
    }

    /// Empties the window.
    pub fn clear(&self) {
        for bucket in self.buckets.iter() {
            self.evict(bucket);
        }
    }

    /// Moves the window's head to `second`, evicting the seconds that fell out. Returns
    /// the second to record into: `second`, or the oldest second still in the window when
    /// `second` is older than that (a clock read that lost a race).
    #[inline]
    fn advance(&self, second: u64) -> u64 {
        let len = self.buckets.len() as u64;
        let mut head = self.head.load(Relaxed);
        while second > head {
            match self
                .head
                .compare_exchange_weak(head, second, Relaxed, Relaxed)
            {
                Ok(_) => {
                    // Seconds head+1 ..= second reuse the buckets of head+1-len ..= second-len.
                    let stale = (second - head).min(len);
                    for s in second + 1 - stale..=second {
                        self.evict(&self.buckets[(s % len) as usize]);
                    }
                    return second;
                }
                Err(actual) => head = actual,
            }
        }
        second.max((head + 1).saturating_sub(len))
    }

    fn evict(&self, bucket: &Bucket) {
        let word = bucket.calls_failures.swap(0, Relaxed);
        let slow = bucket.slow.swap(0, Relaxed);
        if word != 0 {
            self.totals.calls_failures.fetch_sub(word, Relaxed);
        }
        if slow != 0 {
            self.totals.slow.fetch_sub(slow, Relaxed);
        }
    }
}

/// A count or a time window.
#[derive(Debug)]
// One per breaker, built once and never moved: boxing the larger variant would only add
// an indirection to every call.
#[allow(clippy::large_enum_variant)]
pub enum Window {
    /// The last N calls.
    Count(CountWindow),
    /// The last T seconds.
    Time(TimeWindow),
}

impl Window {
    /// Records a call made during second `second` (ignored by count windows).
    #[inline]
    pub fn record(&self, second: impl FnOnce() -> u64, failure: bool, slow: bool) {
        match self {
            Self::Count(w) => w.record(failure, slow),
            Self::Time(w) => w.record(second(), failure, slow),
        }
    }

    /// The calls in the window as of second `second` (ignored by count windows).
    #[inline]
    pub fn tally(&self, second: impl FnOnce() -> u64) -> Tally {
        match self {
            Self::Count(w) => w.tally(),
            Self::Time(w) => w.tally(second()),
        }
    }

    /// Empties the window.
    pub fn clear(&self) {
        match self {
            Self::Count(w) => w.clear(),
            Self::Time(w) => w.clear(),
        }
    }

    /// Calls recorded since creation, for a count window.
    #[inline]
    pub fn recorded(&self) -> Option<u64> {
        match self {
            Self::Count(w) => Some(w.recorded()),
            Self::Time(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn count_window_evicts_oldest() {
        let w = CountWindow::new(3);
        w.record(true, false);
        w.record(false, true);
        w.record(false, false);
        assert_eq!(
            w.tally(),
            Tally {
                calls: 3,
                failures: 1,
                slow: 1
            }
        );
        w.record(false, false);
        assert_eq!(
            w.tally(),
            Tally {
                calls: 3,
                failures: 0,
                slow: 1
            }
        );
        w.record(false, false);
        assert_eq!(
            w.tally(),
            Tally {
                calls: 3,
                failures: 0,
                slow: 0
            }
        );
        w.clear();
        assert_eq!(w.tally(), Tally::default());
    }

    #[test]
    fn ring_position_is_n_mod_size() {
        for size in [1u32, 2, 3, 7, 100, 1_000_000] {
            let w = CountWindow::new(size);
            for n in [
                0u32,
                1,
                2,
                99,
                100,
                101,
                999_999,
                1_000_000,
                u32::MAX - 1,
                u32::MAX,
            ] {
                assert_eq!(w.slot_of(n), (n % size) as usize, "{n} mod {size}");
            }
        }
    }

    #[test]
    fn time_window_forgets_old_seconds() {
        let w = TimeWindow::new(3);
        w.record(0, true, false);
        w.record(1, false, true);
        w.record(2, false, false);
        assert_eq!(
            w.tally(2),
            Tally {
                calls: 3,
                failures: 1,
                slow: 1
            }
        );
        assert_eq!(
            w.tally(3),
            Tally {
                calls: 2,
                failures: 0,
                slow: 1
            }
        );
        assert_eq!(
            w.tally(4),
            Tally {
                calls: 1,
                failures: 0,
                slow: 0
            }
        );
        // A long idle stretch clears everything once.
        assert_eq!(w.tally(1_000_000), Tally::default());
        w.record(1_000_000, true, true);
        // A late clock read lands in the oldest second still in the window.
        w.record(5, true, false);
        assert_eq!(
            w.tally(1_000_000),
            Tally {
                calls: 2,
                failures: 2,
                slow: 1
            }
        );
        assert_eq!(w.tally(1_000_003), Tally::default());
    }

    #[test]
    fn rates_of_an_empty_window_are_zero() {
        assert_eq!(Tally::default().failure_rate(), 0.0);
        let t = Tally {
            calls: 4,
            failures: 1,
            slow: 2,
        };
        assert_eq!(t.failure_rate(), 25.0);
        assert_eq!(t.slow_call_rate(), 50.0);
    }

    proptest! {
        /// The count window holds exactly the last N calls.
        #[test]
        fn count_window_matches_last_n(size in 1u32..20, calls in proptest::collection::vec((any::<bool>(), any::<bool>()), 0..100)) {
            let w = CountWindow::new(size);
            for (i, &(f, s)) in calls.iter().enumerate() {
                w.record(f, s);
                let start = (i + 1).saturating_sub(size as usize);
                let last = &calls[start..=i];
                let expect = Tally {
                    calls: last.len() as u64,
                    failures: last.iter().filter(|c| c.0).count() as u64,
                    slow: last.iter().filter(|c| c.1).count() as u64,
                };
                prop_assert_eq!(w.tally(), expect);
            }
        }

        /// The time window holds exactly the calls of the last T seconds.
        #[test]
        fn time_window_matches_last_t_seconds(seconds in 1u32..8, steps in proptest::collection::vec((0u64..4, any::<bool>(), any::<bool>()), 0..100)) {
            let w = TimeWindow::new(seconds);
            let mut now = 0u64;
            let mut log: Vec<(u64, bool, bool)> = Vec::new();
            for &(dt, f, s) in &steps {
                now += dt;
                w.record(now, f, s);
                log.push((now, f, s));
                let live: Vec<_> = log.iter().filter(|c| c.0 + u64::from(seconds) > now).collect();
                let expect = Tally {
                    calls: live.len() as u64,
                    failures: live.iter().filter(|c| c.1).count() as u64,
                    slow: live.iter().filter(|c| c.2).count() as u64,
                };
                prop_assert_eq!(w.tally(now), expect);
            }
        }
    }
}
