//! `Cache-Control` read into the directives a cache acts on (RFC 9111 §5.2), for requests
//! and for responses, with the rules for malformed fields.
//!
//! - A directive's **first occurrence** wins over later ones (§4.2.1 allows this or
//!   treating the response as stale), in one field or across several.
//! - Delta-seconds (§1.2.2) may be quoted (`max-age="60"`, which §5.2 asks recipients to
//!   accept); a value that is not all digits makes the directive **invalid**: an invalid
//!   `max-age` or `s-maxage` makes the response stale at once (it is not a freshness
//!   lifetime the sender could have meant), an invalid request directive is ignored.
//! - A value over 2^31 is taken as 2^31 seconds (§1.2.2), so nothing overflows.
//! - Names are case-insensitive; unknown directives are ignored.

use http::HeaderMap;
use http::header::PRAGMA;

use super::super::cache_control;

/// The largest delta-seconds a cache needs to tell apart (§1.2.2): 2^31.
pub(crate) const MAX_DELTA: u64 = 1 << 31;

/// `1*DIGIT` read as seconds, at most [`MAX_DELTA`] (a longer run of digits saturates
/// rather than fails, §1.2.2); `None` for anything else (empty, a sign, a fraction).
pub(crate) fn delta_seconds(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let secs = v
        .iter()
        .try_fold(0u64, |n, b| {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        })
        .unwrap_or(u64::MAX);
    Some(secs.min(MAX_DELTA))
}

/// A delta-seconds directive value: absent, a number of seconds, or present but invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Delta {
    /// The directive is not there.
    #[default]
    Absent,
    /// Seconds, at most [`MAX_DELTA`].
    Secs(u64),
    /// There, with a value that is not delta-seconds (or no value where one is required).
    Invalid,
}

impl Delta {
    fn parse(value: Option<&str>) -> Self {
        value
            .and_then(|v| delta_seconds(v.as_bytes()))
            .map_or(Self::Invalid, Self::Secs)
    }

    /// The seconds, when valid.
    pub(crate) fn secs(self) -> Option<u64> {
        match self {
            Self::Secs(s) => Some(s),
            _ => None,
        }
    }

    fn is_absent(self) -> bool {
        self == Self::Absent
    }
}

/// What a response's `Cache-Control` says (§5.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ResponseDirectives {
    pub(crate) max_age: Delta,
    pub(crate) s_maxage: Delta,
    pub(crate) no_cache: bool,
    pub(crate) no_store: bool,
    pub(crate) private: bool,
    pub(crate) public: bool,
    pub(crate) must_revalidate: bool,
    pub(crate) proxy_revalidate: bool,
    pub(crate) must_understand: bool,
    pub(crate) immutable: bool,
    /// RFC 5861.
    pub(crate) stale_while_revalidate: Delta,
    /// RFC 5861.
    pub(crate) stale_if_error: Delta,
}

impl ResponseDirectives {
    /// Reads every `Cache-Control` field of `headers`. A field that is not visible ASCII
    /// cannot be read, so what it might say (`private`, `no-store`) is assumed: the
    /// response is not stored.
    pub(crate) fn parse(headers: &HeaderMap) -> Self {
        let mut d = Self::default();
        if super::super::policy::unreadable_cache_control(headers) {
            d.no_store = true;
            d.private = true;
        }
        for (name, value) in cache_control(headers) {
            let name = name.to_ascii_lowercase();
            match name.as_str() {
                "max-age" if d.max_age.is_absent() => d.max_age = Delta::parse(value),
                "s-maxage" if d.s_maxage.is_absent() => d.s_maxage = Delta::parse(value),
                "stale-while-revalidate" if d.stale_while_revalidate.is_absent() => {
                    d.stale_while_revalidate = Delta::parse(value);
                }
                "stale-if-error" if d.stale_if_error.is_absent() => {
                    d.stale_if_error = Delta::parse(value);
                }
                // The qualified forms (`no-cache="set-cookie"`, `private="x"`) are taken
                // whole: stricter than the RFC asks, never less safe.
                "no-cache" => d.no_cache = true,
                "no-store" => d.no_store = true,
                "private" => d.private = true,
                "public" => d.public = true,
                "must-revalidate" => d.must_revalidate = true,
                "proxy-revalidate" => d.proxy_revalidate = true,
                "must-understand" => d.must_understand = true,
                "immutable" => d.immutable = true,
                _ => {}
            }
        }
        d
    }
}

/// `max-stale`: absent, any staleness (no value), or up to some seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum MaxStale {
    #[default]
    Absent,
    Any,
    Secs(u64),
}

/// What a request's `Cache-Control` (or, without one, `Pragma: no-cache`) says (§5.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct RequestDirectives {
    pub(crate) max_age: Option<u64>,
    pub(crate) max_stale: MaxStale,
    pub(crate) min_fresh: Option<u64>,
    pub(crate) no_cache: bool,
    pub(crate) no_store: bool,
    pub(crate) only_if_cached: bool,
    /// RFC 5861.
    pub(crate) stale_if_error: Option<u64>,
}

impl RequestDirectives {
    /// Reads every `Cache-Control` field of `headers`; `Pragma: no-cache` counts as
    /// `no-cache` when there is no `Cache-Control` (RFC 9111 §5.4, RFC 7234 §5.4).
    pub(crate) fn parse(headers: &HeaderMap) -> Self {
        let mut d = Self::default();
        let mut seen = (false, false, false, false);
        for (name, value) in cache_control(headers) {
            let name = name.to_ascii_lowercase();
            match name.as_str() {
                "max-age" if !seen.0 => {
                    seen.0 = true;
                    d.max_age = Delta::parse(value).secs();
                }
                "max-stale" if !seen.1 => {
                    seen.1 = true;
                    d.max_stale = match value {
                        None => MaxStale::Any,
                        v => Delta::parse(v)
                            .secs()
                            .map_or(MaxStale::Absent, MaxStale::Secs),
                    };
                }
                "min-fresh" if !seen.2 => {
                    seen.2 = true;
                    d.min_fresh = Delta::parse(value).secs();
                }
                "stale-if-error" if !seen.3 => {
                    seen.3 = true;
                    d.stale_if_error = Delta::parse(value).secs();
                }
                "no-cache" => d.no_cache = true,
                "no-store" => d.no_store = true,
                "only-if-cached" => d.only_if_cached = true,
                _ => {}
            }
        }
        if !headers.contains_key(http::header::CACHE_CONTROL)
            && headers
                .get_all(PRAGMA)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|v| v.trim().eq_ignore_ascii_case("no-cache"))
        {
            d.no_cache = true;
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(cc: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in cc {
            h.append("cache-control", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_first_occurrence_wins_across_fields() {
        let d = ResponseDirectives::parse(&headers(&["max-age=10, max-age=20", "max-age=30"]));
        assert_eq!(d.max_age, Delta::Secs(10));
        let d = ResponseDirectives::parse(&headers(&["s-maxage=5", "S-MaxAge=50"]));
        assert_eq!(d.s_maxage, Delta::Secs(5));
    }

    #[test]
    fn quoted_numbers_are_read_and_garbage_is_invalid() {
        let d = ResponseDirectives::parse(&headers(&["max-age=\"60\""]));
        assert_eq!(d.max_age, Delta::Secs(60));
        for bad in [
            "max-age=-1",
            "max-age=1.5",
            "max-age=",
            "max-age",
            "max-age=abc",
        ] {
            let d = ResponseDirectives::parse(&headers(&[bad]));
            assert_eq!(d.max_age, Delta::Invalid, "{bad}");
        }
    }

    #[test]
    fn overflowing_ages_saturate_at_two_to_the_31() {
        let d = ResponseDirectives::parse(&headers(&["max-age=99999999999999999999999999"]));
        assert_eq!(d.max_age, Delta::Secs(MAX_DELTA));
        let d = ResponseDirectives::parse(&headers(&["max-age=2147483649"]));
        assert_eq!(d.max_age, Delta::Secs(MAX_DELTA));
    }

    #[test]
    fn request_directives_and_pragma() {
        let d = RequestDirectives::parse(&headers(&["max-stale, min-fresh=5, only-if-cached"]));
        assert_eq!(d.max_stale, MaxStale::Any);
        assert_eq!(d.min_fresh, Some(5));
        assert!(d.only_if_cached);
        let mut h = HeaderMap::new();
        h.insert("pragma", "no-cache".parse().unwrap());
        assert!(RequestDirectives::parse(&h).no_cache);
        // A Cache-Control field takes precedence over Pragma.
        h.insert("cache-control", "max-age=5".parse().unwrap());
        assert!(!RequestDirectives::parse(&h).no_cache);
    }

    proptest! {
        /// Any digits parse to their value capped at 2^31; nothing panics on any field.
        #[test]
        fn delta_seconds_never_overflow(digits in "[0-9]{1,40}", junk in "[ -~]{0,40}") {
            let expected = digits.parse::<u128>().map_or(MAX_DELTA, |n| n.min(u128::from(MAX_DELTA)) as u64);
            let d = ResponseDirectives::parse(&headers(&[&format!("max-age={digits}")]));
            prop_assert_eq!(d.max_age, Delta::Secs(expected));
            if let Ok(v) = junk.parse() {
                let mut h = HeaderMap::new();
                h.insert("cache-control", v);
                let _ = ResponseDirectives::parse(&h);
                let _ = RequestDirectives::parse(&h);
            }
        }
    }
}
