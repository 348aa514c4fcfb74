//! [`CacheLayer`] and its builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reliability_core::clock::{SharedClock, default_clock};
use reliability_core::error::ConfigError;
use tower_layer::Layer;

use crate::adaptive::AdaptiveRule;
use crate::backend::memory::MemoryBounds;
use crate::config::{AdaptiveConfig, CacheConfig};
use crate::engine::{Directive, Engine, Hooks, Settings};
use crate::handle::CacheHandle;
use crate::lower::TierSetup;
use crate::service::Cache;
use crate::status::CacheStatus;

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
            lower: TierSetup::default(),
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
    lower: TierSetup<V>,
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
    crate::config::config_setters!();

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

    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn directive(
        mut self,
        f: impl Fn(&V, Directive) -> Directive + Send + Sync + 'static,
    ) -> Self {
        self.hooks.directive = Some(Arc::new(f));
        self
    }

    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn annotate(mut self, f: fn(&mut V, &CacheStatus, &str)) -> Self {
        self.hooks.annotate = Some(f);
        self
    }

    /// Adds Redis as L2 (read-through on L1 misses, write-behind, pub/sub invalidation
    /// across instances); `codec` turns values into bytes. The layer must then be built
    /// inside a tokio runtime (it starts the writer and the subscriber tasks).
    #[cfg(feature = "redis")]
    pub fn l2(
        mut self,
        tier: crate::backend::redis::RedisTier,
        codec: impl crate::codec::Codec<V>,
    ) -> Self {
        self.lower.l2 = Some((tier, Arc::new(codec)));
        self
    }

    /// Distributed single-flight across instances through a Redis lock per key, held at
    /// most `lock_ttl` (needs [`l2`](Self::l2)).
    #[cfg(feature = "redis")]
    pub fn distributed_single_flight(mut self, lock_ttl: Duration) -> Self {
        self.lower.l2_lock = Some(lock_ttl);
        self
    }

    /// Adds a disk tier as L3 (read on L1/L2 misses, written behind on a dedicated
    /// thread); `codec` turns values into bytes. It survives restarts: a new process
    /// serves its entries at once.
    #[cfg(feature = "disk")]
    pub fn l3(
        mut self,
        tier: crate::backend::disk::DiskTier,
        codec: impl crate::codec::Codec<V>,
    ) -> Self {
        self.lower.l3 = Some((tier, Arc::new(codec)));
        self
    }

    /// Validates the settings and builds the layer.
    pub fn build(self) -> Result<CacheLayer<K, V>, ConfigError> {
        self.config.validate()?;
        let (lower, flight_lock) = self.lower.start(&self.config.name)?;
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
            lower,
            flight_lock,
        );
        Ok(CacheLayer {
            shared: Arc::new(Shared {
                key: self.key,
                engine: engine.start(),
            }),
        })
    }
}
