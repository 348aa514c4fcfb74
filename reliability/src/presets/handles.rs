//! The live parts of a built stack ([`Handles`]) and the stack itself
//! ([`ReliableService`]).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use breaker_layer::{Breaker, BreakerRegistry};
use cache_layer::CacheHandle;
use ratelimit_layer::RateLimiter;
use reliability_core::health::{ComponentDetail, ComponentHealth, HealthSource, HealthStatus};
use retry_layer::RetryHandle;
use sla_layer::SlaMonitor;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Service};

use crate::config::SourceKind;

/// One breaker, or one per host.
#[derive(Clone)]
pub(super) enum Breakers {
    One(Breaker),
    PerHost(BreakerRegistry<String>),
}

/// The live parts of a built stack, for monitoring and operations.
pub struct Handles<V> {
    pub(super) kind: SourceKind,
    pub(super) name: String,
    pub(super) monitor: SlaMonitor,
    pub(super) breakers: Breakers,
    pub(super) retry: RetryHandle,
    pub(super) limiter: RateLimiter,
    pub(super) concurrency: concurrency_layer::Limiter,
    pub(super) cache: Option<CacheHandle<V>>,
    pub(super) trips: Arc<AtomicU64>,
    pub(super) hedger: Option<hedge_layer::Hedger>,
}

impl<V> fmt::Debug for Handles<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handles")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<V: Clone + Send + Sync + 'static> Handles<V> {
    /// The source's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The kind of source.
    pub fn kind(&self) -> SourceKind {
        self.kind
    }

    /// The SLA monitor.
    pub fn sla(&self) -> &SlaMonitor {
        &self.monitor
    }

    /// The circuit breaker, for stacks with one (`None` for per-host breakers: see
    /// [`breaker_registry`](Self::breaker_registry)).
    pub fn breaker(&self) -> Option<&Breaker> {
        match &self.breakers {
            Breakers::One(b) => Some(b),
            Breakers::PerHost(_) => None,
        }
    }

    /// The per-host breakers of an HTTP client stack.
    pub fn breaker_registry(&self) -> Option<&BreakerRegistry<String>> {
        match &self.breakers {
            Breakers::One(_) => None,
            Breakers::PerHost(r) => Some(r),
        }
    }

    /// The retry layer's figures.
    pub fn retry(&self) -> &RetryHandle {
        &self.retry
    }

    /// The client-side rate limiter.
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// The bulkhead's limiter: its limit (moving, when adaptive), calls in flight, calls
    /// refused.
    pub fn concurrency(&self) -> &concurrency_layer::Limiter {
        &self.concurrency
    }

    /// The cache (`None` for a stack built by
    /// [`Preset::wrap_uncached`](super::Preset::wrap_uncached)).
    pub fn cache(&self) -> Option<&CacheHandle<V>> {
        self.cache.as_ref()
    }

    /// The hedge layer's counters and current delay: hedges sent, won and refused by the
    /// budget (the HTTP client; `None` for a gRPC client, which does not hedge).
    pub fn hedger(&self) -> Option<&hedge_layer::Hedger> {
        self.hedger.as_ref()
    }

    /// Times the breaker opened.
    pub fn breaker_trips(&self) -> u64 {
        self.trips.load(Ordering::Relaxed)
    }

    /// Requests answered from the cache.
    pub fn cache_hits(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| c.stats().hits)
    }
}

impl<V: Clone + Send + Sync + 'static> HealthSource for Handles<V> {
    fn health(&self) -> Vec<ComponentHealth> {
        let mut all = Vec::with_capacity(5);
        all.extend(self.monitor.health());
        let sla = all.len();
        match &self.breakers {
            Breakers::One(b) => all.extend(b.health()),
            Breakers::PerHost(r) => all.extend(r.health()),
        }
        // A source whose breaker is open is not HEALTHY, whatever its (then empty) window
        // says: the source's status is the worse of its SLA and its breakers'.
        let (monitor, breakers) = all.split_at_mut(sla);
        if let Some(worst) = breakers.iter().max_by_key(|b| b.status)
            && let Some(source) = monitor.first_mut()
            && worst.status > source.status
        {
            source.status = worst.status;
            let why = format!(
                "breaker `{}`: {}",
                worst.name,
                worst.message.as_deref().unwrap_or(worst.status.as_str())
            );
            source.message = Some(match source.message.take() {
                Some(m) => format!("{m}; {why}"),
                None => why,
            });
        }
        if let Some(cache) = &self.cache {
            all.extend(cache.health());
        }
        all.extend(self.limiter.health());
        all.extend(self.concurrency.health());
        let retry = self.retry.snapshot();
        all.push(ComponentHealth::new(
            self.name.clone(),
            HealthStatus::Healthy,
            ComponentDetail::Retry(retry),
        ));
        all
    }
}

/// A service wrapped by a preset stack. Cheap to clone; clones share every layer's state.
pub struct ReliableService<Req, V> {
    service: BoxCloneSyncService<Req, V, BoxError>,
    handles: Arc<Handles<V>>,
}

impl<Req, V> Clone for ReliableService<Req, V> {
    fn clone(&self) -> Self {
        Self {
            service: self.service.clone(),
            handles: self.handles.clone(),
        }
    }
}

impl<Req, V> fmt::Debug for ReliableService<Req, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReliableService")
            .field("handles", &self.handles)
            .finish_non_exhaustive()
    }
}

impl<Req, V> ReliableService<Req, V> {
    pub(super) fn new(
        service: BoxCloneSyncService<Req, V, BoxError>,
        handles: Arc<Handles<V>>,
    ) -> Self {
        Self { service, handles }
    }

    /// The live parts: SLA monitor, breaker, retry figures, limiter, cache.
    pub fn handles(&self) -> &Arc<Handles<V>> {
        &self.handles
    }
}

impl<Req, V> Service<Req> for ReliableService<Req, V> {
    type Response = V;
    type Error = BoxError;
    type Future = <BoxCloneSyncService<Req, V, BoxError> as Service<Req>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.service.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        self.service.call(req)
    }
}
