//! An in-process [`EntryStore`].
//!
//! Shared through an `Arc`, it outlives the layers built on it: dropping a layer and
//! building another on the same store rebuilds the index, as a restart does with Redis.
//! It is not durable across processes.

use std::collections::HashMap;
use std::time::SystemTime;

use futures_util::future::BoxFuture;
use parking_lot::Mutex;

use super::{EntryStore, Record, TierError};

/// Entries in a map, per namespace.
#[derive(Debug, Default)]
pub struct MemoryStore {
    namespaces: Mutex<HashMap<String, HashMap<String, Record>>>,
    removals: Mutex<HashMap<String, u64>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Entries held in `namespace`, live or not.
    pub fn len(&self, namespace: &str) -> usize {
        self.namespaces
            .lock()
            .get(namespace)
            .map_or(0, HashMap::len)
    }
}

impl EntryStore for MemoryStore {
    fn save<'a>(
        &'a self,
        namespace: &'a str,
        record: &'a Record,
    ) -> BoxFuture<'a, Result<(), TierError>> {
        self.namespaces
            .lock()
            .entry(namespace.to_owned())
            .or_default()
            .insert(record.key.clone(), record.clone());
        Box::pin(std::future::ready(Ok(())))
    }

    fn load<'a>(
        &'a self,
        namespace: &'a str,
        since: Option<SystemTime>,
    ) -> BoxFuture<'a, Result<Vec<Record>, TierError>> {
        let now = SystemTime::now();
        let mut all = self.namespaces.lock();
        let found = all.get_mut(namespace).map_or_else(Vec::new, |m| {
            m.retain(|_, r| r.remaining(now).is_some());
            m.values()
                .filter(|r| since.is_none_or(|s| r.stored_at >= s))
                .cloned()
                .collect()
        });
        Box::pin(std::future::ready(Ok(found)))
    }

    fn remove<'a>(
        &'a self,
        namespace: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<(), TierError>> {
        if let Some(m) = self.namespaces.lock().get_mut(namespace) {
            for k in keys {
                m.remove(k);
            }
        }
        *self
            .removals
            .lock()
            .entry(namespace.to_owned())
            .or_default() += 1;
        Box::pin(std::future::ready(Ok(())))
    }

    fn removals<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<u64, TierError>> {
        let n = self.removals.lock().get(namespace).copied().unwrap_or(0);
        Box::pin(std::future::ready(Ok(n)))
    }
}
