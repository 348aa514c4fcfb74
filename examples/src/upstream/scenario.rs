//! The scripted scenario: the data sources, the phases a demo run goes through, and the
//! faults each phase injects.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The kinds of data source the presets are tuned for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A centralized exchange's order books.
    Cex,
    /// A DEX aggregator's quotes.
    Dex,
    /// A social API's search.
    Social,
}

impl Source {
    /// All three.
    pub const ALL: [Source; 3] = [Source::Cex, Source::Dex, Source::Social];

    /// Typical latency of a healthy call.
    pub fn base_latency(self) -> Duration {
        match self {
            Source::Cex => Duration::from_millis(20),
            Source::Dex => Duration::from_millis(120),
            Source::Social => Duration::from_millis(250),
        }
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Cex => "cex",
            Source::Dex => "dex",
            Source::Social => "social",
        })
    }
}

/// A phase of the scripted scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Healthy: fast, rare errors.
    Normal,
    /// Every call four times slower, one in 25 thirty-one times slower.
    LatencySpike,
    /// Half the calls fail.
    ErrorBurst,
    /// Every call fails.
    Outage,
    /// Healthy again, without even the background errors.
    Recovery,
}

impl Phase {
    /// The phase at `progress` (0..1) through the scenario.
    pub fn at(progress: f64) -> Phase {
        match progress {
            p if p < 0.25 => Phase::Normal,
            p if p < 0.40 => Phase::LatencySpike,
            p if p < 0.55 => Phase::ErrorBurst,
            p if p < 0.70 => Phase::Outage,
            _ => Phase::Recovery,
        }
    }

    /// The phase's name.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Normal => "normal",
            Phase::LatencySpike => "latency spike",
            Phase::ErrorBurst => "error burst",
            Phase::Outage => "outage",
            Phase::Recovery => "recovery",
        }
    }

    /// The faults this phase injects.
    pub fn faults(self) -> FaultSettings {
        let healthy = FaultSettings::HEALTHY;
        match self {
            Phase::Normal => FaultSettings {
                error_rate: 0.01,
                ..healthy
            },
            // Error-free, so the status windows refill with successes only and a run's end
            // shows the recovery: with 1 % of errors, a window of a few dozen calls would
            // often hold one, under a 99 % "degraded" threshold.
            Phase::Recovery => healthy,
            // Every call four times slower, and a tail: one call in 25 thirty-one times
            // slower (a CEX order book in 620 ms instead of 20), the tail a p95 hedge cuts.
            Phase::LatencySpike => FaultSettings {
                error_rate: 0.02,
                delay_factor: 3.0,
                slow_rate: 0.04,
                slow_factor: 30.0,
                ..healthy
            },
            Phase::ErrorBurst => FaultSettings {
                error_rate: 0.5,
                delay_factor: 0.5,
                ..healthy
            },
            // Nothing answers: every call fails, after a fifth of its usual latency (the
            // chaos layer's delay: no call reaches the healthy upstream).
            Phase::Outage => FaultSettings {
                error_rate: 1.0,
                outage: true,
                delay_factor: 0.2,
                ..healthy
            },
        }
    }
}

/// Faults to inject: the body of `POST /admin/upstream/faults`.
///
/// `latency_factor` is the healthy upstream's own pace; everything else is injected by the
/// sources' chaos layers: `error_rate` (or all calls, in an `outage`) fail with a 503, and
/// the delays of a latency spike are added to the calls' own latency, in multiples of
/// each source's base latency (a fifth of a DEX quote's 120 ms is not a fifth of a CEX
/// order book's 20 ms).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultSettings {
    /// Share of calls that fail with a 503, 0..=1.
    pub error_rate: f64,
    /// The healthy upstream's pace: its latency multiplier (1 = normal, 0.1 = ten times
    /// faster), 0..=100.
    pub latency_factor: f64,
    /// Every call fails at once.
    pub outage: bool,
    /// Latency added to every call, in multiples of the source's base latency, 0..=100.
    pub delay_factor: f64,
    /// Share of calls that get `slow_factor` instead of `delay_factor` (the slow tail of
    /// a spike), 0..=1.
    pub slow_rate: f64,
    /// Latency added to a slow call, in multiples of the source's base latency, 0..=100.
    pub slow_factor: f64,
}

impl Default for FaultSettings {
    fn default() -> Self {
        Phase::Normal.faults()
    }
}

impl FaultSettings {
    /// No fault at all: the healthy upstream at its normal pace.
    pub const HEALTHY: FaultSettings = FaultSettings {
        error_rate: 0.0,
        latency_factor: 1.0,
        outage: false,
        delay_factor: 0.0,
        slow_rate: 0.0,
        slow_factor: 0.0,
    };

    /// Clamps hostile values into range.
    pub fn sanitized(self) -> Self {
        let clamp = |v: f64, max: f64, otherwise: f64| {
            if v.is_finite() {
                v.clamp(0.0, max)
            } else {
                otherwise
            }
        };
        Self {
            error_rate: clamp(self.error_rate, 1.0, 0.0),
            latency_factor: clamp(self.latency_factor, 100.0, 1.0),
            outage: self.outage,
            delay_factor: clamp(self.delay_factor, 100.0, 0.0),
            slow_rate: clamp(self.slow_rate, 1.0, 0.0),
            slow_factor: clamp(self.slow_factor, 100.0, 0.0),
        }
    }
}
