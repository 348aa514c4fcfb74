//! [`SemanticResponse`]: the answer with how the cache found it.

use std::sync::Arc;

/// How a request was answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// From the cache, under the request's own exact key.
    Exact,
    /// From the cache, under the most similar entry of the namespace.
    Similar {
        /// Cosine similarity of the request's text to the entry's (at least the threshold).
        similarity: f32,
        /// The matched entry's exact key.
        key: Arc<str>,
    },
    /// From another request's upstream call, in flight for an equal or similar text.
    Coalesced {
        /// Similarity of the two texts (1 for an equal one).
        similarity: f32,
    },
    /// From the upstream; the answer is now cached.
    Miss,
    /// From the upstream, without the cache (no prompt, text too long, too many
    /// namespaces).
    Bypass,
}

impl Lookup {
    /// The `outcome` field of the layer's span.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Similar { .. } => "similar",
            Self::Coalesced { .. } => "coalesced",
            Self::Miss => "miss",
            Self::Bypass => "bypass",
        }
    }

    /// Whether the answer came from the cache or a shared call.
    pub fn is_hit(&self) -> bool {
        matches!(
            self,
            Self::Exact | Self::Similar { .. } | Self::Coalesced { .. }
        )
    }

    /// Similarity of the answer's entry to the request (1 for an exact hit).
    pub fn similarity(&self) -> Option<f32> {
        match self {
            Self::Exact => Some(1.0),
            Self::Similar { similarity, .. } | Self::Coalesced { similarity } => Some(*similarity),
            Self::Miss | Self::Bypass => None,
        }
    }

    /// A `Cache-Status` (RFC 9211) entry for a cache named `name`: `hit` with the
    /// similarity as an extension parameter for semantic hits, `fwd=miss` otherwise.
    pub fn cache_status(&self, name: &str) -> String {
        match self {
            Self::Exact => format!("{name}; hit"),
            Self::Similar { similarity, .. } => format!("{name}; hit; similarity={similarity:.4}"),
            Self::Coalesced { similarity } => {
                format!("{name}; fwd=miss; collapsed; similarity={similarity:.4}")
            }
            Self::Miss => format!("{name}; fwd=miss; stored"),
            Self::Bypass => format!("{name}; fwd=bypass"),
        }
    }
}

/// The inner service's answer, and how the cache found it.
#[derive(Debug, Clone, PartialEq)]
pub struct SemanticResponse<V> {
    /// The answer.
    pub value: V,
    /// How it was found.
    pub lookup: Lookup,
}

impl<V> SemanticResponse<V> {
    pub(crate) fn new(value: V, lookup: Lookup) -> Self {
        Self { value, lookup }
    }

    /// The answer alone.
    pub fn into_value(self) -> V {
        self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_status_reports_the_similarity() {
        let similar = Lookup::Similar {
            similarity: 0.96123,
            key: Arc::from("sem:0"),
        };
        assert_eq!(similar.cache_status("llm"), "llm; hit; similarity=0.9612");
        assert_eq!(Lookup::Exact.cache_status("llm"), "llm; hit");
        assert_eq!(Lookup::Miss.cache_status("llm"), "llm; fwd=miss; stored");
        assert!(!Lookup::Bypass.is_hit());
        assert_eq!(Lookup::Miss.similarity(), None);
    }
}
