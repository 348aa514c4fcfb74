//! [`Cache`], the service.

use reliability_core::service::take_ready;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::StreamExt;
use tower::{BoxError, ServiceExt};
use tower_service::Service;

use crate::engine::Lookup;
use crate::future::{ResponseFuture, spawn_refresh};
use crate::layer::{CacheKey, Shared};
use crate::lower::read_through;
use crate::metrics::bump;
use crate::singleflight::Join;

/// A service whose responses are cached: see the [crate docs](crate).
pub struct Cache<S, K, V> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared<K, V>>,
}

impl<S: Clone, K, V> Clone for Cache<S, K, V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, K, V> fmt::Debug for Cache<S, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("inner", &self.inner)
            .field("engine", &self.shared.engine)
            .finish()
    }
}

impl<S, K, V> Cache<S, K, V> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The handle for invalidation, writes and metrics.
    pub fn handle(&self) -> crate::CacheHandle<V> {
        crate::CacheHandle {
            engine: self.shared.engine.clone(),
        }
    }
}

/// What [`Cache::warm`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WarmReport {
    /// Requests answered (from the upstream or already cached).
    pub loaded: usize,
    /// Requests that failed.
    pub failed: usize,
}

impl<S, K, V> Cache<S, K, V>
where
    V: Clone + Send + Sync + 'static,
{
    /// Preloads the cache by sending `requests` through it, at most `concurrency` at a
    /// time (at least one).
    pub async fn warm<Req, I>(&self, requests: I, concurrency: usize) -> WarmReport
    where
        I: IntoIterator<Item = Req>,
        Self: Service<Req, Response = V, Error = BoxError> + Clone,
    {
        let results: Vec<bool> = futures_util::stream::iter(requests)
            .map(|req| {
                let svc = self.clone();
                async move { svc.oneshot(req).await.is_ok() }
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        let loaded = results.iter().filter(|ok| **ok).count();
        WarmReport {
            loaded,
            failed: results.len() - loaded,
        }
    }
}

impl<S, K, V, Req> Service<Req> for Cache<S, K, V>
where
    S: Service<Req, Response = V> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    K: CacheKey<Req>,
    V: Clone + Send + Sync + 'static,
    Req: Send + 'static,
{
    type Response = V;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, S, Req, V>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let engine = &self.shared.engine;
        // A disabled span is `Span::none()`: no allocation, no field evaluated.
        let span = tracing::debug_span!(
            "cache",
            source = engine.settings.name.as_str(),
            outcome = tracing::field::Empty,
            cache.status = tracing::field::Empty,
        );
        let Some(key) = self.shared.key.key(&req) else {
            bump(&engine.metrics.bypassed);
            let fut = span.in_scope(|| self.inner.call(req));
            return ResponseFuture::bypass(engine.clone(), fut).in_span(span);
        };
        if let Err(e) = engine.settings.limits.check_key(&key) {
            bump(&engine.metrics.rejected_key);
            let entered = span.enter();
            tracing::debug!(cache = %engine.settings.name, error = %e, "request bypasses the cache");
            let fut = self.inner.call(req);
            drop(entered);
            return ResponseFuture::bypass(engine.clone(), fut).in_span(span);
        }
        let now = engine.clock.now();
        match engine.lookup(&key, now) {
            Lookup::Hit {
                value,
                status,
                refresh,
            } => {
                if let Some(prior) = refresh
                    && let Some(guard) = engine.lead_refresh(&key, &prior, now)
                {
                    let svc = take_ready(&mut self.inner);
                    spawn_refresh(engine.clone(), guard, svc, req, prior);
                }
                let mut value = value;
                engine.annotate(&mut value, &status);
                status.record(&span, true);
                ResponseFuture::ready(value)
            }
            Lookup::Miss { prior } => {
                let guard = match engine.flights.join(&key, engine.epoch()) {
                    Join::Follow(waiter) => {
                        engine.metrics.coalesced();
                        // The follower keeps an unready clone: it waits without holding
                        // the inner service's capacity, and readies it only if it must
                        // call.
                        return ResponseFuture::following(
                            engine.clone(),
                            waiter,
                            self.inner.clone(),
                            req,
                            key,
                            prior,
                        )
                        .in_span(span);
                    }
                    Join::Lead(guard) => Some(guard),
                    Join::Full => {
                        bump(&engine.metrics.flight_overflow);
                        None
                    }
                };
                if !engine.lower.is_empty() {
                    let svc = take_ready(&mut self.inner);
                    let fut = read_through(engine.clone(), guard, key, prior, svc, req);
                    return ResponseFuture::lower(engine.clone(), fut).in_span(span);
                }
                bump(&engine.metrics.misses);
                let fut = span.in_scope(|| self.inner.call(req));
                ResponseFuture::leading(engine.clone(), fut, guard, key, prior, now).in_span(span)
            }
        }
    }
}
