//! A resync with the store never blocks the namespace's other requests.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use cache_layer::codec::BytesCodec;
use common::{Ask, TestEmbedder, Upstream, ask, prompt_of};
use futures_util::future::BoxFuture;
use semantic_cache::backend::memory::MemoryStore;
use semantic_cache::backend::{EntryStore, Record, TierError};
use semantic_cache::{Lookup, Prompt, SemanticCacheLayer};
use tokio::sync::{Notify, Semaphore};
use tower::{ServiceBuilder, ServiceExt};

/// A memory store whose `load` waits for a permit while `hold` is set, saying when one
/// is waiting: a store that is slow (or down) for as long as the test wants.
#[derive(Debug)]
struct GatedStore {
    inner: MemoryStore,
    hold: AtomicBool,
    entered: Notify,
    release: Semaphore,
}

impl EntryStore for GatedStore {
    fn save<'a>(&'a self, ns: &'a str, r: &'a Record) -> BoxFuture<'a, Result<(), TierError>> {
        self.inner.save(ns, r)
    }

    fn load<'a>(
        &'a self,
        ns: &'a str,
        since: Option<SystemTime>,
    ) -> BoxFuture<'a, Result<Vec<Record>, TierError>> {
        Box::pin(async move {
            if self.hold.load(Ordering::SeqCst) {
                self.entered.notify_one();
                self.release.acquire().await.unwrap().forget();
            }
            self.inner.load(ns, since).await
        })
    }

    fn remove<'a>(
        &'a self,
        ns: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<(), TierError>> {
        self.inner.remove(ns, keys)
    }

    fn removals<'a>(&'a self, ns: &'a str) -> BoxFuture<'a, Result<u64, TierError>> {
        self.inner.removals(ns)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_served_during_a_resync() {
    let store = Arc::new(GatedStore {
        inner: MemoryStore::new(),
        hold: AtomicBool::new(false),
        entered: Notify::new(),
        release: Semaphore::new(0),
    });
    let layer = SemanticCacheLayer::builder(
        prompt_of as fn(&Ask) -> Option<Prompt>,
        Arc::new(TestEmbedder::default()),
    )
    .resync_interval(Duration::ZERO)
    .store(store.clone(), BytesCodec)
    .build()
    .unwrap();
    let upstream = Upstream::default();
    let svc = ServiceBuilder::new().layer(layer).service(upstream.clone());
    svc.clone().oneshot(ask("geo", "lima")).await.unwrap();

    // The next miss resyncs, and the store's load hangs.
    store.hold.store(true, Ordering::SeqCst);
    let resync = tokio::spawn(svc.clone().oneshot(ask("geo", "quito")));
    store.entered.notified().await;

    // Another request of the namespace is served from the index as it is.
    let hit = tokio::time::timeout(
        Duration::from_secs(2),
        svc.clone().oneshot(ask("geo", "lima@0.97")),
    )
    .await
    .expect("not blocked by the resync")
    .unwrap();
    assert!(
        matches!(hit.lookup, Lookup::Similar { .. }),
        "{:?}",
        hit.lookup
    );
    assert!(!resync.is_finished(), "the resync was still under way");

    store.hold.store(false, Ordering::SeqCst);
    store.release.add_permits(1);
    let r = resync.await.unwrap().unwrap();
    assert_eq!(r.value, "answer:quito");
}
