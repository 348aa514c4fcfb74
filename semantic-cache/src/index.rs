//! The vector index of one namespace: exact brute-force cosine search.
//!
//! Pure: no I/O, no async, no clock reads (every method that needs the time takes `now`).
//!
//! Vectors sit in one contiguous `Vec<f32>`, row after row, so a lookup is a linear scan
//! the CPU prefetches and the compiler vectorizes: about `n · d` multiply-adds for `n`
//! entries of dimension `d`. Removal swaps the last row into the hole, so rows stay dense
//! and every operation but the scan is O(1) (eviction is O(n), as it looks for the entry
//! that expires first).
//!
//! Brute force is exact: the entry it returns *is* the most similar one, so the threshold
//! means what it says. `BENCHMARKS.md` gives the cost per entry; the index is bounded by the
//! cache's `max_entries`, which bounds the scan.

use std::collections::HashMap;
use std::sync::Arc;

use reliability_core::clock::Instant;

use crate::vector::{VectorError, dot};

/// The most similar live entry of a lookup.
#[derive(Debug, Clone, PartialEq)]
pub struct Nearest {
    /// The entry's exact key.
    pub key: Arc<str>,
    /// Its cosine similarity to the query.
    pub similarity: f32,
}

#[derive(Debug, Clone)]
struct Slot {
    key: Arc<str>,
    expires_at: Instant,
}

/// The normalized vectors of one namespace, with their keys and expiry.
#[derive(Debug, Clone, Default)]
pub struct VectorIndex {
    dim: usize,
    rows: Vec<f32>,
    slots: Vec<Slot>,
    positions: HashMap<Arc<str>, usize>,
}

impl VectorIndex {
    /// An empty index; its dimension is set by the first vector inserted.
    pub fn new() -> Self {
        Self::default()
    }

    /// Entries held, expired or not.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The dimension of the vectors held (0 while empty).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Bytes held by the vectors (the bulk of the index's memory).
    pub fn vector_bytes(&self) -> usize {
        self.rows.len() * size_of::<f32>()
    }

    /// When `key` expires, if held.
    pub fn expires_at(&self, key: &str) -> Option<Instant> {
        self.positions.get(key).map(|&i| self.slots[i].expires_at)
    }

    /// Whether `key` is held and live at `now`.
    pub fn is_live(&self, key: &str, now: Instant) -> bool {
        self.expires_at(key).is_some_and(|t| now < t)
    }

    /// Inserts (or replaces) `key` with the normalized `vector`, live until `expires_at`.
    pub fn insert(
        &mut self,
        key: Arc<str>,
        vector: &[f32],
        expires_at: Instant,
    ) -> Result<(), VectorError> {
        if vector.is_empty() {
            return Err(VectorError::Empty);
        }
        if self.slots.is_empty() {
            self.dim = vector.len();
        } else if vector.len() != self.dim {
            return Err(VectorError::DimensionMismatch {
                expected: self.dim,
                got: vector.len(),
            });
        }
        if let Some(&i) = self.positions.get(&key) {
            self.rows[i * self.dim..(i + 1) * self.dim].copy_from_slice(vector);
            self.slots[i].expires_at = expires_at;
            return Ok(());
        }
        self.rows.extend_from_slice(vector);
        self.positions.insert(key.clone(), self.slots.len());
        self.slots.push(Slot { key, expires_at });
        Ok(())
    }

    /// Removes `key`; whether it was held.
    pub fn remove(&mut self, key: &str) -> bool {
        let Some(i) = self.positions.remove(key) else {
            return false;
        };
        let last = self.slots.len() - 1;
        if i != last {
            let (head, tail) = self.rows.split_at_mut(last * self.dim);
            head[i * self.dim..(i + 1) * self.dim].copy_from_slice(&tail[..self.dim]);
            self.slots.swap(i, last);
            self.positions.insert(self.slots[i].key.clone(), i);
        }
        self.slots.pop();
        self.rows.truncate(last * self.dim);
        if self.slots.is_empty() {
            self.dim = 0;
            self.rows = Vec::new();
        }
        true
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// The live entry most similar to the normalized `query`, whatever its similarity
    /// (`None` when no live entry exists or the dimensions differ).
    pub fn nearest(&self, query: &[f32], now: Instant) -> Option<Nearest> {
        if query.len() != self.dim || self.dim == 0 {
            return None;
        }
        let mut best: Option<(usize, f32)> = None;
        for (i, row) in self.rows.chunks_exact(self.dim).enumerate() {
            let s = dot(row, query);
            if best.is_none_or(|(_, b)| s > b) && now < self.slots[i].expires_at {
                best = Some((i, s));
            }
        }
        best.map(|(i, similarity)| Nearest {
            key: self.slots[i].key.clone(),
            similarity,
        })
    }

    /// Removes every entry expired at `now`; returns their keys.
    pub fn purge_expired(&mut self, now: Instant) -> Vec<Arc<str>> {
        let gone: Vec<Arc<str>> = self
            .slots
            .iter()
            .filter(|s| now >= s.expires_at)
            .map(|s| s.key.clone())
            .collect();
        for k in &gone {
            self.remove(k);
        }
        gone
    }

    /// The key that expires first: the entry to evict when the cache is full (with one TTL
    /// for all entries, that is also the oldest).
    pub fn first_to_expire(&self) -> Option<Arc<str>> {
        self.slots
            .iter()
            .min_by_key(|s| s.expires_at)
            .map(|s| s.key.clone())
    }

    /// Every key held.
    pub fn keys(&self) -> impl Iterator<Item = &Arc<str>> {
        self.slots.iter().map(|s| &s.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vector::{meets, normalize};
    use proptest::prelude::*;
    use std::time::Duration;

    fn unit(v: &[f32]) -> Vec<f32> {
        let mut v = v.to_vec();
        normalize(&mut v).unwrap();
        v
    }

    #[test]
    fn finds_the_most_similar_live_entry() {
        let now = Instant::now();
        let later = now + Duration::from_secs(10);
        let mut ix = VectorIndex::new();
        ix.insert("a".into(), &unit(&[1.0, 0.0]), later).unwrap();
        ix.insert("b".into(), &unit(&[0.6, 0.8]), later).unwrap();
        let hit = ix.nearest(&unit(&[0.7, 0.7]), now).unwrap();
        assert_eq!(&*hit.key, "b");
        assert!(ix.nearest(&unit(&[1.0, 0.0]), later).is_none(), "expired");
        assert_eq!(
            ix.insert("c".into(), &[1.0, 0.0, 0.0], later),
            Err(VectorError::DimensionMismatch {
                expected: 2,
                got: 3
            })
        );
        assert!(
            ix.nearest(&[1.0, 0.0, 0.0], now).is_none(),
            "other dimension"
        );
        assert!(ix.remove("b"));
        assert!(!ix.remove("b"));
        assert_eq!(&*ix.nearest(&unit(&[0.7, 0.7]), now).unwrap().key, "a");
        assert_eq!(ix.purge_expired(later).len(), 1);
        assert!(ix.is_empty());
        assert_eq!(ix.dim(), 0, "an empty index takes any dimension again");
    }

    proptest! {
        /// The index returns exactly what a naive scan over live entries returns, through
        /// any sequence of inserts, replacements and removals.
        #[test]
        fn matches_a_naive_scan(
            ops in proptest::collection::vec(
                (0u8..12, proptest::collection::vec(-1.0f32..1.0, 4), 0u64..20, any::<bool>()),
                1..60),
            query in proptest::collection::vec(-1.0f32..1.0, 4),
            at in 0u64..20,
        ) {
            let t0 = Instant::now();
            let mut ix = VectorIndex::new();
            let mut model: HashMap<String, (Vec<f32>, Instant)> = HashMap::new();
            for (k, mut v, ttl, remove) in ops {
                let key = format!("k{k}");
                if remove {
                    prop_assert_eq!(ix.remove(&key), model.remove(&key).is_some());
                } else if normalize(&mut v).is_ok() {
                    let exp = t0 + Duration::from_secs(ttl);
                    ix.insert(key.as_str().into(), &v, exp).unwrap();
                    model.insert(key, (v, exp));
                }
                prop_assert_eq!(ix.len(), model.len());
            }
            let mut q = query;
            prop_assume!(normalize(&mut q).is_ok());
            let now = t0 + Duration::from_secs(at);
            let best = model.values()
                .filter(|(_, e)| now < *e)
                .map(|(v, _)| dot(v, &q))
                .fold(None, |b: Option<f32>, s| Some(b.map_or(s, |b| b.max(s))));
            match (ix.nearest(&q, now), best) {
                (None, None) => {}
                (Some(n), Some(b)) => {
                    prop_assert!((n.similarity - b).abs() < 1e-6);
                    prop_assert!(ix.is_live(&n.key, now));
                }
                (got, want) => prop_assert!(false, "index {got:?}, naive {want:?}"),
            }
        }

        /// A lookup never reports a similarity above an entry's real one, so a result
        /// below the threshold means no entry meets it.
        #[test]
        fn below_threshold_means_none_meets_it(
            rows in proptest::collection::vec(proptest::collection::vec(-1.0f32..1.0, 3), 1..30),
            query in proptest::collection::vec(-1.0f32..1.0, 3),
            threshold in 0.5f32..1.0,
        ) {
            let now = Instant::now();
            let later = now + Duration::from_secs(1);
            let mut ix = VectorIndex::new();
            let mut kept = Vec::new();
            for (i, mut r) in rows.into_iter().enumerate() {
                if normalize(&mut r).is_ok() {
                    ix.insert(format!("{i}").into(), &r, later).unwrap();
                    kept.push(r);
                }
            }
            let mut q = query;
            prop_assume!(normalize(&mut q).is_ok() && !kept.is_empty());
            let n = ix.nearest(&q, now).unwrap();
            if !meets(n.similarity, threshold) {
                prop_assert!(kept.iter().all(|r| !meets(dot(r, &q), threshold)));
            }
        }
    }
}
