//! Graph (re)builds of a [`VectorIndex`]: inline in the write that makes one due, or, with
//! [`VectorIndex::deferring_rebuilds`], run by the owner from a snapshot while the writes
//! made meanwhile are logged, then replayed before the swap.

use std::sync::Arc;

use parking_lot::RwLock;

use super::VectorIndex;
use super::approximate::build;

/// Deltas left when a background rebuild stops catching up and swaps under the write lock.
const SWAP_BELOW: usize = 16;

/// Catch-up rounds (without the write lock) before a background rebuild swaps anyway.
const CATCH_UP_ROUNDS: usize = 8;

/// A write made during a background rebuild: an insert (with its vector) or a removal.
pub(super) type Delta = (Arc<str>, Option<Arc<[f32]>>);

/// A background rebuild in progress: the writes made since it started.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    epoch: u64,
    log: Vec<Delta>,
}

/// A background rebuild started by [`VectorIndex::start_rebuild`], to pass to
/// [`VectorIndex::rebuild_behind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildTicket(u64);

impl VectorIndex {
    pub(super) fn log(&mut self, key: &Arc<str>, vector: Option<&[f32]>) {
        if let Some(p) = &mut self.pending {
            p.log.push((key.clone(), vector.map(Arc::from)));
            // A rebuild whose job never ran (or died) must not grow the log forever.
            if p.log.len() > self.slots.len().max(1024) {
                self.pending = None;
            }
        }
    }

    /// Builds the graph afresh from the live rows (inline).
    pub(super) fn rebuild(&mut self) {
        let keys: Vec<Arc<str>> = self.slots.iter().map(|s| s.key.clone()).collect();
        self.ann = Some(build(self.dim, self.params, &self.rows, &keys));
    }

    /// Whether a graph (re)build is due: the size was crossed, or tombstones outnumber live
    /// nodes.
    fn rebuild_due(&self) -> bool {
        match &self.ann {
            None => self.slots.len() > self.approximate_above,
            Some(ann) => ann.graph.needs_rebuild(),
        }
    }

    /// Drops the graph below half the size, rebuilds it when tombstones outnumber live
    /// nodes.
    pub(super) fn maintain(&mut self) {
        if self.slots.len() <= self.approximate_above / 2 || self.slots.is_empty() {
            self.ann = None;
            self.pending = None;
        } else if !self.deferred && self.ann.as_ref().is_some_and(|a| a.graph.needs_rebuild()) {
            self.rebuild();
        }
    }

    /// With [`deferring_rebuilds`](Self::deferring_rebuilds): when a graph (re)build is due
    /// and none is in progress, starts one (writes are logged from now on) and returns its
    /// ticket for [`rebuild_behind`](Self::rebuild_behind).
    pub fn start_rebuild(&mut self) -> Option<RebuildTicket> {
        if !self.deferred || self.pending.is_some() || self.dim == 0 || !self.rebuild_due() {
            return None;
        }
        self.epoch += 1;
        self.pending = Some(Pending {
            epoch: self.epoch,
            log: Vec::new(),
        });
        Some(RebuildTicket(self.epoch))
    }

    /// Abandons the rebuild of `ticket` (if still in progress): the next write that finds
    /// one due starts another.
    pub fn cancel_rebuild(&mut self, ticket: RebuildTicket) {
        if self.pending.as_ref().is_some_and(|p| p.epoch == ticket.0) {
            self.pending = None;
        }
    }

    fn pending_log(&self, ticket: RebuildTicket) -> Option<&[Delta]> {
        self.pending
            .as_ref()
            .filter(|p| p.epoch == ticket.0)
            .map(|p| p.log.as_slice())
    }

    /// Runs the rebuild of `ticket` on the index behind `lock`, on the calling thread
    /// (meant to be a blocking or dedicated one): a snapshot of the rows is taken under a
    /// read lock, the graph is built from it with no lock held (`on_started` is called
    /// first), the writes logged meanwhile are replayed into it in rounds under short read
    /// locks, and the last few are replayed and the graph swapped in under one short write
    /// lock. Returns whether the new graph was swapped in (not when the rebuild was
    /// cancelled or the index cleared meanwhile).
    pub fn rebuild_behind(
        lock: &RwLock<VectorIndex>,
        ticket: RebuildTicket,
        on_started: impl FnOnce(),
    ) -> bool {
        let snapshot = {
            let ix = lock.read();
            ix.pending_log(ticket).map(|log| {
                (
                    ix.dim,
                    ix.params,
                    ix.rows.clone(),
                    ix.slots.iter().map(|s| s.key.clone()).collect::<Vec<_>>(),
                    log.len(),
                )
            })
        };
        let Some((dim, params, rows, keys, mut applied)) = snapshot else {
            return false;
        };
        on_started();
        let mut ann = build(dim, params, &rows, &keys);
        drop(rows);
        for _ in 0..CATCH_UP_ROUNDS {
            let deltas: Vec<Delta> = {
                let ix = lock.read();
                let Some(log) = ix.pending_log(ticket) else {
                    return false;
                };
                if log.len() - applied <= SWAP_BELOW {
                    break;
                }
                log[applied..].to_vec()
            };
            ann.apply(&deltas);
            applied += deltas.len();
        }
        let mut ix = lock.write();
        let Some(log) = ix.pending_log(ticket) else {
            return false;
        };
        let rest = log[applied..].to_vec();
        ann.apply(&rest);
        ix.pending = None;
        ix.ann = Some(ann);
        ix.maintain();
        true
    }
}
