//! [`Retry`], the service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

use crate::error::BoxError;
use crate::future::ResponseFuture;
use crate::layer::{RetryLayer, Shared};
use crate::metrics::RetryHandle;
use crate::policy::{ClassifierPolicy, RetryPolicy};

/// Retries failed calls to `S` with backoff, within a budget shared by every clone.
///
/// Errors are `tower::BoxError`: the inner service's errors unchanged, or this crate's
/// [`BudgetExhausted`](crate::BudgetExhausted), [`AttemptTimedOut`](crate::AttemptTimedOut)
/// and [`DeadlineExceeded`](crate::DeadlineExceeded).
pub struct Retry<S, P = ClassifierPolicy> {
    inner: S,
    shared: Arc<Shared<P>>,
}

impl<S> Retry<S> {
    /// `inner` with the default settings (see [`RetryLayer::builder`]).
    pub fn new(inner: S) -> Self {
        let layer = RetryLayer::builder()
            .build()
            .unwrap_or_else(|_| unreachable!("the defaults are valid"));
        Self::from_shared(inner, layer.shared)
    }
}

impl<S, P> Retry<S, P> {
    pub(crate) fn from_shared(inner: S, shared: Arc<Shared<P>>) -> Self {
        Self { inner, shared }
    }

    reliability_core::inner_accessors!(S);
}

impl<S, P: Send + Sync + 'static> Retry<S, P> {
    /// Counters, budget state and health of this layer and every clone.
    pub fn handle(&self) -> RetryHandle {
        RetryHandle {
            core: self.shared.clone(),
        }
    }
}

impl<S: Clone, P> Clone for Retry<S, P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, P: fmt::Debug> fmt::Debug for Retry<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("shared", &self.shared)
            .finish()
    }
}

impl<S, P, Req> Service<Req> for Retry<S, P>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError> + 'static,
    P: RetryPolicy<Req, S::Response, S::Error>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, P>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        // The ready service makes this call and keeps making the retries; the clone left
        // behind waits for its own `poll_ready` (tower's clone-then-replace idiom).
        let fresh = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, fresh);
        ResponseFuture::new(ready, req, Arc::clone(&self.shared))
    }
}
