//! Which quota a request gets: the user's custom limit, else the endpoint's custom limit,
//! else the user's tier, else the default tier; and the calls that change those rules.
//!
//! Resolving takes no write lock: the tier and endpoint tables are swapped whole
//! (`ArcSwap`), user rules sit in sharded `RwLock`s, and while no user has a rule (the
//! common case) `resolve` does not read the user table at all.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use super::RateLimiter;
use crate::control::{ControlFailure, RuleField, encode_quota};
use crate::error::{ControlError, UnknownTier};
use crate::quota::Quota;

/// A user's own rule: an assigned tier and/or a custom quota.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct UserRule {
    pub(super) tier: Option<u16>,
    pub(super) custom: Option<Quota>,
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
    /// Resolved before the user's shared rule was known (the default tier): the limiter
    /// resolves again once it is loaded.
    pub(crate) provisional: bool,
}

impl RateLimiter {
    /// The quota that applies to `user` on `endpoint`: the user's custom limit, else the
    /// endpoint's custom limit, else the user's tier, else the default tier. With a shared
    /// control store, the rule is the one this process has cached (a user not cached yet
    /// resolves to the default tier; requests load it first).
    pub fn resolve(&self, user: &str, endpoint: Option<&str>) -> Resolved {
        let mut tier = None;
        if self.inner.user_rules.load(Ordering::Relaxed) > 0 {
            let rule = self.cached_rule(user);
            if let Some(rule) = rule {
                if let Some(quota) = rule.custom {
                    return Resolved {
                        quota,
                        policy: Policy::User,
                        per_endpoint: false,
                        provisional: false,
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
                    provisional: false,
                };
            }
        }
        let tiers = self.inner.tiers.load();
        let index = tier.unwrap_or_else(|| tiers.default_index());
        Resolved {
            quota: *tiers.get(index).quota(),
            policy: Policy::Tier(index),
            per_endpoint: false,
            provisional: false,
        }
    }

    pub(super) fn update_user(&self, user: &str, f: impl FnOnce(&mut UserRule)) {
        if self.shared().is_some() {
            // A cache: an empty rule is a known "no rule", kept.
            let mut rule = self.cached_rule(user).unwrap_or_default();
            f(&mut rule);
            self.cache_rule(user, rule);
            return;
        }
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

    /// Writes one part of `user`'s rule: to the shared store first (announced to the
    /// fleet), then here.
    async fn write_rule(
        &self,
        user: &str,
        field: RuleField,
        value: Option<String>,
        f: impl FnOnce(&mut UserRule),
    ) -> Result<(), ControlFailure> {
        if let Some(shared) = self.shared() {
            self.ensure_listening();
            if let Err(e) = shared.store.store_rule(user, field, value).await {
                self.control_failed("writing a rule", &e);
                return Err(e);
            }
            self.control_answered();
        }
        self.update_user(user, f);
        Ok(())
    }

    /// Puts `user` in tier `tier` (fleet-wide with a shared control store).
    pub async fn set_tier(&self, user: &str, tier: &str) -> Result<(), ControlError> {
        let index = self
            .inner
            .tiers
            .load()
            .index_of(tier)
            .ok_or_else(|| UnknownTier(tier.to_owned()))?;
        self.write_rule(user, RuleField::Tier, Some(tier.to_owned()), |r| {
            r.tier = Some(index);
        })
        .await?;
        Ok(())
    }

    /// Puts `user` back in the default tier.
    pub async fn clear_tier(&self, user: &str) -> Result<(), ControlFailure> {
        self.write_rule(user, RuleField::Tier, None, |r| r.tier = None)
            .await
    }

    /// The tier of `user` (loaded from the shared control store when not cached; the
    /// default tier when the store cannot say).
    pub async fn tier_of(&self, user: &str) -> String {
        self.ensure_listening();
        let rule = match self.cached_rule(user) {
            Some(rule) => Some(rule),
            None => self.load_rule(user).await,
        }
        .unwrap_or_default();
        let tiers = self.inner.tiers.load();
        tiers
            .get(rule.tier.unwrap_or_else(|| tiers.default_index()))
            .name()
            .to_owned()
    }

    /// Gives `user` a custom quota that overrides tier and endpoint limits.
    pub async fn set_user_limit(&self, user: &str, quota: Quota) -> Result<(), ControlFailure> {
        self.write_rule(user, RuleField::Limit, Some(encode_quota(&quota)), |r| {
            r.custom = Some(quota);
        })
        .await
    }

    /// Removes `user`'s custom quota.
    pub async fn clear_user_limit(&self, user: &str) -> Result<(), ControlFailure> {
        self.write_rule(user, RuleField::Limit, None, |r| r.custom = None)
            .await
    }

    /// Sets a custom quota for `endpoint`.
    pub async fn set_endpoint_limit(
        &self,
        endpoint: &str,
        quota: Quota,
    ) -> Result<(), ControlFailure> {
        self.write_endpoint(endpoint, Some(quota)).await
    }

    /// Removes `endpoint`'s custom quota (also one from configuration, fleet-wide with a
    /// shared control store).
    pub async fn clear_endpoint_limit(&self, endpoint: &str) -> Result<(), ControlFailure> {
        self.write_endpoint(endpoint, None).await
    }

    async fn write_endpoint(
        &self,
        endpoint: &str,
        quota: Option<Quota>,
    ) -> Result<(), ControlFailure> {
        if let Some(shared) = self.shared() {
            self.ensure_listening();
            let text = quota.as_ref().map(encode_quota);
            if let Err(e) = shared.store.store_endpoint(endpoint, text).await {
                self.control_failed("writing an endpoint limit", &e);
                return Err(e);
            }
            self.control_answered();
        }
        self.inner.endpoints.rcu(|m| {
            let mut m = HashMap::clone(m);
            match quota {
                Some(q) => m.insert(endpoint.into(), q),
                None => m.remove(endpoint),
            };
            m
        });
        Ok(())
    }
}
