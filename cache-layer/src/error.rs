//! Errors of the cache layer.
//!
//! Inner errors pass through unchanged to the caller that made the upstream call. Callers
//! that joined its call (single-flight) get a [`SharedError`] whose `source()` is that
//! same error, so `find_in_chain` and friends see through it.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use tower::BoxError;

/// A value too large to store under the validation limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("value of {size} bytes exceeds the cache limit of {limit} bytes")]
pub struct ValueTooLarge {
    /// The value's size.
    pub size: usize,
    /// The limit in force.
    pub limit: usize,
}

/// A key rejected by the validation limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidKey {
    /// Longer than allowed.
    #[error("cache key of {len} bytes exceeds the limit of {limit} bytes")]
    TooLong {
        /// The key's length.
        len: usize,
        /// The limit in force.
        limit: usize,
    },
    /// Holds a character the mode forbids.
    #[error("cache key holds a character the validation mode forbids")]
    BadCharacter,
}

/// Why an explicit write was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PutError {
    /// The key is invalid.
    #[error(transparent)]
    Key(#[from] InvalidKey),
    /// The value is too large.
    #[error(transparent)]
    Value(#[from] ValueTooLarge),
}

/// The upstream error of a call this request joined (single-flight): every joined caller
/// sees the same error.
#[derive(Clone)]
pub struct SharedError {
    inner: Arc<BoxError>,
}

impl SharedError {
    pub(crate) fn new(err: BoxError) -> Self {
        Self {
            inner: Arc::new(err),
        }
    }

    /// The upstream error.
    pub fn upstream(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &**self.inner
    }
}

impl fmt::Debug for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedError").field(&self.inner).finish()
    }
}

impl fmt::Display for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl StdError for SharedError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&**self.inner)
    }
}

/// What [`CacheHandle::flush`](crate::CacheHandle::flush) or
/// [`CacheHandle::shutdown`](crate::CacheHandle::shutdown) could not write: one entry per
/// lower tier that fell short, nearest tier first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cache not fully flushed: {}", list(.tiers))]
pub struct FlushError {
    /// The tiers that fell short, and how.
    pub tiers: Vec<TierFlushError>,
}

fn list(tiers: &[TierFlushError]) -> String {
    tiers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// How one lower tier (`"l2"`, `"l3"`) fell short of a flush.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TierFlushError {
    /// Everything queued before the call was carried out, but `lost` writes or
    /// invalidations were lost since the previous flush: they failed in the tier (Redis
    /// unreachable, a disk error) or were dropped from a full queue. Each is also counted
    /// in [`CacheStats`](crate::CacheStats) (`l2_errors`, `l2_queue_overflow`, ...).
    #[error("{tier}: {lost} writes lost since the previous flush (failed or dropped)")]
    Lost {
        /// The tier.
        tier: &'static str,
        /// Writes and invalidations lost.
        lost: u64,
    },
    /// The deadline passed first: `pending` operations were still queued.
    #[error("{tier}: deadline passed with {pending} writes still queued")]
    Deadline {
        /// The tier.
        tier: &'static str,
        /// Operations still queued at the deadline (lost if the cache then stops).
        pending: usize,
    },
    /// The tier's background writer is not running: it was shut down, or the tokio
    /// runtime it ran on is gone. Whatever it had queued is lost.
    #[error("{tier}: its background writer has stopped")]
    Stopped {
        /// The tier.
        tier: &'static str,
    },
}
