//! How a response was produced, and its RFC 9211 `Cache-Status` form.

use std::fmt::Write as _;
use std::time::Duration;

/// What the cache did for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Served from the cache, fresh.
    Hit {
        /// Freshness left.
        ttl_remaining: Duration,
    },
    /// Served from the cache, stale, while one background refresh runs
    /// (stale-while-revalidate).
    Stale {
        /// How long past its TTL the entry is.
        staleness: Duration,
    },
    /// The upstream failed; a stale copy was served instead (stale-if-error).
    StaleIfError {
        /// How long past its TTL the entry is.
        staleness: Duration,
    },
    /// Went upstream.
    Miss {
        /// Whether the answer was stored.
        stored: bool,
        /// Whether this request joined another's upstream call.
        collapsed: bool,
    },
    /// Not cacheable: no key, an invalid key, or credentials the key does not include.
    Bypass,
}

impl CacheStatus {
    /// The `cache.status` field of the layer's span: `hit`, `stale`, `miss` or `bypass`.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::Hit { .. } => "hit",
            Self::Stale { .. } | Self::StaleIfError { .. } => "stale",
            Self::Miss { .. } => "miss",
            Self::Bypass => "bypass",
        }
    }

    /// Records this status and the call's outcome on the layer's span.
    pub(crate) fn record(&self, span: &tracing::Span, ok: bool) {
        span.record("cache.status", self.label());
        span.record("outcome", if ok { "ok" } else { "error" });
    }

    /// Whether the answer came from the cache.
    pub fn is_hit(&self) -> bool {
        matches!(
            self,
            Self::Hit { .. } | Self::Stale { .. } | Self::StaleIfError { .. }
        )
    }

    /// The `Cache-Status` member of a cache named `name` (RFC 9211), e.g.
    /// `edge; hit; ttl=12`, `edge; fwd=miss; stored`, `edge; fwd=stale; ttl=-3;
    /// detail=stale-if-error`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_layer::CacheStatus;
    ///
    /// let hit = CacheStatus::Hit { ttl_remaining: Duration::from_millis(12_400) };
    /// assert_eq!(hit.header_value("edge"), "edge; hit; ttl=12");
    /// let miss = CacheStatus::Miss { stored: true, collapsed: false };
    /// assert_eq!(miss.header_value("edge"), "edge; fwd=miss; stored");
    /// ```
    pub fn header_value(&self, name: &str) -> String {
        let mut s = String::with_capacity(name.len() + 40);
        s.push_str(name);
        match *self {
            Self::Hit { ttl_remaining } => {
                let _ = write!(s, "; hit; ttl={}", ttl_remaining.as_secs());
            }
            Self::Stale { staleness } => {
                let _ = write!(
                    s,
                    "; hit; ttl=-{}; detail=stale-while-revalidate",
                    staleness.as_secs()
                );
            }
            Self::StaleIfError { staleness } => {
                let _ = write!(
                    s,
                    "; fwd=stale; ttl=-{}; detail=stale-if-error",
                    staleness.as_secs()
                );
            }
            Self::Miss { stored, collapsed } => {
                s.push_str("; fwd=miss");
                if stored {
                    s.push_str("; stored");
                }
                if collapsed {
                    s.push_str("; collapsed");
                }
            }
            Self::Bypass => s.push_str("; fwd=bypass"),
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_forms() {
        let d = Duration::from_secs(3);
        assert_eq!(
            CacheStatus::Stale { staleness: d }.header_value("c"),
            "c; hit; ttl=-3; detail=stale-while-revalidate"
        );
        assert_eq!(
            CacheStatus::StaleIfError { staleness: d }.header_value("c"),
            "c; fwd=stale; ttl=-3; detail=stale-if-error"
        );
        assert_eq!(
            CacheStatus::Miss {
                stored: false,
                collapsed: true
            }
            .header_value("c"),
            "c; fwd=miss; collapsed"
        );
        assert_eq!(CacheStatus::Bypass.header_value("c"), "c; fwd=bypass");
        assert!(!CacheStatus::Bypass.is_hit());
    }
}
