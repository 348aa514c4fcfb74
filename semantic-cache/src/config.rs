//! [`SemanticConfig`]: every setting of a semantic cache, deserializable from TOML.

use std::time::Duration;

use reliability_core::error::ConfigError;
use serde::Deserialize;

/// Settings of a [`SemanticCacheLayer`](crate::SemanticCacheLayer).
///
/// ```
/// let config: semantic_cache::SemanticConfig = serde_json::from_str(
///     r#"{ "name": "llm", "threshold": 0.92, "ttl": "30m" }"#,
/// ).unwrap();
/// assert_eq!(config.ttl, std::time::Duration::from_secs(1800));
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SemanticConfig {
    /// Name in health reports and logs.
    pub name: String,
    /// Least cosine similarity for a semantic hit, in `(0, 1]` (default 0.95).
    pub threshold: f32,
    /// How long an answer is served, in `(0 s, 1 year]` (default 1 h).
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Most entries (answers and their vectors) held across namespaces (default 10,000).
    pub max_entries: u64,
    /// Most namespaces; requests of further namespaces bypass the cache (default 1,024).
    pub max_namespaces: usize,
    /// Most vectors in the embedding cache's memory tier (default 100,000).
    pub embedding_cache_entries: u64,
    /// How long an embedding is kept; `None` (the default) keeps it until evicted, since
    /// a model maps a text to the same vector forever.
    #[serde(with = "humantime_serde")]
    pub embedding_ttl: Option<Duration>,
    /// How often a namespace's index catches up with entries other instances wrote to the
    /// store, checked on misses (default 5 s; zero: on every miss).
    #[serde(with = "humantime_serde")]
    pub resync_interval: Duration,
    /// Longer texts bypass the cache (default 32 KiB).
    pub max_text_bytes: usize,
    /// Above this many entries a namespace's index answers from an HNSW graph
    /// (approximate, recall@1 ≥ 0.95 tested) instead of an exact scan (default 10,000: the
    /// graph pays from ~5,000 entries, and below 10,000 the scan costs under 1 ms, see
    /// `BENCHMARKS.md`; `usize::MAX`: always exact, 0: always the graph).
    pub approximate_above: usize,
}

impl Default for SemanticConfig {
    fn default() -> Self {
        Self {
            name: "semantic".to_owned(),
            threshold: 0.95,
            ttl: Duration::from_secs(3600),
            max_entries: 10_000,
            max_namespaces: 1024,
            embedding_cache_entries: 100_000,
            embedding_ttl: None,
            resync_interval: Duration::from_secs(5),
            max_text_bytes: 32 * 1024,
            approximate_above: crate::index::DEFAULT_APPROXIMATE_ABOVE,
        }
    }
}

const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

impl SemanticConfig {
    /// Checks every field against its allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            return Err(ConfigError::out_of_range(
                "threshold",
                "(0, 1]",
                self.threshold,
            ));
        }
        if self.ttl.is_zero() || self.ttl > YEAR {
            return Err(ConfigError::out_of_range(
                "ttl",
                "(0s, 1 year]",
                format!("{:?}", self.ttl),
            ));
        }
        if self.max_entries == 0 || self.max_entries > 100_000_000 {
            return Err(ConfigError::out_of_range(
                "max_entries",
                "[1, 100000000]",
                self.max_entries,
            ));
        }
        if self.max_namespaces == 0 {
            return Err(ConfigError::out_of_range("max_namespaces", "[1, 2^64)", 0));
        }
        if self.embedding_cache_entries == 0 {
            return Err(ConfigError::out_of_range(
                "embedding_cache_entries",
                "[1, 2^64)",
                0,
            ));
        }
        if let Some(t) = self.embedding_ttl
            && (t.is_zero() || t > 10 * YEAR)
        {
            return Err(ConfigError::out_of_range(
                "embedding_ttl",
                "(0s, 10 years]",
                format!("{t:?}"),
            ));
        }
        if self.max_text_bytes == 0 {
            return Err(ConfigError::out_of_range("max_text_bytes", "[1, 2^64)", 0));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_name_their_field() {
        let bad = |f: fn(&mut SemanticConfig)| {
            let mut c = SemanticConfig::default();
            f(&mut c);
            c.validate().unwrap_err().field
        };
        assert_eq!(bad(|c| c.threshold = 0.0), "threshold");
        assert_eq!(bad(|c| c.threshold = 1.01), "threshold");
        assert_eq!(bad(|c| c.threshold = f32::NAN), "threshold");
        assert_eq!(bad(|c| c.ttl = Duration::ZERO), "ttl");
        assert_eq!(bad(|c| c.max_entries = 0), "max_entries");
        assert_eq!(bad(|c| c.max_namespaces = 0), "max_namespaces");
        assert_eq!(
            bad(|c| c.embedding_cache_entries = 0),
            "embedding_cache_entries"
        );
        assert_eq!(
            bad(|c| c.embedding_ttl = Some(Duration::ZERO)),
            "embedding_ttl"
        );
        assert_eq!(bad(|c| c.max_text_bytes = 0), "max_text_bytes");
        SemanticConfig::default().validate().unwrap();
    }
}
