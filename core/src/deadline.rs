//! Request deadlines: the instant by which the caller needs an answer, carried by the
//! request, and gRPC's `grpc-timeout` header that sends it across a hop.
//!
//! A timeout says "this attempt may take 2 s"; a deadline says "the caller gives up at
//! 12:00:02". Layers that send more than one copy of a request (a hedge, a retry) must
//! stop at the deadline, not restart a timeout per copy: a [`Deadline`] is the one
//! instant they all read. It lives in an `http::Request`'s extensions, or in any request
//! type that implements [`HasDeadline`].
//!
//! When the deadline passes, the answer is [`DeadlineExceeded`]: a
//! [`Refusal`] of kind [`TimedOut`](FailureKind::TimedOut), so HTTP mode answers
//! 504 and gRPC mode `DEADLINE_EXCEEDED` from the [failure table](crate::failure).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use reliability_core::deadline::{format_grpc_timeout, parse_grpc_timeout, Deadline};
//! use tokio::time::Instant;
//!
//! assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
//! assert_eq!(parse_grpc_timeout("123456789S"), None); // more than 8 digits
//! assert_eq!(format_grpc_timeout(Duration::from_millis(250)), "250000u");
//!
//! let now = Instant::now();
//! let deadline = Deadline::after(now, Duration::from_secs(2));
//! assert_eq!(deadline.remaining(now + Duration::from_millis(500)), Duration::from_millis(1_500));
//! assert_eq!(deadline.remaining(now + Duration::from_secs(3)), Duration::ZERO);
//! ```

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::answer::Refusal;
use crate::failure::{Failure, FailureKind};

/// The header gRPC sends a call's remaining time in (gRPC over HTTP/2, "Timeout").
pub const GRPC_TIMEOUT: &str = "grpc-timeout";

/// The instant by which the caller needs an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline(Instant);

impl Deadline {
    /// The deadline at `instant`.
    pub const fn at(instant: Instant) -> Self {
        Self(instant)
    }

    /// The deadline `budget` after `now`; a budget too large for the clock is capped at
    /// about 30 years, which no caller waits for.
    pub fn after(now: Instant, budget: Duration) -> Self {
        let far = Duration::from_secs(30 * 365 * 24 * 3600);
        Self(
            now.checked_add(budget)
                .or_else(|| now.checked_add(far))
                .unwrap_or(now),
        )
    }

    /// The instant.
    pub const fn instant(self) -> Instant {
        self.0
    }

    /// The time left at `now`; zero once the deadline has passed.
    pub fn remaining(self, now: Instant) -> Duration {
        self.0.saturating_duration_since(now)
    }

    /// Whether the deadline has passed at `now` (an answer at the deadline is late).
    pub fn is_past(self, now: Instant) -> bool {
        now >= self.0
    }

    /// The earlier of two deadlines: a hop may shorten the caller's deadline, never
    /// lengthen it.
    #[must_use]
    pub fn min(self, other: Self) -> Self {
        if other.0 < self.0 { other } else { self }
    }
}

/// A request type that carries a [`Deadline`].
///
/// Implemented for `http::Request<B>` (feature `http`): the deadline sits in its
/// extensions, and [`wire_timeout`](Self::wire_timeout) reads `grpc-timeout`.
pub trait HasDeadline {
    /// The request's deadline, if it has one.
    fn deadline(&self) -> Option<Deadline>;

    /// Gives the request `deadline`, replacing any it had.
    fn set_deadline(&mut self, deadline: Deadline);

    /// The remaining time the request brought from the previous hop (`grpc-timeout`), if
    /// any and if well-formed.
    fn wire_timeout(&self) -> Option<Duration> {
        None
    }
}

#[cfg(feature = "http")]
impl<B> HasDeadline for http::Request<B> {
    fn deadline(&self) -> Option<Deadline> {
        self.extensions().get::<Deadline>().copied()
    }

    fn set_deadline(&mut self, deadline: Deadline) {
        self.extensions_mut().insert(deadline);
    }

    fn wire_timeout(&self) -> Option<Duration> {
        let value = self.headers().get(GRPC_TIMEOUT)?.to_str().ok()?;
        parse_grpc_timeout(value)
    }
}

/// Writes the time `req` has left into its `grpc-timeout` header, for the next hop: the
/// lesser of its [`Deadline`]'s remaining time at `now` and the header already there. A
/// request with neither is left as it is.
///
/// ```
/// use std::time::Duration;
/// use reliability_core::deadline::{set_grpc_timeout, Deadline, GRPC_TIMEOUT};
/// use tokio::time::Instant;
///
/// let now = Instant::now();
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(Deadline::after(now, Duration::from_millis(800)));
/// set_grpc_timeout(&mut req, now + Duration::from_millis(300));
/// assert_eq!(req.headers()[GRPC_TIMEOUT], "500000u");
///
/// let mut plain = http::Request::new(());
/// set_grpc_timeout(&mut plain, now);
/// assert!(plain.headers().get(GRPC_TIMEOUT).is_none());
/// ```
#[cfg(feature = "http")]
pub fn set_grpc_timeout<B>(req: &mut http::Request<B>, now: Instant) {
    let left = req.deadline().map(|d| d.remaining(now));
    let Some(timeout) = [left, req.wire_timeout()].into_iter().flatten().min() else {
        return;
    };
    if let Ok(value) = http::HeaderValue::from_str(&format_grpc_timeout(timeout)) {
        req.headers_mut().insert(GRPC_TIMEOUT, value);
    }
}

/// The largest `TimeoutValue` gRPC allows: eight ASCII digits.
const MAX_TIMEOUT_VALUE: u64 = 99_999_999;

/// Parses a `grpc-timeout` value: one to eight ASCII digits and a unit, `H` (hours), `M`
/// (minutes), `S` (seconds), `m` (milliseconds), `u` (microseconds) or `n` (nanoseconds).
/// Anything else is `None`.
///
/// ```
/// use std::time::Duration;
/// use reliability_core::deadline::parse_grpc_timeout;
///
/// assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
/// assert_eq!(parse_grpc_timeout("5n"), Some(Duration::from_nanos(5)));
/// assert_eq!(parse_grpc_timeout("10"), None);
/// assert_eq!(parse_grpc_timeout("-1S"), None);
/// ```
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at_checked(value.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Formats `timeout` as a `grpc-timeout` value: in the finest unit whose value fits in
/// eight digits, rounded **up** (a hop must not cut the caller's time short by rounding).
/// A timeout longer than 99,999,999 hours is sent as that.
///
/// ```
/// use std::time::Duration;
/// use reliability_core::deadline::{format_grpc_timeout, parse_grpc_timeout};
///
/// assert_eq!(format_grpc_timeout(Duration::from_nanos(1_500)), "1500n");
/// assert_eq!(format_grpc_timeout(Duration::from_secs(200)), "200000m");
/// let t = Duration::from_nanos(123_456_789_123);
/// assert!(parse_grpc_timeout(&format_grpc_timeout(t)).unwrap() >= t);
/// ```
pub fn format_grpc_timeout(timeout: Duration) -> String {
    const UNITS: [(u128, char); 6] = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ];
    let nanos = timeout.as_nanos();
    for (unit_nanos, unit) in UNITS {
        let value = nanos.div_ceil(unit_nanos);
        if value <= u128::from(MAX_TIMEOUT_VALUE) {
            return format!("{value}{unit}");
        }
    }
    format!("{MAX_TIMEOUT_VALUE}H")
}

/// The request's deadline passed before an answer came.
///
/// Its source is a [`Failure`] of kind [`TimedOut`](FailureKind::TimedOut): 504 over HTTP,
/// `DEADLINE_EXCEEDED` over gRPC, and not marked "do not retry" (a later call with a fresh
/// deadline may succeed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadlineExceeded {
    failure: Failure,
}

impl DeadlineExceeded {
    /// The error.
    pub const fn new() -> Self {
        Self {
            failure: Failure::new(FailureKind::TimedOut),
        }
    }
}

impl Default for DeadlineExceeded {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline exceeded")
    }
}

impl StdError for DeadlineExceeded {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.failure)
    }
}

impl Refusal for DeadlineExceeded {
    fn failure(&self) -> Failure {
        self.failure
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::is_do_not_retry;
    use proptest::prelude::*;

    #[test]
    fn units_and_rejects() {
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(
            parse_grpc_timeout("99999999H"),
            Some(Duration::from_secs(99_999_999 * 3600))
        );
        for bad in [
            "",
            "m",
            "1",
            "1x",
            "1.5S",
            "+1S",
            " 1S",
            "123456789n",
            "1é",
            "é",
        ] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn exceeded_is_a_retryable_timeout() {
        let err: tower::BoxError = DeadlineExceeded::new().into();
        let failure = Failure::of(&*err);
        assert_eq!(failure.kind(), FailureKind::TimedOut);
        assert_eq!(failure.kind().http_status_code(), 504);
        assert_eq!(failure.kind().grpc_code(), tonic::Code::DeadlineExceeded);
        assert!(!is_do_not_retry(&*err));
    }

    #[test]
    fn http_requests_carry_deadlines_and_wire_timeouts() {
        let mut req = http::Request::get("/")
            .header(GRPC_TIMEOUT, "150m")
            .body(())
            .unwrap();
        assert_eq!(req.deadline(), None);
        assert_eq!(req.wire_timeout(), Some(Duration::from_millis(150)));
        let d = Deadline::at(Instant::now());
        req.set_deadline(d);
        assert_eq!(req.deadline(), Some(d));
    }

    proptest! {
        /// Formatting never shortens a timeout, stays within 8 digits, and parses back.
        #[test]
        fn format_round_trips_without_shortening(nanos in 0u64..u64::MAX) {
            let t = Duration::from_nanos(nanos);
            let s = format_grpc_timeout(t);
            prop_assert!(s.len() <= 9);
            let back = parse_grpc_timeout(&s).unwrap();
            prop_assert!(back >= t);
            // Rounding up costs less than one unit of the chosen precision; a unit is chosen
            // only when the next finer one overflows 8 digits, so that is under 1/99,999
            // of the value.
            prop_assert!(back - t <= t / 99_999 + Duration::from_nanos(1));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,12}") {
            let _ = parse_grpc_timeout(&s);
        }
    }
}
