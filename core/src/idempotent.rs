//! Which HTTP requests may be sent more than once: the one rule for every layer that
//! repeats a request (a retry, a hedge).
//!
//! - `GET`, `HEAD`, `OPTIONS`, `TRACE`, `PUT` and `DELETE` are idempotent (RFC 9110
//!   section 9.2.2): sending one twice has the effect of sending it once;
//! - any other method (`POST`, `PATCH`, ...) only when the request carries a non-empty
//!   [`Idempotency-Key`](IDEMPOTENCY_KEY) header (draft-ietf-httpapi-idempotency-key-header:
//!   the server answers a repeat with the first outcome), or the caller marked this one
//!   request with the [`ReplayNonIdempotent`] extension, or the layer was told to repeat
//!   such requests (`layer_opt_in`).
//!
//! # Example
//!
//! ```
//! use reliability_core::idempotent::{may_replay, ReplayNonIdempotent};
//!
//! let get = http::Request::get("/orders/7").body(()).unwrap();
//! assert!(may_replay(&get, false));
//!
//! let mut post = http::Request::post("/orders").body(()).unwrap();
//! assert!(!may_replay(&post, false));
//! post.extensions_mut().insert(ReplayNonIdempotent);
//! assert!(may_replay(&post, false));
//! ```

use http::{HeaderMap, Method, Request};

/// The header that makes a non-idempotent request safe to repeat (IETF
/// draft-ietf-httpapi-idempotency-key-header).
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The caller's word that this one request is safe to send more than once, whatever its
/// method: put it in the request's extensions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayNonIdempotent;

/// RFC 9110 section 9.2.2: the methods whose repeats have the effect of one request.
///
/// ```
/// use reliability_core::idempotent::is_idempotent;
///
/// assert!(is_idempotent(&http::Method::PUT));
/// assert!(!is_idempotent(&http::Method::POST));
/// ```
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Whether `headers` hold a non-empty `Idempotency-Key`. An empty key identifies nothing,
/// so the server could not recognise a repeat: it does not count.
pub fn has_idempotency_key(headers: &HeaderMap) -> bool {
    headers
        .get(IDEMPOTENCY_KEY)
        .is_some_and(|key| !key.as_bytes().trim_ascii().is_empty())
}

/// The rule of the [module docs](self) on its parts: the method, the headers, and whether
/// the caller or the layer opted in.
pub fn may_replay_parts(method: &Method, headers: &HeaderMap, opted_in: bool) -> bool {
    is_idempotent(method) || opted_in || has_idempotency_key(headers)
}

/// Whether `req` may be sent more than once (see the [module docs](self)); `layer_opt_in`
/// is the layer's own "repeat non-idempotent requests too" setting.
pub fn may_replay<B>(req: &Request<B>, layer_opt_in: bool) -> bool {
    may_replay_parts(
        req.method(),
        req.headers(),
        layer_opt_in || req.extensions().get::<ReplayNonIdempotent>().is_some(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_keys_and_opt_ins() {
        for m in [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::TRACE,
            Method::PUT,
            Method::DELETE,
        ] {
            let req = Request::builder().method(m.clone()).body(()).unwrap();
            assert!(may_replay(&req, false), "{m}");
        }
        for m in [Method::POST, Method::PATCH, Method::CONNECT] {
            let req = Request::builder().method(m.clone()).body(()).unwrap();
            assert!(!may_replay(&req, false), "{m}");
            assert!(may_replay(&req, true), "{m}");
        }
        let blank = Request::post("/")
            .header(IDEMPOTENCY_KEY, "  ")
            .body(())
            .unwrap();
        assert!(!may_replay(&blank, false));
        let keyed = Request::post("/")
            .header(IDEMPOTENCY_KEY, "k")
            .body(())
            .unwrap();
        assert!(may_replay(&keyed, false));
    }
}
