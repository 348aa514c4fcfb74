//! What can go wrong when starting, flushing or stopping a [`RedisStreamSink`].

use std::fmt;

use reliability_core::error::ConfigError;

#[cfg(doc)]
use super::RedisStreamSink;

/// Why [`RedisStreamSink::start`] could not start its writer task.
#[derive(Debug)]
#[non_exhaustive]
pub enum SinkStartError {
    /// Called outside a tokio runtime: there is nowhere to spawn the writer task. Call it
    /// from inside one, or pass a runtime with [`RedisStreamSink::start_on`].
    NoRuntime,
    /// The options are invalid.
    Config(ConfigError),
}

impl fmt::Display for SinkStartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRuntime => f.write_str(
                "dead-letter sink started outside a tokio runtime (use `start_on` with a runtime handle)",
            ),
            Self::Config(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SinkStartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::NoRuntime => None,
            Self::Config(e) => Some(e),
        }
    }
}

impl From<ConfigError> for SinkStartError {
    fn from(e: ConfigError) -> Self {
        Self::Config(e)
    }
}

/// Why [`RedisStreamSink::flush`] or [`RedisStreamSink::shutdown`] returned before every
/// letter was written. Either way, `undelivered` letters were accepted by the sink and not
/// confirmed written to Redis at that moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlushError {
    /// The deadline passed first (Redis unreachable or slower than the deadline).
    TimedOut {
        /// Letters accepted and not yet written when the deadline passed.
        undelivered: u64,
    },
    /// The writer task is not running any more (the sink was shut down, or the runtime
    /// it ran on stopped).
    Stopped {
        /// Letters accepted and never written.
        undelivered: u64,
    },
}

impl FlushError {
    /// Letters accepted and not written to Redis.
    pub fn undelivered(&self) -> u64 {
        match *self {
            Self::TimedOut { undelivered } | Self::Stopped { undelivered } => undelivered,
        }
    }
}

impl fmt::Display for FlushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TimedOut { undelivered } => write!(
                f,
                "dead-letter flush timed out with {undelivered} letters not written to Redis"
            ),
            Self::Stopped { undelivered } => write!(
                f,
                "dead-letter writer stopped with {undelivered} letters not written to Redis"
            ),
        }
    }
}

impl std::error::Error for FlushError {}
