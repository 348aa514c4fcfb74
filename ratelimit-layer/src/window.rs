//! The sliding-window counter, pure: Cloudflare's approximation of a sliding log.
//!
//! Time is cut into aligned windows of `period` (aligned on the Unix epoch, so every
//! process and Redis agree on the boundaries). A key keeps the count of the current window
//! and of the previous one; at `elapsed` into the current window the estimated count is
//! `previous · (period − elapsed) / period + current`, and a request of cost `n` is admitted
//! when `estimate + n ≤ limit`.
//!
//! **Bound.** The estimate never exceeds `limit`, and since it is at least `current`, no
//! aligned window ever admits more than `limit` units. Memory is two counters and a start.
//!
//! The weighting is computed in whole milliseconds so that the Redis Lua twin, which works
//! in doubles, stays exact (limits are at most 10^8, periods at most a year).

/// Stored state of one sliding window: start of the current aligned window (µs since the
/// epoch) and the counts of the previous and current windows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowCounts {
    /// Start of the current window, µs since the Unix epoch.
    pub start: u64,
    /// Units admitted in the previous window.
    pub previous: u64,
    /// Units admitted in the current window.
    pub current: u64,
}

/// The result of one sliding-window evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowOutcome {
    /// Whether the request fits.
    pub allowed: bool,
    /// The state to store if the request is consumed (rolled forward, count added).
    pub counts: WindowCounts,
    /// Microseconds until the same request would fit; `u64::MAX` if never; 0 when allowed.
    pub retry_after: u64,
    /// Units still available after this request.
    pub remaining: u64,
    /// Microseconds until the current aligned window ends.
    pub reset_after: u64,
}

/// Evaluates a request of `cost` at `now` (µs since the epoch) against stored `counts`,
/// for `limit` units per `period` µs (`period` a whole number of milliseconds).
#[must_use]
#[inline]
pub fn evaluate(
    counts: WindowCounts,
    now: u64,
    cost: u64,
    limit: u64,
    period: u64,
) -> WindowOutcome {
    let period = period.max(1_000);
    let start = now - now % period;
    let rolled = if counts.start == start {
        counts
    } else if counts.start + period == start {
        WindowCounts {
            start,
            previous: counts.current,
            current: 0,
        }
    } else {
        WindowCounts {
            start,
            previous: 0,
            current: 0,
        }
    };
    let period_ms = period / 1_000;
    let elapsed_ms = (now - start) / 1_000;
    let weighted = rolled.previous * (period_ms - elapsed_ms) / period_ms;
    let estimate = weighted + rolled.current;
    let allowed = estimate + cost <= limit;
    let reset_after = start + period - now;
    if allowed {
        return WindowOutcome {
            allowed,
            counts: WindowCounts {
                current: rolled.current + cost,
                ..rolled
            },
            retry_after: 0,
            remaining: limit - estimate - cost,
            reset_after,
        };
    }
    let retry_after = if cost > limit {
        u64::MAX
    } else if rolled.current + cost <= limit {
        // The previous window's weight has to fade: find the first millisecond where
        // previous · (period − e) / period ≤ limit − cost − current.
        let room = limit - cost - rolled.current;
        let e = first_fitting_ms(rolled.previous, room, period_ms);
        (e * 1_000).saturating_sub(now - start).max(1)
    } else {
        // Wait for the next window, then for the current count (then previous) to fade.
        let room = limit - cost;
        let e = first_fitting_ms(rolled.current, room, period_ms);
        reset_after + e * 1_000
    };
    WindowOutcome {
        allowed,
        counts,
        retry_after,
        remaining: limit - estimate.min(limit),
        reset_after,
    }
}

/// The smallest `e` in ms with `weight · (period_ms − e) / period_ms ≤ room`.
fn first_fitting_ms(weight: u64, room: u64, period_ms: u64) -> u64 {
    if weight <= room {
        return 0;
    }
    // weight·(p − e) < (room + 1)·p  ⇔  e > p − (room + 1)·p / weight
    let bound = (room + 1) * period_ms;
    let threshold = period_ms - bound.div_ceil(weight).min(period_ms);
    let mut e = threshold;
    while e < period_ms && weight * (period_ms - e) / period_ms > room {
        e += 1;
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEC: u64 = 1_000_000;

    #[test]
    fn previous_window_weighs_in() {
        let mut c = WindowCounts::default();
        let t0 = 100 * SEC;
        for _ in 0..10 {
            let o = evaluate(c, t0, 1, 10, SEC);
            assert!(o.allowed);
            c = o.counts;
        }
        // Half way through the next window, half of the previous 10 still count.
        let half = evaluate(c, t0 + SEC + SEC / 2, 1, 10, SEC);
        assert!(half.allowed);
        assert_eq!(half.remaining, 4);
        // Two windows later, nothing counts.
        assert_eq!(evaluate(c, t0 + 2 * SEC, 1, 10, SEC).remaining, 9);
    }

    proptest! {
        #[test]
        fn no_aligned_window_admits_more_than_its_limit(
            gaps in proptest::collection::vec(0u64..200_000, 1..200),
            limit in 1u64..15,
        ) {
            let mut c = WindowCounts::default();
            let mut now = 7 * SEC;
            let mut per_window = std::collections::BTreeMap::<u64, u64>::new();
            for gap in gaps {
                now += gap;
                let o = evaluate(c, now, 1, limit, SEC);
                if o.allowed {
                    c = o.counts;
                    *per_window.entry(now / SEC).or_default() += 1;
                } else {
                    prop_assert_eq!(o.counts, c);
                    prop_assert!(o.retry_after > 0);
                    prop_assert!(evaluate(c, now + o.retry_after, 1, limit, SEC).allowed);
                }
            }
            prop_assert!(per_window.values().all(|&n| n <= limit));
        }
    }
}
