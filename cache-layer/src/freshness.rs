//! The freshness model of one entry: fresh, stale-while-revalidate, stale-if-error, gone.
//!
//! Pure: no I/O, no clock reads. Every function takes `now`, so property tests can walk
//! an entry through its whole life in nanoseconds of real time.
//!
//! An entry stored at `t0` with TTL `ttl` lives through these phases (RFC 5861 counts both
//! stale windows from the moment the entry turns stale, and so do we):
//!
//! ```text
//!  t0            t0+ttl                t0+ttl+swr           t0+ttl+sie
//!  |---- Fresh ----|---- Revalidate -----|--- IfErrorOnly -----|--- Gone
//!       served         served at once,      the caller waits for
//!                      one background       the upstream; its
//!                      refresh runs         failure serves this copy
//! ```
//!
//! - **Fresh**: served as is. XFetch (Vattani et al., VLDB 2015) may pick a request to
//!   refresh early, with a probability that rises as expiry nears, so that a hot key is
//!   usually refreshed before anyone sees it stale.
//! - **Revalidate** (stale-while-revalidate): served at once; exactly one background
//!   refresh runs per key.
//! - **IfErrorOnly** (stale-if-error): not served while the upstream answers; when the
//!   refresh or the miss fails, this copy is served instead of the error (logged, counted).
//!   A failed background refresh during Revalidate leaves the copy in place, so it keeps
//!   being served.
//! - **Gone**: past both windows, or past the hard `max_staleness`.
//!
//! When `stale_if_error` is shorter than `stale_while_revalidate`, the revalidate window
//! still serves at once; the if-error window simply adds nothing.

use std::time::Duration;

use reliability_core::clock::Instant;

/// Where an entry stands at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Within its TTL.
    Fresh,
    /// Stale, within the stale-while-revalidate window: serve, refresh in the background.
    Revalidate,
    /// Stale, within the stale-if-error window only: usable when the upstream fails.
    IfErrorOnly,
    /// Past every window.
    Gone,
}

/// The freshness windows of one stored entry, and when it was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// When the value was stored (the upstream answered).
    pub stored_at: Instant,
    /// Time to live: fresh until `stored_at + ttl`.
    pub ttl: Duration,
    /// Stale-while-revalidate window, counted from the end of the TTL.
    pub stale_while_revalidate: Duration,
    /// Stale-if-error window, counted from the end of the TTL.
    pub stale_if_error: Duration,
    /// How long the upstream took to produce the value (XFetch's `delta`).
    pub fetch_cost: Duration,
}

impl Freshness {
    /// A value stored at `stored_at` under `windows`, capped by `windows.max_staleness`.
    pub fn new(stored_at: Instant, ttl: Duration, windows: &StaleWindows) -> Self {
        Self {
            stored_at,
            ttl,
            stale_while_revalidate: windows.stale_while_revalidate.min(windows.max_staleness),
            stale_if_error: windows.stale_if_error.min(windows.max_staleness),
            fetch_cost: Duration::ZERO,
        }
    }

    /// The same, with the cost of fetching recorded for XFetch.
    #[must_use]
    pub fn with_fetch_cost(mut self, cost: Duration) -> Self {
        self.fetch_cost = cost;
        self
    }

    /// When the entry turns stale.
    pub fn stale_at(&self) -> Instant {
        self.stored_at + self.ttl
    }

    /// How long the entry may be kept at all (TTL plus the longer stale window).
    pub fn lifetime(&self) -> Duration {
        self.ttl
            .saturating_add(self.stale_while_revalidate.max(self.stale_if_error))
    }

    /// The phase at `now`. A `now` before `stored_at` (a clock that moved back) counts as
    /// fresh.
    pub fn phase(&self, now: Instant) -> Phase {
        let age = now.saturating_duration_since(self.stored_at);
        if age < self.ttl {
            return Phase::Fresh;
        }
        let staleness = age - self.ttl;
        if staleness < self.stale_while_revalidate {
            Phase::Revalidate
        } else if staleness < self.stale_if_error {
            Phase::IfErrorOnly
        } else {
            Phase::Gone
        }
    }

    /// Time left before the entry turns stale (zero once stale).
    pub fn ttl_remaining(&self, now: Instant) -> Duration {
        self.stale_at().saturating_duration_since(now)
    }

    /// Whether a copy in this state may stand in for a failed upstream call.
    pub fn usable_on_error(&self, now: Instant) -> bool {
        matches!(
            self.phase(now),
            Phase::Fresh | Phase::Revalidate | Phase::IfErrorOnly
        )
    }

    /// XFetch: whether a request at `now` should refresh this fresh entry early.
    ///
    /// `uniform` is a random number in `(0, 1]`. The rule is `now - delta·β·ln(u) ≥
    /// expiry`: the expected lead grows with the cost of the fetch (`delta`) and with
    /// `β` (1.0 in the paper; larger refreshes earlier). A zero `delta` or `β` never
    /// refreshes early.
    pub fn xfetch_due(&self, now: Instant, beta: f64, uniform: f64) -> bool {
        if beta <= 0.0 || self.fetch_cost.is_zero() || self.phase(now) != Phase::Fresh {
            return false;
        }
        let u = uniform.clamp(f64::MIN_POSITIVE, 1.0);
        let lead = self.fetch_cost.as_secs_f64() * beta * -u.ln();
        lead >= self.ttl_remaining(now).as_secs_f64()
    }
}

/// The stale windows that apply to values, set by the builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaleWindows {
    /// Stale-while-revalidate window.
    pub stale_while_revalidate: Duration,
    /// Stale-if-error window.
    pub stale_if_error: Duration,
    /// Hard cap on staleness, whatever the windows say.
    pub max_staleness: Duration,
}

impl StaleWindows {
    /// No stale serving at all.
    pub const NONE: Self = Self {
        stale_while_revalidate: Duration::ZERO,
        stale_if_error: Duration::ZERO,
        max_staleness: Duration::ZERO,
    };
}

/// Shortens `ttl` by up to `fraction` of itself, using `uniform` in `[0, 1)`: jitter that
/// spreads the expiry of keys stored together, never lengthening a TTL.
pub fn jittered_ttl(ttl: Duration, fraction: f64, uniform: f64) -> Duration {
    if fraction <= 0.0 {
        return ttl;
    }
    let cut = fraction.min(1.0) * uniform.clamp(0.0, 1.0);
    ttl.mul_f64(1.0 - cut)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn windows(swr: u64, sie: u64, max: u64) -> StaleWindows {
        StaleWindows {
            stale_while_revalidate: Duration::from_secs(swr),
            stale_if_error: Duration::from_secs(sie),
            max_staleness: Duration::from_secs(max),
        }
    }

    #[test]
    fn every_phase_edge() {
        let t0 = Instant::now();
        let f = Freshness::new(t0, Duration::from_secs(10), &windows(5, 20, 3600));
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(f.phase(t0), Phase::Fresh);
        assert_eq!(
            f.phase(at(10) - Duration::from_nanos(1)),
            Phase::Fresh,
            "last instant of the TTL"
        );
        assert_eq!(f.phase(at(10)), Phase::Revalidate);
        assert_eq!(f.phase(at(15) - Duration::from_nanos(1)), Phase::Revalidate);
        assert_eq!(f.phase(at(15)), Phase::IfErrorOnly);
        assert_eq!(
            f.phase(at(30) - Duration::from_nanos(1)),
            Phase::IfErrorOnly
        );
        assert_eq!(f.phase(at(30)), Phase::Gone);
        assert_eq!(f.lifetime(), Duration::from_secs(30));
        assert!(f.usable_on_error(at(29)));
        assert!(!f.usable_on_error(at(30)));
    }

    #[test]
    fn max_staleness_caps_both_windows() {
        let t0 = Instant::now();
        let f = Freshness::new(t0, Duration::from_secs(10), &windows(50, 100, 7));
        assert_eq!(f.phase(t0 + Duration::from_secs(16)), Phase::Revalidate);
        assert_eq!(f.phase(t0 + Duration::from_secs(17)), Phase::Gone);
    }

    #[test]
    fn clock_moving_back_is_fresh() {
        let t0 = Instant::now() + Duration::from_secs(100);
        let f = Freshness::new(t0, Duration::from_secs(1), &StaleWindows::NONE);
        assert_eq!(f.phase(t0 - Duration::from_secs(50)), Phase::Fresh);
    }

    #[test]
    fn xfetch_needs_cost_and_beta() {
        let t0 = Instant::now();
        let f = Freshness::new(t0, Duration::from_secs(10), &StaleWindows::NONE);
        let near = t0 + Duration::from_millis(9_999);
        assert!(!f.xfetch_due(near, 1.0, 0.0001), "no cost recorded");
        let f = f.with_fetch_cost(Duration::from_secs(1));
        assert!(!f.xfetch_due(near, 0.0, 0.0001), "beta 0 disables");
        assert!(f.xfetch_due(near, 1.0, 0.5), "1 ms left, lead ~0.69 s");
        assert!(!f.xfetch_due(t0, 1.0, 0.5), "10 s left");
        assert!(
            !f.xfetch_due(t0 + Duration::from_secs(11), 1.0, 0.0001),
            "stale"
        );
    }

    proptest! {
        /// Phases only move forward as time does.
        #[test]
        fn phases_are_monotonic(ttl in 0u64..100, swr in 0u64..100, sie in 0u64..100,
                                max in 0u64..200, a in 0u64..400, b in 0u64..400) {
            let t0 = Instant::now();
            let f = Freshness::new(t0, Duration::from_secs(ttl), &windows(swr, sie, max));
            let (lo, hi) = (a.min(b), a.max(b));
            let rank = |p: Phase| p as u8;
            prop_assert!(rank(f.phase(t0 + Duration::from_secs(lo)))
                <= rank(f.phase(t0 + Duration::from_secs(hi))));
            // Nothing is served past the lifetime, nor past ttl + max staleness.
            let end = ttl + swr.max(sie).min(max);
            prop_assert_eq!(f.phase(t0 + Duration::from_secs(end)), Phase::Gone);
        }

        /// XFetch's empirical rate matches `P = exp(-remaining / (delta·β))`.
        #[test]
        fn xfetch_probability_matches_formula(u in 0.0001f64..1.0) {
            let t0 = Instant::now();
            let f = Freshness::new(t0, Duration::from_secs(10), &StaleWindows::NONE)
                .with_fetch_cost(Duration::from_secs(2));
            let now = t0 + Duration::from_secs(8);
            // Due exactly when -2·ln(u) >= 2, i.e. u <= e^-1.
            prop_assert_eq!(f.xfetch_due(now, 1.0, u), u <= (-1.0f64).exp());
        }

        /// Jitter only shortens, by at most the fraction.
        #[test]
        fn jitter_bounds(ttl in 1u64..10_000, frac in 0.0f64..1.0, u in 0.0f64..1.0) {
            let ttl = Duration::from_millis(ttl);
            let j = jittered_ttl(ttl, frac, u);
            prop_assert!(j <= ttl);
            prop_assert!(j >= ttl.mul_f64(1.0 - frac) - Duration::from_nanos(1));
        }
    }
}
