//! Shared control state: the rules and usage that a fleet of limiters agrees on.
//!
//! A [`RateLimiter`](crate::RateLimiter) keeps its **control state** (tier assignments,
//! custom limits per user and per endpoint, usage statistics) in process, unless its
//! backend offers a [`ControlStore`] ([`Backend::control`](crate::Backend::control)): the
//! Redis backend does, so every instance of a fleet on one Redis (or one Redis Cluster)
//! answers the same user the same way. Then:
//!
//! - **writes** (`set_tier`, `set_user_limit`, `set_endpoint_limit`, their `clear_`
//!   twins, `reset`, `clear_usage`) go to the store first and are announced on its change
//!   channel; a write the store refuses is an error and changes nothing;
//! - **reads** on the request path come from a bounded local cache of each user's rule,
//!   filled on the user's first request (one extra round trip, then none) and evicted
//!   when another instance announces a change, so a change reaches every instance within
//!   one pub/sub delivery. When the change channel drops, the whole cache is dropped once
//!   it is back (changes may have been missed meanwhile);
//! - **usage** is counted locally and added to the store in batches (at most one round
//!   trip per flush interval, never one per decision); `top_users` and `usage` then read
//!   fleet-wide figures;
//! - **store down**: the last known rule of each cached user keeps applying, a user not
//!   yet cached gets the default tier, and the limiter's health says its control state is
//!   stale until the store answers again.
//!
//! Values read from the store are checked: a tier name the table does not have, a limit
//! that does not parse, or a key of the wrong type is counted (`control_errors` in the
//! snapshot), logged, and ignored (the user gets the default tier), never a panic.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::backend::BackendUnavailable;
use crate::config::WindowConfig;
use crate::limiter::Usage;
use crate::quota::{Algorithm, Quota};

/// A boxed future of a control store's answer.
pub type ControlFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, ControlFailure>> + Send + 'a>>;

/// Why a control store could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlFailure {
    /// The store could not be reached (or timed out): retry later, keep the last known state.
    #[error("control store unavailable: {0}")]
    Unavailable(String),
    /// The store answered with something that is not control state (a key of the wrong
    /// type, a value that does not parse): reported and ignored.
    #[error("control store holds garbage: {0}")]
    Garbage(String),
}

impl From<ControlFailure> for BackendUnavailable {
    fn from(f: ControlFailure) -> Self {
        BackendUnavailable {
            message: f.to_string(),
        }
    }
}

/// Which part of a user's rule a write changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleField {
    /// The assigned tier (its name).
    Tier,
    /// The custom limit ([`encode_quota`]).
    Limit,
}

/// A user's rule as stored: each part is absent or the stored text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredRule {
    /// The tier name.
    pub tier: Option<String>,
    /// The custom limit, as [`encode_quota`] wrote it.
    pub limit: Option<String>,
}

/// A change announced by some instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// This user's rule changed (the stored form of the user key).
    User(String),
    /// The endpoint limits changed.
    Endpoints,
    /// The channel was (re)established after a gap: anything may have changed.
    Resync,
    /// The channel dropped: until the next [`Change::Resync`], changes are missed.
    Lost,
}

/// A stream of [`Change`]s.
pub trait ChangeStream: Send {
    /// The next change; `None` once the stream is gone for good.
    fn next(&mut self) -> Pin<Box<dyn Future<Output = Option<Change>> + Send + '_>>;
}

/// Where a fleet's control state lives (see the [module docs](self)).
///
/// Keys are opaque user and endpoint strings; an implementation namespaces them safely.
pub trait ControlStore: Send + Sync + fmt::Debug + 'static {
    /// The rule stored for `user`.
    fn load_rule(&self, user: &str) -> ControlFuture<'static, StoredRule>;
    /// Sets (`Some`) or removes (`None`) one part of `user`'s rule, then announces it.
    fn store_rule(
        &self,
        user: &str,
        field: RuleField,
        value: Option<String>,
    ) -> ControlFuture<'static, ()>;
    /// Every stored endpoint limit: `None` marks a configured limit removed at run time.
    fn load_endpoints(&self) -> ControlFuture<'static, Vec<(String, Option<String>)>>;
    /// Sets or removes (`None`: a tombstone over configuration) an endpoint limit, then
    /// announces it.
    fn store_endpoint(&self, endpoint: &str, limit: Option<String>) -> ControlFuture<'static, ()>;
    /// Adds a batch of usage counts, then keeps only the `keep` heaviest users.
    fn add_usage(&self, batch: Vec<(String, Usage)>, keep: usize) -> ControlFuture<'static, ()>;
    /// The usage counted for `user` by the whole fleet.
    fn usage(&self, user: &str) -> ControlFuture<'static, Usage>;
    /// The `n` users with the most requests, fleet-wide.
    fn top(&self, n: usize) -> ControlFuture<'static, Vec<(String, Usage)>>;
    /// Forgets the usage of `user`, or of everyone.
    fn forget_usage(&self, user: Option<&str>) -> ControlFuture<'static, ()>;
    /// Subscribes to the change channel.
    fn changes(&self) -> ControlFuture<'static, Box<dyn ChangeStream>>;
    /// How often local usage counts are flushed to the store.
    fn flush_interval(&self) -> Duration {
        Duration::from_millis(250)
    }
}

/// The text form of a quota in a control store: `;`-separated windows, each
/// `<g|s>,<limit>,<period µs>,<burst>` (GCRA or sliding window).
pub fn encode_quota(quota: &Quota) -> String {
    let mut out = String::new();
    for (i, w) in quota.windows().iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        let alg = match w.algorithm() {
            Algorithm::Gcra => 'g',
            Algorithm::SlidingWindow => 's',
        };
        out.push_str(&format!(
            "{alg},{},{},{}",
            w.limit(),
            w.period_micros(),
            w.burst()
        ));
    }
    out
}

/// Reads [`encode_quota`]'s form back; `None` for anything else (the quota's own
/// validation applies: a garbage value can never make a quota that `Quota::new` refuses).
pub fn decode_quota(text: &str) -> Option<Quota> {
    if text.len() > 512 {
        return None;
    }
    let mut windows = Vec::new();
    for part in text.split(';') {
        let mut f = part.split(',');
        let algorithm = match f.next()? {
            "g" => Algorithm::Gcra,
            "s" => Algorithm::SlidingWindow,
            _ => return None,
        };
        let limit = f.next()?.parse().ok()?;
        let period = Duration::from_micros(f.next()?.parse().ok()?);
        let burst = f.next()?.parse().ok()?;
        if f.next().is_some() {
            return None;
        }
        windows.push(WindowConfig {
            limit,
            period,
            burst: (algorithm == Algorithm::Gcra).then_some(burst),
            algorithm,
        });
    }
    Quota::from_config(&windows).ok()
}

/// The payload of a change announcement (version 1).
pub fn encode_change(change: &Change) -> Vec<u8> {
    match change {
        Change::User(u) => {
            let mut v = b"1u".to_vec();
            v.extend_from_slice(u.as_bytes());
            v
        }
        Change::Endpoints => b"1e".to_vec(),
        Change::Resync | Change::Lost => b"1r".to_vec(),
    }
}

/// Reads a change announcement; `None` for anything this version does not know.
pub fn decode_change(payload: &[u8]) -> Option<Change> {
    match payload {
        [b'1', b'u', rest @ ..] => Some(Change::User(String::from_utf8(rest.to_vec()).ok()?)),
        b"1e" => Some(Change::Endpoints),
        b"1r" => Some(Change::Resync),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn garbage_never_decodes() {
        for text in [
            "",
            "g",
            "g,1,1",
            "x,1,1000000,1",
            "g,0,1000000,0",
            "g,1,0,1",
            "g,1,1000000,1,9",
            "g,-1,1000000,1",
            &"g,1,1000000,1;".repeat(100),
        ] {
            assert_eq!(decode_quota(text), None, "{text:?}");
        }
        for p in [&b""[..], b"1", b"2uacme", b"1x", b"1u\xff"] {
            assert_eq!(decode_change(p), None);
        }
    }

    proptest! {
        #[test]
        fn quotas_and_changes_round_trip(
            windows in proptest::collection::vec((1u64..1_000_000, 1u64..100_000, any::<bool>()), 1..4),
            user in "\\PC{0,64}",
        ) {
            let configs: Vec<WindowConfig> = windows
                .iter()
                .enumerate()
                .map(|(i, &(limit, secs, sliding))| WindowConfig {
                    limit,
                    // Distinct periods: a quota's windows differ.
                    period: Duration::from_secs(secs * 10 + i as u64),
                    burst: None,
                    algorithm: if sliding { Algorithm::SlidingWindow } else { Algorithm::Gcra },
                })
                .collect();
            if let Ok(quota) = Quota::from_config(&configs) {
                prop_assert_eq!(decode_quota(&encode_quota(&quota)), Some(quota));
            }
            let change = Change::User(user);
            prop_assert_eq!(decode_change(&encode_change(&change)), Some(change));
        }
    }
}
