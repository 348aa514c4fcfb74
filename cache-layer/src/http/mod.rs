//! HTTP mode: caching `http::Request` → `http::Response` with the rules of a shared cache.
//!
//! [`HttpCacheLayer`] keys a request by method, target URI (scheme, authority from the URI
//! or the `Host` header, path and query: virtual hosts never share entries) and the
//! request headers named with [`vary`](HttpCacheLayerBuilder::vary), see [`HttpKey`];
//! buffers response bodies up to a cap; and follows RFC 9111 where a server-side (shared)
//! cache must:
//!
//! - only `GET` and `HEAD` are cached; a request with `Cache-Control: no-store` bypasses;
//! - an unsafe request (`POST`, `PUT`, `DELETE`, `PATCH`..., never cached) answered with a
//!   2xx or 3xx invalidates the `GET` and `HEAD` entries of its target URI and of
//!   same-origin `Location` / `Content-Location` URIs (§4.4), see
//!   [`invalidate_on_unsafe`](HttpCacheLayerBuilder::invalidate_on_unsafe);
//! - a request with `Authorization` or `Cookie` is **never shared**: it bypasses the cache,
//!   unless [`credential_identity`](HttpCacheLayerBuilder::credential_identity) puts the
//!   caller's identity in the key (each user then has their own entries) or the user opts
//!   in with [`share_authenticated`](HttpCacheLayerBuilder::share_authenticated);
//! - responses with `Cache-Control: no-store` or `private`, or with `Set-Cookie`, are
//!   neither stored nor handed to coalesced callers (each makes its own call);
//! - `s-maxage` / `max-age` set the TTL, `stale-while-revalidate` / `stale-if-error` the
//!   windows (when [`honor_cache_control`](HttpCacheLayerBuilder::honor_cache_control) is
//!   on, the default); `no-cache` responses are not stored;
//! - a response whose `Vary` names a header the key does not include (or `*`) is not
//!   stored; 5xx answers count as failures (stale-if-error serves a stale copy instead);
//!   404 and 410 are negative answers, stored only with a negative TTL;
//! - bodies larger than the cap stream through uncached;
//! - every response carries an RFC 9211 `Cache-Status` member, such as
//!   `api; hit; ttl=12` or `api; fwd=miss; stored`.
//!
//! Upstream errors become responses with the status of reliability-core's failure table
//! (`502 Bad Gateway`, `504` for a timeout) carrying the error as an
//! [`UpstreamError`] extension, so axum needs no `HandleErrorLayer` and stale-if-error
//! applies to them too.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use axum::{Router, routing::get};
//! use cache_layer::http::HttpCacheLayer;
//!
//! let cache = HttpCacheLayer::builder()
//!     .name("api")
//!     .ttl(Duration::from_secs(5))
//!     .stale_while_revalidate(Duration::from_secs(30))
//!     .vary(["accept"])
//!     .build()
//!     .unwrap();
//! let app: Router = Router::new().route("/price", get(|| async { "42" })).layer(cache);
//! # let _ = app;
//! ```

use http::{HeaderName, Response};

mod body;
#[cfg(feature = "redis")]
mod codec;
mod key;
mod layer;
mod policy;
mod service;
mod standard;

pub use body::{BufferBody, CachedBody, UpstreamError};
#[cfg(feature = "redis")]
pub use codec::ResponseCodec;
pub use key::HttpKey;
pub use layer::{HttpCacheLayer, HttpCacheLayerBuilder};
pub use policy::{cache_control, forbids_shared_storage};
pub use service::{HttpCache, HttpResponseFuture};
pub use standard::{CacheRole, add_validators, freshen, is_conditional, strip_hop_by_hop};

/// The `Cache-Status` header (RFC 9211).
pub const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// The response type of the HTTP mode.
pub type CachedResponse = Response<CachedBody>;
