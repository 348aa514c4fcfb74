//! Time, injectable.
//!
//! Every layer reads time through a [`Clock`] so tests control it. The default,
//! [`TokioClock`], reads `tokio::time::Instant`, which follows `tokio::time::pause()` and
//! `advance()`; [`ManualClock`] is moved by hand, for the pure cores and property tests.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use reliability_core::clock::{Clock, ManualClock};
//!
//! let clock = ManualClock::new();
//! let start = clock.now();
//! clock.advance(Duration::from_secs(5));
//! assert_eq!(clock.now() - start, Duration::from_secs(5));
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

pub use tokio::time::Instant;

/// A source of monotonic and wall-clock time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Monotonic time, for windows, waits and latencies.
    fn now(&self) -> Instant;

    /// Wall-clock time, for timestamps shown to people or stored (dead letters, snapshots).
    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock shared by the clones of a layer.
pub type SharedClock = Arc<dyn Clock>;

/// The default clock: tokio's `Instant`, which follows a paused test runtime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokioClock;

impl Clock for TokioClock {
    #[inline]
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// The default clock as a [`SharedClock`].
pub fn default_clock() -> SharedClock {
    Arc::new(TokioClock)
}

/// A clock that only moves when told to. Clones share the same time.
#[derive(Clone)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

struct ManualInner {
    base: Instant,
    wall_base: SystemTime,
    offset_nanos: AtomicU64,
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("elapsed", &self.elapsed())
            .finish()
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ManualClock {
    /// A clock standing at the present moment.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(ManualInner {
                base: Instant::now(),
                wall_base: SystemTime::now(),
                offset_nanos: AtomicU64::new(0),
            }),
        }
    }

    /// Moves time forward by `by`.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.inner.offset_nanos.fetch_add(nanos, Ordering::SeqCst);
    }

    /// How far the clock has moved since it was made.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.inner.offset_nanos.load(Ordering::SeqCst))
    }

    /// This clock as a [`SharedClock`].
    pub fn shared(&self) -> SharedClock {
        Arc::new(self.clone())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.inner.base + self.elapsed()
    }

    fn wall(&self) -> SystemTime {
        self.inner.wall_base + self.elapsed()
    }
}

/// The fast time source of hot paths that read the clock on every call (an SLA monitor times
/// each call twice, a rate limiter's in-process backend reads it per decision).
///
/// [`quanta`] reads the CPU's time-stamp counter and scales it, several times cheaper than
/// `clock_gettime`; it is deaf to `tokio::time::pause`, so tests (and stacks that want every
/// layer on one clock) inject a [`Clock`] instead.
///
/// ```
/// use reliability_core::clock::{ManualClock, Ticker};
/// use std::time::Duration;
///
/// let manual = ManualClock::new();
/// let ticker = Ticker::new(Some(manual.shared()));
/// manual.advance(Duration::from_micros(3));
/// assert_eq!(ticker.now_ns(), 3_000);
/// assert!(Ticker::new(None).now_ns() < 1_000_000_000);
/// ```
#[cfg(feature = "fast-clock")]
pub use ticker::Ticker;

#[cfg(feature = "fast-clock")]
mod ticker {
    use std::fmt;
    use std::time::SystemTime;

    use super::{Instant, SharedClock};

    /// A monotonic nanosecond count from either source.
    pub enum Ticker {
        /// The CPU's time-stamp counter, scaled by `quanta` (calibrated against the OS clock).
        Fast {
            /// The calibrated counter.
            clock: quanta::Clock,
            /// A raw counter reading: scaling only the difference saves a conversion a read.
            origin_raw: u64,
        },
        /// An injected [`Clock`](super::Clock) (tokio's, which follows `tokio::time::pause`, or a
        /// [`ManualClock`](super::ManualClock)).
        Injected {
            /// The clock.
            clock: SharedClock,
            /// Its reading when the ticker was made.
            origin: Instant,
        },
    }

    impl fmt::Debug for Ticker {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                Self::Fast { .. } => f.write_str("Ticker::Fast"),
                Self::Injected { clock, .. } => {
                    f.debug_tuple("Ticker::Injected").field(clock).finish()
                }
            }
        }
    }

    impl Ticker {
        /// The injected clock if given, else the fast counter.
        pub fn new(injected: Option<SharedClock>) -> Self {
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

        /// Nanoseconds since the ticker was made; saturates after ~584 years.
        #[inline]
        pub fn now_ns(&self) -> u64 {
            match self {
                Self::Fast { clock, origin_raw } => clock.delta_as_nanos(*origin_raw, clock.raw()),
                Self::Injected { clock, origin } => {
                    let elapsed = clock.now().saturating_duration_since(*origin);
                    u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
                }
            }
        }

        /// Wall-clock time, for snapshots and events.
        pub fn wall(&self) -> SystemTime {
            match self {
                Self::Fast { .. } => SystemTime::now(),
                Self::Injected { clock, .. } => clock.wall(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let clock = TokioClock;
        let t0 = clock.now();
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(clock.now() - t0, Duration::from_secs(3600));
    }

    #[test]
    fn manual_clock_clones_share_time() {
        let a = ManualClock::new();
        let b = a.clone();
        let w0 = a.wall();
        b.advance(Duration::from_millis(1500));
        assert_eq!(a.elapsed(), Duration::from_millis(1500));
        assert_eq!(
            a.wall().duration_since(w0).unwrap(),
            Duration::from_millis(1500)
        );
    }
}
