//! The engine's decisions, pure: what an entry held in a tier is good for, whether a hit
//! starts a refresh, what to do with an upstream answer, and the TTL and stale windows it
//! is stored under.
//!
//! No I/O, no clock, no randomness of their own: `now` and random draws are arguments,
//! so each rule is tested here on its own, and the engine only carries them out.

use std::time::Duration;

use reliability_core::clock::Instant;

use crate::adaptive::{AdaptiveRule, AdaptiveTtl};
use crate::freshness::{Freshness, Phase, StaleWindows};
use crate::status::CacheStatus;

use super::settings::Settings;

/// What to do with an upstream answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreAction {
    /// Store it, and share it with the callers that joined the call.
    Store,
    /// Do not store it; still share it with joined callers.
    Skip,
    /// Do not store it and do not share it: each joined caller makes its own call
    /// (a private or `no-store` HTTP response).
    DoNotShare,
    /// It is a failure in disguise (an HTTP 5xx): stale-if-error applies; not stored.
    Failure,
}

/// The storage decision for one upstream answer: the cache's defaults, which an
/// integration (HTTP `Cache-Control`) may override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// What to do.
    pub action: StoreAction,
    /// A TTL for this answer (HTTP `max-age`); `None` uses the cache's (adaptive) TTL.
    pub ttl: Option<Duration>,
    /// Stale windows for this answer; `None` uses the cache's.
    pub windows: Option<StaleWindows>,
    /// Whether it is a negative answer ("not found"), stored under the negative TTL.
    pub negative: bool,
    /// Whether shared tiers (Redis, disk) may hold it.
    pub shared: bool,
    /// Tags for invalidation.
    pub tags: Vec<String>,
}

/// Why an upstream call was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A caller is waiting for it.
    Request,
    /// A background refresh (stale-while-revalidate or XFetch).
    Refresh,
    /// An explicit write.
    Write,
}

/// What an entry held in a tier is good for at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Serving {
    /// Serve it now: fresh ([`CacheStatus::Hit`]) or within stale-while-revalidate
    /// ([`CacheStatus::Stale`]).
    Now(CacheStatus),
    /// Only in place of a failed upstream call (stale-if-error).
    IfUpstreamFails,
    /// Nothing.
    Gone,
}

/// What an entry with `freshness` is good for at `now`.
#[inline]
pub(crate) fn serving(freshness: &Freshness, now: Instant) -> Serving {
    match freshness.phase(now) {
        Phase::Fresh => Serving::Now(CacheStatus::Hit {
            ttl_remaining: freshness.ttl_remaining(now),
        }),
        Phase::Revalidate => Serving::Now(CacheStatus::Stale {
            staleness: now.saturating_duration_since(freshness.stale_at()),
        }),
        Phase::IfErrorOnly => Serving::IfUpstreamFails,
        Phase::Gone => Serving::Gone,
    }
}

/// Whether a hit served with `status` starts a background refresh: always when stale
/// (stale-while-revalidate), else when XFetch draws it. `uniform` (a draw in `(0, 1]`) is
/// called only when XFetch is on and the hit is fresh, so the hit path draws no random
/// number otherwise.
#[inline]
pub(crate) fn refresh_due(
    status: &CacheStatus,
    freshness: &Freshness,
    now: Instant,
    xfetch_beta: f64,
    uniform: impl FnOnce() -> f64,
) -> bool {
    match status {
        CacheStatus::Stale { .. } => true,
        _ => xfetch_beta > 0.0 && freshness.xfetch_due(now, xfetch_beta, uniform()),
    }
}

/// The directive for an upstream answer: the cache's defaults (failure, negative and
/// `store_if` hooks, tags), then the integration's override.
pub(crate) fn directive<V>(s: &Settings<V>, value: &V) -> Directive {
    let negative = s.hooks.is_negative.as_ref().is_some_and(|f| f(value));
    let action = if s.hooks.is_failure.as_ref().is_some_and(|f| f(value)) {
        StoreAction::Failure
    } else if (negative && s.negative_ttl.is_none())
        || !s.hooks.store_if.as_ref().is_none_or(|f| f(value))
    {
        StoreAction::Skip
    } else {
        StoreAction::Store
    };
    let base = Directive {
        action,
        ttl: None,
        windows: None,
        negative,
        shared: true,
        tags: s.hooks.tags.as_ref().map(|f| f(value)).unwrap_or_default(),
    };
    match &s.hooks.directive {
        Some(f) => f(value, base),
        None => base,
    }
}

/// The TTL an answer is stored under, before jitter: the negative TTL for a negative
/// answer, else the answer's own (HTTP `max-age`), else the adaptive TTL (`adaptive` is
/// called only then), else the cache's.
pub(crate) fn store_ttl<V>(
    s: &Settings<V>,
    d: &Directive,
    adaptive: impl FnOnce(&AdaptiveTtl) -> Duration,
) -> Duration {
    if d.negative {
        s.negative_ttl.unwrap_or(s.ttl)
    } else if let Some(t) = d.ttl {
        t
    } else if let Some(a) = &s.adaptive {
        adaptive(a)
    } else {
        s.ttl
    }
}

/// The adaptive TTL of an answer: the key's last TTL (`known`, else `default`), clamped,
/// then moved by the rule. Popularity shrinks it on a miss (hits grow it at lookup);
/// Volatility moves it on a refresh or a miss by whether the value `changed` (called only
/// for Volatility; `None` when there is nothing to compare); explicit writes keep it.
pub(crate) fn adaptive_ttl(
    a: &AdaptiveTtl,
    known: Option<Duration>,
    default: Duration,
    origin: Origin,
    changed: impl FnOnce() -> Option<bool>,
) -> Duration {
    let base = a.clamp(known.unwrap_or(default));
    match (a.rule, origin) {
        (AdaptiveRule::Popularity, Origin::Request) => a.on_miss(base),
        (_, Origin::Write) | (AdaptiveRule::Popularity, Origin::Refresh) => base,
        (AdaptiveRule::Volatility, _) => changed().map_or(base, |c| a.on_refresh(base, c)),
    }
}

/// The stale windows an answer is stored under: none for a negative answer, else the
/// answer's own (HTTP `stale-while-revalidate`, `stale-if-error`), else the cache's.
pub(crate) fn stale_windows<V>(s: &Settings<V>, d: &Directive) -> StaleWindows {
    if d.negative {
        StaleWindows::NONE
    } else {
        d.windows.unwrap_or(s.windows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CacheConfig;
    use crate::engine::settings::Hooks;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn settings(adaptive: Option<AdaptiveTtl>) -> Settings<u32> {
        let mut s = Settings::new(&CacheConfig::default(), Hooks::default());
        s.adaptive = adaptive;
        s.negative_ttl = Some(secs(3));
        s
    }

    fn plain() -> Directive {
        Directive {
            action: StoreAction::Store,
            ttl: None,
            windows: None,
            negative: false,
            shared: true,
            tags: Vec::new(),
        }
    }

    #[test]
    fn serving_follows_the_phases() {
        let t0 = Instant::now();
        let windows = StaleWindows {
            stale_while_revalidate: secs(5),
            stale_if_error: secs(20),
            max_staleness: secs(3600),
        };
        let f = Freshness::new(t0, secs(10), &windows);
        assert_eq!(
            serving(&f, t0 + secs(4)),
            Serving::Now(CacheStatus::Hit {
                ttl_remaining: secs(6)
            })
        );
        assert_eq!(
            serving(&f, t0 + secs(12)),
            Serving::Now(CacheStatus::Stale { staleness: secs(2) })
        );
        assert_eq!(serving(&f, t0 + secs(16)), Serving::IfUpstreamFails);
        assert_eq!(serving(&f, t0 + secs(30)), Serving::Gone);
    }

    #[test]
    fn stale_hits_always_refresh_fresh_ones_only_by_xfetch() {
        let t0 = Instant::now();
        let f = Freshness::new(t0, secs(10), &StaleWindows::NONE).with_fetch_cost(secs(5));
        let stale = CacheStatus::Stale { staleness: secs(1) };
        let fresh = CacheStatus::Hit {
            ttl_remaining: secs(1),
        };
        let never = || -> f64 { panic!("no draw without XFetch") };
        assert!(refresh_due(&stale, &f, t0, 0.0, never));
        assert!(!refresh_due(&fresh, &f, t0 + secs(9), 0.0, never));
        // One second left, five seconds of fetch cost: due for most draws.
        assert!(refresh_due(&fresh, &f, t0 + secs(9), 1.0, || 0.5));
        assert!(!refresh_due(&fresh, &f, t0, 1.0, || 1.0));
    }

    #[test]
    fn ttl_precedence_negative_then_answer_then_adaptive_then_default() {
        let a = AdaptiveTtl::new(AdaptiveRule::Popularity, secs(1), secs(100));
        let s = settings(Some(a));
        let none = |_: &AdaptiveTtl| -> Duration { panic!("not adaptive") };
        let negative = Directive {
            negative: true,
            ttl: Some(secs(50)),
            ..plain()
        };
        assert_eq!(store_ttl(&s, &negative, none), secs(3));
        let own = Directive {
            ttl: Some(secs(50)),
            ..plain()
        };
        assert_eq!(store_ttl(&s, &own, none), secs(50));
        assert_eq!(store_ttl(&s, &plain(), |_| secs(7)), secs(7));
        assert_eq!(store_ttl(&settings(None), &plain(), none), secs(60));
    }

    #[test]
    fn adaptive_rules_by_origin() {
        let pop = AdaptiveTtl::new(AdaptiveRule::Popularity, secs(1), secs(100));
        let vol = AdaptiveTtl::new(AdaptiveRule::Volatility, secs(1), secs(100));
        let unasked = || -> Option<bool> { panic!("Popularity compares nothing") };
        let t = |a, origin, changed: Option<bool>| {
            adaptive_ttl(&a, Some(secs(10)), secs(60), origin, || changed)
        };
        assert_eq!(
            adaptive_ttl(&pop, Some(secs(10)), secs(60), Origin::Request, unasked),
            secs(8)
        );
        assert_eq!(
            adaptive_ttl(&pop, None, secs(500), Origin::Refresh, unasked),
            secs(100),
            "an unknown key starts at the default, clamped"
        );
        assert_eq!(t(pop, Origin::Write, None), secs(10));
        assert_eq!(t(vol, Origin::Refresh, Some(false)), secs(12));
        assert_eq!(t(vol, Origin::Request, Some(true)), secs(8));
        assert_eq!(t(vol, Origin::Refresh, None), secs(10));
        assert_eq!(t(vol, Origin::Write, Some(true)), secs(10));
    }

    #[test]
    fn negative_answers_have_no_stale_windows() {
        let s = settings(None);
        let own = StaleWindows {
            stale_while_revalidate: secs(9),
            ..StaleWindows::NONE
        };
        let d = Directive {
            windows: Some(own),
            ..plain()
        };
        assert_eq!(stale_windows(&s, &d), own);
        assert_eq!(stale_windows(&s, &plain()), s.windows);
        let negative = Directive {
            negative: true,
            ..d
        };
        assert_eq!(stale_windows(&s, &negative), StaleWindows::NONE);
    }
}
