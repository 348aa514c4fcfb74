//! The decision: one request against every window of a quota, all or nothing.

use std::time::Duration;

use super::{Algorithm, MAX_WINDOWS, Quota, Window};
use crate::{gcra, window};

/// Stored state of one window of one key. GCRA uses `mark` as its TAT; the sliding window
/// uses `mark` as the window start and the two counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cell {
    /// GCRA: theoretical arrival time; sliding window: start of the current window (µs).
    pub mark: u64,
    /// Sliding window: units of the previous window.
    pub previous: u32,
    /// Sliding window: units of the current window.
    pub current: u32,
}

/// Whether a decision consumes or only looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Consume `cost` units from every window if all admit it.
    Consume,
    /// Report what consuming would do, change nothing.
    Peek,
}

/// What one window says about one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowStatus {
    /// The window's limit.
    pub limit: u64,
    /// The window's period in µs.
    pub period: u64,
    /// Units left after this decision.
    pub remaining: u64,
    /// µs until the window is full again (GCRA) or rolls over (sliding window).
    pub reset_after: u64,
    /// µs until this window would admit the request (0 if it does, `u64::MAX` if never).
    pub retry_after: u64,
}

/// The answer for one request across all windows of its quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether every window admits the request.
    pub allowed: bool,
    /// µs until the request would be admitted by all windows (0 if allowed,
    /// `u64::MAX` if never: the cost exceeds a window's capacity).
    pub retry_after: u64,
    windows: [WindowStatus; MAX_WINDOWS],
    len: u8,
}

impl Decision {
    /// Builds a decision (used by backends that compute it remotely).
    pub fn from_parts(allowed: bool, retry_after: u64, statuses: &[WindowStatus]) -> Self {
        let mut windows = [WindowStatus::default(); MAX_WINDOWS];
        let len = statuses.len().min(MAX_WINDOWS);
        windows[..len].copy_from_slice(&statuses[..len]);
        Self {
            allowed,
            retry_after,
            windows,
            len: len as u8,
        }
    }

    /// Per-window status, in the quota's order.
    pub fn windows(&self) -> &[WindowStatus] {
        &self.windows[..self.len as usize]
    }

    /// The window that binds: the one with the fewest units left (ties: the longest wait).
    pub fn binding(&self) -> Option<&WindowStatus> {
        self.windows()
            .iter()
            .min_by_key(|w| (w.remaining, u64::MAX - w.retry_after))
    }

    /// `retry_after` as a duration; `None` if allowed or never.
    pub fn retry_after(&self) -> Option<Duration> {
        (!self.allowed && self.retry_after != u64::MAX)
            .then(|| Duration::from_micros(self.retry_after))
    }
}

/// One window's verdict: its next cell (if consumed), whether it admits, its status.
#[inline]
fn evaluate(w: &Window, cell: &Cell, now: u64, cost: u64) -> (Cell, bool, WindowStatus) {
    let (next, allowed, remaining, reset_after, retry_after) = match w.algorithm {
        Algorithm::Gcra => {
            let o = gcra::evaluate(cell.mark, now, cost, w.interval, w.burst);
            let next = Cell {
                mark: o.tat,
                ..*cell
            };
            (next, o.allowed, o.remaining, o.reset_after, o.retry_after)
        }
        Algorithm::SlidingWindow => {
            let counts = window::WindowCounts {
                start: cell.mark,
                previous: u64::from(cell.previous),
                current: u64::from(cell.current),
            };
            let o = window::evaluate(counts, now, cost, w.limit, w.period);
            // Counts never exceed the limit (<= 10^8), so they fit in u32.
            let next = Cell {
                mark: o.counts.start,
                previous: o.counts.previous as u32,
                current: o.counts.current as u32,
            };
            (next, o.allowed, o.remaining, o.reset_after, o.retry_after)
        }
    };
    let status = WindowStatus {
        limit: w.limit,
        period: w.period,
        remaining,
        reset_after,
        retry_after,
    };
    (next, allowed, status)
}

/// Decides `cost` units at `now` (µs since the Unix epoch) for a key whose per-window
/// state is `cells` (one per window, same order as the quota). On [`Mode::Consume`] with
/// every window admitting, all cells are updated; otherwise none is touched.
#[inline]
pub fn decide(quota: &Quota, cells: &mut [Cell], now: u64, cost: u64, mode: Mode) -> Decision {
    // With a full-size state (the in-process backend), whole-array copies compile to a few
    // moves instead of a `memmove` call; cells past the quota's windows stay as they were.
    let mut next = match <&[Cell; MAX_WINDOWS]>::try_from(&*cells) {
        Ok(all) => *all,
        Err(_) => [Cell::default(); MAX_WINDOWS],
    };
    let mut statuses = [WindowStatus::default(); MAX_WINDOWS];
    let mut allowed = true;
    let mut retry_after = 0u64;
    for (i, (w, cell)) in quota.windows().iter().zip(cells.iter()).enumerate() {
        let (cell, ok, status) = evaluate(w, cell, now, cost);
        next[i] = cell;
        allowed &= ok;
        retry_after = retry_after.max(status.retry_after);
        statuses[i] = status;
    }
    let len = quota.windows().len();
    if allowed {
        retry_after = 0;
        if mode == Mode::Consume {
            match <&mut [Cell; MAX_WINDOWS]>::try_from(&mut *cells) {
                Ok(all) => *all = next,
                Err(_) => cells[..len].copy_from_slice(&next[..len]),
            }
        }
    } else {
        // Remaining as seen without this request: nothing was consumed anywhere.
        for (s, (w, cell)) in statuses
            .iter_mut()
            .zip(quota.windows().iter().zip(cells.iter()))
        {
            if s.retry_after == 0 {
                let unchanged = evaluate(w, cell, now, 0).2;
                s.remaining = unchanged.remaining;
                s.reset_after = unchanged.reset_after;
            }
        }
    }
    Decision {
        allowed,
        retry_after,
        windows: statuses,
        len: len as u8,
    }
}

/// Gives back `units` that a key consumed and did not spend (a lease returned on
/// shutdown), at `now`: a GCRA window moves its theoretical arrival time back by `units`
/// emission intervals, never before `now` (idle time is not banked); a sliding window
/// takes them off its current count if that window is still the current one. Units counted
/// in an earlier sliding window are not given back: a refund may under-admit, never
/// over-admit.
pub fn refund(quota: &Quota, cells: &mut [Cell], now: u64, units: u64) {
    for (w, cell) in quota.windows().iter().zip(cells.iter_mut()) {
        match w.algorithm {
            Algorithm::Gcra => {
                if cell.mark > now {
                    cell.mark = cell
                        .mark
                        .saturating_sub(units.saturating_mul(w.interval))
                        .max(now);
                }
            }
            Algorithm::SlidingWindow => {
                if cell.mark == now / w.period * w.period {
                    let back = u32::try_from(units).unwrap_or(u32::MAX);
                    cell.current = cell.current.saturating_sub(back);
                }
            }
        }
    }
}

/// The instant (µs) after which `cells` equal a fresh key's state for `quota`: forgetting
/// the key then changes no future decision.
#[inline]
pub fn idle_after(quota: &Quota, cells: &[Cell]) -> u64 {
    quota
        .windows()
        .iter()
        .zip(cells)
        .map(|(w, c)| match w.algorithm {
            Algorithm::Gcra => c.mark,
            Algorithm::SlidingWindow => c.mark.saturating_add(2 * w.period),
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WindowConfig;
    use proptest::prelude::*;

    const SEC: u64 = 1_000_000;

    fn two_windows(alg: Algorithm) -> Quota {
        let w = |limit, secs| {
            Window::new(WindowConfig {
                limit,
                period: Duration::from_secs(secs),
                burst: None,
                algorithm: alg,
            })
            .unwrap()
        };
        Quota::new([w(3, 1), w(5, 10)]).unwrap()
    }

    proptest! {
        /// Consuming `n` and refunding `n` at once leaves the key as it was, for both
        /// algorithms; a refund never leaves more room than a fresh key has.
        #[test]
        fn a_refund_undoes_what_it_gives_back_and_no_more(
            sliding in any::<bool>(),
            spent in 0_u64..3,
            n in 1_u64..3,
            extra in 0_u64..10,
            at in 0_u64..10_000_000,
        ) {
            let alg = if sliding { Algorithm::SlidingWindow } else { Algorithm::Gcra };
            let q = two_windows(alg);
            let now = 1000 * SEC + at;
            let mut cells = [Cell::default(); 4];
            for _ in 0..spent {
                decide(&q, &mut cells, now, 1, Mode::Consume);
            }
            let before = cells;
            let taken = decide(&q, &mut cells, now, n, Mode::Consume).allowed;
            refund(&q, &mut cells, now, if taken { n } else { 0 });
            // The same answers as before the round trip (a GCRA mark moved back to `now`
            // equals a fresh key's, though the numbers differ).
            for cost in 1..=5 {
                let was = decide(&q, &mut before.clone(), now, cost, Mode::Peek);
                let is = decide(&q, &mut cells.clone(), now, cost, Mode::Peek);
                prop_assert_eq!(was.allowed, is.allowed, "cost {}", cost);
                prop_assert_eq!(was.windows(), is.windows(), "cost {}", cost);
            }
            // Giving back more than was ever taken: at most a fresh key's room.
            refund(&q, &mut cells, now, n + extra + spent);
            let fresh = decide(&q, &mut [Cell::default(); 4], now, 3, Mode::Peek).allowed;
            let after = decide(&q, &mut cells.clone(), now, 4, Mode::Peek).allowed;
            prop_assert!(fresh);
            prop_assert!(!after, "room beyond a fresh key's after a refund");
        }
    }

    #[test]
    fn denied_by_one_window_consumes_from_none() {
        let q = two_windows(Algorithm::Gcra);
        let mut cells = [Cell::default(); 4];
        let t0 = 1000 * SEC;
        let mut admitted = 0;
        for i in 0..20 {
            let before = cells;
            let d = decide(&q, &mut cells, t0 + i * 400_000, 1, Mode::Consume);
            if d.allowed {
                admitted += 1;
            } else {
                assert_eq!(cells, before);
                assert!(d.retry_after > 0);
            }
        }
        // 5 per 10 s with burst 5, plus refill of 8 s / 2 s = 4 more at most.
        assert!(admitted <= 9, "{admitted}");
    }

    fn arb_quota() -> impl Strategy<Value = Quota> {
        let window = (
            1u64..8,
            prop_oneof![Just(1u64), Just(2), Just(5)],
            any::<bool>(),
        )
            .prop_map(|(limit, secs, sliding)| {
                Window::new(WindowConfig {
                    limit,
                    period: Duration::from_secs(secs),
                    burst: None,
                    algorithm: if sliding {
                        Algorithm::SlidingWindow
                    } else {
                        Algorithm::Gcra
                    },
                })
                .unwrap()
            });
        proptest::collection::vec(window, 1..=4).prop_map(|w| Quota::new(w).unwrap())
    }

    proptest! {
        /// Every documented invariant at once: a denial or a peek changes no cell; each
        /// window keeps its bound (GCRA: burst + d/T over any interval; sliding window:
        /// limit per aligned window).
        #[test]
        fn windows_hold_their_bounds_and_denials_change_nothing(
            quota in arb_quota(),
            arrivals in proptest::collection::vec((0u64..700_000, 1u64..3, any::<bool>()), 1..150),
        ) {
            let mut cells = [Cell::default(); MAX_WINDOWS];
            let mut now = 50 * SEC + 123;
            let mut admitted: Vec<(u64, u64)> = Vec::new();
            for (gap, cost, peek) in arrivals {
                now += gap;
                let before = cells;
                if peek {
                    let p = decide(&quota, &mut cells, now, cost, Mode::Peek);
                    prop_assert_eq!(cells, before);
                    let c = decide(&quota, &mut cells.clone(), now, cost, Mode::Consume);
                    prop_assert_eq!(p, c, "peek answers what consume would");
                    continue;
                }
                let d = decide(&quota, &mut cells, now, cost, Mode::Consume);
                if d.allowed {
                    admitted.push((now, cost));
                } else {
                    prop_assert_eq!(cells, before);
                }
            }
            for w in quota.windows() {
                match w.algorithm() {
                    Algorithm::Gcra => {
                        for i in 0..admitted.len() {
                            let mut units = 0;
                            for &(t, c) in &admitted[i..] {
                                units += c;
                                prop_assert!(units <= w.burst() + (t - admitted[i].0) / w.emission_interval());
                            }
                        }
                    }
                    Algorithm::SlidingWindow => {
                        let mut per = std::collections::BTreeMap::<u64, u64>::new();
                        for &(t, c) in &admitted {
                            *per.entry(t / w.period_micros()).or_default() += c;
                        }
                        prop_assert!(per.values().all(|&n| n <= w.limit()));
                    }
                }
            }
        }

        #[test]
        fn idle_keys_equal_fresh_keys(quota in arb_quota(), gaps in proptest::collection::vec(0u64..500_000, 1..40)) {
            let mut cells = [Cell::default(); MAX_WINDOWS];
            let mut now = 10 * SEC;
            for g in gaps {
                now += g;
                decide(&quota, &mut cells, now, 1, Mode::Consume);
            }
            let later = idle_after(&quota, &cells).max(now) + 1;
            let mut fresh = [Cell::default(); MAX_WINDOWS];
            let a = decide(&quota, &mut cells, later, 1, Mode::Consume);
            let b = decide(&quota, &mut fresh, later, 1, Mode::Consume);
            prop_assert_eq!(a, b);
        }
    }
}
