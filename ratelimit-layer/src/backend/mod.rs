//! Where the per-key state lives: the [`Backend`] trait and its implementations, one file
//! each: `memory` (in process), `redis` (single node or cluster, feature `redis`) and
//! `lease` (local batching over another backend).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::control::ControlStore;
use crate::quota::{Decision, Mode, Quota};

mod lease;
mod memory;
#[cfg(feature = "redis")]
mod redis;

pub use self::lease::Leased;
pub use self::memory::{MemoryBackend, MemoryBackendBuilder};
#[cfg(feature = "redis")]
pub use self::redis::{FailureMode, RedisBackend, RedisBackendBuilder};

/// The backend could not decide (Redis unreachable or answering nonsense).
#[derive(Debug, Clone, thiserror::Error)]
#[error("rate-limit backend unavailable: {message}")]
pub struct BackendUnavailable {
    /// What went wrong.
    pub message: String,
}

/// A backend's answer: ready now (in-process) or later (remote).
#[must_use = "a pending answer does nothing unless polled"]
pub enum Pending<T> {
    /// Answered without waiting.
    Ready(Option<Result<T, BackendUnavailable>>),
    /// Answered by a remote round trip.
    Remote(Pin<Box<dyn Future<Output = Result<T, BackendUnavailable>> + Send>>),
}

impl<T> fmt::Debug for Pending<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ready(_) => "Pending::Ready",
            Self::Remote(_) => "Pending::Remote",
        })
    }
}

impl<T> Pending<T> {
    /// An answer available now.
    pub fn ready(result: Result<T, BackendUnavailable>) -> Self {
        Self::Ready(Some(result))
    }

    /// Takes the answer if it was available without waiting.
    pub fn now_or_never(&mut self) -> Option<Result<T, BackendUnavailable>> {
        match self {
            Self::Ready(r) => r.take(),
            Self::Remote(_) => None,
        }
    }
}

impl<T> Unpin for Pending<T> {}

impl<T> Future for Pending<T> {
    type Output = Result<T, BackendUnavailable>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Self::Ready(r) => Poll::Ready(r.take().expect("Pending polled after completion")),
            Self::Remote(f) => f.as_mut().poll(cx),
        }
    }
}

/// Storage and atomic decision of rate-limit state: where the per-key state lives, in this
/// process ([`MemoryBackend`]) or in Redis (`RedisBackend`, single node or cluster, with a
/// local fallback; feature `redis`).
///
/// A backend answers one question: decide this quota for this key, atomically. The
/// in-process backend answers right away (no allocation, no `Box`); a remote backend
/// answers with a boxed future, which is small next to a network round trip. A custom
/// backend can run the same pure decision, [`quota::decide`](crate::quota::decide), on
/// state it keeps elsewhere.
///
/// `key` is an opaque subject string (any bytes a user may send); implementations must
/// namespace it safely. A decision must be atomic across all windows of `quota`.
pub trait Backend: Send + Sync + fmt::Debug + 'static {
    /// Decides `cost` units for `key` under `quota`.
    fn decide(&self, key: &str, quota: &Quota, cost: u64, mode: Mode) -> Pending<Decision>;

    /// Forgets every window of `key` for `quota` (the key starts fresh).
    fn reset(&self, key: &str, quota: &Quota) -> Pending<()>;

    /// A short name for metrics (`"memory"`, `"redis"`, `"redis-cluster"`).
    fn name(&self) -> &'static str;

    /// Keys held in this process (0 for purely remote state).
    fn tracked_keys(&self) -> u64;

    /// Gives back `units` of `quota` that `key` consumed and did not spend (see
    /// [`quota::refund`](crate::quota::refund)). Default: nothing, which under-admits and
    /// never over-admits.
    fn refund(&self, key: &str, quota: &Quota, units: u64) -> Pending<()> {
        let _ = (key, quota, units);
        Pending::ready(Ok(()))
    }

    /// Returns what this backend holds for the process and has not spent (a
    /// [`Leased`](crate::Leased) backend's unspent units) to the shared store; for a
    /// shutdown. Default: nothing held.
    fn release(&self) -> Pending<()> {
        Pending::ready(Ok(()))
    }

    /// Whether decisions currently come from a local fallback instead of the shared store.
    fn fallback_active(&self) -> bool {
        false
    }

    /// Whether the shared store is down and requests are refused (fail-closed).
    fn unavailable(&self) -> bool {
        false
    }

    /// Where limiters on this backend keep their control state (tiers, custom limits,
    /// usage), when it is shared by a fleet (see [`control`](crate::control)); `None`
    /// (the default) keeps it in each process.
    fn control(&self) -> Option<std::sync::Arc<dyn ControlStore>> {
        None
    }

    /// Told once, when a [`RateLimiter`](crate::RateLimiter) is built on this backend,
    /// the limiter's name: a backend that exports metrics or logs its state changes does
    /// so under it (the `source` label). A backend shared by several limiters keeps the
    /// first name. Default: nothing.
    fn attach(&self, limiter: &str) {
        let _ = limiter;
    }
}
