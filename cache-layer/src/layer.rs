//! [`CacheLayer`] and its builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reliability_core::clock::{SharedClock, default_clock};
use reliability_core::error::ConfigError;
use tower_layer::Layer;

use crate::adaptive::AdaptiveRule;
use crate::backend::memory::{EvictionPolicy, MemoryBounds};
use crate::config::{AdaptiveConfig, CacheConfig};
use crate::engine::{Directive, Engine, Hooks, Settings};
use crate::handle::CacheHandle;
use crate::service::Cache;
use crate::status::CacheStatus;
use crate::validation::ValidationMode;

/// Computes the cache key of a request; `None` makes the request bypass the cache.
///
/// Any `Fn(&Req) -> Option<String>` is one.
pub trait CacheKey<Req>: Send + Sync + 'static {
    /// The key of `req`, or `None` to bypass the cache.
    fn key(&self, req: &Req) -> Option<String>;
}

impl<Req, F> CacheKey<Req> for F
where
    F: Fn(&Req) -> Option<String> + Send + Sync + 'static,
{
    #[inline]
    fn key(&self, req: &Req) -> Option<String> {
        self(req)
    }
}

pub(crate) struct Shared<K, V> {
    pub(crate) key: K,
    pub(crate) engine: Arc<Engine<V>>,
}

/// Caches the responses of the wrapped service: see the [crate docs](crate).
pub struct CacheLayer<K, V> {
    pub(crate) shared: Arc<Shared<K, V>>,
}

impl<K, V> Clone for CacheLayer<K, V> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<K, V> fmt::Debug for CacheLayer<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheLayer")
            .field("engine", &self.shared.engine)
            .finish()
    }
}

impl<K, V> CacheLayer<K, V>
where
    V: Clone + Send + Sync + 'static,
{
    /// A builder keyed by `key` (any `Fn(&Req) -> Option<String>`).
    pub fn builder(key: K) -> CacheLayerBuilder<K, V> {
        CacheLayerBuilder {
            key,
            config: CacheConfig::default(),
            clock: None,
            hooks: Hooks::default(),
        }
    }

    /// A layer from a deserialized configuration.
    pub fn from_config(config: CacheConfig, key: K) -> Result<Self, ConfigError> {
        Self::builder(key).config(config).build()
    }

    /// The handle for invalidation, explicit writes, warming exports and metrics.
    pub fn handle(&self) -> CacheHandle<V> {
        CacheHandle {
            engine: self.shared.engine.clone(),
        }
    }
}

impl<S, K, V> Layer<S> for CacheLayer<K, V> {
    type Service = Cache<S, K, V>;

    fn layer(&self, inner: S) -> Self::Service {
        Cache {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// Builds a [`CacheLayer`]. Reads like a sentence; every setting has a safe default
/// (60 s TTL, no stale serving but stale-if-error of 2× TTL, 10,000 entries, TinyLFU).
#[must_use]
pub struct CacheLayerBuilder<K, V> {
    key: K,
    config: CacheConfig,
    clock: Option<SharedClock>,
    hooks: Hooks<V>,
}

impl<K, V> fmt::Debug for CacheLayerBuilder<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheLayerBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<K, V> CacheLayerBuilder<K, V>
where
    V: Clone + Send + Sync + 'static,
{
    /// Replaces every data setting with `config` (closures set on the builder stay).
    pub fn config(mut self, config: CacheConfig) -> Self {
        self.config = config;
        self
    }

    /// The cache's name in metrics, health and `Cache-Status`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Time to live of values.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.config.ttl = ttl;
        self
    }

    /// Stale-while-revalidate window: stale values served at once while one refresh runs.
    pub fn stale_while_revalidate(mut self, window: Duration) -> Self {
        self.config.stale_while_revalidate = window;
        self
    }

    /// Stale-if-error window (default 2× TTL): stale values served when the upstream fails.
    pub fn stale_if_error(mut self, window: Duration) -> Self {
        self.config.stale_if_error = Some(window);
        self
    }

    /// Hard cap on staleness.
    pub fn max_staleness(mut self, cap: Duration) -> Self {
        self.config.max_staleness = cap;
        self
    }

    /// Random TTL shortening of up to `fraction` (in `[0, 1)`).
    pub fn ttl_jitter(mut self, fraction: f64) -> Self {
        self.config.ttl_jitter = fraction;
        self
    }

    /// XFetch probabilistic early refresh with this β (1.0 is the paper's choice).
    pub fn xfetch(mut self, beta: f64) -> Self {
        self.config.xfetch_beta = beta;
        self
    }

    /// Adaptive TTL by popularity: ×1.2 on hits, ×0.8 on misses, within `[min, max]`.
    pub fn adaptive_ttl(mut self, min: Duration, max: Duration) -> Self {
        self.config.adaptive = Some(AdaptiveConfig {
            rule: AdaptiveRule::Popularity,
            min,
            max,
        });
        self
    }

    /// Adaptive TTL by volatility: grows when a refresh returns a value `same` calls
    /// unchanged, shrinks when it changed, within `[min, max]`.
    pub fn adaptive_ttl_by_change(
        mut self,
        min: Duration,
        max: Duration,
        same: impl Fn(&V, &V) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.config.adaptive = Some(AdaptiveConfig {
            rule: AdaptiveRule::Volatility,
            min,
            max,
        });
        self.hooks.same_value = Some(Arc::new(same));
        self
    }

    /// Negative caching: values `is_negative` picks ("not found") are stored for `ttl`.
    /// Off by default: negative values are then not stored.
    pub fn negative_caching(
        mut self,
        ttl: Duration,
        is_negative: impl Fn(&V) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.config.negative_ttl = Some(ttl);
        self.hooks.is_negative = Some(Arc::new(is_negative));
        self
    }

    /// Declares which values are negative ("not found") without caching them: they are
    /// then never stored (the default for negative values).
    pub fn negative_when(
        mut self,
        is_negative: impl Fn(&V) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.hooks.is_negative = Some(Arc::new(is_negative));
        self
    }

    /// Values that are failures in disguise (an error status): never stored, and
    /// stale-if-error serves a stale copy instead when one exists.
    pub fn failure_when(mut self, f: impl Fn(&V) -> bool + Send + Sync + 'static) -> Self {
        self.hooks.is_failure = Some(Arc::new(f));
        self
    }

    /// Stores only values for which `f` is true.
    pub fn store_if(mut self, f: impl Fn(&V) -> bool + Send + Sync + 'static) -> Self {
        self.hooks.store_if = Some(Arc::new(f));
        self
    }

    /// Tags of a value, for [`CacheHandle::invalidate_tag`].
    pub fn tags(mut self, f: impl Fn(&V) -> Vec<String> + Send + Sync + 'static) -> Self {
        self.hooks.tags = Some(Arc::new(f));
        self
    }

    /// Size of a value in bytes, for the byte bound and the value-size limit (default
    /// `size_of::<V>()`).
    pub fn value_size(mut self, f: impl Fn(&V) -> usize + Send + Sync + 'static) -> Self {
        self.hooks.value_size = Some(Arc::new(f));
        self
    }

    /// Most L1 entries.
    pub fn max_entries(mut self, n: u64) -> Self {
        self.config.max_entries = Some(n);
        self
    }

    /// Most L1 bytes (as measured by [`value_size`](Self::value_size) plus key lengths).
    pub fn max_bytes(mut self, n: u64) -> Self {
        self.config.max_bytes = Some(n);
        self
    }

    /// L1 eviction policy.
    pub fn eviction(mut self, policy: EvictionPolicy) -> Self {
        self.config.eviction = policy;
        self
    }

    /// Key and value limits.
    pub fn validation(mut self, mode: ValidationMode) -> Self {
        self.config.validation = mode;
        self
    }

    /// Most keys with an upstream call in flight.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.config.max_in_flight = n;
        self
    }

    /// The clock (default: tokio's, which follows paused time in tests).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    #[allow(dead_code)] // used by the HTTP mode
    pub(crate) fn directive(
        mut self,
        f: impl Fn(&V, Directive) -> Directive + Send + Sync + 'static,
    ) -> Self {
        self.hooks.directive = Some(Arc::new(f));
        self
    }

    #[allow(dead_code)] // used by the HTTP mode
    pub(crate) fn annotate(mut self, f: fn(&mut V, &CacheStatus, &str)) -> Self {
        self.hooks.annotate = Some(f);
        self
    }

    /// Validates the settings and builds the layer.
    pub fn build(self) -> Result<CacheLayer<K, V>, ConfigError> {
        self.config.validate()?;
        let settings = Settings::new(&self.config, self.hooks);
        let bounds = MemoryBounds {
            max_entries: self.config.max_entries,
            max_bytes: self.config.max_bytes,
            eviction: self.config.eviction,
        };
        let engine = Engine::new(
            settings,
            bounds,
            self.config.max_in_flight,
            self.clock.unwrap_or_else(default_clock),
        );
        Ok(CacheLayer {
            shared: Arc::new(Shared {
                key: self.key,
                engine: Arc::new(engine),
            }),
        })
    }
}
