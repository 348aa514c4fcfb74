//! Persistence: saving an answer to the store, and catching a namespace's index up with the
//! store (entries saved, or removed, by this instance or another).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use super::{Engine, ExactKey, Namespace, Synced};
use crate::backend::Record;
use crate::metrics::bump;

/// Releases a namespace's catch-up when it ends or its request is dropped.
struct SyncGuard<'a, V>(&'a Namespace<V>);

impl<V> Drop for SyncGuard<'_, V> {
    fn drop(&mut self) {
        self.0.syncing.store(false, Ordering::Release);
        self.0.sync_done.notify_waiters();
    }
}

impl<V: Clone + Send + Sync + 'static> Engine<V> {
    pub(super) async fn save(
        &self,
        namespace: &str,
        key: &ExactKey,
        vector: &Arc<[f32]>,
        value: &V,
    ) {
        let Some(p) = &self.persist else { return };
        let Some(bytes) = p.codec.encode(value) else {
            return;
        };
        let record = Record {
            key: key.as_str().to_owned(),
            vector: vector.clone(),
            value: bytes,
            stored_at: self.clock.wall(),
            ttl: self.config.ttl,
        };
        if let Err(e) = p.store.save(namespace, &record).await {
            bump(&self.metrics.store_errors);
            self.note_failure();
            tracing::warn!(error = %e, "semantic entry not persisted");
        }
    }

    /// Catches `ns` up with the store: whole on first use and after entries were removed
    /// by any instance, incrementally otherwise, at most every `resync_interval`.
    ///
    /// One request at a time catches a namespace up (and waits for it); the others go on
    /// with the index as it is, except before the first load, when there is nothing to
    /// serve yet and they wait for it. A whole reload never empties the index: entries the
    /// store no longer has are removed once the load has returned, then the loaded ones
    /// are inserted.
    pub(super) async fn sync(&self, ns: &Arc<Namespace<V>>, name: &str) {
        let Some(p) = &self.persist else { return };
        let now = loop {
            let mut notified = std::pin::pin!(ns.sync_done.notified());
            notified.as_mut().enable();
            let now = self.clock.now();
            let last = *ns.synced.lock();
            if let Some(s) = last
                && now.saturating_duration_since(s.at) < self.config.resync_interval
            {
                return;
            }
            if ns
                .syncing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                break now;
            }
            if last.is_some() {
                return;
            }
            notified.await;
        };
        let _guard = SyncGuard(&**ns);
        let synced = *ns.synced.lock();
        let wall = self.clock.wall();
        let generation = ns.generation.load(Ordering::Acquire);
        let loaded = async {
            let removals = p.store.removals(name).await?;
            let (since, before) = match synced {
                // A second of overlap covers clocks of other hosts slightly behind ours;
                // loading an entry twice is harmless.
                Some(s) if s.removals == removals => (Some(s.wall - Duration::from_secs(1)), None),
                // Entries were removed elsewhere: reload the namespace whole, then drop
                // ours that the store no longer has (only those held before the load).
                Some(_) => (
                    None,
                    Some(ns.index.read().keys().cloned().collect::<Vec<Arc<str>>>()),
                ),
                None => (None, None),
            };
            let records = p.store.load(name, since).await?;
            Ok::<_, crate::backend::TierError>((removals, before, records))
        };
        match loaded.await {
            Ok((removals, before, records)) => {
                if let Some(before) = before {
                    let kept: std::collections::HashSet<&str> =
                        records.iter().map(|r| r.key.as_str()).collect();
                    let gone: Vec<Arc<str>> = before
                        .into_iter()
                        .filter(|k| !kept.contains(&**k))
                        .collect();
                    let mut ix = ns.index.write();
                    let gone: Vec<Arc<str>> = gone.into_iter().filter(|k| ix.remove(k)).collect();
                    drop(ix);
                    self.forget(&gone);
                    self.rebuild_if_due(ns);
                }
                for r in records {
                    let (Some(remaining), Some(value), Some(key)) = (
                        r.remaining(wall),
                        p.codec.decode(&r.value),
                        ExactKey::parse(&r.key),
                    ) else {
                        continue;
                    };
                    if ns.generation.load(Ordering::Acquire) != generation {
                        break;
                    }
                    self.insert(ns, &key, r.vector, value, Some(remaining));
                    bump(&self.metrics.loaded);
                }
                *ns.synced.lock() = Some(Synced {
                    at: now,
                    wall,
                    removals,
                });
            }
            Err(e) => {
                bump(&self.metrics.store_errors);
                self.note_failure();
                tracing::warn!(error = %e, "semantic index not synced with the store");
                // Try again at the next interval, not on every miss.
                *ns.synced.lock() = Some(synced.map_or(
                    Synced {
                        at: now,
                        wall: SystemTime::UNIX_EPOCH,
                        removals: 0,
                    },
                    |s| Synced { at: now, ..s },
                ));
            }
        }
    }
}
