//! The Generic Cell Rate Algorithm, pure: no I/O, no clock, integer microseconds.
//!
//! GCRA keeps one number per key, the *theoretical arrival time* (TAT): the instant at which
//! the key's bucket would be full again if nothing else arrived. A window of `limit` requests
//! per `period` has an *emission interval* `T = period / limit`; a request of cost `n` is
//! admitted at `now` when `max(TAT, now) + n·T − now ≤ burst·T`, and then moves TAT there.
//! This is a token bucket of capacity `burst` refilled one token per `T`, stored in one
//! integer (the formulation of ATM's GCRA as used by redis-cell).
//!
//! **Bound.** Over any interval of length `d`, a GCRA window admits at most
//! `burst + d / T` units. With the default `burst = limit`, the sustained rate is
//! `limit / period` and an idle key may spend `limit` at once.
//!
//! All arithmetic stays below 2^53 for validated rules, so the Redis Lua twin of this
//! function (double-precision numbers) computes the same answers.

/// The result of one GCRA evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcraOutcome {
    /// Whether the request conforms.
    pub allowed: bool,
    /// The TAT to store if the request is consumed (unchanged when denied).
    pub tat: u64,
    /// Microseconds until the same request would conform; `u64::MAX` if never
    /// (cost above the burst); 0 when allowed.
    pub retry_after: u64,
    /// Whole units still available after this request.
    pub remaining: u64,
    /// Microseconds until the bucket is full again.
    pub reset_after: u64,
}

/// Evaluates a request of `cost` units at `now` against a stored `tat`
/// (`0` for a key never seen), with emission interval `interval` and capacity `burst`.
#[must_use]
#[inline]
pub fn evaluate(tat: u64, now: u64, cost: u64, interval: u64, burst: u64) -> GcraOutcome {
    let capacity = burst.saturating_mul(interval);
    let base = tat.max(now);
    let new_tat = base.saturating_add(cost.saturating_mul(interval));
    let allowed = new_tat - now <= capacity;
    let (kept, retry_after) = if allowed {
        (new_tat, 0)
    } else if cost > burst {
        (base, u64::MAX)
    } else {
        (base, new_tat - capacity - now)
    };
    let reset_after = kept - now;
    let remaining = (capacity - reset_after.min(capacity)) / interval.max(1);
    GcraOutcome {
        allowed,
        tat: if allowed { new_tat } else { tat },
        retry_after,
        remaining,
        reset_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEC: u64 = 1_000_000;

    #[test]
    fn burst_then_steady_rate() {
        // 10 per second, burst 10: T = 100 ms.
        let (t, b) = (SEC / 10, 10);
        let mut tat = 0;
        let now = 5 * SEC;
        for i in 0..10 {
            let o = evaluate(tat, now, 1, t, b);
            assert!(o.allowed, "request {i}");
            assert_eq!(o.remaining, 9 - i);
            tat = o.tat;
        }
        let denied = evaluate(tat, now, 1, t, b);
        assert!(!denied.allowed);
        assert_eq!(denied.retry_after, t);
        assert_eq!(denied.tat, tat, "a denial leaves the TAT alone");
        assert!(evaluate(tat, now + t, 1, t, b).allowed);
    }

    #[test]
    fn cost_above_burst_never_conforms() {
        let o = evaluate(0, SEC, 11, SEC / 10, 10);
        assert!(!o.allowed);
        assert_eq!(o.retry_after, u64::MAX);
    }

    proptest! {
        #[test]
        fn admitted_units_respect_the_gcra_bound(
            gaps in proptest::collection::vec(0u64..300_000, 1..200),
            costs in proptest::collection::vec(1u64..4, 200),
            limit in 1u64..20,
        ) {
            let interval = SEC / limit;
            let burst = limit;
            let mut tat = 0;
            let mut now = SEC;
            let mut admitted: Vec<(u64, u64)> = Vec::new();
            for (gap, cost) in gaps.iter().zip(&costs) {
                now += gap;
                let o = evaluate(tat, now, *cost, interval, burst);
                if o.allowed {
                    tat = o.tat;
                    admitted.push((now, *cost));
                } else {
                    prop_assert_eq!(o.tat, tat);
                    prop_assert!(o.retry_after > 0);
                    if o.retry_after != u64::MAX {
                        prop_assert!(evaluate(tat, now + o.retry_after, *cost, interval, burst).allowed);
                    }
                }
            }
            for (i, &(start, _)) in admitted.iter().enumerate() {
                let mut units = 0;
                for &(t, c) in &admitted[i..] {
                    units += c;
                    let d = t - start;
                    prop_assert!(units <= burst + d / interval, "{units} units in {d} µs");
                }
            }
        }
    }
}
