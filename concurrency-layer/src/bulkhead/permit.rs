//! Places that give themselves back: [`Permit`] for an admitted call, [`Waiter`] for a
//! queued one.
//!
//! Both are drop-safe: a future dropped while its call runs releases the place (and
//! feeds no RTT to the adaptive limit: a cancelled call says nothing about latency); one
//! dropped while it waits leaves the queue, and if a place was granted to it in the same
//! instant, gives that place back.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use reliability_core::classify::Outcome;
use reliability_core::clock::Instant;
use tokio::sync::oneshot;

use super::limiter::{Grant, Limiter};
use crate::error::{BulkheadFull, Rejection};
use crate::priority::Priority;

/// An admitted call's place.
#[derive(Debug)]
pub(crate) struct Permit {
    limiter: Option<Limiter>,
    started: Option<Instant>,
}

impl Permit {
    #[inline]
    pub(crate) fn new(limiter: Limiter, started: Option<Instant>) -> Self {
        Self {
            limiter: Some(limiter),
            started,
        }
    }

    /// The call finished with `outcome`: the place goes back, the RTT to the limit.
    #[inline]
    pub(crate) fn finish(mut self, outcome: Outcome) {
        if let Some(limiter) = self.limiter.take() {
            limiter.complete(self.started, outcome);
        }
    }
}

impl Drop for Permit {
    #[inline]
    fn drop(&mut self) {
        if let Some(limiter) = self.limiter.take() {
            limiter.release();
        }
    }
}

/// A queued call's ticket.
#[derive(Debug)]
pub(crate) struct Waiter {
    limiter: Limiter,
    priority: Priority,
    id: u64,
    rx: oneshot::Receiver<Grant>,
    queued_at: Instant,
    settled: bool,
}

impl Waiter {
    pub(crate) fn new(
        limiter: Limiter,
        priority: Priority,
        id: u64,
        rx: oneshot::Receiver<Grant>,
        queued_at: Instant,
    ) -> Self {
        Self {
            limiter,
            priority,
            id,
            rx,
            queued_at,
            settled: false,
        }
    }

    fn granted(&mut self, grant: Grant) -> Result<Permit, BulkheadFull> {
        self.settled = true;
        match grant {
            Ok(()) => {
                let now = self.limiter.now();
                self.limiter
                    .record_queue_wait(now.saturating_duration_since(self.queued_at));
                Ok(self.limiter.permit())
            }
            Err(rejection) => Err(self.limiter.refusal(rejection, self.priority)),
        }
    }

    /// Ready when the queue grants a place or sheds the call.
    pub(crate) fn poll_grant(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Permit, BulkheadFull>> {
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Ready(Ok(grant)) => Poll::Ready(self.granted(grant)),
            // Senders are only dropped after sending; a closed channel is read as shed.
            Poll::Ready(Err(_)) => Poll::Ready(self.granted(Err(Rejection::Shed))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// The wait timed out: leave the queue, unless a place (or a shedding) came first.
    pub(crate) fn expire(&mut self) -> Result<Permit, BulkheadFull> {
        if self.limiter.leave_queue(self.priority, self.id) {
            self.settled = true;
            self.limiter
                .count_refusal(Rejection::QueueTimeout, self.priority);
            return Err(self.limiter.refusal(Rejection::QueueTimeout, self.priority));
        }
        // Out of the queue, so the grant was sent under the lock we just took.
        match self.rx.try_recv() {
            Ok(grant) => self.granted(grant),
            Err(_) => self.granted(Err(Rejection::Shed)),
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if self.settled || self.limiter.leave_queue(self.priority, self.id) {
            return;
        }
        // Granted in the same instant the caller gave up: give the place back.
        if let Ok(Ok(())) = self.rx.try_recv() {
            self.limiter.give_back();
        }
    }
}
