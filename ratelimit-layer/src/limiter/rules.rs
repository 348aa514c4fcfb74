//! Which quota a request gets: the user's custom limit, else the endpoint's custom limit,
//! else the user's tier, else the default tier; and the calls that change those rules.
//!
//! Resolving takes no write lock: the tier and endpoint tables are swapped whole
//! (`ArcSwap`), user rules sit in sharded `RwLock`s, and while no user has a rule (the
//! common case) `resolve` does not read the user table at all.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use super::RateLimiter;
use crate::error::UnknownTier;
use crate::quota::Quota;

/// A user's own rule: an assigned tier and/or a custom quota.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct UserRule {
    tier: Option<u16>,
    custom: Option<Quota>,
}

/// Which rule gave a request its quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// The user's tier (index into the tier table).
    Tier(u16),
    /// A custom limit set for this user.
    User,
    /// A custom limit set for the request's endpoint (counted per user and endpoint).
    Endpoint,
}

/// A resolved quota for one request: what to decide and under which key.
#[derive(Debug, Clone, Copy)]
pub struct Resolved {
    /// The quota.
    pub quota: Quota,
    /// Where it came from.
    pub policy: Policy,
    /// Whether state is kept per (user, endpoint) rather than per user.
    pub per_endpoint: bool,
}

impl RateLimiter {
    /// The quota that applies to `user` on `endpoint`: the user's custom limit, else the
    /// endpoint's custom limit, else the user's tier, else the default tier.
    pub fn resolve(&self, user: &str, endpoint: Option<&str>) -> Resolved {
        let mut tier = None;
        if self.inner.user_rules.load(Ordering::Relaxed) > 0 {
            let rule = self.inner.users[self.shard(user)].read().get(user).copied();
            if let Some(rule) = rule {
                if let Some(quota) = rule.custom {
                    return Resolved {
                        quota,
                        policy: Policy::User,
                        per_endpoint: false,
                    };
                }
                tier = rule.tier;
            }
        }
        if let Some(e) = endpoint {
            let endpoints = self.inner.endpoints.load();
            if let Some(quota) = endpoints.get(e) {
                return Resolved {
                    quota: *quota,
                    policy: Policy::Endpoint,
                    per_endpoint: true,
                };
            }
        }
        let tiers = self.inner.tiers.load();
        let index = tier.unwrap_or_else(|| tiers.default_index());
        Resolved {
            quota: *tiers.get(index).quota(),
            policy: Policy::Tier(index),
            per_endpoint: false,
        }
    }

    fn update_user(&self, user: &str, f: impl FnOnce(&mut UserRule)) {
        let mut map = self.inner.users[self.shard(user)].write();
        let existed = map.contains_key(user);
        let rule = map.entry(user.into()).or_default();
        f(rule);
        if rule.tier.is_none() && rule.custom.is_none() {
            map.remove(user);
            if existed {
                self.inner.user_rules.fetch_sub(1, Ordering::Relaxed);
            }
        } else if !existed {
            self.inner.user_rules.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Puts `user` in tier `tier`.
    pub fn set_tier(&self, user: &str, tier: &str) -> Result<(), UnknownTier> {
        let index = self
            .inner
            .tiers
            .load()
            .index_of(tier)
            .ok_or_else(|| UnknownTier(tier.to_owned()))?;
        self.update_user(user, |r| r.tier = Some(index));
        Ok(())
    }

    /// The tier of `user`.
    pub fn tier_of(&self, user: &str) -> String {
        let rule = self.inner.users[self.shard(user)]
            .read()
            .get(user)
            .copied()
            .unwrap_or_default();
        let tiers = self.inner.tiers.load();
        tiers
            .get(rule.tier.unwrap_or_else(|| tiers.default_index()))
            .name()
            .to_owned()
    }

    /// Gives `user` a custom quota that overrides tier and endpoint limits.
    pub fn set_user_limit(&self, user: &str, quota: Quota) {
        self.update_user(user, |r| r.custom = Some(quota));
    }

    /// Removes `user`'s custom quota.
    pub fn clear_user_limit(&self, user: &str) {
        self.update_user(user, |r| r.custom = None);
    }

    /// Sets a custom quota for `endpoint`.
    pub fn set_endpoint_limit(&self, endpoint: &str, quota: Quota) {
        self.inner.endpoints.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.insert(endpoint.into(), quota);
            m
        });
    }

    /// Removes `endpoint`'s custom quota.
    pub fn clear_endpoint_limit(&self, endpoint: &str) {
        self.inner.endpoints.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.remove(endpoint);
            m
        });
    }
}
