//! Totals of a breaker since it was made.

use std::sync::atomic::{AtomicU64, Ordering::*};

use super::StateMachine;

/// Counts since the breaker was made; they only grow.
#[derive(Debug, Default)]
pub(super) struct Counters {
    /// Successes and failures not counted by a count window's ring (time windows,
    /// probes, outcomes of a past epoch). Successes are then derived: the CLOSED path
    /// pays for no success counter of its own.
    pub(super) recorded_elsewhere: AtomicU64,
    pub(super) failures: AtomicU64,
    pub(super) ignored: AtomicU64,
    pub(super) cancelled: AtomicU64,
    pub(super) slow: AtomicU64,
    pub(super) rejections: AtomicU64,
    pub(super) state_changes: AtomicU64,
}

/// Totals of a breaker since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Admitted calls that finished or were cancelled: the sum of the four below.
    pub calls: u64,
    /// Calls that succeeded.
    pub successes: u64,
    /// Calls that failed.
    pub failures: u64,
    /// Calls whose outcome counted neither way.
    pub ignored: u64,
    /// Calls dropped before they finished.
    pub cancelled: u64,
    /// Successes and failures slower than `slow_call_duration`.
    pub slow: u64,
    /// Calls rejected without reaching the service.
    pub rejections: u64,
    /// State transitions.
    pub state_changes: u64,
}

impl StateMachine {
    /// Totals since creation.
    pub fn counts(&self) -> Counts {
        let c = &self.counters;
        // Exact once calls are quiet; a reading taken while calls finish may be off by
        // the calls finishing at that moment (and never wraps).
        let failures = c.failures.load(Relaxed);
        let recorded = self.window.recorded().unwrap_or(0) + c.recorded_elsewhere.load(Relaxed);
        let successes = recorded.saturating_sub(failures);
        let ignored = c.ignored.load(Relaxed);
        let cancelled = c.cancelled.load(Relaxed);
        Counts {
            calls: successes + failures + ignored + cancelled,
            successes,
            failures,
            ignored,
            cancelled,
            slow: c.slow.load(Relaxed),
            rejections: c.rejections.load(Relaxed),
            state_changes: c.state_changes.load(Relaxed),
        }
    }
}
