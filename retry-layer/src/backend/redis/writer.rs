//! The writer task: the queue in, a bounded spool while Redis is away, Redis out.
//!
//! One task per sink owns the spool, so ordering needs no lock: letters leave the queue
//! in the order they were sent, wait in the spool in that order, and are written in that
//! order, a batch at a time, each batch one `MULTI`/`EXEC` transaction. A batch that fails
//! stays at the head of the spool and is tried again after a capped, jittered exponential
//! backoff (50 ms doubling to 5 s, equal jitter), while the task keeps draining the queue
//! so that `send` never has to drop while the spool has room.
//!
//! Flushes travel through the same queue as letters, as markers: when the task sees one,
//! every letter sent before it is already in the spool, so "written up to here" is a
//! sequence number the task knows exactly.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::Counters;
use super::stream::DeadLetterStream;
use crate::backend::DeadLetter;
use crate::backoff::{Backoff, Jitter};

/// Longest batch in one transaction: large enough to drain a full spool quickly after an
/// outage, small enough that one transaction never blocks Redis noticeably.
const BATCH: usize = 128;

/// Backoff between failed writes: a short blip costs 50 ms, a long outage one attempt
/// every 2.5 to 5 s.
const RETRY: Backoff = Backoff::exponential(
    Duration::from_millis(50),
    Duration::from_secs(5),
    Jitter::Equal,
);

/// What travels through the queue.
#[derive(Debug)]
pub(super) enum Command {
    Letter(DeadLetter),
    /// Answer once every letter queued before this marker is written.
    Flush(oneshot::Sender<()>),
}

pub(super) struct Writer {
    pub(super) rx: mpsc::Receiver<Command>,
    pub(super) stream: DeadLetterStream,
    pub(super) counters: Arc<Counters>,
    pub(super) max_len: u64,
    pub(super) capacity: usize,
}

struct State {
    spool: VecDeque<DeadLetter>,
    capacity: usize,
    /// Letters ever put into the spool; the sequence number flush markers wait for.
    spooled_total: u64,
    /// Letters ever written (taken off the spool's head).
    written_total: u64,
    flushes: Vec<(u64, oneshot::Sender<()>)>,
    /// Letters overflowed since the spool last ran empty (logged once per outage).
    overflow_episode: u64,
    counters: Arc<Counters>,
}

impl State {
    /// Returns whether the command asks for an early write attempt (a flush).
    fn accept(&mut self, command: Command) -> bool {
        match command {
            Command::Letter(letter) => {
                if self.spool.len() >= self.capacity {
                    // Tail drop: what is kept stays a gap-free prefix, in order.
                    self.counters.overflowed.fetch_add(1, Ordering::Relaxed);
                    if self.overflow_episode == 0 {
                        tracing::warn!(
                            capacity = self.capacity,
                            "dead-letter spool full while Redis is unreachable: dropping new letters (counted in `overflowed`)"
                        );
                    }
                    self.overflow_episode += 1;
                } else {
                    self.spool.push_back(letter);
                    self.spooled_total += 1;
                    self.counters.spooled.fetch_add(1, Ordering::Relaxed);
                }
                false
            }
            Command::Flush(done) => {
                if self.written_total >= self.spooled_total {
                    let _ = done.send(());
                    false
                } else {
                    self.flushes.push((self.spooled_total, done));
                    true
                }
            }
        }
    }

    fn written(&mut self, n: usize) {
        self.spool.drain(..n);
        self.written_total += n as u64;
        self.counters.written.fetch_add(n as u64, Ordering::Relaxed);
        self.counters.spooled.fetch_sub(n as u64, Ordering::Relaxed);
        let written = self.written_total;
        for (_, done) in self.flushes.extract_if(.., |(upto, _)| *upto <= written) {
            let _ = done.send(());
        }
        if self.spool.is_empty() && self.overflow_episode > 0 {
            tracing::warn!(
                dropped = self.overflow_episode,
                "dead-letter spool drained; letters dropped while it was full"
            );
            self.overflow_episode = 0;
        }
    }
}

impl Writer {
    pub(super) async fn run(mut self) {
        let mut state = State {
            spool: VecDeque::new(),
            capacity: self.capacity,
            spooled_total: 0,
            written_total: 0,
            flushes: Vec::new(),
            overflow_episode: 0,
            counters: Arc::clone(&self.counters),
        };
        let mut rng = SmallRng::from_rng(&mut rand::rng());
        let mut failures = 0u32;
        let mut previous = Duration::ZERO;
        let mut closed = false;
        loop {
            if state.spool.is_empty() {
                if closed {
                    return;
                }
                // Idle: no timer, the task sleeps until the next command.
                match self.rx.recv().await {
                    Some(command) => {
                        state.accept(command);
                    }
                    None => return,
                }
            }
            closed |= self.drain_ready(&mut state);
            if state.spool.is_empty() {
                continue;
            }
            let n = state.spool.len().min(BATCH);
            match self
                .stream
                .append_all(state.spool.range(..n), self.max_len)
                .await
            {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!(
                            failures,
                            spooled = state.spool.len(),
                            "Redis reachable again: delivering spooled dead letters"
                        );
                    }
                    failures = 0;
                    previous = Duration::ZERO;
                    state.written(n);
                }
                Err(e) if closed => {
                    // Every handle is gone: nobody can flush or shut down any more, so a
                    // dead Redis must not keep the task alive forever.
                    let lost = state.spool.len() as u64;
                    self.counters.failed.fetch_add(lost, Ordering::Relaxed);
                    self.counters.spooled.fetch_sub(lost, Ordering::Relaxed);
                    tracing::warn!(error = %e, lost, "dead-letter sink dropped while Redis is unreachable: letters lost (call `shutdown` first)");
                    return;
                }
                Err(e) => {
                    if failures == 0 {
                        tracing::warn!(error = %e, spooled = state.spool.len(), "dead-letter write failed: spooling until Redis is back");
                    } else {
                        tracing::debug!(error = %e, failures, "dead-letter write failed again");
                    }
                    let delay = RETRY.delay(failures, previous, &mut rng);
                    previous = delay;
                    failures = failures.saturating_add(1);
                    closed |= self.wait(&mut state, Instant::now() + delay).await;
                }
            }
        }
    }

    /// Takes every command already queued. Returns whether the queue is closed.
    fn drain_ready(&mut self, state: &mut State) -> bool {
        loop {
            match self.rx.try_recv() {
                Ok(command) => {
                    state.accept(command);
                }
                Err(mpsc::error::TryRecvError::Empty) => return false,
                Err(mpsc::error::TryRecvError::Disconnected) => return true,
            }
        }
    }

    /// Backs off until `until`, still taking letters into the spool; a flush cuts the
    /// wait short (the caller is waiting on it). Returns whether the queue closed.
    async fn wait(&mut self, state: &mut State, until: Instant) -> bool {
        loop {
            match tokio::time::timeout_at(until, self.rx.recv()).await {
                Ok(Some(command)) => {
                    if state.accept(command) {
                        return false;
                    }
                }
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    }
}
