//! Request priorities: which calls are shed first when the limit is reached.
//!
//! The layer asks a [`Prioritize`] (any `Fn(&Request) -> Priority`) for each request's
//! class. Queued calls are admitted highest class first; when the queue is full, a
//! newcomer pushes out the newest call of a lower class; and `Critical` calls alone may
//! use the last `critical_reserve` share of the limit, so they still get in when the
//! other classes fill it.
//!
//! ```
//! use concurrency_layer::{ConcurrencyLimitLayer, Priority};
//!
//! let layer = ConcurrencyLimitLayer::builder("exchange")
//!     .limit(50)
//!     .queue(200, std::time::Duration::from_millis(100))
//!     .priority(|path: &&str| match *path {
//!         "/order" | "/cancel" => Priority::Critical,
//!         "/account" => Priority::High,
//!         "/ticker" => Priority::Low,
//!         _ => Priority::Normal,
//!     })
//!     .build()
//!     .unwrap();
//! # let _ = layer;
//! ```

use reliability_core::deadline::{Deadline, HasDeadline};
use serde::{Deserialize, Serialize};

/// A request's class, highest first.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Must get through (order placement, cancels): may use the reserved share.
    Critical,
    /// Served before normal traffic.
    High,
    /// The default class.
    #[default]
    Normal,
    /// Shed first (market-data polling, prefetches).
    Low,
}

impl Priority {
    /// Every class, highest first.
    pub const ALL: [Priority; 4] = [
        Priority::Critical,
        Priority::High,
        Priority::Normal,
        Priority::Low,
    ];

    /// The class's position in [`ALL`](Self::ALL), 0 for `Critical`.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The class's name, as metrics label it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

impl std::fmt::Display for Priority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Gives a request its [`Priority`]. Implemented for every `Fn(&Req) -> Priority`.
pub trait Prioritize<Req> {
    /// The request's class.
    fn priority(&self, req: &Req) -> Priority;

    /// The request's own deadline, if the layer should read one: a queued call gives up
    /// when it passes (answered as [`Rejection::DeadlineExceeded`](crate::Rejection)).
    /// `None` by default; [`WithDeadlines`] reads it from any
    /// [`HasDeadline`] request.
    #[inline]
    fn deadline(&self, req: &Req) -> Option<Deadline> {
        let _ = req;
        None
    }
}

/// A [`Prioritize`] that also reads each request's deadline ([`HasDeadline`], e.g. an
/// `http::Request`'s extensions); its classes are `P`'s. Made by the builder's
/// `with_deadlines`.
#[derive(Debug, Clone, Copy, Default)]
pub struct WithDeadlines<P>(pub P);

impl<Req: HasDeadline, P: Prioritize<Req>> Prioritize<Req> for WithDeadlines<P> {
    #[inline]
    fn priority(&self, req: &Req) -> Priority {
        self.0.priority(req)
    }

    #[inline]
    fn deadline(&self, req: &Req) -> Option<Deadline> {
        req.deadline()
    }
}

impl<Req, F: Fn(&Req) -> Priority> Prioritize<Req> for F {
    #[inline]
    fn priority(&self, req: &Req) -> Priority {
        self(req)
    }
}

/// Every request is [`Priority::Normal`]: the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SamePriority;

impl<Req> Prioritize<Req> for SamePriority {
    #[inline]
    fn priority(&self, _: &Req) -> Priority {
        Priority::Normal
    }
}
