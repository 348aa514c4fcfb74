//! [`FleetError`]: why a breaker could not join its fleet.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use reliability_core::error::ConfigError;
use reliability_core::redis::RedisSetupError;

/// [`Breaker::share`](crate::Breaker::share) could not link the breaker to its fleet. The
/// breaker itself is untouched and keeps working on its own.
#[derive(Debug)]
#[non_exhaustive]
pub enum FleetError {
    /// Not called from within a tokio runtime, which the link's background tasks need.
    NoRuntime,
    /// The Redis configuration is invalid, or Redis refused or could not be reached.
    Redis(RedisSetupError),
    /// Redis accepted the connections but did not confirm the subscription in time.
    Timeout {
        /// The time allowed: twice the configuration's `connect_timeout` plus
        /// `response_timeout`.
        after: Duration,
    },
    /// The subscription closed before Redis confirmed it.
    SubscriptionEnded,
}

impl fmt::Display for FleetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRuntime => f.write_str(
                "breaker fleet link needs a tokio runtime: call `share` from within one",
            ),
            Self::Redis(e) => write!(f, "breaker fleet link: {e}"),
            Self::Timeout { after } => write!(
                f,
                "breaker fleet link: redis did not confirm the subscription within {:?}",
                after
            ),
            Self::SubscriptionEnded => {
                f.write_str("breaker fleet link: the subscription closed before it was confirmed")
            }
        }
    }
}

impl StdError for FleetError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Self::Redis(e) => Some(e),
            _ => None,
        }
    }
}

impl From<RedisSetupError> for FleetError {
    fn from(e: RedisSetupError) -> Self {
        Self::Redis(e)
    }
}

impl From<ConfigError> for FleetError {
    fn from(e: ConfigError) -> Self {
        Self::Redis(RedisSetupError::Config(e))
    }
}

impl From<redis::RedisError> for FleetError {
    fn from(e: redis::RedisError) -> Self {
        Self::Redis(RedisSetupError::Redis(e))
    }
}
