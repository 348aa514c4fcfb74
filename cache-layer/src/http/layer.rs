//! [`HttpCacheLayer`] and its builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use reliability_core::clock::SharedClock;
use reliability_core::error::ConfigError;
use tower_layer::Layer;

use super::key::IdentityFn;
use super::policy::{Rules, http_directive};
use super::{BufferBody, CACHE_STATUS, CachedResponse, HttpCache, HttpKey};
use crate::CacheHandle;
use crate::config::CacheConfig;
use crate::freshness::StaleWindows;
use crate::layer::CacheLayer;
use crate::status::CacheStatus;

/// Caches HTTP responses: see the [module docs](super).
#[derive(Clone)]
pub struct HttpCacheLayer {
    cache: CacheLayer<HttpKey, CachedResponse>,
    max_body: usize,
    invalidate_on_unsafe: bool,
}

impl fmt::Debug for HttpCacheLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpCacheLayer")
            .field("cache", &self.cache)
            .field("max_body", &self.max_body)
            .field("invalidate_on_unsafe", &self.invalidate_on_unsafe)
            .finish()
    }
}

impl HttpCacheLayer {
    /// A builder with safe defaults: 60 s TTL, no Vary headers, 1 MiB body cap,
    /// credentialed requests bypass, `Cache-Control` honoured.
    pub fn builder() -> HttpCacheLayerBuilder {
        HttpCacheLayerBuilder {
            config: CacheConfig::default(),
            vary: Vec::new(),
            identity: None,
            share_authenticated: false,
            honor_cache_control: true,
            max_body: 1 << 20,
            invalidate_on_unsafe: true,
            clock: None,
            invalid_vary: None,
            #[cfg(feature = "redis")]
            l2: None,
            #[cfg(feature = "disk")]
            l3: None,
        }
    }

    /// The handle for invalidation and metrics. Keys read
    /// `"GET http://host/path?query|header=value"` (see [`HttpKey`]): to drop every
    /// variant of one URI, `invalidate_prefix("GET http://host/path|")` and
    /// `invalidate("GET http://host/path")`.
    pub fn handle(&self) -> CacheHandle<CachedResponse> {
        self.cache.handle()
    }
}

impl<S> Layer<S> for HttpCacheLayer {
    type Service = HttpCache<S>;

    fn layer(&self, inner: S) -> HttpCache<S> {
        HttpCache {
            inner: self.cache.layer(BufferBody::new(inner, self.max_body)),
            invalidate_on_unsafe: self.invalidate_on_unsafe,
        }
    }
}

/// Builds an [`HttpCacheLayer`].
#[must_use]
pub struct HttpCacheLayerBuilder {
    config: CacheConfig,
    vary: Vec<HeaderName>,
    identity: Option<IdentityFn>,
    share_authenticated: bool,
    honor_cache_control: bool,
    max_body: usize,
    invalidate_on_unsafe: bool,
    clock: Option<SharedClock>,
    invalid_vary: Option<String>,
    #[cfg(feature = "redis")]
    l2: Option<(crate::backend::redis::RedisTier, Option<Duration>)>,
    #[cfg(feature = "disk")]
    l3: Option<crate::backend::disk::DiskTier>,
}

impl fmt::Debug for HttpCacheLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpCacheLayerBuilder")
            .field("config", &self.config)
            .field("vary", &self.vary)
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

impl HttpCacheLayerBuilder {
    crate::config::config_setters!();

    /// Caches 404 and 410 answers for `ttl` (off by default).
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.config.negative_ttl = Some(ttl);
        self
    }

    /// Request headers that are part of the key (`Accept`, `Accept-Language`...).
    /// Invalid header names are a build error.
    pub fn vary<I, N>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: AsRef<str>,
    {
        for n in names {
            match HeaderName::from_bytes(n.as_ref().as_bytes()) {
                Ok(h) => self.vary.push(h),
                Err(_) => {
                    self.invalid_vary
                        .get_or_insert_with(|| format!("not a header name: {:?}", n.as_ref()));
                }
            }
        }
        self
    }

    /// Largest body buffered for caching (default 1 MiB); larger ones stream uncached.
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.max_body = n;
        self
    }

    /// Caches credentialed requests per caller: `f` maps the request headers to the
    /// caller's identity (a user id, not the token), which becomes part of the key;
    /// `None` makes the request bypass.
    pub fn credential_identity(
        mut self,
        f: impl Fn(&HeaderMap) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.identity = Some(Arc::new(f));
        self
    }

    /// Shares responses to credentialed requests between callers (opt-in, for APIs
    /// whose answers do not depend on who asks).
    pub fn share_authenticated(mut self) -> Self {
        self.share_authenticated = true;
        self
    }

    /// Whether a successful (2xx, 3xx) unsafe request, any method but `GET`, `HEAD`,
    /// `OPTIONS` and `TRACE`, invalidates the `GET` and `HEAD` entries of its target URI
    /// and of same-origin `Location` / `Content-Location` URIs, before its answer reaches
    /// the caller (RFC 9111 §4.4; default true).
    ///
    /// With [`vary`](Self::vary) headers or [`credential_identity`](Self::credential_identity)
    /// a URI has several entries, so this is a prefix invalidation: a scan of L1, and with
    /// L2 a bump of the Redis generation (the whole L2 namespace). Turn it off for
    /// write-heavy APIs whose reads tolerate the TTL, and invalidate through
    /// [`HttpCacheLayer::handle`] instead.
    pub fn invalidate_on_unsafe(mut self, on: bool) -> Self {
        self.invalidate_on_unsafe = on;
        self
    }

    /// Whether response `Cache-Control` freshness directives (`max-age`, `s-maxage`,
    /// `stale-while-revalidate`, `stale-if-error`) set TTLs and windows (default true).
    /// `no-store`, `private` and `no-cache` are honoured either way.
    pub fn honor_cache_control(mut self, on: bool) -> Self {
        self.honor_cache_control = on;
        self
    }

    /// Adds Redis as L2 for responses ([`ResponseCodec`](super::ResponseCodec));
    /// `lock_ttl` turns on distributed single-flight. Build inside a tokio runtime.
    #[cfg(feature = "redis")]
    pub fn l2(
        mut self,
        tier: crate::backend::redis::RedisTier,
        lock_ttl: Option<Duration>,
    ) -> Self {
        self.l2 = Some((tier, lock_ttl));
        self
    }

    /// Adds a disk tier as L3 for responses ([`ResponseCodec`](super::ResponseCodec)): read
    /// on L1/L2 misses, written behind on its own thread, kept across restarts.
    #[cfg(feature = "disk")]
    pub fn l3(mut self, tier: crate::backend::disk::DiskTier) -> Self {
        self.l3 = Some(tier);
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<HttpCacheLayer, ConfigError> {
        if let Some(bad) = self.invalid_vary {
            return Err(ConfigError::new("vary", bad));
        }
        if self.max_body == 0 || self.max_body > (256 << 20) {
            return Err(ConfigError::out_of_range(
                "max_body_bytes",
                "[1, 268435456]",
                self.max_body,
            ));
        }
        let vary: Arc<[HeaderName]> = self.vary.into();
        let rules = Rules {
            vary: vary.clone(),
            honor_cache_control: self.honor_cache_control,
            negative: self.config.negative_ttl.is_some(),
            windows: StaleWindows {
                stale_while_revalidate: self.config.stale_while_revalidate,
                stale_if_error: self.config.effective_stale_if_error(),
                max_staleness: self.config.max_staleness,
            },
        };
        let key = HttpKey {
            vary,
            identity: self.identity,
            share_authenticated: self.share_authenticated,
        };
        let mut b = CacheLayer::builder(key)
            .config(self.config)
            .value_size(response_size)
            .directive(move |resp, d| http_directive(resp, d, &rules))
            .annotate(annotate);
        if let Some(c) = self.clock {
            b = b.clock(c);
        }
        #[cfg(feature = "redis")]
        if let Some((tier, lock)) = self.l2 {
            b = b.l2(tier, super::ResponseCodec);
            if let Some(ttl) = lock {
                b = b.distributed_single_flight(ttl);
            }
        }
        #[cfg(feature = "disk")]
        if let Some(tier) = self.l3 {
            b = b.l3(tier, super::ResponseCodec);
        }
        Ok(HttpCacheLayer {
            cache: b.build()?,
            max_body: self.max_body,
            invalidate_on_unsafe: self.invalidate_on_unsafe,
        })
    }
}

/// Appends this cache's RFC 9211 `Cache-Status` member to `resp`.
fn annotate(resp: &mut CachedResponse, status: &CacheStatus, name: &str) {
    if let Ok(v) = HeaderValue::from_str(&status.header_value(name)) {
        // RFC 9211: each cache appends its member; the upstream's own stay first.
        resp.headers_mut().append(CACHE_STATUS, v);
    }
}

/// The weight of a response for the byte bound and the value-size limit: its headers
/// and buffered body.
fn response_size(resp: &CachedResponse) -> usize {
    let headers: usize = resp
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    headers + resp.body().bytes().map_or(0, Bytes::len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_builder_settings_name_their_field() {
        let e = HttpCacheLayer::builder()
            .vary(["ok", "bad header"])
            .build()
            .unwrap_err();
        assert_eq!(e.field, "vary");
        let e = HttpCacheLayer::builder()
            .max_body_bytes(0)
            .build()
            .unwrap_err();
        assert_eq!(e.field, "max_body_bytes");
    }
}
