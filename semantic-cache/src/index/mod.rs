//! The vector index of one namespace: exact brute-force cosine search for small sets, an
//! HNSW graph ([`crate::hnsw`]) above `approximate_above` entries.
//!
//! Pure: no I/O, no async, no clock reads (every method that needs the time takes `now`).
//!
//! Vectors sit in one contiguous `Vec<f32>`, row after row, so a lookup is a linear scan
//! the CPU prefetches and the compiler vectorizes: about `n · d` multiply-adds for `n`
//! entries of dimension `d`. Removal swaps the last row into the hole, so rows stay dense.
//! Expiry is kept in a `BTreeSet` ordered by expiry time: purging expired entries and
//! finding the entry that expires first cost O(log n) per entry, not a scan.
//!
//! Brute force is exact: the entry it returns *is* the most similar one, so the threshold
//! means what it says. `BENCHMARKS.md` gives the cost per entry; the index is bounded by the
//! cache's `max_entries`, which bounds the scan.
//!
//! Above `approximate_above` entries the index also keeps an HNSW graph (built from every
//! row when the size is crossed, then updated on each insert) and answers from it: a
//! lookup visits a few hundred rows instead of all, and may miss the true best entry
//! (recall@1 ≥ 0.95 is tested on 100k random vectors). The graph holds its own copy of
//! the vectors, so memory doubles above the size. Removals are tombstones; the graph is
//! rebuilt from the live rows when tombstones outnumber them, and dropped when the index
//! shrinks below half the size. If none of the graph's candidates is live at `now`, the
//! lookup falls back to the exact scan.
//!
//! By default a rebuild runs inline, in the write that triggers it. An index made with
//! [`VectorIndex::deferring_rebuilds`] only notes that one is due; its owner calls
//! [`VectorIndex::start_rebuild`] and [`VectorIndex::rebuild_behind`] on another thread:
//! the graph is built from a snapshot without holding the index's lock, the writes made
//! meanwhile (kept in a delta log) are replayed into it, and it is swapped in under a
//! short write lock. Readers keep the old graph (or the scan) until then.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use reliability_core::clock::Instant;

use crate::hnsw::HnswParams;
use crate::vector::{VectorError, dot};

mod approximate;
mod rebuild;
#[cfg(test)]
mod tests;

use approximate::Approximate;
use rebuild::Pending;
pub use rebuild::RebuildTicket;

/// Default size above which a namespace's index answers from an HNSW graph.
///
/// `BENCHMARKS.md` measures the graph's lookup level with the scan at ~5,000 entries of
/// dimension 384, 1.7× faster at 10,000 and 24× at 100,000; building it costs 0.35–1 ms
/// per entry (on a blocking thread in the cache, off the request path). Below 10,000 the
/// exact scan costs under a millisecond, so the switch is there.
pub const DEFAULT_APPROXIMATE_ABOVE: usize = 10_000;

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
#[derive(Debug, Clone)]
pub struct VectorIndex {
    dim: usize,
    rows: Vec<f32>,
    slots: Vec<Slot>,
    positions: HashMap<Arc<str>, usize>,
    expiry: BTreeSet<(Instant, Arc<str>)>,
    approximate_above: usize,
    params: HnswParams,
    ann: Option<Approximate>,
    deferred: bool,
    pending: Option<Pending>,
    epoch: u64,
}

impl Default for VectorIndex {
    fn default() -> Self {
        Self::with_approximate_above(DEFAULT_APPROXIMATE_ABOVE)
    }
}

impl VectorIndex {
    /// An empty index that switches to an HNSW graph above
    /// [`DEFAULT_APPROXIMATE_ABOVE`] entries; its dimension is set by the first vector.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty index that answers from an HNSW graph above `n` entries (`usize::MAX`:
    /// always exact; 0: always approximate).
    pub fn with_approximate_above(n: usize) -> Self {
        Self::with_params(n, HnswParams::default())
    }

    /// As [`with_approximate_above`](Self::with_approximate_above), with the graph's
    /// settings.
    pub fn with_params(approximate_above: usize, params: HnswParams) -> Self {
        Self {
            dim: 0,
            rows: Vec::new(),
            slots: Vec::new(),
            positions: HashMap::new(),
            expiry: BTreeSet::new(),
            approximate_above,
            params,
            ann: None,
            deferred: false,
            pending: None,
            epoch: 0,
        }
    }

    /// This index, with graph (re)builds left to its owner: a write that makes one due
    /// only notes it, [`start_rebuild`](Self::start_rebuild) then says so, and
    /// [`rebuild_behind`](Self::rebuild_behind) runs it without holding the lock.
    pub fn deferring_rebuilds(mut self) -> Self {
        self.deferred = true;
        self
    }

    /// Whether lookups are answered by the HNSW graph (approximate).
    pub fn is_approximate(&self) -> bool {
        self.ann.is_some()
    }

    /// Whether a background rebuild is in progress (started, not yet swapped in).
    pub fn is_rebuilding(&self) -> bool {
        self.pending.is_some()
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

    /// Bytes held by the vectors and the graph (the bulk of the index's memory).
    pub fn vector_bytes(&self) -> usize {
        self.rows.len() * size_of::<f32>() + self.ann.as_ref().map_or(0, |a| a.graph.memory_bytes())
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
        self.log(&key, Some(vector));
        if let Some(&i) = self.positions.get(&key) {
            self.rows[i * self.dim..(i + 1) * self.dim].copy_from_slice(vector);
            self.expiry.remove(&(self.slots[i].expires_at, key.clone()));
            self.slots[i].expires_at = expires_at;
            self.expiry.insert((expires_at, key.clone()));
            if let Some(ann) = &mut self.ann {
                ann.put(key, vector);
                self.maintain();
            }
            return Ok(());
        }
        self.rows.extend_from_slice(vector);
        self.positions.insert(key.clone(), self.slots.len());
        self.expiry.insert((expires_at, key.clone()));
        if let Some(ann) = &mut self.ann {
            ann.put(key.clone(), vector);
        }
        self.slots.push(Slot { key, expires_at });
        if !self.deferred && self.ann.is_none() && self.slots.len() > self.approximate_above {
            self.rebuild();
        }
        Ok(())
    }

    /// Removes `key`; whether it was held.
    pub fn remove(&mut self, key: &str) -> bool {
        let held = self.remove_row(key);
        if held {
            self.maintain();
        }
        held
    }

    /// Removes `key` from the rows and the graph, without maintenance.
    fn remove_row(&mut self, key: &str) -> bool {
        let Some(i) = self.positions.remove(key) else {
            return false;
        };
        let k = self.slots[i].key.clone();
        self.log(&k, None);
        self.expiry.remove(&(self.slots[i].expires_at, k));
        if let Some(ann) = &mut self.ann {
            ann.delete(key);
        }
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
            self.pending = None;
        }
        true
    }

    /// Removes every entry (and abandons a background rebuild).
    pub fn clear(&mut self) {
        let epoch = self.epoch;
        let deferred = self.deferred;
        *self = Self::with_params(self.approximate_above, self.params);
        self.epoch = epoch;
        self.deferred = deferred;
    }

    /// The live entry most similar to the normalized `query`, whatever its similarity
    /// (`None` when no live entry exists or the dimensions differ). Above
    /// `approximate_above` entries it comes from the graph and is most likely, not surely,
    /// the most similar.
    pub fn nearest(&self, query: &[f32], now: Instant) -> Option<Nearest> {
        if query.len() != self.dim || self.dim == 0 {
            return None;
        }
        if let Some(ann) = &self.ann {
            let found = ann.graph.search(query, 0).into_iter().find(|&(node, _)| {
                let key = &ann.keys[node as usize];
                ann.nodes.get(key) == Some(&node) && self.is_live(key, now)
            });
            if let Some((node, similarity)) = found {
                return Some(Nearest {
                    key: ann.keys[node as usize].clone(),
                    similarity,
                });
            }
        }
        self.exact(query, now)
    }

    /// The exact answer of [`nearest`](Self::nearest): a scan of every row.
    pub fn exact(&self, query: &[f32], now: Instant) -> Option<Nearest> {
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

    /// Removes every entry expired at `now`; returns their keys. O(log n) per entry
    /// removed (the expiry order is kept in a tree), nothing to scan when none expired.
    pub fn purge_expired(&mut self, now: Instant) -> Vec<Arc<str>> {
        let mut gone = Vec::new();
        while let Some((at, key)) = self.expiry.first() {
            if now < *at {
                break;
            }
            let key = key.clone();
            self.remove_row(&key);
            gone.push(key);
        }
        if !gone.is_empty() {
            self.maintain();
        }
        gone
    }

    /// The key that expires first: the entry to evict when the cache is full (with one TTL
    /// for all entries, that is also the oldest). O(log n).
    pub fn first_to_expire(&self) -> Option<Arc<str>> {
        self.expiry.first().map(|(_, k)| k.clone())
    }

    /// Every key held.
    pub fn keys(&self) -> impl Iterator<Item = &Arc<str>> {
        self.slots.iter().map(|s| &s.key)
    }
}
