//! Recording shards: a call is recorded into the shard of its thread, behind that shard's
//! own lock; readers merge every shard with the monitor's ring.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use reliability_core::classify::Outcome;

use super::{CallTotals, MonitorCore};
use crate::window::{
    Accumulator, CallEntry, CountRing, IntervalData, WindowStats, count_window, in_window,
};

/// One recording shard; a call in flight holds it, not the monitor. Padded to whole cache
/// lines so that two threads writing their own shards never share one.
#[repr(align(128))]
pub(super) struct Shard {
    pub(super) core: Arc<MonitorCore>,
    pub(super) state: Mutex<ShardState>,
}

pub(super) struct ShardState {
    pub(super) interval: u64,
    pub(super) interval_end_ns: u64,
    pub(super) current: IntervalData,
    pub(super) recent: CountRing,
    /// `latency_sum` is kept in `latency_sum_ns` here: a plain add on the hot path.
    pub(super) totals: CallTotals,
    pub(super) latency_sum_ns: u64,
}

static NEXT_THREAD_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's shard number, plus one; 0 until first used.
    static THREAD_SLOT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[inline]
pub(super) fn thread_slot() -> usize {
    THREAD_SLOT.with(|slot| match slot.get() {
        0 => {
            let n = NEXT_THREAD_SLOT.fetch_add(1, Ordering::Relaxed);
            slot.set(n.wrapping_add(1));
            n
        }
        n => n - 1,
    })
}

pub(super) fn default_shards() -> usize {
    static SHARDS: OnceLock<usize> = OnceLock::new();
    *SHARDS.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .next_power_of_two()
            .min(16)
    })
}

impl Shard {
    #[inline]
    pub(super) fn record(&self, end_ns: u64, latency_ns: u64, outcome: Outcome) {
        let core = &*self.core;
        {
            let mut s = self.state.lock();
            match outcome {
                Outcome::Ignore => s.totals.ignored += 1,
                Outcome::Success | Outcome::Failure => {
                    let success = outcome == Outcome::Success;
                    if end_ns >= s.interval_end_ns {
                        core.rotate(&mut s, end_ns);
                    }
                    s.current.record(latency_ns, success);
                    s.recent.push(CallEntry {
                        at_ns: end_ns,
                        latency_ns,
                        success,
                    });
                    if success {
                        s.totals.successes += 1;
                    } else {
                        s.totals.failures += 1;
                    }
                    s.latency_sum_ns = s.latency_sum_ns.saturating_add(latency_ns);
                }
            }
        }
        core.instruments.recorded(outcome);
        core.after_record(end_ns, outcome);
    }
}

impl MonitorCore {
    /// Moves a shard's finished interval to the ring. Lock order: shard, then ring.
    #[cold]
    fn rotate(&self, s: &mut ShardState, now_ns: u64) {
        if s.current.successes + s.current.failures > 0 {
            self.ring
                .lock()
                .flush(s.interval, &s.current, self.config.significant_figures);
            s.current.reset();
        }
        s.interval = now_ns / self.interval_ns;
        s.interval_end_ns = (s.interval + 1).saturating_mul(self.interval_ns);
    }

    /// Merges every shard and the ring. Lock order: (eval), shards in order, ring.
    pub(super) fn read(&self, now_ns: u64) -> (WindowStats, WindowStats, CallTotals) {
        let sigfig = self.config.significant_figures;
        let shards: Vec<Arc<Shard>> = self
            .shards
            .get()
            .map(|w| w.iter().filter_map(Weak::upgrade).collect())
            .unwrap_or_default();
        let guards: Vec<_> = shards.iter().map(|s| s.state.lock()).collect();
        let current = now_ns / self.interval_ns;
        let mut time = Accumulator::new(sigfig);
        let mut entries = Vec::with_capacity(guards.len() * self.config.count_window);
        let mut totals = CallTotals::default();
        for g in &guards {
            if in_window(g.interval, current, self.slots) {
                time.add_interval(&g.current);
            }
            entries.extend_from_slice(g.recent.entries());
            totals.absorb(&g.totals);
            totals.latency_sum = totals
                .latency_sum
                .saturating_add(Duration::from_nanos(g.latency_sum_ns));
        }
        self.ring.lock().collect(current, &mut time);
        drop(guards);
        let count = count_window(entries, self.config.count_window, sigfig);
        (count, time.stats(), totals)
    }
}
