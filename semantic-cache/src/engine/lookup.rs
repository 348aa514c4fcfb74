//! The lookup path: the exact-key fast path, then, after a miss, one flight per text, the
//! embedding, the similarity lookup, joining an older similar flight, the upstream call.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::watch;
use tower::BoxError;

use super::{Engine, ExactKey, Flight, Namespace, Outcome};
use crate::error::CoalescedError;
use crate::metrics::bump;
use crate::response::{Lookup, SemanticResponse};
use crate::vector::{dot, meets};

/// Removes its flight when the leading call ends or is dropped; joined callers whose leader
/// was dropped without an answer try again.
struct FlightGuard<'a, V> {
    ns: &'a Namespace<V>,
    id: u64,
}

impl<V> Drop for FlightGuard<'_, V> {
    fn drop(&mut self) {
        self.ns.flights.lock().retain(|f| f.id != self.id);
    }
}

impl<V: Clone + Send + Sync + 'static> Engine<V> {
    /// The exact-key fast path: the answer if `key` is live in `namespace`'s index and
    /// still held by the answer cache. No allocation, no await.
    #[inline]
    pub(crate) fn exact(&self, namespace: &str, key: &ExactKey) -> Option<V> {
        let ns = self.namespaces.read().get(namespace)?.clone();
        self.exact_in(&ns, key)
    }

    fn exact_in(&self, ns: &Namespace<V>, key: &ExactKey) -> Option<V> {
        if !ns.index.read().is_live(key.as_str(), self.clock.now()) {
            return None;
        }
        let v = self.answers.peek(key.as_str())?;
        bump(&self.metrics.exact_hits);
        self.metrics.exported.exact();
        Some(v)
    }

    /// Everything after an exact-key miss: catch up with the store, join or open the
    /// flight of this text, embed, look up by similarity, join an older similar flight or
    /// call the upstream, store the answer.
    pub(crate) async fn miss<F, E>(
        self: Arc<Self>,
        namespace: String,
        text: String,
        key: ExactKey,
        call: F,
    ) -> Result<SemanticResponse<V>, BoxError>
    where
        F: FnOnce() -> E,
        E: Future<Output = Result<V, BoxError>>,
    {
        let Some(ns) = self.namespace(&namespace) else {
            bump(&self.metrics.bypassed);
            return call()
                .await
                .map(|v| SemanticResponse::new(v, Lookup::Bypass));
        };
        self.sync(&ns, &namespace).await;
        // One flight per text, opened before embedding: equal texts share the embedding
        // as well as the upstream call.
        let (tx, id) = loop {
            if let Some(v) = self.exact_in(&ns, &key) {
                return Ok(SemanticResponse::new(v, Lookup::Exact));
            }
            let same = {
                let mut flights = ns.flights.lock();
                match flights.iter().find(|f| *f.key == *key.as_str()) {
                    Some(f) => Err(f.rx.clone()),
                    None => {
                        let (tx, rx) = watch::channel(None);
                        let id = self.next_flight.fetch_add(1, Ordering::Relaxed);
                        flights.push(Flight {
                            id,
                            key: key.as_str().into(),
                            vector: None,
                            rx,
                        });
                        Ok((tx, id))
                    }
                }
            };
            match same {
                Ok(lead) => break lead,
                Err(rx) => {
                    if let Some(answer) = self.wait(rx).await {
                        return coalesced(answer, 1.0);
                    }
                    // The leader was dropped without an answer: look again, maybe lead.
                }
            }
        };
        let guard = FlightGuard { ns: &ns, id };
        let vector = self.embed(&text).await;
        if let Some(v) = &vector {
            if let Some(f) = ns.flights.lock().iter_mut().find(|f| f.id == id) {
                f.vector = Some(v.clone());
            }
            if let Some(hit) = self.similar(&ns, v) {
                let _ = tx.send(Some(Ok(hit.value.clone())));
                return Ok(hit);
            }
            if let Some((rx, similarity)) = self.older_similar_flight(&ns, id, v)
                && let Some(answer) = self.wait(rx).await
            {
                let _ = tx.send(Some(answer.clone()));
                return coalesced(answer, similarity);
            }
        }
        let generation = ns.generation.load(Ordering::Acquire);
        bump(&self.metrics.misses);
        self.metrics.exported.miss();
        match call().await {
            Ok(v) => {
                if let Some(vector) = vector
                    && ns.generation.load(Ordering::Acquire) == generation
                {
                    self.insert(&ns, &key, vector.clone(), v.clone(), None);
                    self.save(&namespace, &key, &vector, &v).await;
                }
                let _ = tx.send(Some(Ok(v.clone())));
                drop(guard);
                Ok(SemanticResponse::new(v, Lookup::Miss))
            }
            Err(e) => {
                // Closing the flight first drops its receiver: what remains are the
                // callers that joined.
                drop(guard);
                if tx.receiver_count() == 0 {
                    return Err(e);
                }
                let shared = Arc::new(e);
                let _ = tx.send(Some(Err(shared.clone())));
                Err(CoalescedError::new(shared).into())
            }
        }
    }

    /// The normalized vector of `text`, or `None` (counted, logged) when the embedder
    /// cannot give one: the request then goes upstream without semantic lookup.
    async fn embed(&self, text: &str) -> Option<Arc<[f32]>> {
        match self.embeddings.embed_one(text).await {
            Ok(v) => Some(v),
            Err(e) => {
                bump(&self.metrics.embed_failures);
                self.note_failure();
                tracing::warn!(cache = %self.config.name, error = %e, "embedding failed: calling upstream without semantic lookup");
                None
            }
        }
    }

    /// The most similar flight opened before `id` whose text meets the threshold. Only
    /// older flights: two similar flights never wait for each other.
    fn older_similar_flight(
        &self,
        ns: &Namespace<V>,
        id: u64,
        vector: &[f32],
    ) -> Option<(watch::Receiver<Outcome<V>>, f32)> {
        let flights = ns.flights.lock();
        flights
            .iter()
            .filter(|f| f.id < id)
            .filter_map(|f| {
                let s = dot(f.vector.as_deref()?, vector);
                meets(s, self.config.threshold).then_some((f, s))
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(f, s)| (f.rx.clone(), s.min(1.0)))
    }

    /// The answer of a call this request joined; `None` when its leader was dropped
    /// without one.
    async fn wait(&self, mut rx: watch::Receiver<Outcome<V>>) -> Outcome<V> {
        let answer = rx.wait_for(Option::is_some).await.ok()?.clone()?;
        bump(&self.metrics.coalesced);
        Some(answer)
    }

    /// The best live match of `vector` at or above the threshold, if its answer is held.
    fn similar(&self, ns: &Arc<Namespace<V>>, vector: &[f32]) -> Option<SemanticResponse<V>> {
        loop {
            let now = self.clock.now();
            let hit = ns.index.read().nearest(vector, now)?;
            if !meets(hit.similarity, self.config.threshold) {
                return None;
            }
            if let Some(v) = self.answers.peek(&hit.key) {
                bump(&self.metrics.similar_hits);
                self.metrics.exported.similar();
                return Some(SemanticResponse::new(
                    v,
                    Lookup::Similar {
                        similarity: hit.similarity.min(1.0),
                        key: hit.key,
                    },
                ));
            }
            // The answer cache evicted it: drop the vector too, and look again.
            if ns.index.write().remove(&hit.key) {
                self.total.fetch_sub(1, Ordering::Relaxed);
            }
            self.rebuild_if_due(ns);
        }
    }
}

/// A joined caller's answer.
fn coalesced<V>(
    answer: Result<V, Arc<BoxError>>,
    similarity: f32,
) -> Result<SemanticResponse<V>, BoxError> {
    answer
        .map(|v| SemanticResponse::new(v, Lookup::Coalesced { similarity }))
        .map_err(|e| CoalescedError::new(e).into())
}
