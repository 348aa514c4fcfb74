//! The layers below the cache: the SLA monitor, breaker builder, client quota,
//! bulkhead and retry layer a preset builds from its settings (`Parts`), and the
//! stacking of them around a service.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use breaker_layer::{CircuitBreakerBuilder, CircuitBreakerLayer};
use cache_layer::{CacheHandle, CacheKey, CacheLayer, CacheLayerBuilder};
use concurrency_layer::ConcurrencyLimitLayer;
use ratelimit_layer::key::key_fn;
use ratelimit_layer::{RateLimitLayer, RateLimiter, Subject};
use reliability_core::classify::Classify;
use reliability_core::error::ConfigError;
use reliability_core::health::BreakerState;
use retry_layer::{ClassifierPolicy, RetryConfig, RetryHandle, RetryLayer, RetryPolicy};
use sla_layer::{SlaLayer, SlaMonitor};
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt};

use super::{Breakers, Handles, Preset, ReliableService};

impl Preset {
    /// The cache layer of this preset's settings, with `customize` applied.
    pub(super) fn cache_layer<Req, V, K>(
        &self,
        key: K,
        customize: impl FnOnce(CacheLayerBuilder<K, V>) -> CacheLayerBuilder<K, V>,
    ) -> Result<CacheLayer<K, V>, ConfigError>
    where
        K: CacheKey<Req>,
        V: Clone + Send + Sync + 'static,
    {
        let mut cache = CacheLayer::builder(key)
            .config(self.settings.cache.clone())
            .name(self.name.clone());
        if let Some(clock) = &self.clock {
            cache = cache.clock(clock.clone());
        }
        customize(cache).build().map_err(|e| e.within("cache"))
    }

    /// Retry → `breaker` → rate limit → SLA → timeout → `inner`, boxed.
    pub(super) fn below_cache<S, Req, C, P, L>(
        &self,
        inner: S,
        parts: &Parts<RetryLayer<P>>,
        classifier: C,
        breaker: L,
    ) -> BoxCloneSyncService<Req, S::Response, BoxError>
    where
        S: Service<Req> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError> + 'static,
        S::Response: Clone + Send + Sync + 'static,
        Req: Clone + Send + Sync + 'static,
        C: Classify<S::Response, BoxError> + Clone + Send + Sync + 'static,
        P: RetryPolicy<Req, S::Response, BoxError>,
        L: Layer<BoxCloneSyncService<Req, S::Response, BoxError>>,
        L::Service: Service<Req, Response = S::Response> + Clone + Send + Sync + 'static,
        <L::Service as Service<Req>>::Future: Send + 'static,
        <L::Service as Service<Req>>::Error: Into<BoxError> + 'static,
    {
        let name = Subject::new(self.name.clone());
        let lower = BoxCloneSyncService::new(
            ServiceBuilder::new()
                .layer(
                    RateLimitLayer::new(parts.limiter.clone())
                        .key(key_fn(move |_: &Req| Some(name.clone())))
                        .wait_up_to(self.settings.rate_limit.max_wait),
                )
                .layer(parts.bulkhead.clone())
                .layer(SlaLayer::new(parts.monitor.clone()).classifier(classifier))
                .timeout(self.settings.attempt_timeout)
                .service(inner.map_err(Into::<BoxError>::into)),
        );
        BoxCloneSyncService::new(
            ServiceBuilder::new()
                .layer(parts.retry.clone())
                .map_err(Into::<BoxError>::into)
                .layer(breaker)
                .service(lower),
        )
    }

    pub(super) fn finish<Req, V, R: RetryParts>(
        self,
        service: BoxCloneSyncService<Req, V, BoxError>,
        parts: Parts<R>,
        breakers: Breakers,
        cache: Option<CacheHandle<V>>,
    ) -> ReliableService<Req, V> {
        ReliableService::new(service, Arc::new(self.into_handles(parts, breakers, cache)))
    }

    pub(super) fn into_handles<W, R: RetryParts>(
        self,
        parts: Parts<R>,
        breakers: Breakers,
        cache: Option<CacheHandle<W>>,
    ) -> Handles<W> {
        Handles {
            kind: self.kind,
            name: self.name,
            monitor: parts.monitor,
            breakers,
            retry: parts.retry.retry_handle(),
            limiter: parts.limiter,
            concurrency: parts.bulkhead.limiter().clone(),
            cache,
            trips: parts.trips,
            hedger: None,
        }
    }

    /// The layers below the cache, built from the settings.
    #[allow(clippy::type_complexity)]
    pub(super) fn parts<C>(
        &self,
        classifier: C,
    ) -> Result<
        (
            Parts<RetryLayer<ClassifierPolicy<C>>>,
            CircuitBreakerBuilder<C>,
        ),
        ConfigError,
    >
    where
        C: Clone + Send + Sync + 'static,
    {
        self.parts_with(classifier, |policy| policy)
    }

    /// [`Self::parts`] with the retry policy wrapped by `wrap` (HTTP: `Idempotent`).
    #[allow(clippy::type_complexity)]
    pub(super) fn parts_with<C, P>(
        &self,
        classifier: C,
        wrap: impl FnOnce(ClassifierPolicy<C>) -> P,
    ) -> Result<(Parts<RetryLayer<P>>, CircuitBreakerBuilder<C>), ConfigError>
    where
        C: Clone + Send + Sync + 'static,
    {
        let (parts, breaker) = self.parts_but_retry(classifier.clone())?;
        let retry = RetryLayer::builder()
            .config(self.retry_config())
            .policy(wrap(ClassifierPolicy::new(classifier)))
            .build()
            .map_err(|e| e.within("retry"))?;
        Ok((parts.with_retry(retry), breaker))
    }

    /// The retry settings, with the preset's name and seed.
    pub(super) fn retry_config(&self) -> RetryConfig {
        RetryConfig {
            name: self.name.clone(),
            seed: self.seed.or(self.settings.retry.seed),
            ..self.settings.retry.clone()
        }
    }

    /// The SLA monitor, breaker builder and limiter of the settings (no retry layer yet).
    pub(super) fn parts_but_retry<C>(
        &self,
        classifier: C,
    ) -> Result<(Parts<()>, CircuitBreakerBuilder<C>), ConfigError>
    where
        C: Clone + Send + Sync + 'static,
    {
        // Every layer's checks before anything is registered; the builders below run the
        // same checks again, so they cannot fail on the settings.
        self.settings.validate()?;
        let s = &self.settings;

        let mut monitor = SlaMonitor::builder(self.name.clone()).config(s.sla.clone());
        if let Some(clock) = &self.clock {
            monitor = monitor.clock(clock.clone());
        }
        let monitor = monitor.build().map_err(|e| e.within("sla"))?;
        if let Some(registry) = &self.registry {
            registry
                .insert(monitor.clone())
                .map_err(|e| ConfigError::new("sla", e.to_string()))?;
        }

        let trips = Arc::new(AtomicU64::new(0));
        let counter = trips.clone();
        let mut breaker = CircuitBreakerLayer::builder(self.name.clone())
            .config(s.breaker.clone())
            .on_state_change(move |_, t| {
                if t.to == BreakerState::Open {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            });
        if let Some(clock) = &self.clock {
            breaker = breaker.clock(clock.clone());
        }
        let breaker = breaker.classifier(classifier);

        let quota = s.rate_limit.quota().map_err(|e| e.within("rate_limit"))?;
        let mut limiter = RateLimiter::builder().name(self.name.clone()).quota(quota);
        if let Some(backend) = &self.limiter_backend {
            limiter = limiter.backend(backend.clone());
        }
        let limiter = limiter.build().map_err(|e| e.within("rate_limit"))?;

        let mut bulkhead =
            ConcurrencyLimitLayer::builder(self.name.clone()).config(s.concurrency.clone());
        if let Some(clock) = &self.clock {
            bulkhead = bulkhead.clock(clock.clone());
        }
        let bulkhead = bulkhead.build().map_err(|e| e.within("concurrency"))?;

        Ok((
            Parts {
                monitor,
                retry: (),
                limiter,
                bulkhead,
                trips,
            },
            breaker,
        ))
    }
}

pub(super) struct Parts<R> {
    pub(super) monitor: SlaMonitor,
    pub(super) retry: R,
    pub(super) limiter: RateLimiter,
    pub(super) bulkhead: ConcurrencyLimitLayer,
    pub(super) trips: Arc<AtomicU64>,
}

impl Parts<()> {
    pub(super) fn with_retry<R>(self, retry: R) -> Parts<R> {
        Parts {
            monitor: self.monitor,
            retry,
            limiter: self.limiter,
            bulkhead: self.bulkhead,
            trips: self.trips,
        }
    }
}

/// A retry layer whose figures the handles show.
pub(super) trait RetryParts {
    fn retry_handle(&self) -> RetryHandle;
}

impl<P: Send + Sync + 'static> RetryParts for RetryLayer<P> {
    fn retry_handle(&self) -> RetryHandle {
        self.handle()
    }
}

impl<C: Send + Sync + 'static> RetryParts for retry_layer::http::HttpRetryLayer<C> {
    fn retry_handle(&self) -> RetryHandle {
        self.handle()
    }
}
