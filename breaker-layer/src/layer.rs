//! [`CircuitBreakerLayer`] and its builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reliability_core::classify::ErrorClassifier;
use reliability_core::clock::{SharedClock, default_clock};
use reliability_core::error::ConfigError;
use tower_layer::Layer;

use crate::breaker::{Breaker, Listener};
use crate::config::{CircuitBreakerConfig, RegistryConfig, WindowConfig};
use crate::fallback::{FallbackCause, WithFallback};
use crate::metrics::Instruments;
use crate::service::CircuitBreaker;
use crate::state::Transition;
use reliability_core::answer::AsError;

/// Applies one circuit breaker to a service. Every service the layer makes, and every
/// clone of the layer, shares the same [`Breaker`].
///
/// Build it with [`CircuitBreakerLayer::builder`], or from a deserialized
/// [`CircuitBreakerConfig`] with [`CircuitBreakerLayer::from_config`].
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer<C = ErrorClassifier, R = AsError> {
    breaker: Breaker,
    classifier: C,
    respond: R,
}

impl CircuitBreakerLayer {
    /// A builder for a breaker named `name` (the name appears in errors, events and
    /// metrics).
    pub fn builder(name: impl Into<Arc<str>>) -> CircuitBreakerBuilder {
        CircuitBreakerBuilder::new(name)
    }

    /// A generic-mode layer from a configuration (checked by
    /// [`CircuitBreakerConfig::validate`]).
    pub fn from_config(
        name: impl Into<Arc<str>>,
        config: &CircuitBreakerConfig,
    ) -> Result<Self, ConfigError> {
        Self::builder(name).config(config.clone()).build()
    }
}

impl<C, R> CircuitBreakerLayer<C, R> {
    /// The breaker: state, metrics, manual controls.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }
}

impl<S, C: Clone, R: Clone> Layer<S> for CircuitBreakerLayer<C, R> {
    type Service = CircuitBreaker<S, C, R>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::new(
            inner,
            self.breaker.clone(),
            self.classifier.clone(),
            self.respond.clone(),
        )
    }
}

/// Builds a [`CircuitBreakerLayer`] (or a per-key one): settings, then the classifier and
/// the mode.
///
/// ```
/// use std::time::Duration;
/// use breaker_layer::CircuitBreakerLayer;
///
/// let layer = CircuitBreakerLayer::builder("binance")
///     .time_window(60)
///     .failure_rate(50.0)
///     .minimum_calls(20)
///     .consecutive_failures(5)
///     .slow_calls(Duration::from_secs(2), 80.0)
///     .open_wait(Duration::from_secs(30))
///     .open_wait_backoff(2.0, Duration::from_secs(300))
///     .half_open_probes(3)
///     .success_threshold(2)
///     .build()
///     .unwrap();
/// # let _ = layer;
/// ```
#[must_use]
pub struct CircuitBreakerBuilder<C = ErrorClassifier, R = AsError> {
    pub(crate) name: Arc<str>,
    pub(crate) config: CircuitBreakerConfig,
    pub(crate) classifier: C,
    pub(crate) respond: R,
    pub(crate) clock: SharedClock,
    pub(crate) listeners: Vec<Listener>,
    pub(crate) limits: RegistryConfig,
}

impl<C: fmt::Debug, R: fmt::Debug> fmt::Debug for CircuitBreakerBuilder<C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerBuilder")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("classifier", &self.classifier)
            .field("respond", &self.respond)
            .field("listeners", &self.listeners.len())
            .finish()
    }
}

impl CircuitBreakerBuilder {
    /// Default settings, generic mode.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            config: CircuitBreakerConfig::default(),
            classifier: ErrorClassifier,
            respond: AsError,
            clock: default_clock(),
            listeners: Vec::new(),
            limits: RegistryConfig::default(),
        }
    }
}

impl<C, R> CircuitBreakerBuilder<C, R> {
    /// Replaces every setting with `config`.
    pub fn config(mut self, config: CircuitBreakerConfig) -> Self {
        self.config = config;
        self
    }

    /// Judge rates over the last `size` calls.
    pub fn count_window(mut self, size: u32) -> Self {
        self.config.window = WindowConfig::Count { size };
        self
    }

    /// Judge rates over the last `seconds` seconds.
    pub fn time_window(mut self, seconds: u32) -> Self {
        self.config.window = WindowConfig::Time { seconds };
        self
    }

    /// Trip when this percentage of the window failed, (0, 100].
    pub fn failure_rate(mut self, percent: f64) -> Self {
        self.config.failure_rate = percent;
        self
    }

    /// Count calls of at least `duration` as slow, and trip when `percent` of the window
    /// was slow.
    pub fn slow_calls(mut self, duration: Duration, percent: f64) -> Self {
        self.config.slow_call_duration = Some(duration);
        self.config.slow_call_rate = percent;
        self
    }

    /// Judge no rate before the window holds this many calls.
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.config.minimum_calls = calls;
        self
    }

    /// Trip after `failures` failures in a row.
    pub fn consecutive_failures(mut self, failures: u32) -> Self {
        self.config.consecutive_failures = Some(failures);
        self
    }

    /// How long the circuit stays open before probing.
    pub fn open_wait(mut self, wait: Duration) -> Self {
        self.config.open_wait = wait;
        self
    }

    /// Multiply the open wait by `multiplier` on each trip in a row, up to `max`.
    pub fn open_wait_backoff(mut self, multiplier: f64, max: Duration) -> Self {
        self.config.open_wait_multiplier = multiplier;
        self.config.max_open_wait = max;
        self
    }

    /// Probe calls admitted in HALF_OPEN.
    pub fn half_open_probes(mut self, probes: u32) -> Self {
        self.config.half_open_probes = probes;
        self
    }

    /// Successful probes that close the circuit.
    pub fn success_threshold(mut self, successes: u32) -> Self {
        self.config.success_threshold = successes;
        self
    }

    /// Reopen when HALF_OPEN lasts longer than `max`.
    pub fn max_half_open(mut self, max: Duration) -> Self {
        self.config.max_half_open = Some(max);
        self
    }

    /// The clock (default: tokio's, which follows paused test time).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Calls `listener` on every state change, after the breaker's lock is released
    /// (the listener may call the breaker).
    pub fn on_state_change(
        mut self,
        listener: impl Fn(&str, &Transition) + Send + Sync + 'static,
    ) -> Self {
        self.listeners.push(Arc::new(listener));
        self
    }

    /// What counts as success and failure (default: `Ok` / `Err`).
    pub fn classifier<C2>(self, classifier: C2) -> CircuitBreakerBuilder<C2, R> {
        CircuitBreakerBuilder {
            name: self.name,
            config: self.config,
            classifier,
            respond: self.respond,
            clock: self.clock,
            listeners: self.listeners,
            limits: self.limits,
        }
    }

    /// How the service answers an open circuit (see [`reliability_core::answer`]):
    /// [`AsError`] by default, `AsHttp` from `.http()` (feature `http`), `AsGrpc` from
    /// `.grpc()` (feature `grpc`).
    pub fn respond<R2>(self, respond: R2) -> CircuitBreakerBuilder<C, R2> {
        CircuitBreakerBuilder {
            name: self.name,
            config: self.config,
            classifier: self.classifier,
            respond,
            clock: self.clock,
            listeners: self.listeners,
            limits: self.limits,
        }
    }

    /// Answer from `fallback` when the circuit is open or a call failed.
    pub fn fallback<F, T, E>(self, fallback: F) -> CircuitBreakerBuilder<C, WithFallback<F>>
    where
        F: Fn(FallbackCause<T, E>) -> Result<T, E>,
    {
        self.respond(WithFallback(fallback))
    }

    /// HTTP mode: 5xx, 429 and 408 fail; an open circuit answers 503 with `Retry-After`.
    /// For a 429 that should not trip, follow with
    /// `.classifier(HttpClassifier::new().too_many_requests_as(Outcome::Ignore))`.
    #[cfg(feature = "http")]
    pub fn http(
        self,
    ) -> CircuitBreakerBuilder<
        reliability_core::classify::HttpClassifier,
        reliability_core::answer::AsHttp,
    > {
        self.classifier(reliability_core::classify::HttpClassifier::new())
            .respond(reliability_core::answer::AsHttp)
    }

    /// tonic mode: UNAVAILABLE, DEADLINE_EXCEEDED and other server-side codes fail; an
    /// open circuit answers UNAVAILABLE.
    #[cfg(feature = "grpc")]
    pub fn grpc(
        self,
    ) -> CircuitBreakerBuilder<
        reliability_core::classify::GrpcClassifier,
        reliability_core::answer::AsGrpc,
    > {
        self.classifier(reliability_core::classify::GrpcClassifier)
            .respond(reliability_core::answer::AsGrpc)
    }

    pub(crate) fn make_breaker(&self, name: Arc<str>, instruments: Arc<Instruments>) -> Breaker {
        Breaker::new(
            name,
            self.config.clone(),
            self.clock.clone(),
            self.listeners.clone().into_boxed_slice(),
            instruments,
        )
    }

    /// Validates the settings and builds the layer. With the `metrics` feature, this is
    /// when the layer's metric handles are registered (`source` = the breaker's name), with
    /// the recorder installed at that moment.
    pub fn build(self) -> Result<CircuitBreakerLayer<C, R>, ConfigError> {
        self.config.validate()?;
        let instruments = Instruments::new(&self.name);
        Ok(CircuitBreakerLayer {
            breaker: self.make_breaker(self.name.clone(), instruments),
            classifier: self.classifier,
            respond: self.respond,
        })
    }
}
