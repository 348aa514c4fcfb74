//! `Surrogate-Control` (W3C Edge Architecture 1.0): directives for a gateway cache that
//! override `Cache-Control` for it, optionally targeted at one surrogate by name
//! (`max-age=60;edge`), and removed before the response goes on.

use http::{HeaderMap, HeaderName};

use super::directives::delta_seconds;

/// The `Surrogate-Control` header.
pub(crate) const SURROGATE_CONTROL: HeaderName = HeaderName::from_static("surrogate-control");
/// The request header by which a surrogate announces itself to the origin.
pub(crate) const SURROGATE_CAPABILITY: HeaderName = HeaderName::from_static("surrogate-capability");

/// What `Surrogate-Control` says to this surrogate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Surrogate {
    /// A freshness lifetime that replaces every other one.
    pub(crate) max_age: Option<u64>,
    /// Not to be stored, whatever `Cache-Control` says.
    pub(crate) no_store: bool,
}

/// Reads the directives meant for the surrogate named `target`: those targeted at it when
/// there are any, else the untargeted ones. Unknown directives, other targets and
/// malformed values are ignored; the first `max-age` wins.
pub(crate) fn parse(headers: &HeaderMap, target: &str) -> Surrogate {
    let members: Vec<(&str, Option<&str>)> = headers
        .get_all(SURROGATE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(|m| match m.split_once(';') {
            Some((d, t)) => (d.trim(), Some(t.trim())),
            None => (m, None),
        })
        .collect();
    let targeted = members
        .iter()
        .any(|(_, t)| t.is_some_and(|t| t.eq_ignore_ascii_case(target)));
    let mut s = Surrogate::default();
    for (directive, to) in members {
        let ours = match to {
            Some(t) => t.eq_ignore_ascii_case(target),
            None => !targeted,
        };
        if !ours {
            continue;
        }
        let (name, value) = match directive.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (directive, None),
        };
        if name.eq_ignore_ascii_case("no-store") {
            s.no_store = true;
        } else if name.eq_ignore_ascii_case("max-age") && s.max_age.is_none() {
            // `max-age=N+M` (M: a stale extension) counts N.
            let n = value.map(|v| v.split('+').next().unwrap_or(v).trim());
            s.max_age = n.and_then(|n| delta_seconds(n.as_bytes()));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::super::directives::MAX_DELTA;
    use super::*;

    fn sc(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(SURROGATE_CONTROL, v.parse().unwrap());
        h
    }

    #[test]
    fn targeted_directives_win_over_untargeted_ones() {
        assert_eq!(parse(&sc("max-age=60"), "edge").max_age, Some(60));
        assert_eq!(
            parse(&sc("max-age=60, max-age=5;edge"), "edge").max_age,
            Some(5)
        );
        assert_eq!(parse(&sc("max-age=60;other"), "edge"), Surrogate::default());
        assert!(parse(&sc("no-store;EDGE"), "edge").no_store);
        assert_eq!(parse(&sc("max-age=30+60"), "edge").max_age, Some(30));
        assert_eq!(parse(&sc("max-age=abc, max-age=-1"), "edge").max_age, None);
        assert_eq!(
            parse(&sc("max-age=99999999999999999999"), "e").max_age,
            Some(MAX_DELTA)
        );
    }
}
