//! The RFC 9111 mode of [`HttpCacheLayer`](super::HttpCacheLayer): freshness, age,
//! validation and `Vary` as the HTTP caching standard defines them, for a shared or a
//! private cache.
//!
//! The pure parts are [`directives`] (`Cache-Control` read for requests and responses),
//! [`freshness`] (lifetimes and the §4.2.3 age) and [`vary`] (which stored response a
//! request selects); [`flow`] carries a request through them. Entries live in the same L1
//! as the configured-TTL mode's (bounds, metrics, [`CacheHandle`] invalidation): each is
//! kept as long as it can still be used (fresh, within a stale window, or revalidatable),
//! and every decision about serving it is taken at the moment of the request.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use http::header::{
    CONNECTION, ETAG, LAST_MODIFIED, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, SET_COOKIE, TE,
    TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderName, HeaderValue};
use parking_lot::Mutex;
use tokio::sync::watch;

use super::{CACHE_STATUS, CachedResponse, HttpKey};
use crate::CacheHandle;
use crate::engine::Engine;

mod conditions;
mod directives;
pub(super) mod flow;
pub(super) use super::layer::annotate;
pub use conditions::freshen;
pub use conditions::{add_validators, is_conditional};
mod freshness;
mod surrogate;
mod vary;

use directives::{Delta, ResponseDirectives};
pub use freshness::CacheRole;
use freshness::{Lifetime, Timing, current_age, lifetime};
use surrogate::{SURROGATE_CAPABILITY, SURROGATE_CONTROL, Surrogate};
use vary::{Vary, variant_key, vary};

/// How long a response is kept past its freshness by default.
pub(super) const DEFAULT_RETAIN_STALE: Duration = Duration::from_secs(3600);

/// The longest an entry is kept, whatever its headers say.
const MAX_RETENTION: Duration = Duration::from_secs(365 * 24 * 3600);

/// In-flight background revalidations, and collapsed misses, are bounded: past this
/// many keys, a stale-while-revalidate request revalidates in the foreground and a miss
/// goes upstream uncollapsed.
const MAX_REVALIDATIONS: usize = 4096;

/// The RFC 9111 mode's state, shared by the layer and its services.
pub(super) struct Standard {
    pub(super) engine: Arc<Engine<CachedResponse>>,
    /// The configured-TTL mode's key rules, used for the primary key only (no `vary`).
    pub(super) key: HttpKey,
    pub(super) role: CacheRole,
    pub(super) retain_stale: Duration,
    pub(super) invalidate_on_unsafe: bool,
    /// Whether a shared cache may store responses that set cookies.
    pub(super) store_set_cookie: bool,
    /// The name under which `Surrogate-Control` is honoured, with the
    /// `Surrogate-Capability` value sent upstream.
    surrogate: Option<(String, HeaderValue)>,
    /// Keys with a background revalidation running.
    revalidating: Mutex<HashSet<String>>,
    /// Keys with a collapsed miss in flight: followers wait for the sender to go.
    flights: Mutex<HashMap<String, watch::Receiver<()>>>,
    /// Counts invalidations of URIs by unsafe methods.
    invalidations: AtomicU64,
    /// The count at each URI's latest invalidation (bounded, and kept long enough for any
    /// request in flight at the time to have finished).
    invalidated: moka::sync::Cache<String, u64>,
}

impl std::fmt::Debug for Standard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Standard")
            .field("role", &self.role)
            .field("retain_stale", &self.retain_stale)
            .finish_non_exhaustive()
    }
}

/// A stored response selected for a request, with what the store knows of it.
#[derive(Clone)]
pub(super) struct Selected {
    /// Where it is stored.
    pub(super) key: String,
    pub(super) response: CachedResponse,
    pub(super) timing: Timing,
}

/// Why nothing was selected.
pub(super) enum Missing {
    /// Nothing stored for the URI.
    Uri,
    /// Responses stored for the URI, none for these `Vary` values.
    Variant,
}

impl Standard {
    pub(super) fn new(
        engine: Arc<Engine<CachedResponse>>,
        key: HttpKey,
        role: CacheRole,
        retain_stale: Duration,
        invalidate_on_unsafe: bool,
        store_set_cookie: bool,
        surrogate: Option<String>,
    ) -> Self {
        let surrogate = surrogate.and_then(|name| {
            let capability = HeaderValue::from_str(&format!("{name}=\"Surrogate/1.0\"")).ok()?;
            Some((name, capability))
        });
        Self {
            engine,
            key,
            role,
            retain_stale,
            invalidate_on_unsafe,
            store_set_cookie,
            surrogate,
            revalidating: Mutex::new(HashSet::new()),
            flights: Mutex::new(HashMap::new()),
            invalidations: AtomicU64::new(0),
            invalidated: moka::sync::Cache::builder()
                .max_capacity(MAX_TRACKED_INVALIDATIONS)
                .time_to_live(Duration::from_secs(600))
                .build(),
        }
    }

    /// Where the count of invalidations stands: taken when a request goes upstream.
    pub(super) fn invalidation_count(&self) -> u64 {
        self.invalidations.load(Ordering::Acquire)
    }

    /// Notes that an unsafe method changed the resource under `primary` (whatever the
    /// caller's identity in it).
    pub(super) fn note_invalidated(&self, primary: &str) {
        let n = self.invalidations.fetch_add(1, Ordering::AcqRel) + 1;
        self.invalidated.insert(uri_of(primary).to_owned(), n);
    }

    /// Whether the resource under `primary` was invalidated after the count `since`.
    fn invalidated_since(&self, primary: &str, since: u64) -> bool {
        self.invalidated
            .get(uri_of(primary))
            .is_some_and(|n| n > since)
    }

    pub(super) fn handle(&self) -> CacheHandle<CachedResponse> {
        CacheHandle {
            engine: self.engine.clone(),
        }
    }

    pub(super) fn name(&self) -> &str {
        &self.engine.settings.name
    }

    pub(super) fn now(&self) -> SystemTime {
        self.engine.clock.wall()
    }

    /// Announces the surrogate on a request going upstream (`Surrogate-Capability`).
    pub(super) fn announce(&self, headers: &mut HeaderMap) {
        if let Some((_, capability)) = &self.surrogate {
            headers.append(SURROGATE_CAPABILITY, capability.clone());
        }
    }

    /// Takes what `Surrogate-Control` says to this surrogate off an upstream answer,
    /// into an extension the store reads; the header does not go further.
    pub(super) fn receive(&self, resp: &mut CachedResponse) {
        if let Some((name, _)) = &self.surrogate
            && resp.headers().contains_key(SURROGATE_CONTROL)
        {
            let directives = surrogate::parse(resp.headers(), name);
            resp.headers_mut().remove(SURROGATE_CONTROL);
            resp.extensions_mut().insert(directives);
        }
    }

    /// The freshness lifetime of a stored or received response: `Surrogate-Control`'s
    /// `max-age` when it gave one, else the RFC 9111 rules.
    pub(super) fn lifetime_of(
        &self,
        resp: &CachedResponse,
        cc: &ResponseDirectives,
        response_time: SystemTime,
    ) -> Lifetime {
        if let Some(secs) = resp.extensions().get::<Surrogate>().and_then(|s| s.max_age) {
            return Lifetime::Explicit(Duration::from_secs(secs));
        }
        lifetime(
            resp.status().as_u16(),
            resp.headers(),
            cc,
            self.role,
            response_time,
        )
    }

    /// The stored response `req` selects under `primary` (§4.1).
    pub(super) fn select(&self, primary: &str, req: &HeaderMap) -> Result<Selected, Missing> {
        let entry = self.engine.held(primary).ok_or(Missing::Uri)?;
        let (key, entry) = match vary(entry.value.headers()) {
            Vary::On(names) if names.is_empty() => (primary.to_owned(), entry),
            Vary::On(names) => {
                let key = variant_key(primary, &names, req);
                let found = self.engine.held(&key).ok_or(Missing::Variant)?;
                (key, found)
            }
            Vary::Never => return Err(Missing::Variant),
        };
        let timing = *entry
            .value
            .extensions()
            .get::<Timing>()
            .ok_or(Missing::Uri)?;
        Ok(Selected {
            key,
            response: entry.value.clone(),
            timing,
        })
    }

    /// Stores `resp` (the answer to a request with headers `req`, sent at
    /// `timing.request_time`) when §3 allows, under its URI's primary key and, for a
    /// response with `Vary`, under its variant's. Returns whether it was stored.
    pub(super) fn store(
        &self,
        primary: &str,
        req: &HeaderMap,
        resp: &CachedResponse,
        timing: Timing,
    ) -> bool {
        // An invalidation of the URI (an unsafe method to it) since the request was sent:
        // its answer may be older than what the write left.
        if self.invalidated_since(primary, timing.epoch) {
            return false;
        }
        let Some(retention) = self.retention(resp, timing) else {
            return false;
        };
        let names = match vary(resp.headers()) {
            Vary::On(names) => names,
            Vary::Never => return false,
        };
        let mut stored = resp.clone();
        strip_hop_by_hop(stored.headers_mut());
        stored.headers_mut().remove(CACHE_STATUS);
        let directives = stored.extensions().get::<Surrogate>().copied();
        stored.extensions_mut().clear();
        stored.extensions_mut().insert(timing);
        if let Some(d) = directives {
            stored.extensions_mut().insert(d);
        }
        let mut ok = self.engine.retain(primary, stored.clone(), retention);
        if !names.is_empty() {
            let key = variant_key(primary, &names, req);
            ok &= self.engine.retain(&key, stored, retention);
        }
        ok
    }

    /// How long a response may be kept (§3), `None` when it may not be stored at all.
    fn retention(&self, resp: &CachedResponse, timing: Timing) -> Option<Duration> {
        let status = resp.status().as_u16();
        let headers = resp.headers();
        let cc = ResponseDirectives::parse(headers);
        // 206 needs range-aware storage, 304 is never a full response, 1xx not final.
        if !(200..600).contains(&status) || status == 206 || status == 304 {
            return None;
        }
        // §5.2.2.3: with must-understand, only statuses whose caching rules the cache
        // knows are stored, and then no-store is overridden.
        let no_store = if cc.must_understand {
            if !known_status(status) {
                return None;
            }
            false
        } else {
            cc.no_store
        };
        let surrogate = resp
            .extensions()
            .get::<Surrogate>()
            .copied()
            .unwrap_or_default();
        if (no_store && surrogate.max_age.is_none())
            || surrogate.no_store
            || (cc.private && self.role == CacheRole::Shared)
            || resp.body().is_streaming()
        {
            return None;
        }
        let life = self.lifetime_of(resp, &cc, timing.response_time);
        // §3: storable with explicit freshness, `public`, or a heuristically cacheable
        // status; stored only if it can ever be served.
        let explicit = matches!(life, Lifetime::Explicit(_));
        let heuristic_status = freshness::HEURISTIC.contains(&status);
        if !explicit && !cc.public && !heuristic_status {
            return None;
        }
        // A response that sets a cookie is someone's session: a shared cache keeps it only
        // when told to trust its origin's freshness (`store_set_cookie`, as RFC 9111
        // allows), and then never on a heuristic.
        let sets_cookie = headers.contains_key(SET_COOKIE) || headers.contains_key("set-cookie2");
        if sets_cookie
            && ((self.role == CacheRole::Shared && !self.store_set_cookie)
                || (!explicit && !cc.public))
        {
            return None;
        }
        let age = current_age(headers, timing, timing.response_time);
        let fresh_left = life.duration().saturating_sub(age);
        let windows = [cc.stale_while_revalidate, cc.stale_if_error]
            .into_iter()
            .filter_map(Delta::secs)
            .max()
            .map_or(Duration::ZERO, Duration::from_secs);
        let validated = headers.contains_key(ETAG) || headers.contains_key(LAST_MODIFIED);
        if fresh_left.is_zero() && windows.is_zero() && !validated {
            // Stale on arrival with nothing to revalidate it by: it could only ever be
            // served to a request that accepts any staleness.
            return None;
        }
        // Kept past its freshness for revalidation and for requests that accept a stale
        // answer (`max-stale`, `stale-if-error`), within the byte and entry bounds.
        let keep = fresh_left.saturating_add(windows.max(self.retain_stale));
        Some(keep.min(MAX_RETENTION))
    }

    /// Claims the background revalidation of `key`; `None` when one runs already (or
    /// too many do).
    pub(super) fn claim_revalidation(self: &Arc<Self>, key: &str) -> Option<RevalidationGuard> {
        let mut running = self.revalidating.lock();
        if running.len() >= MAX_REVALIDATIONS || !running.insert(key.to_owned()) {
            return None;
        }
        Some(RevalidationGuard {
            standard: self.clone(),
            key: key.to_owned(),
        })
    }
}

/// The most URIs whose latest invalidation is remembered.
const MAX_TRACKED_INVALIDATIONS: u64 = 100_000;

/// The `GET scheme://authority/path?query` part of a primary key, without the caller's
/// identity (`|@id`): `|` never occurs in the URI part, which escapes it.
fn uri_of(primary: &str) -> &str {
    primary.split_once("|@").map_or(primary, |(uri, _)| uri)
}

/// Whether RFC 9110 defines `status` (for `must-understand`, §5.2.2.3).
fn known_status(status: u16) -> bool {
    matches!(status, 200..=206 | 300..=305 | 307 | 308 | 400..=417 | 421 | 422 | 426 | 500..=505)
}

/// A miss's place in request collapsing.
pub(super) enum Flight {
    /// The first miss of its key: goes upstream; followers wake when this is dropped.
    Lead(FlightGuard),
    /// Another miss of the key is in flight: wait for it to end.
    Follow(watch::Receiver<()>),
    /// Too many keys in flight: go upstream uncollapsed.
    Alone,
}

/// Ends a collapsed miss when dropped (answered or cancelled): the key leaves the table,
/// then the sender goes and every follower wakes.
pub(super) struct FlightGuard {
    standard: Arc<Standard>,
    key: String,
    _done: watch::Sender<()>,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        self.standard.flights.lock().remove(&self.key);
    }
}

impl Standard {
    /// Joins the collapsed miss of `key`, or leads one.
    pub(super) fn join_flight(self: &Arc<Self>, key: &str) -> Flight {
        let mut flights = self.flights.lock();
        if let Some(done) = flights.get(key) {
            self.engine.metrics.coalesced();
            return Flight::Follow(done.clone());
        }
        if flights.len() >= MAX_REVALIDATIONS {
            return Flight::Alone;
        }
        let (done, waiting) = watch::channel(());
        flights.insert(key.to_owned(), waiting);
        Flight::Lead(FlightGuard {
            standard: self.clone(),
            key: key.to_owned(),
            _done: done,
        })
    }
}

/// Releases a background revalidation's claim when dropped (finished or cancelled).
pub(super) struct RevalidationGuard {
    standard: Arc<Standard>,
    key: String,
}

impl Drop for RevalidationGuard {
    fn drop(&mut self) {
        self.standard.revalidating.lock().remove(&self.key);
    }
}

/// Removes the hop-by-hop fields (RFC 9110 §7.6.1: `Connection` and the fields it names,
/// `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`,
/// `Proxy-Authenticate`, `Proxy-Authorization`), which a cache does not store (RFC 9111
/// §3.1) and a proxy does not forward.
///
/// ```
/// let mut h = http::HeaderMap::new();
/// h.insert("connection", "close, x-secret".parse().unwrap());
/// h.insert("x-secret", "1".parse().unwrap());
/// h.insert("etag", "\"a\"".parse().unwrap());
/// cache_layer::http::strip_hop_by_hop(&mut h);
/// assert_eq!(h.len(), 1);
/// ```
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in [
        CONNECTION,
        TE,
        TRAILER,
        TRANSFER_ENCODING,
        UPGRADE,
        PROXY_AUTHENTICATE,
        PROXY_AUTHORIZATION,
    ] {
        headers.remove(name);
    }
    for name in ["keep-alive", "proxy-connection"] {
        headers.remove(name);
    }
}
