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
    /// Served from the cache, stale, because the request allowed it (`max-stale`).
    StaleAllowed {
        /// How long past its freshness lifetime the entry is.
        staleness: Duration,
    },
    /// Went upstream for a reason RFC 9211 names (RFC 9111 mode), with what came back.
    Forward {
        /// Why the request was forwarded.
        fwd: Forwarded,
        /// The status the upstream answered, when it differs from the one served
        /// (a 304 that freshened a stored response, a 5xx replaced by a stale copy).
        fwd_status: Option<u16>,
        /// Whether the answer (or the freshened entry) was stored.
        stored: bool,
        /// Freshness left of what was served from the store, when it was.
        ttl: Option<Duration>,
        /// Whether the request waited for another one's upstream call to the same URI
        /// and was then answered from what that call stored.
        collapsed: bool,
    },
}

/// The `fwd` parameter of RFC 9211: why a request went upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarded {
    /// Nothing was stored for the target URI.
    UriMiss,
    /// Responses were stored for the URI, none for this request's `Vary` values.
    VaryMiss,
    /// A stored response was stale (or had to be revalidated) and was checked upstream.
    Stale,
    /// The request asked for it (`no-cache`, `max-age`, `min-fresh`).
    Request,
    /// The method is not cached (`POST`, `PUT`...).
    Method,
    /// The cache does not handle this request (credentials, a malformed target).
    Bypass,
}

impl Forwarded {
    fn token(self) -> &'static str {
        match self {
            Self::UriMiss => "uri-miss",
            Self::VaryMiss => "vary-miss",
            Self::Stale => "stale",
            Self::Request => "request",
            Self::Method => "method",
            Self::Bypass => "bypass",
        }
    }
}

impl CacheStatus {
    /// The `cache.status` field of the layer's span: `hit`, `stale`, `miss` or `bypass`.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::Hit { .. } => "hit",
            Self::Stale { .. } | Self::StaleIfError { .. } | Self::StaleAllowed { .. } => "stale",
            Self::Forward {
                fwd: Forwarded::Stale,
                fwd_status: Some(304),
                ..
            } => "revalidated",
            Self::Miss { .. } | Self::Forward { .. } => "miss",
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
            Self::Hit { .. }
                | Self::Stale { .. }
                | Self::StaleIfError { .. }
                | Self::StaleAllowed { .. }
                | Self::Forward { ttl: Some(_), .. }
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
            Self::StaleAllowed { staleness } => {
                let _ = write!(s, "; hit; ttl=-{}; detail=max-stale", staleness.as_secs());
            }
            Self::Forward {
                fwd,
                fwd_status,
                stored,
                ttl,
                collapsed,
            } => {
                let _ = write!(s, "; fwd={}", fwd.token());
                if let Some(code) = fwd_status {
                    let _ = write!(s, "; fwd-status={code}");
                }
                if stored {
                    s.push_str("; stored");
                }
                if collapsed {
                    s.push_str("; collapsed");
                }
                if let Some(ttl) = ttl {
                    let _ = write!(s, "; ttl={}", ttl.as_secs());
                }
            }
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
        let revalidated = CacheStatus::Forward {
            fwd: Forwarded::Stale,
            fwd_status: Some(304),
            stored: true,
            ttl: Some(Duration::from_secs(60)),
            collapsed: false,
        };
        assert_eq!(
            revalidated.header_value("c"),
            "c; fwd=stale; fwd-status=304; stored; ttl=60"
        );
        assert!(revalidated.is_hit());
        assert_eq!(revalidated.label(), "revalidated");
        assert!(!CacheStatus::Bypass.is_hit());
    }
}
