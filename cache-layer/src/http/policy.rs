//! The rules of a shared cache (RFC 9111): which responses are stored and for how long
//! (`Cache-Control`, `Vary`, status), and what an unsafe request invalidates.

use std::sync::Arc;
use std::time::Duration;

use http::header::{CACHE_CONTROL, CONTENT_LOCATION, LOCATION, SET_COOKIE, VARY};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};

use super::key::{push_origin, push_path, request_origin};
use super::{CachedResponse, HttpKey};
use crate::CacheHandle;
use crate::engine::{Directive, StoreAction};
use crate::freshness::StaleWindows;
use crate::service::Cache;

/// The directives of every `Cache-Control` field in `headers`, as `(name, value)`.
///
/// Names are as sent (directive names are case-insensitive: compare with
/// `eq_ignore_ascii_case`); a quoted value is unquoted, and a comma inside the quotes does
/// not split it (`private="set-cookie, x-user"` is one directive, RFC 9110 §5.6.4). A field
/// that is not visible ASCII is skipped whole. Nothing is allocated.
///
/// ```
/// use cache_layer::http::cache_control;
///
/// let mut headers = http::HeaderMap::new();
/// headers.append("cache-control", "max-age=60, private=\"set-cookie, x-user\"".parse().unwrap());
/// headers.append("cache-control", "Stale-While-Revalidate=30".parse().unwrap());
/// let directives: Vec<_> = cache_control(&headers).collect();
/// assert_eq!(directives, [
///     ("max-age", Some("60")),
///     ("private", Some("set-cookie, x-user")),
///     ("Stale-While-Revalidate", Some("30")),
/// ]);
/// ```
pub fn cache_control(headers: &HeaderMap) -> impl Iterator<Item = (&str, Option<&str>)> {
    headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|field| ListMembers { rest: field })
        .filter_map(|member| {
            let (name, value) = match member.split_once('=') {
                Some((n, v)) => (n.trim(), Some(unquote(v.trim()))),
                None => (member, None),
            };
            (!name.is_empty()).then_some((name, value))
        })
}

/// Whether `Cache-Control` forbids a shared cache to store the response (`no-store`,
/// `private`, in any case, with or without a field list, or a field that cannot be read).
///
/// ```
/// use cache_layer::http::forbids_shared_storage;
///
/// let mut headers = http::HeaderMap::new();
/// assert!(!forbids_shared_storage(&headers));
/// headers.insert("cache-control", "max-age=5, Private=\"x-user\"".parse().unwrap());
/// assert!(forbids_shared_storage(&headers));
/// ```
pub fn forbids_shared_storage(headers: &HeaderMap) -> bool {
    unreadable_cache_control(headers)
        || cache_control(headers)
            .any(|(n, _)| n.eq_ignore_ascii_case("no-store") || n.eq_ignore_ascii_case("private"))
}

/// Whether a `Cache-Control` field is not visible ASCII (obs-text), which
/// [`cache_control`] skips: what it might forbid is then assumed.
pub(crate) fn unreadable_cache_control(headers: &HeaderMap) -> bool {
    headers
        .get_all(CACHE_CONTROL)
        .iter()
        .any(|v| v.to_str().is_err())
}

/// The members of one comma-separated field value, trimmed, empty ones skipped; commas
/// inside a quoted string (with `\` escapes) do not split.
struct ListMembers<'a> {
    rest: &'a str,
}

impl<'a> Iterator for ListMembers<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let bytes = self.rest.as_bytes();
            let (mut quoted, mut escaped, mut end) = (false, false, bytes.len());
            for (i, &b) in bytes.iter().enumerate() {
                match b {
                    _ if escaped => escaped = false,
                    b'\\' if quoted => escaped = true,
                    b'"' => quoted = !quoted,
                    b',' if !quoted => {
                        end = i;
                        break;
                    }
                    _ => {}
                }
            }
            let member = self.rest[..end].trim();
            self.rest = self.rest.get(end + 1..).unwrap_or("");
            if !member.is_empty() {
                return Some(member);
            }
        }
    }
}

/// A quoted string's content (escapes left in place: directive values never need them),
/// or a token as it is.
fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .map(|v| v.strip_suffix('"').unwrap_or(v))
        .unwrap_or(v)
}

/// Statuses a shared cache may store by default (RFC 9110 §15.1, heuristically cacheable).
const CACHEABLE: [u16; 11] = [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];

/// The storage rules of one HTTP cache, from its builder.
#[derive(Debug, Clone)]
pub(super) struct Rules {
    /// The request headers in the key: a response varying on others is not stored.
    pub(super) vary: Arc<[HeaderName]>,
    /// Whether `max-age`, `s-maxage` and the stale directives set TTLs and windows.
    pub(super) honor_cache_control: bool,
    /// Whether negative answers (404, 410) may be stored.
    pub(super) negative: bool,
    /// The cache's stale windows, which response directives override one by one.
    pub(super) windows: StaleWindows,
}

fn seconds(v: Option<&str>) -> Option<Duration> {
    // Bounded: a hostile `max-age=99999999999` cannot overflow anything.
    v?.parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(365 * 24 * 3600)))
}

/// The directive for `resp` under `rules`, refining the cache's default `d`.
pub(super) fn http_directive(resp: &CachedResponse, mut d: Directive, rules: &Rules) -> Directive {
    let status = resp.status().as_u16();
    if resp.body().is_streaming()
        || resp.headers().contains_key(SET_COOKIE)
        || unreadable_cache_control(resp.headers())
    {
        d.action = StoreAction::DoNotShare;
        return d;
    }
    if status >= 500 {
        d.action = StoreAction::Failure;
        return d;
    }
    d.negative = matches!(status, 404 | 410);
    if !CACHEABLE.contains(&status) || (d.negative && !rules.negative) {
        d.action = StoreAction::Skip;
        return d;
    }
    let varies_elsewhere = resp
        .headers()
        .get_all(VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|name| {
            name == "*"
                || !rules
                    .vary
                    .iter()
                    .any(|h| h.as_str().eq_ignore_ascii_case(name))
        });
    if varies_elsewhere {
        d.action = StoreAction::Skip;
        return d;
    }
    let mut windows = rules.windows;
    let (mut max_age, mut s_maxage) = (None, None);
    for (name, value) in cache_control(resp.headers()) {
        match name.to_ascii_lowercase().as_str() {
            // A server-side cache is a shared cache (RFC 9111 §5.2.2.7).
            "no-store" | "private" => {
                d.action = StoreAction::DoNotShare;
                d.shared = false;
                return d;
            }
            "no-cache" => d.action = StoreAction::Skip,
            "max-age" => max_age = seconds(value),
            "s-maxage" => s_maxage = seconds(value),
            "stale-while-revalidate" => {
                if let Some(w) = seconds(value) {
                    windows.stale_while_revalidate = w;
                }
            }
            "stale-if-error" => {
                if let Some(w) = seconds(value) {
                    windows.stale_if_error = w;
                }
            }
            _ => {}
        }
    }
    if !rules.honor_cache_control {
        return d;
    }
    match s_maxage.or(max_age) {
        Some(ttl) if ttl.is_zero() => d.action = StoreAction::Skip,
        Some(ttl) if !d.negative => d.ttl = Some(ttl),
        _ => {}
    }
    d.windows = Some(windows);
    d
}

/// Safe methods (RFC 9110 §9.2.1) do not change the resource: their answers invalidate
/// nothing. Every other method, known or not, is unsafe (RFC 9111 §4.4).
pub(super) fn is_safe(m: &Method) -> bool {
    m == Method::GET || m == Method::HEAD || m == Method::OPTIONS || m == Method::TRACE
}

/// What an unsafe request invalidates once its answer is a 2xx or 3xx (RFC 9111 §4.4):
/// the GET and HEAD entries of its target URI and of same-origin `Location` and
/// `Content-Location` URIs, in every variant (Vary values, identities).
pub(super) struct Invalidate {
    handle: CacheHandle<CachedResponse>,
    /// `scheme://authority` as in the keys: an invalidated URI must have this origin.
    origin: String,
    /// Escaped `path?query` of each URI to invalidate.
    paths: Vec<String>,
    /// Keys may be `METHOD origin path` exactly (no Vary header configured).
    exact: bool,
    /// Keys may continue with `|` (Vary headers or per-user identities).
    suffixed: bool,
    /// Whether `HEAD` answers have keys of their own (the RFC 9111 mode answers `HEAD`
    /// from the stored `GET`).
    head_keys: bool,
}

impl Invalidate {
    /// What `req` invalidates in the configured-TTL mode's `cache`.
    pub(super) fn new<S, B>(
        cache: &Cache<S, HttpKey, CachedResponse>,
        req: &Request<B>,
    ) -> Option<Self> {
        let key = &cache.shared.key;
        let exact = key.vary.is_empty();
        let suffixed = !key.vary.is_empty() || key.identity.is_some();
        Self::of_target(cache.handle(), exact, suffixed, req)
    }

    /// What `req` invalidates in a cache whose keys of one URI are `METHOD uri` exactly
    /// (`exact`) and/or continue with `|` (`suffixed`).
    pub(super) fn of_target<B>(
        handle: CacheHandle<CachedResponse>,
        exact: bool,
        suffixed: bool,
        req: &Request<B>,
    ) -> Option<Self> {
        // CONNECT's authority-form target and OPTIONS' `*` name no cached resource.
        if !req.uri().path().starts_with('/') {
            return None;
        }
        // A malformed Host has no entries: its GETs bypass the cache.
        let (scheme, authority) = request_origin(req)?;
        let mut origin = String::with_capacity(32);
        push_origin(&mut origin, scheme, authority)?;
        let mut path = String::with_capacity(32);
        push_path(&mut path, req.uri());
        Some(Self {
            handle,
            origin,
            paths: vec![path],
            exact,
            suffixed,
            head_keys: true,
        })
    }

    /// For a cache that stores `GET` keys only: one scan per URI instead of two.
    pub(super) fn get_only(mut self) -> Self {
        self.head_keys = false;
        self
    }

    pub(super) fn run(mut self, headers: &HeaderMap) {
        for value in headers
            .get_all(LOCATION)
            .iter()
            .chain(headers.get_all(CONTENT_LOCATION))
        {
            if let Some(path) = self.same_origin_path(value)
                && !self.paths.contains(&path)
            {
                self.paths.push(path);
            }
        }
        for path in &self.paths {
            let methods: &[Method] = if self.head_keys {
                &[Method::GET, Method::HEAD]
            } else {
                &[Method::GET]
            };
            for method in methods {
                let mut key = format!("{method} {}{path}", self.origin);
                if self.exact {
                    self.handle.invalidate(&key);
                }
                if self.suffixed {
                    // Ends at the separator: `/a|` cannot reach the entries of `/ab`.
                    key.push('|');
                    self.handle.invalidate_prefix(&key);
                }
            }
        }
    }

    /// The escaped `path?query` of a `Location` / `Content-Location` value when it names
    /// a URI of the same origin: an absolute path, or an absolute URI whose normalised
    /// origin matches. Relative references (`item/2`, `//host/x`) are not resolved.
    fn same_origin_path(&self, value: &HeaderValue) -> Option<String> {
        let value = value.to_str().ok()?;
        let value = value.split_once('#').map_or(value, |(v, _)| v);
        let uri: Uri = if value.starts_with('/') && !value.starts_with("//") {
            value.parse().ok()?
        } else if value.contains("://") {
            let uri: Uri = value.parse().ok()?;
            let authority = uri.authority()?.as_str();
            let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
            let mut origin = String::with_capacity(self.origin.len());
            push_origin(&mut origin, uri.scheme_str()?, authority)?;
            if origin != self.origin {
                return None;
            }
            uri
        } else {
            return None;
        };
        let mut path = String::with_capacity(value.len());
        push_path(&mut path, &uri);
        Some(path)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::convert::Infallible;

    use http::Response;
    use http::header::HOST;
    use tower_layer::Layer;

    use super::*;

    use proptest::prelude::*;

    proptest! {
        /// Any list of directives, with quoted values holding commas, round-trips; the
        /// parser never panics on any visible-ASCII field.
        #[test]
        fn cache_control_round_trips(
            directives in prop::collection::vec(
                ("[a-zA-Z][a-zA-Z-]{0,12}", prop::option::of(prop_oneof![
                    "[0-9]{1,6}".prop_map(|v| (v, false)),
                    "[a-z ,-]{0,16}".prop_map(|v| (v, true)),
                ])),
                0..8,
            ),
            garbage in "[ -~]{0,64}",
        ) {
            let field = directives
                .iter()
                .map(|(n, v)| match v {
                    None => n.clone(),
                    Some((v, true)) => format!("{n}=\"{v}\""),
                    Some((v, false)) => format!("{n}={v}"),
                })
                .collect::<Vec<_>>()
                .join(", ");
            let mut headers = HeaderMap::new();
            headers.insert(CACHE_CONTROL, HeaderValue::from_str(&field).unwrap());
            let parsed: Vec<_> = cache_control(&headers).collect();
            let expected: Vec<_> = directives
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_ref().map(|(v, q)| if *q { v.as_str() } else { v.trim() })))
                .collect();
            prop_assert_eq!(parsed, expected);
            if let Ok(v) = HeaderValue::from_str(&garbage) {
                headers.insert(CACHE_CONTROL, v);
                let _ = cache_control(&headers).count();
            }
        }
    }
    use crate::http::{CachedBody, HttpCacheLayer};

    #[test]
    fn unsafe_requests_invalidate_their_uri_and_same_origin_locations() {
        let layer = HttpCacheLayer::builder().vary(["accept"]).build().unwrap();
        let svc = layer.layer(tower::service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(CachedBody::default()))
        }));
        let post = |uri: &str| {
            Request::post(uri)
                .header("host", "A.example:80")
                .body(())
                .unwrap()
        };
        let inv = Invalidate::new(&svc.inner, &post("/items?x=%7C|")).unwrap();
        assert_eq!(inv.origin, "http://a.example");
        assert_eq!(inv.paths, ["/items?x=%257C%7C"]);
        assert!(inv.suffixed && !inv.exact);
        let loc = |v: &str| inv.same_origin_path(&HeaderValue::from_str(v).unwrap());
        assert_eq!(loc("/items/7#top").as_deref(), Some("/items/7"));
        assert_eq!(
            loc("http://a.EXAMPLE:80/items/7").as_deref(),
            Some("/items/7")
        );
        for other in [
            "https://a.example/items/7",
            "http://b.example/items/7",
            "http://a.example:8080/items/7",
            "//a.example/items/7",
            "items/7",
            "",
        ] {
            assert_eq!(loc(other), None, "{other}");
        }
        assert!(
            Invalidate::new(
                &svc.inner,
                &Request::connect("a.example:443").body(()).unwrap()
            )
            .is_none()
        );
        let mut two_hosts = post("/a");
        two_hosts
            .headers_mut()
            .append(HOST, HeaderValue::from_static("b.example"));
        assert!(Invalidate::new(&svc.inner, &two_hosts).is_none());
        for (m, safe) in [
            (Method::GET, true),
            (Method::HEAD, true),
            (Method::OPTIONS, true),
            (Method::TRACE, true),
            (Method::POST, false),
            (Method::PUT, false),
            (Method::DELETE, false),
            (Method::PATCH, false),
            (Method::from_bytes(b"PURGE").unwrap(), false),
        ] {
            assert_eq!(is_safe(&m), safe, "{m}");
        }
    }

    fn directive(resp: Response<CachedBody>) -> Directive {
        let rules = Rules {
            vary: Arc::from(vec![HeaderName::from_static("accept")]),
            honor_cache_control: true,
            negative: false,
            windows: StaleWindows::NONE,
        };
        let base = Directive {
            action: StoreAction::Store,
            ttl: None,
            windows: None,
            negative: false,
            shared: true,
            tags: Vec::new(),
        };
        http_directive(&resp, base, &rules)
    }

    /// A response of `status` with `headers` and the body `x`, for the http module's tests.
    pub(in crate::http) fn resp(status: u16, headers: &[(&str, &str)]) -> Response<CachedBody> {
        let mut b = Response::builder().status(status);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(CachedBody::full("x")).unwrap()
    }

    #[test]
    fn storage_rules() {
        let d = directive(resp(
            200,
            &[("cache-control", "max-age=30, stale-while-revalidate=5")],
        ));
        assert_eq!(d.action, StoreAction::Store);
        assert_eq!(d.ttl, Some(Duration::from_secs(30)));
        assert_eq!(
            d.windows.unwrap().stale_while_revalidate,
            Duration::from_secs(5)
        );
        assert_eq!(
            directive(resp(200, &[("cache-control", "max-age=30, s-maxage=7")])).ttl,
            Some(Duration::from_secs(7))
        );
        for (status, headers, action) in [
            (
                200,
                vec![("cache-control", "private")],
                StoreAction::DoNotShare,
            ),
            (
                200,
                vec![("cache-control", "no-store")],
                StoreAction::DoNotShare,
            ),
            (200, vec![("set-cookie", "a=b")], StoreAction::DoNotShare),
            (200, vec![("cache-control", "no-cache")], StoreAction::Skip),
            (200, vec![("cache-control", "max-age=0")], StoreAction::Skip),
            (200, vec![("vary", "accept-language")], StoreAction::Skip),
            (200, vec![("vary", "*")], StoreAction::Skip),
            (200, vec![("vary", "Accept")], StoreAction::Store),
            (503, vec![], StoreAction::Failure),
            (404, vec![], StoreAction::Skip),
            (201, vec![], StoreAction::Skip),
        ] {
            assert_eq!(
                directive(resp(status, &headers)).action,
                action,
                "{status} {headers:?}"
            );
        }
        let huge = directive(resp(
            200,
            &[("cache-control", "max-age=99999999999999999999")],
        ));
        assert_eq!(
            huge.action,
            StoreAction::Store,
            "unparsable max-age falls back to the default TTL"
        );
    }
}
