//! The conditions of a request: the validators the cache puts on its own requests, the
//! caller's `If-None-Match` / `If-Modified-Since` that a stored response can answer with a
//! 304, a `Range` that it can answer with a 206, and how a 304 freshens what is stored.

use std::time::SystemTime;

use http::header::{
    CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, DATE, ETAG, IF_MATCH, IF_MODIFIED_SINCE,
    IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, LAST_MODIFIED, RANGE,
};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use super::freshness::date_header;
use super::strip_hop_by_hop;
use super::surrogate::Surrogate;
use crate::http::{CachedBody, CachedResponse};

/// Puts a stored response's validators on a request to the upstream (RFC 9111 §4.3.1):
///
/// `If-None-Match` with its `ETag`, `If-Modified-Since` with its `Last-Modified`, each
/// byte for byte as stored (an origin may compare them as strings); `false` when the
/// stored response has neither, so a conditional request cannot be made.
///
/// ```
/// let mut stored = http::HeaderMap::new();
/// stored.insert("etag", "\"v7\"".parse().unwrap());
/// let mut request = http::HeaderMap::new();
/// assert!(cache_layer::http::add_validators(&mut request, &stored));
/// assert_eq!(request["if-none-match"], "\"v7\"");
/// ```
pub fn add_validators(headers: &mut HeaderMap, stored: &HeaderMap) -> bool {
    let mut any = false;
    if let Some(tag) = stored.get(ETAG) {
        headers.insert(IF_NONE_MATCH, tag.clone());
        any = true;
    }
    if let Some(lm) = stored.get(LAST_MODIFIED) {
        headers.insert(IF_MODIFIED_SINCE, lm.clone());
        any = true;
    }
    any
}

/// Whether a request carries conditions of its own (`If-None-Match`, `If-Modified-Since`,
/// `If-Match`, `If-Unmodified-Since`, `If-Range`): its caller wants the upstream's answer
/// to them, so a cache must not put its validators in their place.
pub fn is_conditional(headers: &HeaderMap) -> bool {
    [
        IF_NONE_MATCH,
        IF_MODIFIED_SINCE,
        IF_MATCH,
        IF_UNMODIFIED_SINCE,
        IF_RANGE,
    ]
    .iter()
    .any(|h| headers.contains_key(h))
}

/// The caller's `If-None-Match` / `If-Modified-Since`, which a stored response can
/// answer with a 304 itself (§4.3.2).
pub(super) struct ClientConditions {
    if_none_match: Option<String>,
    if_modified_since: Option<SystemTime>,
}

impl ClientConditions {
    pub(super) fn of(headers: &HeaderMap) -> Self {
        let if_none_match = headers
            .get_all(IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .fold(None::<String>, |acc, v| {
                Some(acc.map_or_else(|| v.to_owned(), |a| format!("{a}, {v}")))
            });
        Self {
            if_none_match,
            if_modified_since: date_header(headers, IF_MODIFIED_SINCE),
        }
    }

    /// Whether `stored` satisfies the conditions, so that a 304 is the answer.
    pub(super) fn not_modified(&self, stored: &CachedResponse) -> bool {
        if stored.status() != StatusCode::OK {
            return false;
        }
        let headers = stored.headers();
        if let Some(inm) = &self.if_none_match {
            let Some(tag) = headers.get(ETAG).and_then(|t| t.to_str().ok()) else {
                return inm.trim() == "*";
            };
            let weak = |t: &str| t.trim().trim_start_matches("W/").to_owned();
            return inm.trim() == "*" || inm.split(',').any(|m| weak(m) == weak(tag));
        }
        let Some(since) = self.if_modified_since else {
            return false;
        };
        date_header(headers, LAST_MODIFIED)
            .or_else(|| date_header(headers, DATE))
            .is_some_and(|lm| lm <= since)
    }
}

/// A single byte range asked for (`Range: bytes=a-b`, `a-` or `-n`), which a stored full
/// response answers with a 206 (RFC 9110 §14). Several ranges, other units, `If-Range`
/// or a range the body does not hold are answered with the whole response, as a server
/// that ignores `Range` may.
pub(super) struct RangeRequest {
    spec: Option<(Option<u64>, Option<u64>)>,
}

impl RangeRequest {
    pub(super) fn of(headers: &HeaderMap) -> Self {
        let spec = (|| {
            if headers.contains_key(IF_RANGE) {
                return None;
            }
            let mut fields = headers.get_all(RANGE).iter();
            let v = fields.next()?.to_str().ok()?;
            if fields.next().is_some() {
                return None;
            }
            let (unit, set) = v.split_once('=')?;
            if !unit.trim().eq_ignore_ascii_case("bytes") || set.contains(',') {
                return None;
            }
            let (first, last) = set.trim().split_once('-')?;
            let num = |s: &str| -> Option<Option<u64>> {
                let s = s.trim();
                if s.is_empty() {
                    return Some(None);
                }
                s.bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| s.parse().ok())?
                    .map(Some)
            };
            let (first, last) = (num(first)?, num(last)?);
            (first.is_some() || last.is_some()).then_some((first, last))
        })();
        Self { spec }
    }

    /// The 206 for `stored`, when it is a full 200 holding the range.
    pub(super) fn apply(&self, stored: &CachedResponse) -> Option<CachedResponse> {
        let (first, last) = self.spec?;
        if stored.status() != StatusCode::OK || stored.headers().contains_key(CONTENT_RANGE) {
            return None;
        }
        let body = stored.body().bytes()?;
        let len = body.len() as u64;
        let (start, end) = match (first, last) {
            (Some(a), Some(b)) if a <= b => (a, b.min(len.checked_sub(1)?)),
            (Some(a), None) => (a, len.checked_sub(1)?),
            (None, Some(n)) if n > 0 => (len.saturating_sub(n), len.checked_sub(1)?),
            _ => return None,
        };
        if start > end || start >= len {
            return None;
        }
        let part = body.slice(usize::try_from(start).ok()?..=usize::try_from(end).ok()?);
        let mut resp = stored.clone();
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        let headers = resp.headers_mut();
        headers.insert(CONTENT_LENGTH, HeaderValue::from(part.len()));
        let content_range = format!("bytes {start}-{end}/{len}");
        headers.insert(CONTENT_RANGE, HeaderValue::from_str(&content_range).ok()?);
        *resp.body_mut() = CachedBody::full(part);
        Some(resp)
    }
}

/// An entity tag without its weakness mark, for the weak comparison of §8.8.3.2.
fn opaque(tag: &HeaderValue) -> &[u8] {
    let v = tag.as_bytes();
    v.strip_prefix(b"W/").unwrap_or(v)
}

/// Whether a 304 (or a HEAD answer) describes the stored response (§4.3.4): the same
/// entity tag when it has one, else the same `Last-Modified`, else only when the stored
/// response has no validator either.
pub(super) fn same_representation(new: &HeaderMap, stored: &HeaderMap) -> bool {
    if let Some(tag) = new.get(ETAG) {
        return stored.get(ETAG).is_some_and(|s| opaque(s) == opaque(tag));
    }
    if let Some(lm) = new.get(LAST_MODIFIED) {
        return stored.get(LAST_MODIFIED) == Some(lm);
    }
    // No validator in the answer: it describes the stored response only if that has
    // none either (§4.3.4).
    !stored.contains_key(ETAG) && !stored.contains_key(LAST_MODIFIED)
}

/// The stored response with the fields of a 304 put in place of its own (RFC 9111 §3.2,
/// §4.3.4), but for the framing and encoding fields the stored body depends on
/// (`Content-Length`, `Content-Encoding`, `Content-Range`, `Content-MD5`), the stored
/// `ETag`, which names what was stored, and hop-by-hop fields.
///
/// ```
/// let stored = http::Response::builder()
///     .header("etag", "\"v1\"").header("x-version", "1").header("content-length", "5")
///     .body("hello").unwrap();
/// let not_modified = http::Response::builder().status(304)
///     .header("etag", "\"v1\"").header("x-version", "2").header("content-length", "0")
///     .body(()).unwrap();
/// let merged = cache_layer::http::freshen(&stored, &not_modified);
/// assert_eq!((merged.status(), *merged.body()), (http::StatusCode::OK, "hello"));
/// assert_eq!(merged.headers()["x-version"], "2");
/// assert_eq!(merged.headers()["content-length"], "5");
/// ```
pub fn freshen<B: Clone, N>(stored: &Response<B>, not_modified: &Response<N>) -> Response<B> {
    let mut merged = stored.clone();
    let mut update = not_modified.headers().clone();
    strip_hop_by_hop(&mut update);
    // The stored body depends on its framing and encoding fields, and the stored ETag
    // names what was stored.
    let keep = [
        CONTENT_LENGTH,
        CONTENT_ENCODING,
        CONTENT_RANGE,
        ETAG,
        HeaderName::from_static("content-md5"),
        super::super::CACHE_STATUS,
    ];
    let headers = merged.headers_mut();
    let names: Vec<HeaderName> = update
        .keys()
        .filter(|n| !keep.contains(n))
        .cloned()
        .collect();
    for name in names {
        headers.remove(&name);
        for value in update.get_all(&name) {
            headers.append(name.clone(), value.clone());
        }
    }
    if let Some(directives) = not_modified.extensions().get::<Surrogate>() {
        merged.extensions_mut().insert(*directives);
    }
    merged
}
