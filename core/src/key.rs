//! Redis key namespacing that makes any user string safe.
//!
//! User ids, API keys, cache keys and tier names arrive from the outside. None of them may
//! become a raw Redis key: a `{` could pick the cluster slot (hash-tag injection), a `:`
//! could walk into another namespace, a 10 KB id could bloat memory. A [`KeySpace`] turns a
//! user string (a *subject*) into a key of the form
//!
//! ```text
//! <prefix>:{<escaped subject>}:<suffix>
//! ```
//!
//! - the subject is percent-escaped ([`escape_subject`]): only a conservative set of ASCII
//!   characters passes through, so the escaped form never contains `{`, `}`, `:`, `#`, `%`
//!   or whitespace; escaping is injective (distinct subjects give distinct keys);
//! - subjects whose escaped form exceeds [`MAX_SUBJECT_LEN`] bytes are replaced by `#` and
//!   their SHA-256 in hex (the `#` cannot start an escaped subject, so the two forms never
//!   collide);
//! - the braces make the subject the cluster hash tag: every key of one subject lands in one
//!   slot, so a multi-key script (all windows of a rate-limit tier) is cluster-safe.
//!
//! # Example
//!
//! ```
//! use reliability_core::key::KeySpace;
//!
//! let keys = KeySpace::new("app:rl").unwrap();
//! assert_eq!(keys.key("user 42", "minute"), "app:rl:{user%2042}:minute");
//! assert_eq!(keys.key("{evil}", "s"), "app:rl:{%7Bevil%7D}:s");
//! ```

use std::borrow::Cow;
use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::error::ConfigError;

/// Longest escaped subject kept verbatim; longer ones are hashed.
pub const MAX_SUBJECT_LEN: usize = 256;

/// Longest accepted key-space prefix.
pub const MAX_PREFIX_LEN: usize = 128;

/// A namespace of Redis keys with a validated prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeySpace {
    prefix: String,
}

impl KeySpace {
    /// A key space under `prefix`, which is operator configuration (not user input): 1 to
    /// [`MAX_PREFIX_LEN`] bytes of ASCII letters, digits and `_ - . :`.
    pub fn new(prefix: impl Into<String>) -> Result<Self, ConfigError> {
        let prefix = prefix.into();
        validate_prefix("key_prefix", &prefix)?;
        Ok(Self { prefix })
    }

    /// A key space nested under this one (`"app"` + `"cache"` = `"app:cache"`).
    pub fn child(&self, name: &str) -> Result<Self, ConfigError> {
        Self::new(format!("{}:{name}", self.prefix))
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key of `subject` (any user string) with a constant `suffix` chosen by the layer.
    pub fn key(&self, subject: &str, suffix: &str) -> String {
        debug_assert!(
            suffix.bytes().all(is_plain),
            "key suffixes are layer constants"
        );
        let subject = escape_subject(subject);
        let mut key = String::with_capacity(self.prefix.len() + subject.len() + suffix.len() + 4);
        key.push_str(&self.prefix);
        key.push_str(":{");
        key.push_str(&subject);
        key.push('}');
        if !suffix.is_empty() {
            key.push(':');
            key.push_str(suffix);
        }
        key
    }

    /// A key owned by the layer itself, not derived from user input
    /// (`<prefix>:<name>`, e.g. a pub/sub channel or a sorted set of top users).
    pub fn fixed(&self, name: &str) -> String {
        debug_assert!(
            name.bytes().all(is_plain),
            "fixed names are layer constants"
        );
        format!("{}:{name}", self.prefix)
    }

    /// A `SCAN`/`KEYS` pattern matching every key of this space (glob characters in the
    /// prefix cannot occur: the prefix is validated).
    pub fn pattern(&self) -> String {
        format!("{}:*", self.prefix)
    }
}

fn validate_prefix(field: &str, prefix: &str) -> Result<(), ConfigError> {
    if prefix.is_empty() || prefix.len() > MAX_PREFIX_LEN {
        return Err(ConfigError::new(
            field,
            format!("must be 1 to {MAX_PREFIX_LEN} bytes, got {}", prefix.len()),
        ));
    }
    if let Some(bad) = prefix
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
    {
        return Err(ConfigError::new(
            field,
            format!("may hold only ASCII letters, digits and `_ - . :`, found {bad:?}"),
        ));
    }
    Ok(())
}

/// Bytes that pass through [`escape_subject`] unchanged.
fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'_' | b'.' | b'/' | b'@' | b'+' | b'=' | b',' | b';' | b'!' | b'~' | b'*'
        )
}

/// Escapes a user string for use inside a key: plain ASCII passes, every other byte
/// becomes `%XX`; too-long results become `#<sha256 hex>`.
///
/// ```
/// use reliability_core::key::escape_subject;
///
/// assert_eq!(escape_subject("alice@example.com"), "alice@example.com");
/// assert_eq!(escape_subject("a:b{c}"), "a%3Ab%7Bc%7D");
/// assert!(escape_subject(&"x".repeat(10_000)).starts_with('#'));
/// ```
pub fn escape_subject(subject: &str) -> Cow<'_, str> {
    let bytes = subject.as_bytes();
    if bytes.is_empty() {
        // `{}` is no hash tag at all to Redis (the whole key would be hashed); a lone `%`
        // cannot come out of escaping anything else, so it stays injective.
        return Cow::Borrowed("%");
    }
    let plain = bytes.iter().all(|&b| is_plain(b));
    if plain && bytes.len() <= MAX_SUBJECT_LEN {
        return Cow::Borrowed(subject);
    }
    let escaped_len: usize = bytes.iter().map(|&b| if is_plain(b) { 1 } else { 3 }).sum();
    if escaped_len > MAX_SUBJECT_LEN {
        let digest = Sha256::digest(bytes);
        let mut out = String::with_capacity(65);
        out.push('#');
        for b in digest {
            let _ = write!(out, "{b:02x}");
        }
        return Cow::Owned(out);
    }
    let mut out = String::with_capacity(escaped_len);
    for &b in bytes {
        if is_plain(b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn prefix_validation() {
        assert!(KeySpace::new("rel:cache-v1.2_x").is_ok());
        for bad in ["", "a{b}", "a b", "a*", "ä", &"p".repeat(129)] {
            let err = KeySpace::new(bad).unwrap_err();
            assert_eq!(err.field, "key_prefix", "{bad}");
        }
    }

    #[test]
    fn child_and_fixed() {
        let ks = KeySpace::new("app").unwrap().child("cache").unwrap();
        assert_eq!(ks.fixed("invalidate"), "app:cache:invalidate");
        assert_eq!(ks.pattern(), "app:cache:*");
        assert!(KeySpace::new("app").unwrap().child("{x}").is_err());
    }

    #[test]
    fn hostile_subjects() {
        let ks = KeySpace::new("p").unwrap();
        assert_eq!(ks.key("a\nb\r\n", "x"), "p:{a%0Ab%0D%0A}:x");
        assert_eq!(ks.key("", "x"), "p:{%}:x");
        assert_eq!(ks.key("%7B", "x"), "p:{%257B}:x");
        let long = ks.key(&"}".repeat(10_240), "x");
        assert!(long.len() < 100, "{long}");
    }

    /// The cluster hash tag of a key, as Redis computes it.
    fn hash_tag(key: &str) -> &str {
        if let Some(open) = key.find('{')
            && let Some(close) = key[open + 1..].find('}')
            && close > 0
        {
            return &key[open + 1..open + 1 + close];
        }
        key
    }

    proptest! {
        #[test]
        fn keys_are_balanced_and_tagged_by_subject(s in any::<String>(), t in "[a-z]{0,8}") {
            let ks = KeySpace::new("ns").unwrap();
            let key = ks.key(&s, &t);
            prop_assert_eq!(key.matches('{').count(), 1);
            prop_assert_eq!(key.matches('}').count(), 1);
            let (open, close) = (key.find('{'), key.find('}'));
            prop_assert!(open < close);
            prop_assert!(key.bytes().all(|b| b.is_ascii_graphic()));
            // Two suffixes of one subject share a slot.
            let other = ks.key(&s, "other");
            prop_assert_eq!(hash_tag(&key), hash_tag(&other));
        }

        #[test]
        fn distinct_subjects_never_collide(a in any::<String>(), b in any::<String>()) {
            prop_assume!(a != b);
            let ks = KeySpace::new("ns").unwrap();
            prop_assert_ne!(ks.key(&a, "k"), ks.key(&b, "k"));
        }

        #[test]
        fn near_collisions_stay_distinct(a in "[a-z%{}:# 0-9A-F]{0,12}", b in "[a-z%{}:# 0-9A-F]{0,12}") {
            prop_assume!(a != b);
            prop_assert_ne!(escape_subject(&a), escape_subject(&b));
        }

        #[test]
        fn long_subjects_hash_distinctly(a in ".{90,200}", b in ".{90,200}") {
            prop_assume!(a != b);
            prop_assert_ne!(escape_subject(&a), escape_subject(&b));
        }
    }
}
