//! Errors of the semantic cache.
//!
//! The inner service's error passes through unchanged to the caller that made the upstream
//! call, unless other callers joined that call (single-flight): then every one of them,
//! the caller included, gets the same [`CoalescedError`], whose `source()` is the upstream
//! error, so `find_in_chain` and retry classifiers still see it.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use tower::BoxError;

use crate::vector::VectorError;

/// The embedder could not produce a usable vector.
///
/// The layer never fails a request for this: it counts the failure and calls the upstream
/// without semantic lookup. The error reaches users who call
/// [`EmbeddingCache::embed`](crate::EmbeddingCache::embed) directly.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddingError {
    /// The embedder returned an error.
    #[error("embedder failed: {0}")]
    Embedder(#[source] BoxError),
    /// The embedder returned another number of vectors than texts.
    #[error("embedder returned {got} vectors for {expected} texts")]
    WrongCount {
        /// Texts sent.
        expected: usize,
        /// Vectors returned.
        got: usize,
    },
    /// A vector cannot be normalized (empty, zero, NaN).
    #[error(transparent)]
    Vector(#[from] VectorError),
}

/// The upstream error of a call several callers shared.
#[derive(Clone)]
pub struct CoalescedError {
    upstream: Arc<BoxError>,
}

impl CoalescedError {
    pub(crate) fn new(upstream: Arc<BoxError>) -> Self {
        Self { upstream }
    }

    /// The upstream error.
    pub fn upstream(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &**self.upstream
    }
}

impl fmt::Debug for CoalescedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CoalescedError")
            .field(&self.upstream)
            .finish()
    }
}

impl fmt::Display for CoalescedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shared upstream call failed: {}", self.upstream)
    }
}

impl StdError for CoalescedError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&**self.upstream)
    }
}
