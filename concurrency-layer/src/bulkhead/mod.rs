//! The bulkhead: a limit on calls in flight, a bounded wait queue, priorities.
//!
//! [`Limiter`] is the state every clone of a layer shares. Its fast path is one
//! compare-and-swap on the in-flight count, taken when nobody waits; the wait queue
//! ([`queue::WaitQueue`]) sits behind a mutex that only queued calls, and completions
//! while calls are queued, take.
//!
//! Which in-flight count a call may still start at is [`ceiling`]: the limit for
//! `Critical` calls, the limit less the reserved share for the others.

pub(crate) mod limiter;
pub(crate) mod permit;
pub mod queue;

pub use limiter::Limiter;

use crate::priority::Priority;

/// The in-flight count below which a call of `priority` may start, for `limit` and a
/// `critical_reserve` share kept for `Critical` calls.
///
/// The reserve is rounded up (a 10 % reserve of 5 keeps one place) but never takes the
/// last place of the other classes, so every class can make progress.
///
/// ```
/// use concurrency_layer::bulkhead::ceiling;
/// use concurrency_layer::Priority;
///
/// assert_eq!(ceiling(Priority::Critical, 20, 0.1), 20);
/// assert_eq!(ceiling(Priority::Low, 20, 0.1), 18);
/// assert_eq!(ceiling(Priority::Normal, 5, 0.1), 4);
/// assert_eq!(ceiling(Priority::Normal, 1, 0.5), 1);
/// ```
#[inline]
pub fn ceiling(priority: Priority, limit: usize, critical_reserve: f64) -> usize {
    if priority == Priority::Critical || critical_reserve <= 0.0 {
        return limit;
    }
    // `as` saturates: a huge product is clamped by the `min` below.
    let reserved = ((limit as f64) * critical_reserve).ceil() as usize;
    limit - reserved.min(limit.saturating_sub(1))
}
