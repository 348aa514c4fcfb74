//! [`ConcurrencyLimitLayer`] and its builder.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use reliability_core::answer::AsError;
use reliability_core::classify::ErrorClassifier;
use reliability_core::clock::{SharedClock, default_clock};
use reliability_core::error::ConfigError;
use tower_layer::Layer;

use crate::bulkhead::Limiter;
use crate::config::{AimdConfig, AlgorithmConfig, ConcurrencyConfig, Gradient2Config, VegasConfig};
use crate::metrics::Metrics;
use crate::priority::SamePriority;
use crate::registry::LimiterRegistry;
use crate::service::ConcurrencyLimit;

/// Applies one concurrency limit to a service. Every service the layer makes, and every
/// clone of the layer, shares the same [`Limiter`] (or, per key, the same
/// [`LimiterRegistry`]).
///
/// Build it with [`ConcurrencyLimitLayer::builder`], or from a deserialized
/// [`ConcurrencyConfig`] with [`ConcurrencyLimitLayer::from_config`].
#[derive(Clone)]
pub struct ConcurrencyLimitLayer<L = Limiter, P = SamePriority, C = ErrorClassifier, R = AsError> {
    limiters: L,
    priority: P,
    classifier: C,
    answer: R,
}

// By hand: the priority function is usually a closure, which is not `Debug`.
impl<L: fmt::Debug, P, C: fmt::Debug, R: fmt::Debug> fmt::Debug
    for ConcurrencyLimitLayer<L, P, C, R>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyLimitLayer")
            .field("limiters", &self.limiters)
            .field("classifier", &self.classifier)
            .field("answer", &self.answer)
            .finish_non_exhaustive()
    }
}

impl ConcurrencyLimitLayer {
    /// A builder for a limiter named `name` (the name appears in errors, spans and the
    /// `source` label of metrics).
    pub fn builder(name: impl Into<Arc<str>>) -> ConcurrencyLimitBuilder {
        ConcurrencyLimitBuilder::new(name)
    }

    /// A generic-mode layer from a configuration (checked by
    /// [`ConcurrencyConfig::validate`]).
    pub fn from_config(
        name: impl Into<Arc<str>>,
        config: &ConcurrencyConfig,
    ) -> Result<Self, ConfigError> {
        Self::builder(name).config(config.clone()).build()
    }
}

impl<P, C, R> ConcurrencyLimitLayer<Limiter, P, C, R> {
    /// The limiter: limit, in-flight count, [`snapshot`](Limiter::snapshot).
    pub fn limiter(&self) -> &Limiter {
        &self.limiters
    }
}

impl<K, F, P, C, R> ConcurrencyLimitLayer<LimiterRegistry<K, F>, P, C, R> {
    /// The per-key limiters.
    pub fn registry(&self) -> &LimiterRegistry<K, F> {
        &self.limiters
    }
}

impl<S, L: Clone, P: Clone, C: Clone, R: Clone> Layer<S> for ConcurrencyLimitLayer<L, P, C, R> {
    type Service = ConcurrencyLimit<S, L, P, C, R>;

    fn layer(&self, inner: S) -> Self::Service {
        ConcurrencyLimit::new(
            inner,
            self.limiters.clone(),
            self.priority.clone(),
            self.classifier.clone(),
            self.answer.clone(),
        )
    }
}

/// Builds a [`ConcurrencyLimitLayer`] (or a per-key one): the limit and what happens past
/// it, then the priorities, the classifier and the mode.
///
/// ```
/// use std::time::Duration;
/// use concurrency_layer::ConcurrencyLimitLayer;
/// use concurrency_layer::config::VegasConfig;
///
/// let layer = ConcurrencyLimitLayer::builder("binance")
///     .limit(20)
///     .queue(100, Duration::from_millis(250))
///     .critical_reserve(0.2)
///     .vegas(VegasConfig { max_limit: 200, ..VegasConfig::default() })
///     .retry_after(Duration::from_secs(2))
///     .build()
///     .unwrap();
/// assert_eq!(layer.limiter().snapshot().algorithm, "vegas");
/// ```
#[must_use]
pub struct ConcurrencyLimitBuilder<P = SamePriority, C = ErrorClassifier, R = AsError> {
    name: Arc<str>,
    config: ConcurrencyConfig,
    clock: SharedClock,
    priority: P,
    classifier: C,
    answer: R,
}

impl<P, C: fmt::Debug, R: fmt::Debug> fmt::Debug for ConcurrencyLimitBuilder<P, C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyLimitBuilder")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("classifier", &self.classifier)
            .field("answer", &self.answer)
            .finish_non_exhaustive()
    }
}

impl ConcurrencyLimitBuilder {
    /// Default settings (64 in flight, reject at once), generic mode.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            config: ConcurrencyConfig::default(),
            clock: default_clock(),
            priority: SamePriority,
            classifier: ErrorClassifier,
            answer: AsError,
        }
    }
}

impl<P, C, R> ConcurrencyLimitBuilder<P, C, R> {
    /// Replaces every setting with `config`.
    pub fn config(mut self, config: ConcurrencyConfig) -> Self {
        self.config = config;
        self
    }

    /// At most `limit` calls in flight (the starting point of an adaptive limit).
    pub fn limit(mut self, limit: usize) -> Self {
        self.config.limit = limit;
        self
    }

    /// Refuse at once when the limit is reached (the default).
    pub fn reject_when_full(mut self) -> Self {
        self.config.queue_capacity = 0;
        self
    }

    /// Let up to `capacity` calls wait for a place, each at most `timeout`.
    pub fn queue(mut self, capacity: usize, timeout: Duration) -> Self {
        self.config.queue_capacity = capacity;
        self.config.queue_timeout = timeout;
        self
    }

    /// Keep this share of the limit, [0, 0.9], for `Critical` calls.
    pub fn critical_reserve(mut self, share: f64) -> Self {
        self.config.critical_reserve = share;
        self
    }

    /// Shadow mode: compute and report the limit, count what it would refuse, refuse
    /// nothing.
    pub fn shadow(mut self) -> Self {
        self.config.enforced = false;
        self
    }

    /// The wait a refusal suggests (`Retry-After`).
    pub fn retry_after(mut self, wait: Duration) -> Self {
        self.config.retry_after = wait;
        self
    }

    /// Move the limit with `algorithm`.
    pub fn adaptive(mut self, algorithm: AlgorithmConfig) -> Self {
        self.config.adaptive = Some(algorithm);
        self
    }

    /// Move the limit by AIMD (see [`crate::limit::aimd`]).
    pub fn aimd(self, config: AimdConfig) -> Self {
        self.adaptive(AlgorithmConfig::Aimd(config))
    }

    /// Move the limit by Vegas (see [`crate::limit::vegas`]).
    pub fn vegas(self, config: VegasConfig) -> Self {
        self.adaptive(AlgorithmConfig::Vegas(config))
    }

    /// Move the limit by Gradient2 (see [`crate::limit::gradient2`]).
    pub fn gradient2(self, config: Gradient2Config) -> Self {
        self.adaptive(AlgorithmConfig::Gradient2(config))
    }

    /// Update an adaptive limit once per window of at least `duration` and `min_samples`
    /// finished calls.
    pub fn sample_window(mut self, duration: Duration, min_samples: u32) -> Self {
        self.config.sample_window = duration;
        self.config.sample_window_min_samples = min_samples;
        self
    }

    /// Track at most `keys` keys in a per-key layer.
    pub fn max_keys(mut self, keys: usize) -> Self {
        self.config.max_keys = keys;
        self
    }

    /// The clock of RTTs and queue waits (default: tokio's, which follows paused test
    /// time). Queue timeouts always run on tokio's timer.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Each request's class, from `priority` (any `Fn(&Req) -> Priority`).
    pub fn priority<P2>(self, priority: P2) -> ConcurrencyLimitBuilder<P2, C, R> {
        ConcurrencyLimitBuilder {
            name: self.name,
            config: self.config,
            clock: self.clock,
            priority,
            classifier: self.classifier,
            answer: self.answer,
        }
    }

    /// Reads each request's own deadline
    /// ([`HasDeadline`](reliability_core::deadline::HasDeadline), e.g. an `http::Request`
    /// carrying a [`Deadline`](reliability_core::deadline::Deadline) in its extensions): a
    /// queued call gives up when its deadline passes, answered as a timeout (504 /
    /// `DEADLINE_EXCEEDED`) rather than as overload. Call it after `priority`.
    pub fn with_deadlines(
        self,
    ) -> ConcurrencyLimitBuilder<crate::priority::WithDeadlines<P>, C, R> {
        ConcurrencyLimitBuilder {
            name: self.name,
            config: self.config,
            clock: self.clock,
            priority: crate::priority::WithDeadlines(self.priority),
            classifier: self.classifier,
            answer: self.answer,
        }
    }

    /// What counts as a failure for an adaptive limit (default: `Err`).
    pub fn classifier<C2>(self, classifier: C2) -> ConcurrencyLimitBuilder<P, C2, R> {
        ConcurrencyLimitBuilder {
            name: self.name,
            config: self.config,
            clock: self.clock,
            priority: self.priority,
            classifier,
            answer: self.answer,
        }
    }

    /// How the service answers a refusal (see [`reliability_core::answer`]).
    pub fn answer<R2>(self, answer: R2) -> ConcurrencyLimitBuilder<P, C, R2> {
        ConcurrencyLimitBuilder {
            name: self.name,
            config: self.config,
            clock: self.clock,
            priority: self.priority,
            classifier: self.classifier,
            answer,
        }
    }

    /// HTTP mode: a refusal is a `503` with `Retry-After`; 5xx, 429 and 408 answers count
    /// as failures for an adaptive limit.
    #[cfg(feature = "http")]
    pub fn http(
        self,
    ) -> ConcurrencyLimitBuilder<
        P,
        reliability_core::classify::HttpClassifier,
        reliability_core::answer::AsHttp,
    > {
        self.classifier(reliability_core::classify::HttpClassifier::new())
            .answer(reliability_core::answer::AsHttp)
    }

    /// tonic mode: a refusal is `RESOURCE_EXHAUSTED`; UNAVAILABLE, DEADLINE_EXCEEDED and
    /// the other server-side codes count as failures for an adaptive limit.
    #[cfg(feature = "grpc")]
    pub fn grpc(
        self,
    ) -> ConcurrencyLimitBuilder<
        P,
        reliability_core::classify::GrpcClassifier,
        reliability_core::answer::AsGrpc,
    > {
        self.classifier(reliability_core::classify::GrpcClassifier)
            .answer(reliability_core::answer::AsGrpc)
    }

    /// Validates the settings and builds the layer.
    pub fn build(self) -> Result<ConcurrencyLimitLayer<Limiter, P, C, R>, ConfigError> {
        self.config.validate()?;
        let metrics = Arc::new(Metrics::new(&self.name));
        Ok(ConcurrencyLimitLayer {
            limiters: Limiter::new(self.name, &self.config, self.clock, metrics),
            priority: self.priority,
            classifier: self.classifier,
            answer: self.answer,
        })
    }

    /// Validates the settings and builds a layer with one limiter per `key(request)`, at
    /// most [`max_keys`](Self::max_keys) of them (see [`crate::registry`]).
    pub fn build_per_key<K, F>(
        self,
        key: F,
    ) -> Result<ConcurrencyLimitLayer<LimiterRegistry<K, F>, P, C, R>, ConfigError>
    where
        K: Hash + Eq + Clone,
    {
        self.config.validate()?;
        Ok(ConcurrencyLimitLayer {
            limiters: LimiterRegistry::new(self.name, self.config, self.clock, key),
            priority: self.priority,
            classifier: self.classifier,
            answer: self.answer,
        })
    }
}
