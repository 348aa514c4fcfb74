//! `Vary` (RFC 9111 §4.1): which request headers select a stored response, and the
//! normalised form in which their values are compared.

use http::header::VARY;
use http::{HeaderMap, HeaderName};

use super::super::key::push_escaped;

/// More names than this in a response's `Vary` make it uncacheable: no real resource
/// varies on so many headers, and each one lengthens every key of the URI.
pub(crate) const MAX_VARY: usize = 16;

/// What a response's `Vary` fields say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Vary {
    /// Selected by these request headers (lowercased, sorted, deduplicated; empty when
    /// the response has no `Vary`).
    On(Vec<HeaderName>),
    /// `Vary: *`, a list over [`MAX_VARY`] or a name that is not a header name: no later
    /// request can be matched to it, so it is not stored.
    Never,
}

/// Reads the `Vary` fields of a response.
pub(crate) fn vary(headers: &HeaderMap) -> Vary {
    let mut names = Vec::new();
    for field in headers.get_all(VARY) {
        let Ok(field) = field.to_str() else {
            return Vary::Never;
        };
        for name in field.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "*" {
                return Vary::Never;
            }
            let Ok(name) = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) else {
                return Vary::Never;
            };
            names.push(name);
            if names.len() > MAX_VARY {
                return Vary::Never;
            }
        }
    }
    names.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    Vary::On(names)
}

/// The value of a request header as `Vary` compares it, `None` when absent: every field
/// line joined by commas, whitespace around list members removed, and for the headers
/// whose values are case-insensitive tokens (`Accept-Encoding`, `Accept-Charset`,
/// `Accept-Language`) lowercased, so that `gzip,  br` and `GZIP, br` select the same
/// response while `Accept: text/html` and `Accept: text/plain` do not.
pub(crate) fn normalised(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut fields = headers.get_all(name).iter().peekable();
    fields.peek()?;
    let fold = matches!(
        name.as_str(),
        "accept-encoding" | "accept-charset" | "accept-language"
    );
    let mut out = String::new();
    for field in fields {
        // Bytes that are not visible ASCII (and `%`) as `%XX`: distinct values stay
        // distinct, whatever bytes they hold.
        let field: String = field
            .as_bytes()
            .iter()
            .map(|&b| match b {
                b'%' => "%25".to_owned(),
                b' '..=b'~' | b'\t' => char::from(b).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        for member in field.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            if !out.is_empty() {
                out.push(',');
            }
            // Spaces around `;` parameters are not significant either.
            for (i, part) in member.split(';').map(str::trim).enumerate() {
                if i > 0 {
                    out.push(';');
                }
                if fold {
                    out.push_str(&part.to_ascii_lowercase());
                } else {
                    out.push_str(part);
                }
            }
        }
    }
    Some(out)
}

/// The key of the variant of `primary` that a request with `headers` selects, for a
/// response that varies on `names` (non-empty): `primary|~|name=value|name!` (`!` for an
/// absent header), escaped so that `|` only separates.
pub(crate) fn variant_key(primary: &str, names: &[HeaderName], headers: &HeaderMap) -> String {
    let mut key = String::with_capacity(primary.len() + 16 * names.len());
    key.push_str(primary);
    key.push_str("|~");
    for name in names {
        key.push('|');
        key.push_str(name.as_str());
        match normalised(headers, name) {
            Some(v) => {
                key.push('=');
                push_escaped(&mut key, &v);
            }
            None => key.push('!'),
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn vary_names_are_lowercased_sorted_and_bounded() {
        let h = headers(&[
            ("vary", "Accept-Encoding, accept"),
            ("vary", "X-Foo,accept"),
        ]);
        assert_eq!(
            vary(&h),
            Vary::On(vec![
                HeaderName::from_static("accept"),
                HeaderName::from_static("accept-encoding"),
                HeaderName::from_static("x-foo"),
            ])
        );
        assert_eq!(vary(&headers(&[("vary", "accept, *")])), Vary::Never);
        let huge = (0..=MAX_VARY)
            .map(|i| format!("x-h{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        assert_eq!(vary(&headers(&[("vary", &huge)])), Vary::Never);
        assert_eq!(vary(&HeaderMap::new()), Vary::On(vec![]));
    }

    #[test]
    fn values_are_normalised_before_they_are_compared() {
        let n = HeaderName::from_static("accept-encoding");
        let a = headers(&[("accept-encoding", "GZIP,  br")]);
        let b = headers(&[("accept-encoding", "gzip"), ("accept-encoding", "br")]);
        assert_eq!(normalised(&a, &n), normalised(&b, &n));
        let n = HeaderName::from_static("accept");
        let a = headers(&[("accept", "text/html ; q=0.9")]);
        let b = headers(&[("accept", "Text/html;q=0.9")]);
        assert_ne!(
            normalised(&a, &n),
            normalised(&b, &n),
            "Accept keeps its case"
        );
        assert_eq!(normalised(&HeaderMap::new(), &n), None);
    }

    #[test]
    fn absent_and_empty_headers_select_different_variants() {
        let names = [HeaderName::from_static("x-a")];
        let absent = variant_key("GET http://h/", &names, &HeaderMap::new());
        let empty = variant_key("GET http://h/", &names, &headers(&[("x-a", "")]));
        assert_ne!(absent, empty);
    }

    proptest! {
        /// Two requests select the same variant exactly when their normalised values
        /// agree on every varying header; a `|` in a value never forges another key.
        #[test]
        fn one_variant_per_normalised_values(
            a in prop::collection::vec(prop::option::of("[a-z|=!,; ]{0,8}"), 3),
            b in prop::collection::vec(prop::option::of("[a-z|=!,; ]{0,8}"), 3),
        ) {
            let names = [
                HeaderName::from_static("x-a"),
                HeaderName::from_static("x-b"),
                HeaderName::from_static("x-c"),
            ];
            let build = |vals: &[Option<String>]| {
                let mut h = HeaderMap::new();
                for (n, v) in names.iter().zip(vals) {
                    if let Some(v) = v {
                        h.insert(n.clone(), v.parse().unwrap());
                    }
                }
                h
            };
            let (ha, hb) = (build(&a), build(&b));
            let same = names.iter().all(|n| normalised(&ha, n) == normalised(&hb, n));
            let ka = variant_key("GET http://h/p", &names, &ha);
            let kb = variant_key("GET http://h/p", &names, &hb);
            prop_assert_eq!(ka == kb, same);
        }
    }
}
