//! Freshness and age of a stored response (RFC 9111 §4.2): pure arithmetic, `now` as an
//! argument, wall-clock times in whole seconds where HTTP dates are.

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use http::header::{AGE, DATE, EXPIRES, LAST_MODIFIED};

use super::directives::{Delta, MAX_DELTA, ResponseDirectives, delta_seconds};

/// Whether the cache is shared (a proxy, a CDN, a server-side cache: `s-maxage` and
/// `proxy-revalidate` apply, `private` responses are not stored) or private (one user's:
/// `private` responses are stored, `s-maxage` is ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheRole {
    /// A cache that serves several users (RFC 9111 §1).
    Shared,
    /// A cache that serves one user.
    Private,
}

/// When the request that produced a stored response was sent and its answer received
/// (§4.2.3's `request_time` and `response_time`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    pub(crate) request_time: SystemTime,
    pub(crate) response_time: SystemTime,
    /// The count of URI invalidations when the request was sent: an answer to a request
    /// that an invalidation of its URI overtook is not stored.
    pub(crate) epoch: u64,
}

/// Statuses that are heuristically cacheable (RFC 9110 §15.1).
pub(crate) const HEURISTIC: [u16; 12] =
    [200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501];

/// The share of the time since `Last-Modified` taken as a heuristic lifetime (§4.2.2's
/// "typical setting of this fraction might be 10%").
const HEURISTIC_FRACTION: u32 = 10;

/// The longest heuristic lifetime: a day, so that a very old `Last-Modified` cannot make a
/// response fresh for years.
const HEURISTIC_CAP: Duration = Duration::from_secs(24 * 3600);

/// How long a response is fresh, and whether that came from the sender or a heuristic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lifetime {
    /// `s-maxage`, `max-age` or `Expires` (an invalid one gives zero).
    Explicit(Duration),
    /// §4.2.2: a share of the time since `Last-Modified`.
    Heuristic(Duration),
    /// Nothing to go by: stale at once.
    None,
}

impl Lifetime {
    pub(crate) fn duration(self) -> Duration {
        match self {
            Self::Explicit(d) | Self::Heuristic(d) => d,
            Self::None => Duration::ZERO,
        }
    }
}

/// An HTTP date header, when there is exactly one field and it parses (IMF-fixdate and
/// the two obsolete formats, RFC 9110 §5.6.7).
pub(crate) fn date_header(headers: &HeaderMap, name: http::HeaderName) -> Option<SystemTime> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    httpdate::parse_http_date(first.to_str().ok()?.trim()).ok()
}

/// The freshness lifetime of a response (§4.2.1) for a cache of `role`.
pub(crate) fn lifetime(
    status: u16,
    headers: &HeaderMap,
    cc: &ResponseDirectives,
    role: CacheRole,
    response_time: SystemTime,
) -> Lifetime {
    let explicit = |d: Delta| Lifetime::Explicit(Duration::from_secs(d.secs().unwrap_or(0)));
    if role == CacheRole::Shared && cc.s_maxage != Delta::Absent {
        return explicit(cc.s_maxage);
    }
    if cc.max_age != Delta::Absent {
        return explicit(cc.max_age);
    }
    let date = date_header(headers, DATE).unwrap_or(response_time);
    if headers.contains_key(EXPIRES) {
        // Several Expires fields, or one that is not a date (such as "0"): already expired
        // (RFC 9111 §5.3).
        let expires = date_header(headers, EXPIRES);
        let left = expires.and_then(|e| e.duration_since(date).ok());
        return Lifetime::Explicit(left.unwrap_or(Duration::ZERO).min(max_delta()));
    }
    if !HEURISTIC.contains(&status) && !cc.public {
        return Lifetime::None;
    }
    match date_header(headers, LAST_MODIFIED).and_then(|lm| date.duration_since(lm).ok()) {
        Some(since) => Lifetime::Heuristic((since / HEURISTIC_FRACTION).min(HEURISTIC_CAP)),
        None => Lifetime::None,
    }
}

fn max_delta() -> Duration {
    Duration::from_secs(MAX_DELTA)
}

/// The `Age` header's value (capped at 2^31), zero when absent. Anything but one field
/// of one `1*DIGIT` value (a list, two fields, a sign, a fraction, a parameter) cannot be
/// trusted to be the age the sender meant, so it makes the response stale at once: it is
/// read as 2^31 seconds.
pub(crate) fn age_header(headers: &HeaderMap) -> Duration {
    let mut fields = headers.get_all(AGE).iter();
    let Some(first) = fields.next() else {
        return Duration::ZERO;
    };
    match delta_seconds(first.as_bytes().trim_ascii()) {
        Some(secs) if fields.next().is_none() => Duration::from_secs(secs),
        _ => max_delta(),
    }
}

/// The current age of a stored response at `now` (§4.2.3):
///
/// ```text
/// apparent_age          = max(0, response_time - date_value)
/// response_delay        = response_time - request_time
/// corrected_age_value   = age_value + response_delay
/// corrected_initial_age = max(apparent_age, corrected_age_value)
/// resident_time         = now - response_time
/// current_age           = corrected_initial_age + resident_time
/// ```
///
/// Clock steps backwards count as zero, never as a negative age.
pub(crate) fn current_age(headers: &HeaderMap, timing: Timing, now: SystemTime) -> Duration {
    let date = date_header(headers, DATE).unwrap_or(timing.response_time);
    let since = |later: SystemTime, earlier: SystemTime| {
        later.duration_since(earlier).unwrap_or(Duration::ZERO)
    };
    let apparent = since(timing.response_time, date);
    let delay = since(timing.response_time, timing.request_time);
    let corrected_initial = apparent.max(age_header(headers).saturating_add(delay));
    corrected_initial.saturating_add(since(now, timing.response_time))
}

/// Whole seconds, as the `Age` header carries them (rounded down).
pub(crate) fn whole_secs(d: Duration) -> u64 {
    d.as_secs().min(MAX_DELTA)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn headers(pairs: &[(&str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn date(t: SystemTime) -> String {
        httpdate::fmt_http_date(t)
    }

    fn life(h: &HeaderMap, role: CacheRole) -> Lifetime {
        lifetime(200, h, &ResponseDirectives::parse(h), role, at(0))
    }

    #[test]
    fn s_maxage_wins_in_a_shared_cache_only() {
        let h = headers(&[("cache-control", "max-age=10, s-maxage=100".into())]);
        assert_eq!(
            life(&h, CacheRole::Shared),
            Lifetime::Explicit(Duration::from_secs(100))
        );
        assert_eq!(
            life(&h, CacheRole::Private),
            Lifetime::Explicit(Duration::from_secs(10))
        );
    }

    #[test]
    fn max_age_wins_over_expires() {
        let h = headers(&[
            ("cache-control", "max-age=10".into()),
            ("date", date(at(0))),
            ("expires", date(at(1000))),
        ]);
        assert_eq!(
            life(&h, CacheRole::Shared),
            Lifetime::Explicit(Duration::from_secs(10))
        );
    }

    #[test]
    fn expires_counts_from_date_and_bad_expires_is_expired() {
        let h = headers(&[("date", date(at(0))), ("expires", date(at(600)))]);
        assert_eq!(
            life(&h, CacheRole::Shared),
            Lifetime::Explicit(Duration::from_secs(600))
        );
        let h = headers(&[("date", date(at(0))), ("expires", "0".into())]);
        assert_eq!(
            life(&h, CacheRole::Shared),
            Lifetime::Explicit(Duration::ZERO)
        );
        let h = headers(&[("date", date(at(600))), ("expires", date(at(0)))]);
        assert_eq!(
            life(&h, CacheRole::Shared),
            Lifetime::Explicit(Duration::ZERO)
        );
        // Conflicting Expires fields: expired.
        let h = headers(&[
            ("date", date(at(0))),
            ("expires", date(at(600))),
            ("expires", date(at(1200))),
        ]);
        assert_eq!(
            life(&h, CacheRole::Shared),
            Lifetime::Explicit(Duration::ZERO)
        );
    }

    #[test]
    fn heuristic_is_a_tenth_of_the_time_since_last_modified() {
        let h = headers(&[("date", date(at(10_000))), ("last-modified", date(at(0)))]);
        assert_eq!(
            life(&h, CacheRole::Shared),
            Lifetime::Heuristic(Duration::from_secs(1000))
        );
        // Not for a status that is not heuristically cacheable.
        let cc = ResponseDirectives::parse(&h);
        assert_eq!(
            lifetime(302, &h, &cc, CacheRole::Shared, at(0)),
            Lifetime::None
        );
        // Capped at a day.
        let h = headers(&[
            ("date", date(at(100 * 24 * 3600))),
            ("last-modified", date(at(0))),
        ]);
        assert_eq!(
            life(&h, CacheRole::Shared),
            Lifetime::Heuristic(HEURISTIC_CAP)
        );
    }

    /// RFC 9111 §4.2.3 worked through: a response dated 10 s before it was received,
    /// carrying `Age: 30`, after a 2 s round trip, held 100 s.
    #[test]
    fn current_age_follows_section_4_2_3() {
        let timing = Timing {
            request_time: at(98),
            response_time: at(100),
            epoch: 0,
        };
        let h = headers(&[("date", date(at(90))), ("age", "30".into())]);
        // apparent 10, corrected age value 30 + 2 = 32, initial 32, resident 100.
        assert_eq!(current_age(&h, timing, at(200)), Duration::from_secs(132));
        // Without Age the apparent age counts: 10 + 100.
        let h = headers(&[("date", date(at(90)))]);
        assert_eq!(current_age(&h, timing, at(200)), Duration::from_secs(110));
        // A Date in the future (a fast origin clock) is no negative age: 2 + 100.
        let h = headers(&[("date", date(at(500)))]);
        assert_eq!(current_age(&h, timing, at(200)), Duration::from_secs(102));
    }

    #[test]
    fn malformed_age_makes_the_response_stale_and_huge_age_saturates() {
        for bad in ["-10", "1.5", "abc", "10 20", "", "0, 0", "7200;foo=bar"] {
            let h = headers(&[("age", bad.into())]);
            assert_eq!(age_header(&h), max_delta(), "{bad:?}");
        }
        let h = headers(&[("age", "0".into()), ("age", "0".into())]);
        assert_eq!(age_header(&h), max_delta(), "two fields");
        assert_eq!(
            age_header(&headers(&[("age", " 30 ".into())])),
            Duration::from_secs(30)
        );
        let h = headers(&[("age", "999999999999999999999999".into())]);
        assert_eq!(age_header(&h), Duration::from_secs(MAX_DELTA));
    }

    proptest! {
        /// The age never goes down as time passes, is at least the resident time, and
        /// never panics on any timing, even one with clocks out of order.
        #[test]
        fn age_grows_with_time(
            req in 0u64..1_000_000, delay in 0u64..1000, date_off in 0u64..2_000_000,
            age in 0u64..1_000_000_000_000u64, t1 in 0u64..1_000_000, t2 in 0u64..1_000_000,
        ) {
            let timing = Timing { request_time: at(req), response_time: at(req + delay), epoch: 0 };
            let h = headers(&[("date", date(at(date_off))), ("age", age.to_string())]);
            let (a, b) = (t1.min(t2), t1.max(t2));
            let (early, late) = (at(req + delay + a), at(req + delay + b));
            let age_early = current_age(&h, timing, early);
            let age_late = current_age(&h, timing, late);
            prop_assert!(age_late >= age_early);
            prop_assert_eq!(age_late - age_early, Duration::from_secs(b - a));
            prop_assert!(age_early >= Duration::from_secs(a));
            prop_assert!(age_early >= Duration::from_secs(age.min(MAX_DELTA)));
        }

        /// A freshness lifetime is never longer than 2^31 s, whatever the headers say.
        #[test]
        fn lifetimes_are_bounded(max_age in "[0-9]{1,30}", expires in 0u64..u64::from(u32::MAX)) {
            let h = headers(&[("cache-control", format!("max-age={max_age}"))]);
            prop_assert!(life(&h, CacheRole::Shared).duration() <= max_delta());
            let h = headers(&[("date", date(at(0))), ("expires", date(at(expires)))]);
            prop_assert!(life(&h, CacheRole::Shared).duration() <= max_delta());
        }
    }
}
