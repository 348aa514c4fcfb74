//! A simulated flaky upstream: CEX order books, DEX quotes and social search, driven
//! through a scripted scenario (normal, latency spike, error burst, outage, recovery).
//!
//! Seeded: the same seed gives the same faults, so a demo run is reproducible.

use std::fmt;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// The kinds of data source the presets are tuned for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// Latency ×8.
    LatencySpike,
    /// Half the calls fail.
    ErrorBurst,
    /// Every call fails.
    Outage,
    /// Healthy again.
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
}

/// Why a simulated call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamError(pub String);

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "upstream error: {}", self.0)
    }
}

impl std::error::Error for UpstreamError {}

/// What one simulated call will do: how long it takes and whether it fails.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// Time the call takes.
    pub latency: Duration,
    /// Whether it fails.
    pub fails: bool,
}

/// The seeded fault script.
#[derive(Debug)]
pub struct Scenario {
    rng: SmallRng,
}

impl Scenario {
    /// A scenario with `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    /// What a call to `source` does during `phase`.
    pub fn plan(&mut self, source: Source, phase: Phase) -> Plan {
        let base = source.base_latency().as_secs_f64();
        let jitter = self.rng.random_range(0.5..1.5);
        let (factor, error_rate) = match phase {
            Phase::Normal | Phase::Recovery => (1.0, 0.01),
            Phase::LatencySpike => (8.0, 0.02),
            Phase::ErrorBurst => (1.5, 0.5),
            Phase::Outage => (0.2, 1.0),
        };
        Plan {
            latency: Duration::from_secs_f64(base * factor * jitter),
            fails: self.rng.random_bool(error_rate),
        }
    }
}
