//! Writes to a namespace's index: inserting an entry (evicting while the cache is full),
//! forgetting removed ones, and the background graph rebuilds those writes make due.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Engine, ExactKey, Namespace};
use crate::index::{RebuildTicket, VectorIndex};
use crate::metrics::bump;

/// Abandons a background rebuild whose job ends, panics or never runs (a no-op once its
/// graph was swapped in).
struct CancelRebuild<V> {
    ns: Arc<Namespace<V>>,
    ticket: RebuildTicket,
}

impl<V> Drop for CancelRebuild<V> {
    fn drop(&mut self) {
        self.ns.index.write().cancel_rebuild(self.ticket);
    }
}

impl<V: Clone + Send + Sync + 'static> Engine<V> {
    /// Starts a background rebuild of `ns`'s graph when one is due: built from a snapshot
    /// on a blocking thread (a dedicated thread outside a runtime) while readers keep the
    /// current graph or scan; writes made meanwhile are replayed into it before the swap.
    pub(super) fn rebuild_if_due(&self, ns: &Arc<Namespace<V>>) {
        let Some(ticket) = ns.index.write().start_rebuild() else {
            return;
        };
        let cancel = CancelRebuild {
            ns: ns.clone(),
            ticket,
        };
        let progress = self.rebuilds.clone();
        let job = move || {
            let started = || progress.send_modify(|p| p.started += 1);
            let swapped = VectorIndex::rebuild_behind(&cancel.ns.index, ticket, started);
            progress.send_modify(|p| {
                p.finished += 1;
                p.swapped += u64::from(swapped);
            });
            drop(cancel);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(job)),
            Err(_) => {
                // On failure the closure (and its guard) is dropped: the rebuild is
                // abandoned and the next write starts another.
                let _ = std::thread::Builder::new()
                    .name("semantic-cache-rebuild".into())
                    .spawn(job);
            }
        }
    }

    /// Indexes `vector` for `key` and stores the answer, evicting the entries that expire
    /// first while the cache is full. `remaining` is the TTL left (a loaded entry).
    pub(super) fn insert(
        &self,
        ns: &Arc<Namespace<V>>,
        key: &ExactKey,
        vector: Arc<[f32]>,
        value: V,
        remaining: Option<Duration>,
    ) {
        if let Err(e) = self.answers.put(key.as_str(), value) {
            tracing::debug!(error = %e, "answer not cached");
            return;
        }
        let now = self.clock.now();
        let expires_at = now + remaining.unwrap_or(self.config.ttl);
        let max = usize::try_from(self.config.max_entries).unwrap_or(usize::MAX);
        let mut ix = ns.index.write();
        let purged = ix.purge_expired(now);
        self.forget(&purged);
        let fresh = ix.expires_at(key.as_str()).is_none();
        while fresh && self.total.load(Ordering::Relaxed) >= max {
            let Some(victim) = ix.first_to_expire() else {
                break;
            };
            ix.remove(&victim);
            self.forget(std::slice::from_ref(&victim));
            bump(&self.metrics.evictions);
        }
        if fresh && self.total.load(Ordering::Relaxed) >= max {
            drop(ix);
            self.evict_elsewhere();
            ix = ns.index.write();
        }
        match ix.insert(key.as_str().into(), &vector, expires_at) {
            Ok(()) if fresh => {
                self.total.fetch_add(1, Ordering::Relaxed);
            }
            Ok(()) => {}
            Err(e) => {
                self.answers.invalidate(key.as_str());
                tracing::warn!(error = %e, "vector not indexed (did the model change?)");
            }
        }
        drop(ix);
        self.rebuild_if_due(ns);
    }

    pub(super) fn forget(&self, keys: &[Arc<str>]) {
        for k in keys {
            self.answers.invalidate(k);
        }
        self.total.fetch_sub(keys.len(), Ordering::Relaxed);
    }

    /// Frees one slot from another namespace, when the one being written holds none.
    fn evict_elsewhere(&self) {
        let all: Vec<_> = self.namespaces.read().values().cloned().collect();
        for ns in all {
            let mut ix = ns.index.write();
            if let Some(victim) = ix.first_to_expire() {
                ix.remove(&victim);
                drop(ix);
                self.forget(std::slice::from_ref(&victim));
                bump(&self.metrics.evictions);
                self.rebuild_if_due(&ns);
                return;
            }
        }
    }
}
