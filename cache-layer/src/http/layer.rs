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
use super::standard::{CacheRole, DEFAULT_RETAIN_STALE, Standard};
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
    standard: Option<Arc<Standard>>,
}

impl fmt::Debug for HttpCacheLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpCacheLayer")
            .field("cache", &self.cache)
            .field("max_body", &self.max_body)
            .field("invalidate_on_unsafe", &self.invalidate_on_unsafe)
            .field("standard", &self.standard)
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
            standard: None,
            surrogate: None,
            store_set_cookie: false,
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
            standard: self.standard.clone(),
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
    /// The RFC 9111 mode: the role and how long stale responses with validators are kept.
    standard: Option<(CacheRole, Duration)>,
    surrogate: Option<String>,
    store_set_cookie: bool,
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

    /// Switches to the **RFC 9111 mode**: freshness comes from the upstream's own
    /// `Cache-Control` (`s-maxage` in a shared cache, `max-age`), `Expires` and `Age`, or
    /// a heuristic (a tenth of the time since `Last-Modified`, at most a day) for the
    /// statuses that allow one; stale responses with a validator are revalidated with
    /// `If-None-Match` / `If-Modified-Since`, and a 304 freshens the stored copy without a
    /// body transfer; request directives (`max-age`, `max-stale`, `min-fresh`,
    /// `no-cache`, `no-store`, `only-if-cached`) are honoured; responses vary on the
    /// request headers their own `Vary` names; answers from the store carry `Age`; `HEAD`
    /// is answered from a stored `GET`; RFC 5861 `stale-while-revalidate` and
    /// `stale-if-error` come from the response (and `stale-if-error` from the request).
    ///
    /// `role` says whether the cache is shared (`private` responses are not stored,
    /// `s-maxage` and `proxy-revalidate` apply) or private to one user. The configured
    /// TTL, stale windows and `vary` list belong to the default mode, whose fixed TTL
    /// suits upstreams that send no freshness at all; here `vary` is a build error, and
    /// so are L2 and L3 (this mode keeps its entries in L1). Credentials are handled as
    /// in the default mode: bypass unless
    /// [`credential_identity`](Self::credential_identity) or
    /// [`share_authenticated`](Self::share_authenticated).
    ///
    /// ```
    /// use cache_layer::http::{CacheRole, HttpCacheLayer};
    ///
    /// let cache = HttpCacheLayer::builder()
    ///     .name("edge")
    ///     .rfc9111(CacheRole::Shared)
    ///     .build()
    ///     .unwrap();
    /// # let _ = cache;
    /// ```
    pub fn rfc9111(mut self, role: CacheRole) -> Self {
        let retain = self.standard.map_or(DEFAULT_RETAIN_STALE, |(_, r)| r);
        self.standard = Some((role, retain));
        self
    }

    /// In the RFC 9111 mode, how long a response is kept past its freshness (default an
    /// hour; longer when its `stale-while-revalidate` or `stale-if-error` window is): for
    /// revalidation with its validators and for requests that accept a stale answer
    /// (`max-stale`, `stale-if-error`). A response stale on arrival with no validator and
    /// no stale window is not stored. The entry and byte bounds apply throughout.
    pub fn retain_stale(mut self, d: Duration) -> Self {
        let role = self.standard.map_or(CacheRole::Shared, |(r, _)| r);
        self.standard = Some((role, d));
        self
    }

    /// In the RFC 9111 mode, act as the gateway cache (surrogate) `name`: announce it
    /// upstream with `Surrogate-Capability: name="Surrogate/1.0"`, let `Surrogate-Control`
    /// directives (`max-age`, `no-store`) targeted at `name`, or untargeted, override
    /// `Cache-Control` for this cache, and remove `Surrogate-Control` from what goes on
    /// (W3C Edge Architecture 1.0). For reverse proxies and CDNs in front of an origin;
    /// off by default. `name` must be a token (letters, digits, `-`, `_`, `.`).
    pub fn surrogate(mut self, name: impl Into<String>) -> Self {
        self.surrogate = Some(name.into());
        self
    }

    /// In the RFC 9111 mode with [`CacheRole::Shared`], stores responses that set cookies
    /// (`Set-Cookie`) when they carry an explicit lifetime (`max-age`, `s-maxage`,
    /// `Expires`) or `public`, and serves them, cookie included, to every caller, as RFC
    /// 9111 allows. Off by default: a response that sets a cookie is usually one
    /// user's session, and an origin that forgets `private` would hand it to everyone.
    /// Turn it on only in front of an origin whose `Cache-Control` you trust. (A private
    /// cache stores them either way.)
    pub fn store_set_cookie(mut self) -> Self {
        self.store_set_cookie = true;
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
        if self.standard.is_some() {
            if !self.vary.is_empty() {
                return Err(ConfigError::new(
                    "vary",
                    "the RFC 9111 mode varies on the headers each response's Vary names",
                ));
            }
            #[cfg(feature = "redis")]
            if self.l2.is_some() {
                return Err(ConfigError::new(
                    "l2",
                    "the RFC 9111 mode keeps entries in L1 only",
                ));
            }
            #[cfg(feature = "disk")]
            if self.l3.is_some() {
                return Err(ConfigError::new(
                    "l3",
                    "the RFC 9111 mode keeps entries in L1 only",
                ));
            }
        }
        if let Some(name) = &self.surrogate {
            let token = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !token || self.standard.is_none() {
                return Err(ConfigError::new(
                    "surrogate",
                    format!("{name:?}: a token, and only in the RFC 9111 mode"),
                ));
            }
        }
        let standard_mode = self.standard;
        let surrogate = self.surrogate;
        let store_set_cookie = self.store_set_cookie;
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
        let cache = b.build()?;
        let standard = standard_mode.map(|(role, retain)| {
            Arc::new(Standard::new(
                cache.shared.engine.clone(),
                cache.shared.key.clone(),
                role,
                retain,
                self.invalidate_on_unsafe,
                store_set_cookie,
                surrogate,
            ))
        });
        Ok(HttpCacheLayer {
            cache,
            max_body: self.max_body,
            invalidate_on_unsafe: self.invalidate_on_unsafe,
            standard,
        })
    }
}

/// Appends this cache's RFC 9211 `Cache-Status` member to `resp`.
pub(super) fn annotate(resp: &mut CachedResponse, status: &CacheStatus, name: &str) {
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
