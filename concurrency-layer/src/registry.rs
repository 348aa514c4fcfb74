//! Which limiter a call counts against: the layer's one [`Limiter`], or one per key in a
//! bounded [`LimiterRegistry`].
//!
//! A per-key layer (one bulkhead per upstream host, per tenant, per exchange) gets the key
//! from a function of the request. The registry holds at most `max_keys` limiters: when a
//! new key finds it full, the idle ones (nothing in flight, nothing queued) are dropped;
//! if none is idle, the call is refused with [`Rejection::TooManyKeys`]. Memory is bounded
//! whatever keys the requests carry. A dropped adaptive limiter forgets what it learned.
//!
//! A lookup of a known key takes a shared read lock; only a new key takes the write lock.
//!
//! # Example
//!
//! ```
//! use concurrency_layer::ConcurrencyLimitLayer;
//! use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let layer = ConcurrencyLimitLayer::builder("hosts")
//!     .limit(2)
//!     .max_keys(100)
//!     .build_per_key(|host: &&'static str| host.to_string())
//!     .unwrap();
//! let mut svc = ServiceBuilder::new()
//!     .layer(layer.clone())
//!     .service(service_fn(|_: &'static str| async { Ok::<_, BoxError>(()) }));
//! svc.ready().await.unwrap().call("a.example").await.unwrap();
//! svc.ready().await.unwrap().call("b.example").await.unwrap();
//! assert_eq!(layer.registry().len(), 2);
//! assert_eq!(layer.registry().get(&"a.example".to_string()).unwrap().limit(), 2);
//! # }
//! ```

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use parking_lot::RwLock;
use reliability_core::clock::SharedClock;

use crate::bulkhead::Limiter;
use crate::config::ConcurrencyConfig;
use crate::error::{BulkheadFull, Rejection};
use crate::metrics::Metrics;
use crate::priority::Priority;
use reliability_core::health::ConcurrencySnapshot;

/// Picks the limiter a request counts against.
pub trait SelectLimiter<Req> {
    /// The limiter for `req` (of class `priority`), or the refusal when there is none.
    fn select(&self, req: &Req, priority: Priority) -> Result<Cow<'_, Limiter>, BulkheadFull>;
}

impl<Req> SelectLimiter<Req> for Limiter {
    #[inline]
    fn select(&self, _: &Req, _: Priority) -> Result<Cow<'_, Limiter>, BulkheadFull> {
        Ok(Cow::Borrowed(self))
    }
}

struct Inner<K> {
    name: Arc<str>,
    config: ConcurrencyConfig,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    map: RwLock<HashMap<K, Limiter>>,
}

/// The limiters of a per-key layer, and the function that keys requests. Cloning is one
/// `Arc` increment (and a clone of the function).
pub struct LimiterRegistry<K, F> {
    inner: Arc<Inner<K>>,
    key: F,
}

impl<K, F: Clone> Clone for LimiterRegistry<K, F> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            key: self.key.clone(),
        }
    }
}

impl<K, F> fmt::Debug for LimiterRegistry<K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimiterRegistry")
            .field("name", &self.inner.name)
            .field("keys", &self.inner.map.read().len())
            .field("max_keys", &self.inner.config.max_keys)
            .finish()
    }
}

impl<K: Hash + Eq + Clone, F> LimiterRegistry<K, F> {
    pub(crate) fn new(
        name: Arc<str>,
        config: ConcurrencyConfig,
        clock: SharedClock,
        key: F,
    ) -> Self {
        let metrics = Arc::new(Metrics::new(&name));
        Self {
            inner: Arc::new(Inner {
                name,
                config,
                clock,
                metrics,
                map: RwLock::new(HashMap::new()),
            }),
            key,
        }
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.inner.map.read().len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The limiter of `key`, if tracked.
    pub fn get(&self, key: &K) -> Option<Limiter> {
        self.inner.map.read().get(key).cloned()
    }

    /// Every tracked key's figures.
    pub fn snapshots(&self) -> Vec<(K, ConcurrencySnapshot)> {
        self.inner
            .map
            .read()
            .iter()
            .map(|(k, l)| (k.clone(), l.snapshot()))
            .collect()
    }

    fn limiter_of(&self, key: K, priority: Priority) -> Result<Limiter, BulkheadFull> {
        if let Some(limiter) = self.inner.map.read().get(&key) {
            return Ok(limiter.clone());
        }
        let inner = &*self.inner;
        let mut map = inner.map.write();
        if let Some(limiter) = map.get(&key) {
            return Ok(limiter.clone());
        }
        if map.len() >= inner.config.max_keys {
            map.retain(|_, limiter| !limiter.is_idle());
        }
        if map.len() >= inner.config.max_keys {
            inner.metrics.rejected(priority);
            return Err(BulkheadFull::new(
                inner.name.clone(),
                Rejection::TooManyKeys,
                priority,
                inner.config.limit,
                inner.config.retry_after,
            ));
        }
        // Every key's limiter reports under the layer's name, through one set of handles.
        let limiter = Limiter::new(
            inner.name.clone(),
            &inner.config,
            inner.clock.clone(),
            inner.metrics.clone(),
        );
        map.insert(key, limiter.clone());
        Ok(limiter)
    }
}

impl<Req, K, F> SelectLimiter<Req> for LimiterRegistry<K, F>
where
    K: Hash + Eq + Clone,
    F: Fn(&Req) -> K,
{
    fn select(&self, req: &Req, priority: Priority) -> Result<Cow<'_, Limiter>, BulkheadFull> {
        self.limiter_of((self.key)(req), priority).map(Cow::Owned)
    }
}
