//! Who a request counts against: key extractors.
//!
//! An extractor turns a request into a [`Subject`]: the user (API key, user id, client IP…),
//! optionally the endpoint (so per-endpoint limits can apply) and the cost.
//!
//! # Requests without a key
//!
//! When an extractor finds nothing, the layer does what [`MissingKey`] says, set with
//! [`RateLimitLayer::on_missing_key`](crate::RateLimitLayer::on_missing_key):
//!
//! - [`Reject`](MissingKey::Reject) (the default) refuses the request with [`KeyNotFound`]
//!   (HTTP 400 or 500, see [`KeyExtractor::explain_missing`]);
//! - [`Global`](MissingKey::Global) counts it against one anonymous subject (`""`, the
//!   default tier) shared by every request without a key;
//! - [`Bypass`](MissingKey::Bypass) lets it through unlimited.
//!
//! Reject is the default because the other two hide mistakes: a server started without
//! axum's `ConnectInfo` gives [`PeerIp`](crate::http::PeerIp) no address for *any* request,
//! and under `Global` all clients would then share one bucket (one noisy client starves the
//! rest); under `Bypass` nobody would be limited at all. Either way the layer logs a warning
//! naming the fix, once per layer.
//!
//! Extractors compose: [`KeyExtractorExt::or`] (first that finds a key),
//! [`KeyExtractorExt::and`] (composite key, both parts) and
//! [`KeyExtractorExt::with_endpoint`] (user from one, endpoint from another).

use reliability_core::deadline::{Deadline, HasDeadline};
use serde::{Deserialize, Serialize};

use crate::error::KeyNotFound;

/// What the layer does with a request for which the extractor finds no key; see the
/// [module docs](self#requests-without-a-key). Deserializes from `"reject"`, `"global"`,
/// `"bypass"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MissingKey {
    /// Refuse it with [`KeyNotFound`] (the default).
    #[default]
    Reject,
    /// Count it against one anonymous subject shared by all requests without a key.
    Global,
    /// Let it through without counting it.
    Bypass,
}

/// Longest user or endpoint string an extractor keeps (longer values count as missing).
pub const MAX_KEY_LEN: usize = 1024;

/// Longest key kept verbatim in process memory; longer ones are stored as a digest.
pub const MAX_STORED_KEY_LEN: usize = 256;

/// The form of `key` held in process memory: itself when short, else a fixed-size digest,
/// so that memory per key is bounded whatever the subject. Injective: verbatim keys never
/// start with `\u{1}`, and the marked forms are [`escape_subject`]'s injective output.
///
/// [`escape_subject`]: reliability_core::key::escape_subject
pub(crate) fn stored_key(key: &str) -> std::borrow::Cow<'_, str> {
    if key.len() <= MAX_STORED_KEY_LEN && !key.starts_with('\u{1}') {
        return std::borrow::Cow::Borrowed(key);
    }
    let escaped = reliability_core::key::escape_subject(key);
    std::borrow::Cow::Owned(format!("\u{1}{escaped}"))
}

/// What a request counts against.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Subject {
    /// The user key (any string; the backends namespace and escape it).
    pub user: String,
    /// The endpoint, when per-endpoint limits may apply.
    pub endpoint: Option<String>,
    /// Units this request costs (default 1; 0 counts as 1).
    pub cost: u32,
}

impl Subject {
    /// A subject for `user`, cost 1, no endpoint.
    pub fn new(user: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            endpoint: None,
            cost: 1,
        }
    }
    /// The shared subject of requests without a key under [`MissingKey::Global`].
    pub fn anonymous() -> Self {
        Self::new("")
    }
    /// With an endpoint.
    #[must_use]
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }
    /// With a cost.
    #[must_use]
    pub fn cost(mut self, cost: u32) -> Self {
        self.cost = cost;
        self
    }
}

/// Turns a request into a [`Subject`].
pub trait KeyExtractor<Req>: Clone + Send + Sync + 'static {
    /// The subject, or `None` when the request carries no usable key.
    fn extract(&self, req: &Req) -> Option<Subject>;

    /// Why [`extract`](KeyExtractor::extract) found nothing in `req`: whether the client or
    /// the server is at fault, and what to fix. Called only after `extract` returned `None`,
    /// so it may allocate.
    ///
    /// The default blames the server (HTTP 500): the layer cannot know what a closure
    /// expected. Extractors that read client input (a header) override it.
    fn explain_missing(&self, _req: &Req) -> KeyNotFound {
        KeyNotFound::server(format!(
            "`{}` found no key; fix the extractor or choose `on_missing_key`",
            short_type_name::<Self>()
        ))
    }

    /// The request's own deadline, if the layer should read one: in client mode
    /// ([`wait_up_to`](crate::RateLimitLayer::wait_up_to)) a refused request waits only
    /// if its turn comes before its deadline. `None` by default; [`WithDeadlines`] reads it
    /// from any [`HasDeadline`] request.
    #[inline]
    fn deadline(&self, req: &Req) -> Option<Deadline> {
        let _ = req;
        None
    }
}

/// An extractor that also reads each request's deadline ([`HasDeadline`], e.g. an
/// `http::Request`'s extensions); its subjects are `X`'s. Made by
/// [`RateLimitLayer::with_deadlines`](crate::RateLimitLayer::with_deadlines).
#[derive(Debug, Clone, Copy, Default)]
pub struct WithDeadlines<X>(pub X);

impl<Req: HasDeadline, X: KeyExtractor<Req>> KeyExtractor<Req> for WithDeadlines<X> {
    #[inline]
    fn extract(&self, req: &Req) -> Option<Subject> {
        self.0.extract(req)
    }

    fn explain_missing(&self, req: &Req) -> KeyNotFound {
        self.0.explain_missing(req)
    }

    #[inline]
    fn deadline(&self, req: &Req) -> Option<Deadline> {
        req.deadline()
    }
}

/// `FnKey<{closure}>` rather than `ratelimit_layer::key::FnKey<my_app::main::{{closure}}>`.
fn short_type_name<T: ?Sized>() -> &'static str {
    let full = std::any::type_name::<T>();
    let path = full.split('<').next().unwrap_or(full);
    path.rsplit("::").next().unwrap_or(path)
}

/// Every request counts against one subject (`"global"`): a limit for the whole service,
/// e.g. a client respecting an upstream API's quota.
#[derive(Debug, Clone, Copy, Default)]
pub struct GlobalKey;

impl<Req> KeyExtractor<Req> for GlobalKey {
    fn extract(&self, _: &Req) -> Option<Subject> {
        Some(Subject::new("global"))
    }
}

/// A closure as an extractor; see [`key_fn`].
#[derive(Clone)]
pub struct FnKey<F>(F);

impl<F> std::fmt::Debug for FnKey<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FnKey")
    }
}

/// An extractor from a closure `Fn(&Req) -> Option<Subject>`.
pub fn key_fn<F>(f: F) -> FnKey<F> {
    FnKey(f)
}

impl<Req, F> KeyExtractor<Req> for FnKey<F>
where
    F: Fn(&Req) -> Option<Subject> + Clone + Send + Sync + 'static,
{
    fn extract(&self, req: &Req) -> Option<Subject> {
        (self.0)(req)
    }

    fn explain_missing(&self, _req: &Req) -> KeyNotFound {
        KeyNotFound::server(
            "the `key_fn` closure returned None; return a key or choose `on_missing_key`",
        )
    }
}

/// The first of two extractors that finds a key.
#[derive(Debug, Clone)]
pub struct Or<A, B>(A, B);

impl<Req, A: KeyExtractor<Req>, B: KeyExtractor<Req>> KeyExtractor<Req> for Or<A, B> {
    fn extract(&self, req: &Req) -> Option<Subject> {
        self.0.extract(req).or_else(|| self.1.extract(req))
    }

    /// The server's fault if either side is: with `HeaderKey.or(PeerIp)`, a request without
    /// the header is fine as long as the peer address is there, so its absence is the bug.
    fn explain_missing(&self, req: &Req) -> KeyNotFound {
        let (a, b) = (self.0.explain_missing(req), self.1.explain_missing(req));
        match (a.is_client_error(), b.is_client_error()) {
            (true, false) => b,
            (false, true) => a,
            (true, true) => KeyNotFound::client(format!("{}; {}", a.hint(), b.hint())),
            (false, false) => KeyNotFound::server(format!("{}; {}", a.hint(), b.hint())),
        }
    }
}

/// A composite key of two extractors (both must find one), e.g. API key and client IP.
#[derive(Debug, Clone)]
pub struct And<A, B>(A, B);

impl<Req, A: KeyExtractor<Req>, B: KeyExtractor<Req>> KeyExtractor<Req> for And<A, B> {
    fn extract(&self, req: &Req) -> Option<Subject> {
        let a = self.0.extract(req)?;
        let b = self.1.extract(req)?;
        // Length-prefixed so that ("ab", "c") and ("a", "bc") stay apart.
        Some(Subject {
            user: format!("{}:{}{}", a.user.len(), a.user, b.user),
            endpoint: a.endpoint.or(b.endpoint),
            cost: a.cost.max(b.cost),
        })
    }

    fn explain_missing(&self, req: &Req) -> KeyNotFound {
        match self.0.extract(req) {
            None => self.0.explain_missing(req),
            Some(_) => self.1.explain_missing(req),
        }
    }
}

/// User from one extractor, endpoint from another.
#[derive(Debug, Clone)]
pub struct WithEndpoint<A, B>(A, B);

impl<Req, A: KeyExtractor<Req>, B: KeyExtractor<Req>> KeyExtractor<Req> for WithEndpoint<A, B> {
    fn extract(&self, req: &Req) -> Option<Subject> {
        let mut s = self.0.extract(req)?;
        s.endpoint = self.1.extract(req).map(|e| e.user);
        Some(s)
    }

    /// Only the user part can be missing: a request without an endpoint just has none.
    fn explain_missing(&self, req: &Req) -> KeyNotFound {
        self.0.explain_missing(req)
    }
}

/// Combinators for every extractor.
pub trait KeyExtractorExt: Clone + Send + Sync + 'static + Sized {
    /// This extractor, or `other` when this one finds nothing.
    fn or<B>(self, other: B) -> Or<Self, B> {
        Or(self, other)
    }
    /// A composite key of this extractor and `other`.
    fn and<B>(self, other: B) -> And<Self, B> {
        And(self, other)
    }
    /// This extractor's user with `endpoint`'s key as the endpoint (e.g. `http::RouteKey`).
    fn with_endpoint<B>(self, endpoint: B) -> WithEndpoint<Self, B> {
        WithEndpoint(self, endpoint)
    }
}

impl<X: Clone + Send + Sync + 'static> KeyExtractorExt for X {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_keys_are_bounded_and_distinct() {
        let long_a = "a".repeat(10_000);
        let long_b = format!("{}b", "a".repeat(9_999));
        let keys = [
            stored_key("x"),
            stored_key("\u{1}x"),
            stored_key(&long_a),
            stored_key(&long_b),
        ];
        assert!(keys.iter().all(|k| k.len() <= MAX_STORED_KEY_LEN + 2));
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn missing_key_choice_reads_from_config() {
        for (text, choice) in [
            ("\"reject\"", MissingKey::Reject),
            ("\"global\"", MissingKey::Global),
            ("\"bypass\"", MissingKey::Bypass),
        ] {
            assert_eq!(serde_json::from_str::<MissingKey>(text).unwrap(), choice);
        }
        assert!(serde_json::from_str::<MissingKey>("\"Reject\"").is_err());
        assert_eq!(MissingKey::default(), MissingKey::Reject);
    }

    #[test]
    fn composition_explains_who_is_at_fault() {
        let server = key_fn(|_: &u32| None);
        #[derive(Clone)]
        struct Header;
        impl KeyExtractor<u32> for Header {
            fn extract(&self, _: &u32) -> Option<Subject> {
                None
            }
            fn explain_missing(&self, _: &u32) -> KeyNotFound {
                KeyNotFound::client("no header")
            }
        }
        let found = key_fn(|r: &u32| Some(Subject::new(r.to_string())));
        // Or: the server's fault wins, whichever side it is on.
        assert!(
            !Header
                .or(server.clone())
                .explain_missing(&1)
                .is_client_error()
        );
        assert!(
            !server
                .clone()
                .or(Header)
                .explain_missing(&1)
                .is_client_error()
        );
        let both = Header.or(Header).explain_missing(&1);
        assert!(both.is_client_error());
        assert_eq!(both.hint(), "no header; no header");
        // And: the part that is missing.
        assert!(
            found
                .clone()
                .and(Header)
                .explain_missing(&1)
                .is_client_error()
        );
        assert!(
            !server
                .clone()
                .and(Header)
                .explain_missing(&1)
                .is_client_error()
        );
        assert!(
            Header
                .with_endpoint(server)
                .explain_missing(&1)
                .is_client_error()
        );
        assert!(found.explain_missing(&1).hint().contains("key_fn"));
        #[derive(Clone)]
        struct Custom;
        impl KeyExtractor<u32> for Custom {
            fn extract(&self, _: &u32) -> Option<Subject> {
                None
            }
        }
        assert!(
            Custom
                .explain_missing(&1)
                .hint()
                .starts_with("`Custom` found no key")
        );
    }

    #[test]
    fn composition() {
        let none = key_fn(|_: &u32| None);
        let num = key_fn(|r: &u32| Some(Subject::new(r.to_string())));
        assert_eq!(none.clone().or(num.clone()).extract(&7).unwrap().user, "7");
        let both = num.clone().and(key_fn(|_: &u32| Some(Subject::new("x"))));
        assert_eq!(both.extract(&12).unwrap().user, "2:12x");
        assert!(num.clone().and(none).extract(&1).is_none());
        let e = num.with_endpoint(GlobalKey).extract(&3).unwrap();
        assert_eq!(e.endpoint.as_deref(), Some("global"));
    }
}
