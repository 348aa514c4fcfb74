//! Single-flight: one upstream call per key, however many callers miss at once.
//!
//! The first caller to miss a key becomes the *leader* and makes the upstream call; callers
//! that miss the same key while it runs become *followers* and wait for its result. Every
//! follower gets a clone of the leader's value, or a [`SharedError`] around the leader's
//! error.
//!
//! A leader whose future is dropped (the client went away, a timeout above fired) must not
//! leave its followers hanging: its guard marks the flight *abandoned* and wakes them, and
//! they race to start a new flight; one becomes the leader, the others follow it. A leader
//! whose answer may not be shared (an uncacheable or private response) marks the flight
//! *unshareable*; each follower then makes its own call.
//!
//! Memory is bounded: the table holds at most `max_in_flight` keys; past that, callers
//! go upstream without coalescing (and are counted) rather than growing the table.
//!
//! The table is sharded by key hash so that misses on different keys do not contend.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;
use tower::BoxError;

use crate::error::SharedError;

const SHARDS: usize = 32;

type Shard<V> = Mutex<HashMap<String, Arc<Flight<V>>>>;

/// The table of in-flight upstream calls.
pub(crate) struct Flights<V> {
    shards: Box<[Shard<V>]>,
    hasher: RandomState,
    len: AtomicUsize,
    max: usize,
}

/// One in-flight upstream call.
pub(crate) struct Flight<V> {
    state: Mutex<FlightState<V>>,
    /// Set by an explicit write or an invalidation of the key: the result must not be
    /// stored, it may predate the write.
    discarded: AtomicBool,
    /// The cache's invalidation epoch when the call started.
    pub(crate) epoch: u64,
}

struct FlightState<V> {
    outcome: Outcome<V>,
    followers: usize,
    wakers: Vec<Option<Waker>>,
    /// Bumped each time `wakers` is drained, so that a follower's slot index from an
    /// earlier round is never reused.
    round: u64,
}

enum Outcome<V> {
    Running,
    Done(Result<V, SharedError>),
    Unshareable,
    Abandoned,
}

/// What a caller that missed becomes.
pub(crate) enum Join<V> {
    /// It makes the upstream call.
    Lead(LeaderGuard<V>),
    /// It waits for the leader.
    Follow(Waiter<V>),
    /// The table is full: it calls upstream on its own.
    Full,
}

/// What a follower learns.
pub(crate) enum Waited<V> {
    /// The leader's answer.
    Value(Result<V, SharedError>),
    /// The leader went away: join again.
    Abandoned,
    /// The leader's answer may not be shared: call upstream on your own.
    Unshareable,
}

impl<V> Flights<V> {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            len: AtomicUsize::new(0),
            max,
        }
    }

    fn shard(&self, key: &str) -> &Shard<V> {
        let h = self.hasher.hash_one(key) as usize;
        &self.shards[h % SHARDS]
    }

    /// Leads or follows the flight of `key`; `epoch` is the cache's invalidation epoch.
    pub(crate) fn join(self: &Arc<Self>, key: &str, epoch: u64) -> Join<V> {
        let mut shard = self.shard(key).lock();
        if let Some(flight) = shard.get(key) {
            flight.state.lock().followers += 1;
            return Join::Follow(Waiter {
                flight: flight.clone(),
                slot: None,
            });
        }
        if self.len.load(Ordering::Relaxed) >= self.max {
            return Join::Full;
        }
        let flight = Arc::new(Flight {
            state: Mutex::new(FlightState {
                outcome: Outcome::Running,
                followers: 0,
                wakers: Vec::new(),
                round: 0,
            }),
            discarded: AtomicBool::new(false),
            epoch,
        });
        shard.insert(key.to_owned(), flight.clone());
        self.len.fetch_add(1, Ordering::Relaxed);
        Join::Lead(LeaderGuard {
            flights: self.clone(),
            flight,
            key: key.to_owned(),
            finished: false,
        })
    }

    /// Whether a flight for `key` is running.
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.shard(key).lock().contains_key(key)
    }

    /// Marks the flight of `key` (if any) so that its result is not stored.
    pub(crate) fn discard(&self, key: &str) {
        if let Some(f) = self.shard(key).lock().get(key) {
            f.discarded.store(true, Ordering::Release);
        }
    }

    /// Flights running now.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    fn remove(&self, key: &str, flight: &Arc<Flight<V>>) {
        let mut shard = self.shard(key).lock();
        if shard.get(key).is_some_and(|f| Arc::ptr_eq(f, flight)) {
            shard.remove(key);
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Held by the leader; finishing or dropping it releases the followers.
pub(crate) struct LeaderGuard<V> {
    flights: Arc<Flights<V>>,
    flight: Arc<Flight<V>>,
    key: String,
    finished: bool,
}

impl<V> LeaderGuard<V> {
    /// The key this flight is for.
    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// The cache's invalidation epoch when the flight started.
    pub(crate) fn epoch(&self) -> u64 {
        self.flight.epoch
    }

    /// Whether an explicit write or invalidation discarded this flight's result.
    pub(crate) fn discarded(&self) -> bool {
        self.flight.discarded.load(Ordering::Acquire)
    }

    /// Tells the followers to make their own calls.
    pub(crate) fn finish_unshareable(mut self) {
        self.finished = true;
        self.end(Outcome::Unshareable);
    }

    fn end(&self, outcome: Outcome<V>) {
        self.flights.remove(&self.key, &self.flight);
        let mut state = self.flight.state.lock();
        state.outcome = outcome;
        wake_all(&mut state);
    }
}

impl<V: Clone> LeaderGuard<V> {
    /// Publishes the result to the followers and returns the leader's own: the original
    /// error when nobody follows, the shared one otherwise (so that all see the same).
    pub(crate) fn finish(mut self, result: Result<V, BoxError>) -> Result<V, BoxError> {
        self.finished = true;
        self.flights.remove(&self.key, &self.flight);
        let mut state = self.flight.state.lock();
        let (published, own) = match result {
            Ok(v) if state.followers > 0 => (Some(Ok(v.clone())), Ok(v)),
            Ok(v) => (None, Ok(v)),
            Err(e) if state.followers > 0 => {
                let shared = SharedError::new(e);
                (Some(Err(shared.clone())), Err(Box::new(shared) as BoxError))
            }
            Err(e) => (None, Err(e)),
        };
        if let Some(p) = published {
            state.outcome = Outcome::Done(p);
            wake_all(&mut state);
        }
        own
    }
}

impl<V> Drop for LeaderGuard<V> {
    fn drop(&mut self) {
        if !self.finished {
            self.end(Outcome::Abandoned);
        }
    }
}

fn wake_all<V>(state: &mut FlightState<V>) {
    state.round += 1;
    for w in state.wakers.drain(..).flatten() {
        w.wake();
    }
}

/// Held by a follower.
pub(crate) struct Waiter<V> {
    flight: Arc<Flight<V>>,
    /// (round, index) of this follower's waker slot.
    slot: Option<(u64, usize)>,
}

impl<V: Clone> Waiter<V> {
    pub(crate) fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<Waited<V>> {
        let mut state = self.flight.state.lock();
        match &state.outcome {
            Outcome::Running => {}
            Outcome::Done(r) => return Poll::Ready(Waited::Value(r.clone())),
            Outcome::Unshareable => return Poll::Ready(Waited::Unshareable),
            Outcome::Abandoned => return Poll::Ready(Waited::Abandoned),
        }
        let round = state.round;
        match self.slot {
            Some((r, i)) if r == round => match &mut state.wakers[i] {
                Some(w) if w.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            },
            _ => {
                state.wakers.push(Some(cx.waker().clone()));
                self.slot = Some((round, state.wakers.len() - 1));
            }
        }
        Poll::Pending
    }
}

impl<V> Drop for Waiter<V> {
    fn drop(&mut self) {
        let mut state = self.flight.state.lock();
        if let Some((r, i)) = self.slot
            && r == state.round
        {
            state.wakers[i] = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::task::noop_waker_ref;

    fn flights() -> Arc<Flights<u32>> {
        Arc::new(Flights::new(2))
    }

    #[test]
    fn leader_result_reaches_followers() {
        let f = flights();
        let Join::Lead(leader) = f.join("k", 0) else {
            panic!("first caller leads")
        };
        let Join::Follow(mut w) = f.join("k", 0) else {
            panic!("second caller follows")
        };
        let mut cx = Context::from_waker(noop_waker_ref());
        assert!(w.poll_wait(&mut cx).is_pending());
        assert_eq!(leader.finish(Ok(7)).unwrap(), 7);
        assert!(matches!(
            w.poll_wait(&mut cx),
            Poll::Ready(Waited::Value(Ok(7)))
        ));
        assert_eq!(f.len(), 0);
    }

    #[test]
    fn dropped_leader_releases_followers() {
        let f = flights();
        let Join::Lead(leader) = f.join("k", 0) else {
            panic!()
        };
        let Join::Follow(mut w) = f.join("k", 0) else {
            panic!()
        };
        drop(leader);
        let mut cx = Context::from_waker(noop_waker_ref());
        assert!(matches!(
            w.poll_wait(&mut cx),
            Poll::Ready(Waited::Abandoned)
        ));
        assert!(
            matches!(f.join("k", 0), Join::Lead(_)),
            "a new leader can start"
        );
    }

    #[test]
    fn table_is_bounded() {
        let f = flights();
        let _a = f.join("a", 0);
        let _b = f.join("b", 0);
        assert!(matches!(f.join("c", 0), Join::Full));
        assert!(
            matches!(f.join("a", 0), Join::Follow(_)),
            "joining needs no room"
        );
    }

    #[test]
    fn lone_leader_keeps_its_original_error() {
        let f = flights();
        let Join::Lead(leader) = f.join("k", 0) else {
            panic!()
        };
        let err = leader.finish(Err("boom".into())).unwrap_err();
        assert!(!err.is::<SharedError>());
    }
}
