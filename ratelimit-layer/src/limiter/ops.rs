//! The read side of the operations API: a user's standing, a reset, the tier list.

use serde::{Deserialize, Serialize};

use super::{RateLimiter, Usage, storage_key};
use crate::backend::BackendUnavailable;
use crate::config::WindowConfig;
use crate::key::Subject;
use crate::quota::{Mode, WindowStatus};

/// Remaining and reset of one window, for the operations API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowReport {
    /// Units per period.
    pub limit: u64,
    /// Period in seconds (fractions for sub-second windows).
    pub period_secs: f64,
    /// Units left now.
    pub remaining: u64,
    /// Milliseconds until the window is full again / rolls over.
    pub reset_ms: u64,
}

/// A user's standing: policy and per-window remaining.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The user.
    pub user: String,
    /// Tier name, `user` (custom limit) or `endpoint`.
    pub policy: String,
    /// The user's tier (even when a custom limit overrides it).
    pub tier: String,
    /// One entry per window of the quota.
    pub windows: Vec<WindowReport>,
    /// What was counted for the user (fleet-wide with a shared control store).
    pub usage: Usage,
}

/// A tier as listed by the operations API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierInfo {
    /// Tier name.
    pub name: String,
    /// Whether unknown users get it.
    pub default: bool,
    /// Its windows.
    pub windows: Vec<WindowConfig>,
}

impl RateLimiter {
    /// Forgets `user`'s counted state (all windows, user-level key) and usage (the
    /// fleet's, with a shared control store).
    pub async fn reset(&self, user: &str) -> Result<(), BackendUnavailable> {
        let resolved = self.resolve(user, None);
        let stored = crate::key::stored_key(user);
        if let Some(usage) = &self.inner.usage {
            usage.forget(self.shard(&stored), &stored);
        }
        if let Some(shared) = self.shared() {
            shared.store.forget_usage(Some(&stored)).await?;
        }
        self.inner
            .backend
            .reset(&storage_key(user, None), &resolved.quota)
            .await
    }

    /// Remaining and reset of each window for `user` (on `endpoint`), without consuming.
    pub async fn status(
        &self,
        user: &str,
        endpoint: Option<&str>,
    ) -> Result<Status, BackendUnavailable> {
        let mut subject = Subject::new(user);
        subject.endpoint = endpoint.map(str::to_owned);
        let (mut resolved, pending) = self.begin(&subject, Mode::Peek);
        let decision = pending.await?;
        if resolved.provisional {
            resolved = self.resolve(user, endpoint);
        }
        let window = |w: &WindowStatus| WindowReport {
            limit: w.limit,
            period_secs: w.period as f64 / 1e6,
            remaining: if decision.allowed {
                w.remaining + 1
            } else {
                w.remaining
            },
            reset_ms: w.reset_after / 1_000,
        };
        Ok(Status {
            user: user.to_owned(),
            policy: self.policy_name(resolved.policy),
            tier: self.tier_of(user).await,
            windows: decision.windows().iter().map(window).collect(),
            // Usage is reported, not decided on: a store that cannot say gives zeros.
            usage: match self.usage(user).await {
                Ok(u) => u,
                Err(e) => {
                    self.control_failed("reading usage", &e);
                    Usage::default()
                }
            },
        })
    }

    /// The tiers.
    pub fn tiers(&self) -> Vec<TierInfo> {
        let t = self.inner.tiers.load();
        let default = t.default_tier().name().to_owned();
        t.tiers()
            .iter()
            .map(|t| TierInfo {
                name: t.name().to_owned(),
                default: t.name() == default,
                windows: t.quota().config(),
            })
            .collect()
    }
}
