//! The HNSW side of a [`VectorIndex`](super::VectorIndex): the graph, the key of each of its
//! nodes and the live node of each key.

use std::collections::HashMap;
use std::sync::Arc;

use super::rebuild::Delta;
use crate::hnsw::{Hnsw, HnswParams};

/// The graph, the key of each of its nodes and the live node of each key.
#[derive(Debug, Clone)]
pub(super) struct Approximate {
    pub(super) graph: Hnsw,
    pub(super) keys: Vec<Arc<str>>,
    pub(super) nodes: HashMap<Arc<str>, u32>,
}

impl Approximate {
    fn new(dim: usize, params: HnswParams) -> Self {
        Self {
            graph: Hnsw::new(dim, params),
            keys: Vec::new(),
            nodes: HashMap::new(),
        }
    }

    /// Inserts or replaces `key`.
    pub(super) fn put(&mut self, key: Arc<str>, vector: &[f32]) {
        if let Some(old) = self.nodes.remove(&key) {
            self.graph.remove(old);
        }
        let node = self.graph.insert(vector);
        self.keys.push(key.clone());
        self.nodes.insert(key, node);
    }

    pub(super) fn delete(&mut self, key: &str) {
        if let Some(old) = self.nodes.remove(key) {
            self.graph.remove(old);
        }
    }

    pub(super) fn apply(&mut self, deltas: &[Delta]) {
        for (key, vector) in deltas {
            match vector {
                Some(v) => self.put(key.clone(), v),
                None => self.delete(key),
            }
        }
    }
}

/// A graph of `rows` (row `i` is the vector of `keys[i]`).
pub(super) fn build(
    dim: usize,
    params: HnswParams,
    rows: &[f32],
    keys: &[Arc<str>],
) -> Approximate {
    let mut ann = Approximate::new(dim, params);
    ann.keys.reserve(keys.len());
    for (key, row) in keys.iter().zip(rows.chunks_exact(dim)) {
        ann.put(key.clone(), row);
    }
    ann
}
