//! The monitor's time source: a TSC clock on the hot path, or an injected clock in tests.
//!
//! Every call is timed twice (start and end), so the clock is a large share of the
//! recording cost. [`quanta`] reads the CPU's time-stamp counter and scales it, which is
//! several times cheaper than `clock_gettime`; it is the default. Tests (and stacks that
//! want every layer on one clock) inject a [`reliability_core::clock::Clock`] instead:
//! `TokioClock` follows `tokio::time::pause()`/`advance()`, `ManualClock` is moved by hand.

use std::fmt;
use std::time::SystemTime;

use reliability_core::clock::{Instant, SharedClock};

/// Monotonic nanoseconds since the monitor was built, from either source.
pub(crate) enum Ticker {
    Fast {
        clock: quanta::Clock,
        /// A raw counter reading: scaling only the difference saves a conversion a read.
        origin_raw: u64,
    },
    Injected {
        clock: SharedClock,
        origin: Instant,
    },
}

impl fmt::Debug for Ticker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fast { .. } => f.write_str("Ticker::Fast"),
            Self::Injected { clock, .. } => f.debug_tuple("Ticker::Injected").field(clock).finish(),
        }
    }
}

impl Ticker {
    pub(crate) fn new(injected: Option<SharedClock>) -> Self {
        match injected {
            Some(clock) => {
                let origin = clock.now();
                Self::Injected { clock, origin }
            }
            None => {
                let clock = quanta::Clock::new();
                let origin_raw = clock.raw();
                Self::Fast { clock, origin_raw }
            }
        }
    }

    /// Nanoseconds since the monitor began; saturates after ~584 years.
    #[inline]
    pub(crate) fn now_ns(&self) -> u64 {
        match self {
            Self::Fast { clock, origin_raw } => clock.delta_as_nanos(*origin_raw, clock.raw()),
            Self::Injected { clock, origin } => {
                let elapsed = clock.now().saturating_duration_since(*origin);
                u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
            }
        }
    }

    /// Wall-clock time, for snapshots and events.
    pub(crate) fn wall(&self) -> SystemTime {
        match self {
            Self::Fast { .. } => SystemTime::now(),
            Self::Injected { clock, .. } => clock.wall(),
        }
    }
}
