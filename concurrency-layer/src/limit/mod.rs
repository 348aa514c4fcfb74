//! Adaptive concurrency limits: the limit follows the upstream's latency and failures.
//!
//! A fixed bulkhead needs someone to know the upstream's capacity, and that capacity moves
//! (a deploy, a noisy neighbour, a failover to a smaller region). An adaptive limit finds
//! it the way TCP finds a link's bandwidth: it admits more calls while latency stays flat,
//! and fewer as soon as calls start to queue (latency grows) or fail. Little's law says why
//! latency is the signal: past the upstream's capacity `C`, every extra call in flight only
//! waits, so RTT grows as `in_flight / C` while throughput stays put.
//!
//! Three algorithms, each a pure state machine that is handed one [`Sample`] per window
//! and returns the new limit (no clock, no I/O, no locks):
//!
//! | module | signal | from |
//! |---|---|---|
//! | [`aimd`] | failures and an RTT threshold | TCP Reno's additive increase, multiplicative decrease |
//! | [`vegas`] | estimated queue from `min RTT / RTT` | TCP Vegas (Brakmo & Peterson, 1994) |
//! | [`gradient2`] | ratio of a long to a short RTT average | Netflix concurrency-limits `Gradient2Limit` |
//!
//! Samples are not fed one by one: a [`SampleWindow`] averages the RTTs of the calls that
//! finished in a window (at least `min_samples` calls and `duration` long), as Netflix's
//! `WindowedLimit` does, so the limit moves about once per window, not once per call.
//! [`Controller`] ties window, algorithm and the RTT figures of the snapshot together;
//! it takes `now` as an argument, so the tests drive it with simulated time.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use concurrency_layer::limit::{Algorithm, Controller, SampleWindow};
//! use concurrency_layer::config::{AlgorithmConfig, VegasConfig};
//! use reliability_core::clock::Instant;
//!
//! let algorithm = Algorithm::new(&AlgorithmConfig::Vegas(VegasConfig::default()), 20);
//! let mut controller = Controller::new(algorithm, SampleWindow::new(Duration::from_millis(10), 1));
//! let mut now = Instant::now();
//! for _ in 0..50 {
//!     now += Duration::from_millis(10);
//!     // An upstream that answers in 10 ms whatever the load: the limit grows.
//!     controller.on_sample(now, Duration::from_millis(10), controller.limit(), false);
//! }
//! assert!(controller.limit() > 20);
//! ```

pub mod aimd;
pub mod gradient2;
pub mod vegas;
mod window;

use std::time::Duration;

use reliability_core::clock::Instant;

use crate::config::AlgorithmConfig;

pub use window::SampleWindow;

/// What one window of finished calls says about the upstream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// The mean round-trip time of the window's calls.
    pub rtt: Duration,
    /// The most calls that were in flight when one of the window's calls finished.
    pub in_flight: usize,
    /// Whether any call of the window failed (Netflix's "did drop").
    pub dropped: bool,
}

/// Bounds and smoothing every algorithm shares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bounds {
    pub(crate) min: f64,
    pub(crate) max: f64,
    pub(crate) smoothing: f64,
}

impl Bounds {
    /// The bounds of a config's `min_limit`, `max_limit` and `smoothing`.
    pub(crate) fn new(min_limit: usize, max_limit: usize, smoothing: f64) -> Self {
        Self {
            min: min_limit as f64,
            max: max_limit as f64,
            smoothing,
        }
    }

    /// Where a limit that starts at `initial` stands: within the bounds.
    pub(crate) fn start(&self, initial: usize) -> f64 {
        (initial as f64).clamp(self.min, self.max)
    }

    /// `current` moved a `smoothing` share of the way to `target`, then clamped to
    /// `[min, max]`: the exponential smoothing of Netflix's limits.
    #[inline]
    pub(crate) fn step(&self, current: f64, target: f64) -> f64 {
        let next = current + self.smoothing * (target - current);
        next.clamp(self.min, self.max)
    }
}

/// One of the three algorithms, picked by configuration.
#[derive(Debug, Clone)]
pub enum Algorithm {
    /// See [`aimd`].
    Aimd(aimd::Aimd),
    /// See [`vegas`].
    Vegas(vegas::Vegas),
    /// See [`gradient2`].
    Gradient2(gradient2::Gradient2),
}

impl Algorithm {
    /// The algorithm `config` names, starting at `initial_limit` (clamped to its bounds).
    pub fn new(config: &AlgorithmConfig, initial_limit: usize) -> Self {
        match config {
            AlgorithmConfig::Aimd(c) => Self::Aimd(aimd::Aimd::new(c, initial_limit)),
            AlgorithmConfig::Vegas(c) => Self::Vegas(vegas::Vegas::new(c, initial_limit)),
            AlgorithmConfig::Gradient2(c) => {
                Self::Gradient2(gradient2::Gradient2::new(c, initial_limit))
            }
        }
    }

    /// The algorithm's name, as the snapshot shows it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Aimd(_) => "aimd",
            Self::Vegas(_) => "vegas",
            Self::Gradient2(_) => "gradient2",
        }
    }

    /// The current limit, at least 1.
    pub fn limit(&self) -> usize {
        match self {
            Self::Aimd(a) => a.limit(),
            Self::Vegas(a) => a.limit(),
            Self::Gradient2(a) => a.limit(),
        }
    }

    /// Folds one window's sample in and returns the new limit.
    pub fn update(&mut self, sample: &Sample) -> usize {
        match self {
            Self::Aimd(a) => a.update(sample),
            Self::Vegas(a) => a.update(sample),
            Self::Gradient2(a) => a.update(sample),
        }
    }
}

/// Weight of the newest sample in the smoothed RTT (the EWMA of TCP's SRTT, RFC 6298).
const SRTT_GAIN: f64 = 0.125;

/// RTT figures of a limiter, for its snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RttStats {
    /// The smallest RTT of any call so far: the no-load latency.
    pub min: Option<Duration>,
    /// An exponentially weighted mean of every call's RTT (gain 1/8, as TCP's SRTT).
    pub smoothed: Option<Duration>,
    /// The mean RTT of the last closed window.
    pub window: Option<Duration>,
}

impl RttStats {
    fn record(&mut self, rtt: Duration) {
        self.min = Some(self.min.map_or(rtt, |m| m.min(rtt)));
        self.smoothed = Some(match self.smoothed {
            None => rtt,
            Some(s) => s.mul_f64(1.0 - SRTT_GAIN) + rtt.mul_f64(SRTT_GAIN),
        });
    }
}

/// An algorithm fed through a [`SampleWindow`], with the RTT figures of the snapshot.
#[derive(Debug, Clone)]
pub struct Controller {
    algorithm: Algorithm,
    window: SampleWindow,
    rtt: RttStats,
}

impl Controller {
    /// `algorithm`, updated once per closed `window`.
    pub fn new(algorithm: Algorithm, window: SampleWindow) -> Self {
        Self {
            algorithm,
            window,
            rtt: RttStats::default(),
        }
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.algorithm.limit()
    }

    /// The algorithm.
    pub fn algorithm(&self) -> &Algorithm {
        &self.algorithm
    }

    /// RTT figures so far.
    pub fn rtt(&self) -> RttStats {
        self.rtt
    }

    /// One call finished at `now` after `rtt`, with `in_flight` calls in flight (itself
    /// included), failed or not. Returns the new limit when a window closed.
    pub fn on_sample(
        &mut self,
        now: Instant,
        rtt: Duration,
        in_flight: usize,
        dropped: bool,
    ) -> Option<usize> {
        self.rtt.record(rtt);
        let sample = self.window.record(now, rtt, in_flight, dropped)?;
        self.rtt.window = Some(sample.rtt);
        Some(self.algorithm.update(&sample))
    }
}

/// `max(1, log10(limit))`: the step of Vegas's increase and decrease (Netflix's
/// `Log10RootFunction`), kept fractional so small limits still move.
#[inline]
pub(crate) fn log10_step(limit: f64) -> f64 {
    limit.log10().max(1.0)
}

/// The integer limit of a fractional estimate: floored, at least 1.
#[inline]
pub(crate) fn whole(limit: f64) -> usize {
    // `as` saturates for out-of-range floats, and NaN becomes 0, then 1.
    (limit.floor() as usize).max(1)
}

/// A window of calls for the algorithms' tests.
#[cfg(test)]
pub(crate) fn sample(rtt_ms: u64, in_flight: usize, dropped: bool) -> Sample {
    Sample {
        rtt: Duration::from_millis(rtt_ms),
        in_flight,
        dropped,
    }
}
