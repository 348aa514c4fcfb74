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

    /// The sliding bound for an arbitrary (unaligned) window, derived from the estimate in
    /// the module docs. Take `[t, t + period)` with `t = k·period + s`: it covers the tail of
    /// aligned window `k` (`A` admissions) and the head of window `k + 1` (`B`). At the last
    /// admission counted in `B`, at `u < s` into window `k + 1`, the estimate held
    /// `⌊C_k·(P − u_ms)/P⌋ + B ≤ limit` (`C_k` = total of window `k`, `P` = period in ms),
    /// and `u_ms ≤ s_ms`, so `B ≤ limit − ⌊C_k·(P − s_ms)/P⌋` and, with `A ≤ C_k`:
    ///
    /// `admitted in [t, t + period) ≤ limit + C_k − ⌊C_k·(P − s_ms)/P⌋`.
    ///
    /// The slack is `⌈C_k·s_ms/P⌉`: 0 for an aligned window, near 0 for a window starting
    /// just after a boundary (where a fixed window admits `2·limit`). The approximation
    /// assumes the previous window was spread evenly, so for `s` near `period` the slack
    /// really does approach `limit`; no tighter arbitrary-window bound holds.
    ///
    /// Checks every window start where the count can step up or the slack resets (each
    /// admission, each admission minus `period` plus 1 µs, each aligned boundary), which
    /// covers every real-valued start. `admitted` must be sorted, cost 1 each.
    fn check_sliding_bound(admitted: &[u64], limit: u64, period: u64) -> Result<(), String> {
        let period_ms = period / 1_000;
        let mut totals = std::collections::BTreeMap::<u64, u64>::new();
        for &a in admitted {
            *totals.entry(a / period).or_default() += 1;
        }
        let mut starts = Vec::with_capacity(admitted.len() * 4);
        for &a in admitted {
            starts.extend([a, a + 1, (a + 1).saturating_sub(period)]);
            starts.push(a - a % period);
            starts.push(a - a % period + period);
        }
        for t in starts {
            let k = t / period;
            let s_ms = (t - k * period) / 1_000;
            let c_k = totals.get(&k).copied().unwrap_or(0);
            let bound = limit + c_k - c_k * (period_ms - s_ms) / period_ms;
            let lo = admitted.partition_point(|&a| a < t);
            let hi = admitted.partition_point(|&a| a < t + period);
            let n = (hi - lo) as u64;
            if n > bound {
                return Err(format!(
                    "window [{t}, {}) admitted {n} > bound {bound} (limit {limit}, C_k {c_k}, s_ms {s_ms})",
                    t + period
                ));
            }
        }
        Ok(())
    }

    /// Runs `evaluate` (cost 1) over `times`, returning the admitted instants.
    fn sliding_admits(times: &[u64], limit: u64, period: u64) -> Vec<u64> {
        let mut c = WindowCounts::default();
        let mut admitted = Vec::new();
        for &now in times {
            let o = evaluate(c, now, 1, limit, period);
            if o.allowed {
                c = o.counts;
                admitted.push(now);
            }
        }
        admitted
    }

    /// A tiny fixed-window limiter: at most `limit` per aligned window, nothing carried over.
    fn fixed_admits(times: &[u64], limit: u64, period: u64) -> Vec<u64> {
        let (mut window, mut count) = (u64::MAX, 0);
        let mut admitted = Vec::new();
        for &now in times {
            if now / period != window {
                (window, count) = (now / period, 0);
            }
            if count < limit {
                count += 1;
                admitted.push(now);
            }
        }
        admitted
    }

    /// Request instants: per step, move on (freely, or to just before / just after the next
    /// aligned boundary), then fire a burst with sub-millisecond gaps.
    fn schedule(period: u64, steps: &[(u8, u64, u64, Vec<u64>)]) -> Vec<u64> {
        let mut now = 7 * period + 123;
        let mut times = Vec::new();
        for (kind, a, _, burst) in steps {
            let next = now - now % period + period;
            now = match kind % 3 {
                0 => now + a % (2 * period),
                1 => (next - 1 - a % (period / 20)).max(now),
                _ => next + a % (period / 20),
            };
            for gap in burst {
                now += gap;
                times.push(now);
            }
        }
        times
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn no_unaligned_window_exceeds_the_sliding_bound(
            period_ms in 100u64..3_000,
            limit in 1u64..30,
            steps in proptest::collection::vec(
                (0u8..3, any::<u64>(), 0u64..1, proptest::collection::vec(0u64..1_000, 1..40)),
                10..60,
            ),
        ) {
            let period = period_ms * 1_000;
            let times = schedule(period, &steps);
            let admitted = sliding_admits(&times, limit, period);
            if let Err(e) = check_sliding_bound(&admitted, limit, period) {
                return Err(TestCaseError::fail(e));
            }
        }

        /// A full burst at the end of a window, then another just after the boundary: the
        /// second burst only gets `⌈limit·u_ms/P⌉` more (a fixed window gives `limit`).
        #[test]
        fn boundary_burst_admits_far_fewer_than_twice_the_limit(
            period_ms in 100u64..3_000,
            limit in 10u64..200,
            before_us in 0u64..20_000,
            after_us in 0u64..20_000,
        ) {
            let period = period_ms * 1_000;
            let boundary = 42 * period;
            let before = boundary - 1 - before_us.min(period / 10);
            let after = boundary + after_us.min(period / 10);
            let times: Vec<u64> = std::iter::repeat_n(before, limit as usize)
                .chain(std::iter::repeat_n(after, limit as usize))
                .collect();
            let admitted = sliding_admits(&times, limit, period);
            let second = admitted.iter().filter(|&&a| a >= boundary).count() as u64;
            let u_ms = (after - boundary) / 1_000;
            prop_assert_eq!(admitted.len() as u64 - second, limit);
            prop_assert!(second <= (limit * u_ms).div_ceil(period_ms));
            prop_assert!(second <= limit / 10 + 1);
            prop_assert_eq!(fixed_admits(&times, limit, period).len() as u64, 2 * limit);
            if let Err(e) = check_sliding_bound(&admitted, limit, period) {
                return Err(TestCaseError::fail(e));
            }
            prop_assert!(check_sliding_bound(&fixed_admits(&times, limit, period), limit, period).is_err());
        }
    }

    /// The check can fail: a fixed window passes the aligned bound but not the sliding one.
    #[test]
    fn fixed_window_fails_the_sliding_check() {
        let (limit, period) = (10, SEC);
        let times: Vec<u64> = (0..limit)
            .map(|i| 8 * SEC - 1_000 + i)
            .chain((0..limit).map(|i| 8 * SEC + 1_000 + i))
            .collect();
        let fixed = fixed_admits(&times, limit, period);
        assert_eq!(fixed.len() as u64, 2 * limit);
        // Aligned bound holds for the fixed window…
        assert!(fixed.iter().filter(|&&a| a < 8 * SEC).count() as u64 <= limit);
        assert!(fixed.iter().filter(|&&a| a >= 8 * SEC).count() as u64 <= limit);
        // …but not the sliding one: a window starting early in window 7 holds all of its
        // first burst plus two of the second, 12 > limit + ⌈10·1/1000⌉ = 11.
        let err = check_sliding_bound(&fixed, limit, period).unwrap_err();
        assert!(err.contains("admitted 12 > bound 11"), "{err}");
        // The sliding window, same requests, passes.
        let sliding = sliding_admits(&times, limit, period);
        assert_eq!(sliding.len() as u64, limit + 1);
        check_sliding_bound(&sliding, limit, period).unwrap();
    }

    proptest! {
        /// Over the random schedules with bursts at boundaries, the fixed-window model is
        /// caught whenever it puts a full burst each side of a boundary.
        #[test]
        fn fixed_window_fails_on_boundary_bursts(
            period_ms in 100u64..3_000,
            limit in 2u64..30,
            steps in proptest::collection::vec(
                (0u8..3, any::<u64>(), 0u64..1, proptest::collection::vec(0u64..1_000, 1..40)),
                10..60,
            ),
        ) {
            let period = period_ms * 1_000;
            let mut steps = steps;
            // Force one full burst just before a boundary and one just after.
            let burst = vec![0u64; limit as usize];
            steps.push((1, 0, 0, burst.clone()));
            steps.push((2, 0, 0, burst));
            let times = schedule(period, &steps);
            prop_assert!(check_sliding_bound(&fixed_admits(&times, limit, period), limit, period).is_err());
            let admitted = sliding_admits(&times, limit, period);
            if let Err(e) = check_sliding_bound(&admitted, limit, period) {
                return Err(TestCaseError::fail(e));
            }
        }
    }
}
