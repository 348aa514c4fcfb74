//! HTTP integration: 429 answers with `Retry-After` and the IETF `RateLimit-Policy` /
//! `RateLimit` fields, and key extractors for HTTP requests.
//!
//! Header syntax follows draft-ietf-httpapi-ratelimit-headers (structured-field lists):
//!
//! ```text
//! RateLimit-Policy: "free-1s";q=2;w=1, "free-60s";q=60;w=60, …
//! RateLimit: "free-1s";r=0;t=1, "free-60s";r=57;t=3, …
//! ```
//!
//! one list member per window of the quota, named `<policy>-<window>`; `q` is the quota,
//! `w` the window in seconds, `r` the units left and `t` the seconds until the window is full
//! again. Legacy `X-RateLimit-Limit/Remaining/Reset` (of the binding window) are optional.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use ratelimit_layer::{Quota, RateLimitLayer, RateLimiter, http::HeaderKey};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let limiter = RateLimiter::builder()
//!     .quota(Quota::per(1, Duration::from_secs(60)).unwrap())
//!     .build()
//!     .unwrap();
//! let svc = ServiceBuilder::new()
//!     .layer(RateLimitLayer::new(limiter).key(HeaderKey::new("x-api-key").unwrap()).http())
//!     .service(service_fn(|_: http::Request<()>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(String::from("ok")))
//!     }));
//! let request = || http::Request::builder().header("x-api-key", "k1").body(()).unwrap();
//!
//! let ok = svc.clone().oneshot(request()).await.unwrap();
//! assert_eq!(ok.headers()["ratelimit"], "\"default-60s\";r=0;t=60");
//! let refused = svc.oneshot(request()).await.unwrap();
//! assert_eq!(refused.status(), 429);
//! assert_eq!(refused.headers()["retry-after"], "60");
//! assert_eq!(refused.headers()["ratelimit-policy"], "\"default-60s\";q=1;w=60");
//! # }
//! ```

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use http::header::{HeaderName, HeaderValue};
use http::{Request, Response};
use ipnet::{IpNet, Ipv4Net};
use reliability_core::error::ConfigError;

use crate::error::KeyNotFound;
use crate::key::{KeyExtractor, MAX_KEY_LEN, Subject};
use crate::quota::Decision;
use std::fmt::Write as _;

use crate::respond::{Decorate, PolicyLabel, WindowLabel};
use reliability_core::answer::{Answer, AsHttp, Refusal};

/// `RateLimit-Policy`.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

fn secs_ceil(micros: u64) -> u64 {
    micros.div_ceil(1_000_000)
}

/// The `RateLimit-Policy` value for `policy` and a decision's windows.
pub fn policy_header(policy: &str, decision: &Decision) -> String {
    PolicyLabel::for_decision(policy, decision)
        .policy_field()
        .to_owned()
}

/// The `RateLimit` value for `policy` and a decision's windows.
pub fn ratelimit_header(policy: &str, decision: &Decision) -> String {
    let mut value = String::with_capacity(24 * decision.windows().len());
    for (i, w) in decision.windows().iter().enumerate() {
        if i > 0 {
            value.push_str(", ");
        }
        let _ = write!(
            value,
            "\"{policy}-{}\";r={};t={}",
            WindowLabel(w.period),
            w.remaining,
            secs_ceil(w.reset_after)
        );
    }
    value
}

/// The `Decorate` impl of an HTTP mode: the IETF fields, and the legacy ones if `$legacy`.
macro_rules! http_fields {
    ($mode:ty, $legacy:expr) => {
        impl<B> Decorate<Response<B>> for $mode {
            const WANTS_DECISION: bool = true;

            fn decorate(
                &self,
                mut res: Response<B>,
                decision: &Decision,
                policy: &PolicyLabel,
            ) -> Response<B> {
                put_fields(res.headers_mut(), decision, policy, $legacy);
                res
            }
        }
    };
}

// HTTP mode's fields: admitted and refused responses get the IETF `RateLimit-Policy` and
// `RateLimit` fields (the refusal itself comes from core's `AsHttp`: `429`, `503` when the
// backend is down and the limiter fails closed, `400`/`500` for a request without a key).
http_fields!(AsHttp, false);
http_fields!(LegacyHeaders, true);

/// HTTP mode with the legacy `X-RateLimit-Limit`, `X-RateLimit-Remaining` and
/// `X-RateLimit-Reset` fields (of the binding window) beside the IETF ones, for clients
/// that read only those. Use with
/// [`RateLimitLayer::respond_with`](crate::RateLimitLayer::respond_with).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LegacyHeaders;

impl<R: Refusal, B: Default + From<String>, E> Answer<R, Response<B>, E> for LegacyHeaders {
    type Error = E;

    fn refused(&self, refusal: R) -> Result<Response<B>, E> {
        Ok(reliability_core::answer::http_response(refusal))
    }

    fn inner_error(&self, error: E) -> E {
        error
    }
}

fn put_fields(
    headers: &mut http::HeaderMap,
    decision: &Decision,
    policy: &PolicyLabel,
    legacy: bool,
) {
    // The policy field is the label's, built with the tier; the `RateLimit` field is one
    // string written in place and handed over without a copy.
    if let Some(v) = policy.policy_header() {
        headers.insert(RATELIMIT_POLICY, v.clone());
    }
    if let Ok(v) = HeaderValue::try_from(ratelimit_header(policy.name(), decision)) {
        headers.insert(RATELIMIT, v);
    }
    if legacy && let Some(w) = decision.binding() {
        headers.insert(
            HeaderName::from_static("x-ratelimit-limit"),
            HeaderValue::from(w.limit),
        );
        headers.insert(
            HeaderName::from_static("x-ratelimit-remaining"),
            HeaderValue::from(w.remaining),
        );
        headers.insert(
            HeaderName::from_static("x-ratelimit-reset"),
            HeaderValue::from(secs_ceil(w.reset_after)),
        );
    }
}

/// The value of a request header as the user key (an API key, a user id set by an
/// authentication layer). Missing, non-UTF-8, empty or over-long values find nothing.
#[derive(Debug, Clone)]
pub struct HeaderKey {
    name: HeaderName,
}

impl HeaderKey {
    /// Keys requests by header `name`.
    pub fn new(name: &str) -> Result<Self, ConfigError> {
        let name =
            HeaderName::from_str(name).map_err(|e| ConfigError::new("header", e.to_string()))?;
        Ok(Self { name })
    }
}

impl<B> KeyExtractor<Request<B>> for HeaderKey {
    fn extract(&self, req: &Request<B>) -> Option<Subject> {
        let v = req.headers().get(&self.name)?.to_str().ok()?;
        (!v.is_empty() && v.len() <= MAX_KEY_LEN).then(|| Subject::new(v))
    }

    fn explain_missing(&self, _req: &Request<B>) -> KeyNotFound {
        KeyNotFound::client(format!(
            "the request has no usable `{}` header (1 to {MAX_KEY_LEN} bytes of text)",
            self.name
        ))
    }
}

/// The route as the endpoint: axum's matched route template if present (so `/users/{id}`
/// is one endpoint), else the path. Use with [`KeyExtractorExt::with_endpoint`](crate::key::KeyExtractorExt::with_endpoint).
#[derive(Debug, Clone, Copy, Default)]
pub struct RouteKey;

impl<B> KeyExtractor<Request<B>> for RouteKey {
    fn extract(&self, req: &Request<B>) -> Option<Subject> {
        #[cfg(feature = "axum")]
        if let Some(m) = req.extensions().get::<axum::extract::MatchedPath>() {
            return Some(Subject::new(m.as_str()));
        }
        let path = req.uri().path();
        (path.len() <= MAX_KEY_LEN).then(|| Subject::new(path))
    }

    fn explain_missing(&self, _req: &Request<B>) -> KeyNotFound {
        KeyNotFound::client(format!(
            "the request path is longer than {MAX_KEY_LEN} bytes"
        ))
    }
}

/// The client IP: the TCP peer (axum `ConnectInfo<SocketAddr>` or a `SocketAddr` request
/// extension). `X-Forwarded-For` is read **only** when the peer is one of the trusted
/// proxies (none by default): then the right-most address that is not a trusted proxy is
/// the client. A spoofed header from an untrusted peer is ignored.
#[derive(Debug, Clone, Default)]
pub struct PeerIp {
    trusted: Vec<IpNet>,
}

impl PeerIp {
    /// Peer address only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts `X-Forwarded-For` from these proxies: networks in CIDR notation
    /// (`"10.0.0.0/8"`, `"fd00::/8"`) or single addresses (`"::1"`). Anything else is a
    /// [`ConfigError`] naming `trusted_proxies`.
    ///
    /// IPv4 clients of a dual-stack listener show up as IPv4-mapped IPv6 addresses
    /// (`::ffff:10.1.2.3`); they are matched as the IPv4 address they map, and a mapped
    /// network (`::ffff:10.0.0.0/104`) is the IPv4 network it maps (`10.0.0.0/8`).
    pub fn trusted_proxies<I, T>(mut self, proxies: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        for p in proxies {
            self.trusted.push(trusted_network(p.as_ref())?);
        }
        Ok(self)
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// The client IP of a request.
    pub fn client_ip<B>(&self, req: &Request<B>) -> Option<IpAddr> {
        let peer = peer_addr(req)?.ip();
        if !self.trusted(peer) {
            return Some(peer);
        }
        let mut client = peer;
        for value in req.headers().get_all("x-forwarded-for").iter().rev() {
            let Ok(value) = value.to_str() else {
                return Some(client);
            };
            for hop in value.rsplit(',') {
                let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                    return Some(client);
                };
                client = ip;
                if !self.trusted(ip) {
                    return Some(ip);
                }
            }
        }
        Some(client)
    }
}

/// A trusted-proxy network: `addr/prefix`, or a single address (a /32 or /128 network).
/// IPv4-mapped IPv6 networks become the IPv4 network they map, since peers are matched in
/// their canonical form.
fn trusted_network(s: &str) -> Result<IpNet, ConfigError> {
    let bad = || ConfigError::new("trusted_proxies", format!("not an IP network: {s:?}"));
    let (addr, prefix) = match s.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (s, None),
    };
    // The address goes through std's parser rather than ipnet's: ipnet accepts leading
    // zeros (`010.0.0.1`), which other tools read as octal, and a list of trusted proxies
    // must mean one thing.
    let addr = addr.parse::<IpAddr>().map_err(|_| bad())?;
    let net = match prefix {
        None => IpNet::from(addr),
        Some(p) => {
            let p = p.parse::<u8>().map_err(|_| bad())?;
            IpNet::new(addr, p).map_err(|_| bad())?
        }
    };
    Ok(match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96)
                .expect("at most 32 bits")
                .into(),
            None => net,
        },
        net => net,
    })
}

fn peer_addr<B>(req: &Request<B>) -> Option<SocketAddr> {
    #[cfg(feature = "axum")]
    if let Some(ci) = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(ci.0);
    }
    req.extensions().get::<SocketAddr>().copied()
}

impl<B> KeyExtractor<Request<B>> for PeerIp {
    fn extract(&self, req: &Request<B>) -> Option<Subject> {
        self.client_ip(req).map(|ip| Subject::new(ip.to_string()))
    }

    /// Always the server's fault: every TCP request has a peer, the server just did not
    /// hand it over.
    fn explain_missing(&self, _req: &Request<B>) -> KeyNotFound {
        KeyNotFound::server(PEER_IP_MISSING)
    }
}

#[cfg(feature = "axum")]
const PEER_IP_MISSING: &str = "`PeerIp` found no client address: serve the router with \
     `into_make_service_with_connect_info::<SocketAddr>()` (or insert a `SocketAddr` \
     request extension), or choose `on_missing_key`";
#[cfg(not(feature = "axum"))]
const PEER_IP_MISSING: &str = "`PeerIp` found no client address: insert the peer's \
     `SocketAddr` as a request extension, or choose `on_missing_key`";

#[cfg(test)]
mod tests {
    use super::*;

    fn req(peer: &str, xff: &[&str]) -> Request<()> {
        let mut b = Request::builder();
        for v in xff {
            b = b.header("x-forwarded-for", *v);
        }
        let mut r = b.body(()).unwrap();
        r.extensions_mut()
            .insert(peer.parse::<SocketAddr>().unwrap());
        r
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let plain = PeerIp::new();
        assert_eq!(
            plain.extract(&req("1.2.3.4:5", &["9.9.9.9"])).unwrap().user,
            "1.2.3.4"
        );
        let trusting = PeerIp::new().trusted_proxies(["10.0.0.0/8"]).unwrap();
        let r = req("10.0.0.1:5", &["6.6.6.6, 7.7.7.7, 10.1.1.1"]);
        assert_eq!(trusting.extract(&r).unwrap().user, "7.7.7.7");
        assert_eq!(
            trusting
                .extract(&req("10.0.0.1:5", &["garbage"]))
                .unwrap()
                .user,
            "10.0.0.1"
        );
        assert!(trusted_network("10.0.0.0/33").is_err());
        assert!(trusted_network("::ffff:10.1.2.3").is_ok());
    }

    #[test]
    fn trusted_networks_parse_cidrs_and_single_addresses() {
        let contains = |net: &str, ip: &str| {
            PeerIp::new()
                .trusted_proxies([net])
                .unwrap()
                .trusted(ip.parse().unwrap())
        };
        assert!(contains("10.0.0.0/8", "10.255.0.1"));
        assert!(!contains("10.0.0.0/8", "11.0.0.1"));
        assert!(contains("10.1.2.3/8", "10.9.9.9"), "host bits are ignored");
        assert!(contains("0.0.0.0/0", "8.8.8.8"));
        assert!(contains("192.168.1.7", "192.168.1.7"));
        assert!(!contains("192.168.1.7", "192.168.1.8"));
        assert!(contains("fd00::/8", "fd12::1"));
        assert!(!contains("fd00::/8", "fe80::1"));
        assert!(contains("::1", "::1"));
        // IPv4 as seen by a dual-stack listener, and IPv4-mapped networks.
        assert!(contains("10.0.0.0/8", "::ffff:10.1.2.3"));
        assert!(contains("::ffff:10.1.2.3", "10.1.2.3"));
        assert!(contains("::ffff:10.0.0.0/104", "10.200.0.1"));
        assert!(!contains("::ffff:10.0.0.0/104", "11.0.0.1"));
        // Families do not mix otherwise.
        assert!(!contains("::/0", "10.0.0.1"));
        assert!(!contains("0.0.0.0/0", "fd00::1"));

        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0/8",
            "example.com",
            "",
            "/8",
            "010.0.0.0/8",
        ] {
            let err = PeerIp::new().trusted_proxies([bad]).unwrap_err();
            assert_eq!(err.field, "trusted_proxies", "{bad:?}");
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn legacy_headers_name_the_binding_window() {
        use crate::quota::{Cell, Mode, Quota, decide};
        let quota = Quota::tiered(2, 60, 1_000, 10_000).unwrap();
        let mut cells = [Cell::default(); 4];
        let now = 1_700_000_000_000_000;
        decide(&quota, &mut cells, now, 1, Mode::Consume);
        let d = decide(&quota, &mut cells, now, 1, Mode::Consume);
        let res = LegacyHeaders.decorate(
            Response::new(String::new()),
            &d,
            &PolicyLabel::for_decision("free", &d),
        );
        let h = res.headers();
        assert_eq!(h["x-ratelimit-limit"], "2");
        assert_eq!(h["x-ratelimit-remaining"], "0");
        assert_eq!(h["x-ratelimit-reset"], "1");
        assert_eq!(
            h["ratelimit-policy"],
            "\"free-1s\";q=2;w=1, \"free-60s\";q=60;w=60, \"free-3600s\";q=1000;w=3600, \"free-86400s\";q=10000;w=86400"
        );
        assert_eq!(
            h["ratelimit"],
            "\"free-1s\";r=0;t=1, \"free-60s\";r=58;t=2, \"free-3600s\";r=998;t=8, \"free-86400s\";r=9998;t=18"
        );
        assert_eq!(WindowLabel(500_000).to_string(), "500ms");
        let tier = crate::tier::TierTable::standard();
        assert_eq!(
            tier.default_tier().label().policy_field(),
            h["ratelimit-policy"].to_str().unwrap(),
            "the prebuilt label is what a decision would format"
        );
    }

    #[test]
    fn header_key_bounds() {
        let k = HeaderKey::new("x-api-key").unwrap();
        let r = Request::builder()
            .header("x-api-key", "k1")
            .body(())
            .unwrap();
        assert_eq!(k.extract(&r).unwrap().user, "k1");
        let long = Request::builder()
            .header("x-api-key", "a".repeat(MAX_KEY_LEN + 1))
            .body(())
            .unwrap();
        assert!(k.extract(&long).is_none());
        assert!(HeaderKey::new("bad header").is_err());
    }
}
