//! Per-key breakers (one per host, per exchange, per tenant) in a bounded registry.
//!
//! The key comes from a function of the request. The registry holds at most
//! `max_breakers` breakers: when a new key arrives at a full registry, breakers idle
//! longer than `idle_timeout` are dropped first, then the least recently used one (a
//! CLOSED one when there is any, so that open circuits keep protecting their upstream).
//! Memory is bounded whatever keys the requests carry.
//!
//! A lookup of a known key takes a shared read lock; only a new key takes the write lock.
//!
//! # Example
//!
//! ```
//! use breaker_layer::CircuitBreakerLayer;
//! use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let layer = CircuitBreakerLayer::builder("hosts")
//!     .consecutive_failures(1)
//!     .max_breakers(1_000)
//!     .build_per_key(|host: &&'static str| host.to_string())
//!     .unwrap();
//! let mut svc = ServiceBuilder::new().layer(layer.clone()).service(service_fn(|host: &'static str| async move {
//!     if host == "down.example" { Err::<(), BoxError>("refused".into()) } else { Ok(()) }
//! }));
//! let _ = svc.ready().await.unwrap().call("down.example").await;
//! assert!(svc.ready().await.unwrap().call("down.example").await.is_err()); // open
//! assert!(svc.ready().await.unwrap().call("up.example").await.is_ok()); // its own breaker
//! assert_eq!(layer.registry().len(), 2);
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use parking_lot::RwLock;
use reliability_core::classify::{Classify, ErrorClassifier};
use reliability_core::clock::Instant;
use reliability_core::error::ConfigError;
use reliability_core::health::{BreakerState, ComponentHealth, HealthSource};
use tower_layer::Layer;
use tower_service::Service;

use crate::breaker::Breaker;
use crate::config::RegistryConfig;
use crate::error::CircuitOpen;
use crate::future::ResponseFuture;
use crate::layer::CircuitBreakerBuilder;
use crate::metrics::Instruments;
use reliability_core::answer::{Answer, AsError};

struct Entry {
    breaker: Breaker,
    /// Nanoseconds after the registry's origin.
    last_used: AtomicU64,
}

struct Inner<K> {
    template: CircuitBreakerBuilder<(), ()>,
    limits: RegistryConfig,
    origin: Instant,
    map: RwLock<HashMap<K, Entry>>,
    evictions: AtomicU64,
    /// One set of metric handles for every breaker of the registry: `source` is the
    /// layer's name, never a key (keys come from requests, and labels must stay bounded).
    instruments: Arc<Instruments>,
}

/// The breakers of a per-key layer. Cloning is one `Arc` increment.
pub struct BreakerRegistry<K> {
    inner: Arc<Inner<K>>,
}

impl<K> Clone for BreakerRegistry<K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<K> fmt::Debug for BreakerRegistry<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerRegistry")
            .field("name", &self.inner.template.name)
            .field("breakers", &self.inner.map.read().len())
            .field("max_breakers", &self.inner.limits.max_breakers)
            .finish()
    }
}

/// Touching `last_used` on every call would bounce its cache line between threads; a
/// coarser stamp is enough to judge idleness.
const TOUCH_GRANULARITY_NANOS: u64 = 100_000_000;

impl<K: Hash + Eq + Clone + fmt::Display> BreakerRegistry<K> {
    fn now_nanos(&self) -> u64 {
        let now = self.inner.template.clock.now();
        u64::try_from(now.saturating_duration_since(self.inner.origin).as_nanos())
            .unwrap_or(u64::MAX)
    }

    /// The breaker of `key`, made (and the registry trimmed) when it is new.
    pub fn get_or_insert(&self, key: &K) -> Breaker {
        let now = self.now_nanos();
        if let Some(entry) = self.inner.map.read().get(key) {
            let last = entry.last_used.load(Relaxed);
            if now.saturating_sub(last) > TOUCH_GRANULARITY_NANOS {
                entry.last_used.store(now, Relaxed);
            }
            return entry.breaker.clone();
        }
        let mut map = self.inner.map.write();
        if let Some(entry) = map.get(key) {
            return entry.breaker.clone();
        }
        if map.len() >= self.inner.limits.max_breakers {
            self.trim(&mut map, now);
        }
        let name: Arc<str> = format!("{}/{key}", self.inner.template.name).into();
        let breaker = self
            .inner
            .template
            .make_breaker(name, Arc::clone(&self.inner.instruments));
        map.insert(
            key.clone(),
            Entry {
                breaker: breaker.clone(),
                last_used: AtomicU64::new(now),
            },
        );
        breaker
    }

    /// Makes room for one: drops idle breakers, then the least recently used.
    fn trim(&self, map: &mut HashMap<K, Entry>, now: u64) {
        let before = map.len();
        let idle = u64::try_from(self.inner.limits.idle_timeout.as_nanos()).unwrap_or(u64::MAX);
        map.retain(|_, e| now.saturating_sub(e.last_used.load(Relaxed)) < idle);
        if map.len() >= self.inner.limits.max_breakers {
            let victim = map
                .iter()
                .min_by_key(|(_, e)| {
                    (
                        e.breaker.state() != BreakerState::Closed,
                        e.last_used.load(Relaxed),
                    )
                })
                .map(|(k, _)| k.clone());
            if let Some(k) = victim {
                map.remove(&k);
            }
        }
        self.inner
            .evictions
            .fetch_add((before - map.len()) as u64, Relaxed);
    }

    /// Drops every breaker idle longer than the idle timeout; returns how many.
    pub fn evict_idle(&self) -> usize {
        let now = self.now_nanos();
        let idle = u64::try_from(self.inner.limits.idle_timeout.as_nanos()).unwrap_or(u64::MAX);
        let mut map = self.inner.map.write();
        let before = map.len();
        map.retain(|_, e| now.saturating_sub(e.last_used.load(Relaxed)) < idle);
        let dropped = before - map.len();
        self.inner.evictions.fetch_add(dropped as u64, Relaxed);
        dropped
    }

    /// The breaker of `key`, if the registry holds one.
    pub fn get(&self, key: &K) -> Option<Breaker> {
        self.inner.map.read().get(key).map(|e| e.breaker.clone())
    }

    /// Every key and its breaker.
    pub fn breakers(&self) -> Vec<(K, Breaker)> {
        self.inner
            .map
            .read()
            .iter()
            .map(|(k, e)| (k.clone(), e.breaker.clone()))
            .collect()
    }

    /// How many breakers the registry holds.
    pub fn len(&self) -> usize {
        self.inner.map.read().len()
    }

    /// Whether the registry holds no breaker.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Breakers dropped to respect the bound or for idleness, since creation.
    pub fn evictions(&self) -> u64 {
        self.inner.evictions.load(Relaxed)
    }

    /// Resets every breaker.
    pub fn reset_all(&self) {
        for (_, b) in self.breakers() {
            b.reset();
        }
    }
}

impl<K: Hash + Eq + Clone + fmt::Display + Send + Sync> HealthSource for BreakerRegistry<K> {
    /// One component per breaker, named `registry/key`.
    fn health(&self) -> Vec<ComponentHealth> {
        self.breakers()
            .into_iter()
            .map(|(_, b)| b.component_health())
            .collect()
    }
}

impl<C, R> CircuitBreakerBuilder<C, R> {
    /// Per-key mode: both registry bounds at once (from a config file).
    pub fn registry(mut self, config: RegistryConfig) -> Self {
        self.limits = config;
        self
    }

    /// Per-key mode: the most breakers the registry holds, >= 1. Default 1,024.
    pub fn max_breakers(mut self, max: usize) -> Self {
        self.limits.max_breakers = max;
        self
    }

    /// Per-key mode: breakers unused this long are dropped, > 0. Default 10 min.
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.limits.idle_timeout = idle;
        self
    }

    /// Validates the settings and builds a per-key layer: each request goes through the
    /// breaker of `key(&request)`, made on first use from these settings.
    pub fn build_per_key<Req, K, F>(
        self,
        key: F,
    ) -> Result<KeyedCircuitBreakerLayer<F, K, C, R>, ConfigError>
    where
        F: Fn(&Req) -> K,
    {
        self.config.validate()?;
        self.limits.validate()?;
        let origin = self.clock.now();
        let instruments = Instruments::new(&self.name);
        let template = CircuitBreakerBuilder {
            name: self.name,
            config: self.config,
            classifier: (),
            respond: (),
            clock: self.clock,
            listeners: self.listeners,
            limits: self.limits,
        };
        Ok(KeyedCircuitBreakerLayer {
            registry: BreakerRegistry {
                inner: Arc::new(Inner {
                    limits: template.limits,
                    template,
                    origin,
                    map: RwLock::new(HashMap::new()),
                    evictions: AtomicU64::new(0),
                    instruments,
                }),
            },
            key,
            classifier: self.classifier,
            respond: self.respond,
        })
    }
}

/// Applies one breaker per key, from a bounded [`BreakerRegistry`]. Made by
/// [`CircuitBreakerBuilder::build_per_key`].
#[derive(Clone)]
pub struct KeyedCircuitBreakerLayer<F, K, C = ErrorClassifier, R = AsError> {
    registry: BreakerRegistry<K>,
    key: F,
    classifier: C,
    respond: R,
}

impl<F, K, C: fmt::Debug, R: fmt::Debug> fmt::Debug for KeyedCircuitBreakerLayer<F, K, C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakerLayer")
            .field("registry", &self.registry)
            .field("classifier", &self.classifier)
            .field("respond", &self.respond)
            .finish_non_exhaustive()
    }
}

impl<S: fmt::Debug, F, K, C: fmt::Debug, R: fmt::Debug> fmt::Debug
    for KeyedCircuitBreaker<S, F, K, C, R>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreaker")
            .field("inner", &self.inner)
            .field("registry", &self.registry)
            .field("classifier", &self.classifier)
            .field("respond", &self.respond)
            .finish_non_exhaustive()
    }
}

impl<F, K, C, R> KeyedCircuitBreakerLayer<F, K, C, R> {
    /// The registry: per-key breakers, metrics and controls.
    pub fn registry(&self) -> &BreakerRegistry<K> {
        &self.registry
    }
}

impl<S, F: Clone, K, C: Clone, R: Clone> Layer<S> for KeyedCircuitBreakerLayer<F, K, C, R> {
    type Service = KeyedCircuitBreaker<S, F, K, C, R>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedCircuitBreaker {
            inner,
            registry: self.registry.clone(),
            key: self.key.clone(),
            classifier: self.classifier.clone(),
            respond: self.respond.clone(),
        }
    }
}

/// A service behind per-key breakers. Made by [`KeyedCircuitBreakerLayer`].
#[derive(Clone)]
pub struct KeyedCircuitBreaker<S, F, K, C = ErrorClassifier, R = AsError> {
    inner: S,
    registry: BreakerRegistry<K>,
    key: F,
    classifier: C,
    respond: R,
}

impl<S, F, K, C, R> KeyedCircuitBreaker<S, F, K, C, R> {
    /// The registry.
    pub fn registry(&self) -> &BreakerRegistry<K> {
        &self.registry
    }
}

impl<S, F, K, C, R, Req> Service<Req> for KeyedCircuitBreaker<S, F, K, C, R>
where
    S: Service<Req>,
    F: Fn(&Req) -> K,
    K: Hash + Eq + Clone + fmt::Display,
    C: Classify<S::Response, S::Error> + Clone,
    R: Answer<CircuitOpen, S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = R::Error;
    type Future = ResponseFuture<S::Future, C, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| self.respond.inner_error(e))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let breaker = self.registry.get_or_insert(&(self.key)(&req));
        ResponseFuture::start(
            &breaker,
            &mut self.inner,
            req,
            &self.classifier,
            &self.respond,
        )
    }
}
