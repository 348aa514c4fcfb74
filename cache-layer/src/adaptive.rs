//! Adaptive TTL: each key's TTL moves within `[min, max]` with what the cache observes.
//!
//! Pure arithmetic; the cache keeps one TTL per key (on the entry while it lives, in a
//! bounded side table after it is evicted) and applies it at the next store.
//!
//! Two rules:
//!
//! - [`AdaptiveRule::Popularity`], the classic rule: ×1.2 on every hit, ×0.8 on every miss.
//!   Popular keys keep their values longer; keys that are stored and never read shrink
//!   towards `min`. Cheap, but it confuses "popular" with "stable": a hot, fast-changing
//!   price grows to `max` and is served stale-ish for longer.
//! - [`AdaptiveRule::Volatility`], the better rule: on each refresh, grow (×1.2) when the
//!   upstream returned the value already cached, shrink (×0.8) when it changed. The TTL
//!   tracks how often the data really changes, whatever its popularity. It needs a way to
//!   compare values (an equality function given to the builder).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which rule moves the TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdaptiveRule {
    /// ×`grow` on a hit, ×`shrink` on a miss.
    Popularity,
    /// ×`grow` when a refresh finds the value unchanged, ×`shrink` when it changed.
    Volatility,
}

/// Bounds and factors of an adaptive TTL.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveTtl {
    /// The rule.
    pub rule: AdaptiveRule,
    /// Lowest TTL.
    pub min: Duration,
    /// Highest TTL.
    pub max: Duration,
    /// Factor applied when the key earns a longer TTL (1.2).
    pub grow: f64,
    /// Factor applied when the key earns a shorter TTL (0.8).
    pub shrink: f64,
}

impl AdaptiveTtl {
    /// The rule with the classic factors, ×1.2 and ×0.8.
    pub fn new(rule: AdaptiveRule, min: Duration, max: Duration) -> Self {
        Self {
            rule,
            min,
            max,
            grow: 1.2,
            shrink: 0.8,
        }
    }

    /// `ttl` clamped to `[min, max]`.
    pub fn clamp(&self, ttl: Duration) -> Duration {
        ttl.clamp(self.min, self.max)
    }

    /// The TTL after a hit (Popularity only).
    pub fn on_hit(&self, ttl: Duration) -> Duration {
        match self.rule {
            AdaptiveRule::Popularity => self.scale(ttl, self.grow),
            AdaptiveRule::Volatility => ttl,
        }
    }

    /// The TTL after a miss (Popularity only).
    pub fn on_miss(&self, ttl: Duration) -> Duration {
        match self.rule {
            AdaptiveRule::Popularity => self.scale(ttl, self.shrink),
            AdaptiveRule::Volatility => ttl,
        }
    }

    /// The TTL after a refresh that found the value `changed` or not (Volatility only).
    pub fn on_refresh(&self, ttl: Duration, changed: bool) -> Duration {
        match self.rule {
            AdaptiveRule::Popularity => ttl,
            AdaptiveRule::Volatility if changed => self.scale(ttl, self.shrink),
            AdaptiveRule::Volatility => self.scale(ttl, self.grow),
        }
    }

    fn scale(&self, ttl: Duration, factor: f64) -> Duration {
        // `mul_f64` panics on overflow; `max` bounds the result anyway.
        let secs = (ttl.as_secs_f64() * factor).min(self.max.as_secs_f64());
        self.clamp(Duration::from_secs_f64(secs.max(0.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn popularity_grows_on_hits_shrinks_on_misses() {
        let a = AdaptiveTtl::new(AdaptiveRule::Popularity, secs(2), secs(15));
        assert_eq!(a.on_hit(secs(5)), secs(6));
        assert_eq!(a.on_miss(secs(5)), secs(4));
        assert_eq!(a.on_refresh(secs(5), true), secs(5));
        let mut t = secs(5);
        for _ in 0..50 {
            t = a.on_hit(t);
        }
        assert_eq!(t, secs(15), "capped at max");
        for _ in 0..50 {
            t = a.on_miss(t);
        }
        assert_eq!(t, secs(2), "floored at min");
    }

    #[test]
    fn volatility_follows_changes() {
        let a = AdaptiveTtl::new(AdaptiveRule::Volatility, secs(10), secs(120));
        assert_eq!(a.on_refresh(secs(30), false), secs(36));
        assert_eq!(a.on_refresh(secs(30), true), secs(24));
        assert_eq!(a.on_hit(secs(30)), secs(30));
        assert_eq!(a.on_miss(secs(30)), secs(30));
    }

    proptest! {
        /// Whatever happens, the TTL stays within `[min, max]`.
        #[test]
        fn stays_within_bounds(min in 0u64..100, span in 0u64..1000, start in 0u64..10_000,
                               events in proptest::collection::vec(0u8..4, 0..64)) {
            for rule in [AdaptiveRule::Popularity, AdaptiveRule::Volatility] {
                let a = AdaptiveTtl::new(rule, secs(min), secs(min + span));
                let mut t = a.clamp(secs(start));
                for e in &events {
                    t = match e {
                        0 => a.on_hit(t),
                        1 => a.on_miss(t),
                        2 => a.on_refresh(t, true),
                        _ => a.on_refresh(t, false),
                    };
                    prop_assert!(t >= a.min && t <= a.max);
                }
            }
        }
    }
}
