//! [`HttpKey`]: how a request becomes a cache key, with the escaping and the authority
//! normalisation that keep distinct requests apart.

use std::fmt;
use std::sync::Arc;

use http::header::{AUTHORIZATION, COOKIE, HOST};
use http::{HeaderMap, HeaderName, Method, Request, Uri};

use super::policy::cache_control;
use crate::layer::CacheKey;

/// Maps a credentialed request's headers to the caller's identity.
pub(super) type IdentityFn = Arc<dyn Fn(&HeaderMap) -> Option<String> + Send + Sync>;

/// The key of the HTTP mode: method, target URI (scheme, authority, path, query), chosen
/// headers, and the caller's identity when credentials are present.
///
/// A key reads `GET http://api.example/path?query|accept=text/html|@alice`:
///
/// - the **authority** comes from the request URI when it has one (absolute-form, and
///   HTTP/2, where hyper puts `:authority` into the URI), else from the `Host` header;
///   without either (HTTP/1.0, or a request built in-process) it is empty
///   (`GET http:///path`). The host is lowercased and a default port (`:80` for `http`,
///   `:443` for `https`, or an empty one) is dropped (RFC 9110 §4.2.3), so `A.example:80`
///   and `a.example` share entries. A request with several `Host` headers, or one that is
///   not `host[:port]`, bypasses the cache: it is malformed (RFC 9112 §3.2);
/// - the **scheme** comes from the URI, else is `http` (an HTTP/1.1 server sees no
///   scheme, even behind TLS);
/// - then one `|name=value` per [`vary`](super::HttpCacheLayerBuilder::vary) header (present or
///   not), then `|@identity` when credentials are present and
///   [`credential_identity`](super::HttpCacheLayerBuilder::credential_identity) names the caller.
///
/// `%` and `|` are escaped (`%25`, `%7C`) everywhere, so `|` only ever separates parts and
/// distinct requests never share a key. Every key of one method and target therefore
/// starts with `METHOD scheme://authority/path?query` followed by `|` or nothing:
/// invalidating a URI (after an unsafe request, or through
/// [`CacheHandle::invalidate_prefix`](crate::CacheHandle::invalidate_prefix) with a
/// trailing `|`) cannot reach `/path2`.
#[derive(Clone)]
pub struct HttpKey {
    pub(super) vary: Arc<[HeaderName]>,
    pub(super) identity: Option<IdentityFn>,
    pub(super) share_authenticated: bool,
}

impl fmt::Debug for HttpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpKey")
            .field("vary", &self.vary)
            .field("identity", &self.identity.is_some())
            .field("share_authenticated", &self.share_authenticated)
            .finish()
    }
}

/// Escapes the key's separators so that distinct requests never share a key.
pub(super) fn push_escaped(key: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '%' => key.push_str("%25"),
            '|' => key.push_str("%7C"),
            c => key.push(c),
        }
    }
}

/// The scheme and raw authority (`host[:port]`, no user info) of a request's target:
/// from the URI, else from its single `Host` header, else empty. `None` for a malformed
/// `Host` (several of them, or not visible ASCII).
pub(super) fn request_origin<B>(req: &Request<B>) -> Option<(&str, &str)> {
    let uri = req.uri();
    let scheme = uri.scheme_str().unwrap_or("http");
    if let Some(a) = uri.authority() {
        let a = a.as_str();
        return Some((
            scheme,
            a.rsplit_once('@').map_or(a, |(_, hostport)| hostport),
        ));
    }
    let mut hosts = req.headers().get_all(HOST).iter();
    let authority = match (hosts.next(), hosts.next()) {
        (None, _) => "",
        (Some(h), None) => h.to_str().ok()?,
        (Some(_), Some(_)) => return None,
    };
    Some((scheme, authority))
}

/// Bytes a host may hold: RFC 3986 `reg-name` (unreserved, sub-delims, `%`), and the
/// `:` `[` `]` of an IP literal. No `/ ? # @ |` or whitespace, so a `Host` header cannot
/// smuggle a path or a key separator.
fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b)
}

/// Writes `scheme://host[:port]`, normalised (lowercase, no default port); `None` when
/// the authority is not `host[:port]`.
pub(super) fn push_origin(key: &mut String, scheme: &str, authority: &str) -> Option<()> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')? + 1;
        let (host, after) = authority.split_at(end);
        let port = match after {
            "" => None,
            after => Some(after.strip_prefix(':')?),
        };
        if !host[1..end - 1]
            .bytes()
            .all(|b| b == b':' || is_host_byte(b))
        {
            return None;
        }
        (host, port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if !host.bytes().all(is_host_byte) {
            return None;
        }
        (host, port)
    };
    let port = match port {
        None | Some("") => None,
        Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse::<u16>().ok()?),
        Some(_) => return None,
    };
    for c in scheme.chars() {
        key.push(c.to_ascii_lowercase());
    }
    key.push_str("://");
    for c in host.chars() {
        match c {
            '%' => key.push_str("%25"),
            c => key.push(c.to_ascii_lowercase()),
        }
    }
    let default = match scheme {
        s if s.eq_ignore_ascii_case("http") => Some(80),
        s if s.eq_ignore_ascii_case("https") => Some(443),
        _ => None,
    };
    if let Some(p) = port.filter(|p| Some(*p) != default) {
        use std::fmt::Write;
        let _ = write!(key, ":{p}");
    }
    Some(())
}

/// Writes the escaped path and query of `uri`.
pub(super) fn push_path(key: &mut String, uri: &Uri) {
    push_escaped(key, uri.path());
    if let Some(q) = uri.query() {
        key.push('?');
        push_escaped(key, q);
    }
}

impl HttpKey {
    /// The caller's identity for the key: `Some(None)` when the request carries no
    /// credentials (or they are shared), `Some(Some(id))` for a named caller, `None` when
    /// the request must bypass (credentials nobody maps to an identity).
    fn identity(&self, headers: &HeaderMap) -> Option<Option<String>> {
        let credentialed = headers.contains_key(AUTHORIZATION) || headers.contains_key(COOKIE);
        match (&self.identity, credentialed) {
            (_, false) => Some(None),
            (Some(f), true) => Some(Some(f(headers)?)),
            (None, true) if self.share_authenticated => Some(None),
            (None, true) => None,
        }
    }

    /// The key under which the RFC 9111 mode stores the `GET` responses of `req`'s
    /// target, whatever its method: `GET scheme://authority/path?query`, then `|@identity`
    /// for a named caller. `None` when the request bypasses (credentials without an
    /// identity, a malformed `Host`).
    pub(super) fn primary(&self, req: &Request<impl Sized>) -> Option<String> {
        let identity = self.identity(req.headers())?;
        let mut key = String::with_capacity(96);
        key.push_str("GET ");
        push_target(&mut key, req)?;
        if let Some(id) = identity {
            key.push_str("|@");
            push_escaped(&mut key, &id);
        }
        Some(key)
    }
}

/// `GET scheme://authority/path?query` of `req`'s target, whoever asks: what an unsafe
/// request to it changes. `None` for a malformed `Host`.
pub(super) fn uri_key<B>(req: &Request<B>) -> Option<String> {
    let mut key = String::with_capacity(96);
    key.push_str("GET ");
    push_target(&mut key, req)?;
    Some(key)
}

/// Writes the normalised origin and the escaped path and query of `req`'s target.
fn push_target<B>(key: &mut String, req: &Request<B>) -> Option<()> {
    let (scheme, authority) = request_origin(req)?;
    push_origin(key, scheme, authority)?;
    push_path(key, req.uri());
    Some(())
}

impl<B> CacheKey<Request<B>> for HttpKey {
    fn key(&self, req: &Request<B>) -> Option<String> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return None;
        }
        let headers = req.headers();
        if cache_control(headers).any(|(name, _)| name.eq_ignore_ascii_case("no-store")) {
            return None;
        }
        let identity = self.identity(headers)?;
        let mut key = String::with_capacity(96);
        key.push_str(req.method().as_str());
        key.push(' ');
        push_target(&mut key, req)?;
        for name in self.vary.iter() {
            key.push('|');
            key.push_str(name.as_str());
            key.push('=');
            for (i, v) in headers.get_all(name).iter().enumerate() {
                if i > 0 {
                    key.push(',');
                }
                push_escaped(&mut key, &String::from_utf8_lossy(v.as_bytes()));
            }
        }
        if let Some(id) = identity {
            key.push_str("|@");
            push_escaped(&mut key, &id);
        }
        Some(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(vary: &[&'static str], req: Request<()>) -> Option<String> {
        let k = HttpKey {
            vary: vary
                .iter()
                .map(|v| HeaderName::from_static(v))
                .collect::<Vec<_>>()
                .into(),
            identity: None,
            share_authenticated: false,
        };
        k.key(&req)
    }

    #[test]
    fn keys_by_method_uri_and_vary_without_collisions() {
        let get = |uri: &str, accept: Option<&str>| {
            let mut b = Request::get(uri);
            if let Some(a) = accept {
                b = b.header("accept", a);
            }
            b.body(()).unwrap()
        };
        assert_eq!(
            key(&["accept"], get("/a?x=1", Some("text/html"))).unwrap(),
            "GET http:///a?x=1|accept=text/html",
            "no Host and no authority: an empty authority"
        );
        assert_ne!(
            key(&["accept"], get("/a", Some("x|accept=y"))),
            key(&["accept"], get("/a|accept=x", Some("y")))
        );
        assert!(key(&[], Request::post("/a").body(()).unwrap()).is_none());
        let authed = Request::get("/a")
            .header("authorization", "Bearer t")
            .body(())
            .unwrap();
        assert!(key(&[], authed).is_none(), "credentials bypass by default");
        let no_store = Request::get("/a")
            .header("cache-control", "no-store")
            .body(())
            .unwrap();
        assert!(key(&[], no_store).is_none());
    }

    fn hosted(uri: &str, hosts: &[&str]) -> Option<String> {
        let mut b = Request::get(uri);
        for h in hosts {
            b = b.header("host", *h);
        }
        key(&["accept"], b.body(()).unwrap())
    }

    #[test]
    fn keys_by_scheme_and_authority() {
        let a = hosted("/p?q=1", &["a.example"]).unwrap();
        assert_eq!(a, "GET http://a.example/p?q=1|accept=");
        assert_ne!(Some(&a), hosted("/p?q=1", &["b.example"]).as_ref());
        assert_ne!(Some(&a), hosted("/p?q=1", &[]).as_ref());
        // Normalised: host case, default and empty ports (RFC 9110 §4.2.3).
        for same in ["A.Example", "a.example:80", "a.example:", "a.example:0080"] {
            assert_eq!(hosted("/p?q=1", &[same]).as_ref(), Some(&a), "{same}");
        }
        assert_eq!(
            hosted("/p", &["a.example:8080"]).unwrap(),
            "GET http://a.example:8080/p|accept="
        );
        // The URI's authority (absolute form, HTTP/2 `:authority`) wins over Host.
        assert_eq!(
            hosted("http://a.example/p?q=1", &["b.example"]).as_ref(),
            Some(&a)
        );
        assert_eq!(
            hosted("https://User@A.example:443/p", &[]).unwrap(),
            "GET https://a.example/p|accept="
        );
        assert_eq!(
            hosted("https://a.example:80/p", &[]).unwrap(),
            "GET https://a.example:80/p|accept="
        );
        assert_eq!(
            hosted("/p", &["[::1]:8080"]).unwrap(),
            "GET http://[::1]:8080/p|accept="
        );
        // Malformed Hosts bypass instead of forging another request's key.
        for bad in [
            "a.example/p",
            "a.example?",
            "a|b",
            "a.example:x",
            "a.example:99999",
            "u@a.example",
            "a b",
            "[::1",
            "[::1]x",
        ] {
            assert_eq!(hosted("/q", &[bad]), None, "{bad}");
        }
        assert_eq!(hosted("/p", &["a.example", "b.example"]), None);
        // `%` is escaped in hosts as everywhere: `a%7Cb` is not `a|b`.
        assert_eq!(
            hosted("/p", &["a%7Cb"]).unwrap(),
            "GET http://a%257cb/p|accept=",
            "escaped after lowercasing"
        );
    }

    /// Reads a key back into (host, path and query, accept): a left inverse, so the key
    /// is injective.
    fn decode_key(key: &str) -> (String, String, String) {
        fn unescape(s: &str) -> String {
            let mut out = String::new();
            let mut rest = s;
            while let Some(i) = rest.find('%') {
                out.push_str(&rest[..i]);
                let (c, n) = match &rest[i..] {
                    r if r.starts_with("%25") => ('%', 3),
                    r if r.starts_with("%7C") => ('|', 3),
                    _ => panic!("unescaped % in {s:?}"),
                };
                out.push(c);
                rest = &rest[i + n..];
            }
            out.push_str(rest);
            out
        }
        let target = key.strip_prefix("GET http://").unwrap();
        let (target, accept) = target.split_once("|accept=").unwrap();
        assert!(!accept.contains('|'), "{key}");
        let slash = target.find('/').unwrap();
        let (host, path) = target.split_at(slash);
        (unescape(host), unescape(path), unescape(accept))
    }

    proptest::proptest! {
        #[test]
        fn keys_are_injective_and_hosts_cannot_forge_them(
            host in "[a-z0-9.%|/?#@ -]{0,8}",
            path in "/[a-z0-9%|=&/?]{0,8}",
            accept in "[a-z0-9|=%@,]{0,6}",
        ) {
            let Ok(req) = Request::get(path.as_str())
                .header("host", host.as_str())
                .header("accept", accept.as_str())
                .body(())
            else {
                return Ok(());
            };
            let valid = host.bytes().all(is_host_byte);
            match key(&["accept"], req) {
                None => proptest::prop_assert!(!valid, "{host:?} is a valid host"),
                Some(k) => {
                    proptest::prop_assert!(valid, "{host:?} is not a valid host");
                    proptest::prop_assert_eq!(decode_key(&k), (host, path, accept));
                }
            }
        }
    }
}
