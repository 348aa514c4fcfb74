//! The Redis [`ControlStore`]: a fleet's tiers, custom limits and usage in Redis.
//!
//! Keys (under `<prefix>:rl:ctl`, every user string escaped into its own hash tag by
//! [`KeySpace`]; see the README's key table):
//!
//! - `<p>:rl:ctl:{<user>}:rule`: hash, fields `tier` and `limit`; written by the admin
//!   calls only, deleted when both fields are cleared;
//! - `<p>:rl:ctl:{fleet}:endpoints`: hash, endpoint → limit (or `-`, a tombstone), at
//!   most [`MAX_ENDPOINTS`] fields;
//! - `<p>:rl:ctl:{fleet}:usage` and `...:rejected`: sorted sets of request counts per
//!   user, trimmed to the usage capacity after every batch, expiring a week after the
//!   last batch;
//! - `<p>:rl:ctl:{fleet}:changes`: the change channel (sharded on a cluster).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;

use redis::{ErrorKind, RedisError, Value};
use reliability_core::key::KeySpace;
use reliability_core::redis::pubsub::{Event, Subscription, publish};

use super::RedisBackend;
use crate::control::{
    Change, ChangeStream, ControlFailure, ControlFuture, ControlStore, RuleField, StoredRule,
    decode_change, encode_change,
};
use crate::limiter::Usage;

/// Most endpoint limits the store keeps.
pub(crate) const MAX_ENDPOINTS: usize = 10_000;

/// How long usage statistics outlive the last batch that touched them.
const USAGE_TTL_SECS: u64 = 7 * 24 * 3600;

/// The Redis control store of a [`RedisBackend`] (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct RedisControl {
    backend: RedisBackend,
    ctl: KeySpace,
}

fn failure(e: &RedisError) -> ControlFailure {
    let unreachable = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_cluster_error()
        || matches!(e.kind(), ErrorKind::ClusterConnectionNotFound);
    if unreachable {
        ControlFailure::Unavailable(e.to_string())
    } else {
        ControlFailure::Garbage(e.to_string())
    }
}

fn text(value: Value) -> Result<Option<String>, ControlFailure> {
    match value {
        Value::Nil => Ok(None),
        Value::BulkString(b) => String::from_utf8(b)
            .map(Some)
            .map_err(|_| ControlFailure::Garbage("a value is not UTF-8".into())),
        Value::SimpleString(s) => Ok(Some(s)),
        other => Err(ControlFailure::Garbage(format!("unexpected {other:?}"))),
    }
}

fn score(value: &Value) -> Result<u64, ControlFailure> {
    let parsed = match value {
        Value::Nil => return Ok(0),
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse::<f64>().ok()),
        Value::SimpleString(s) => s.parse::<f64>().ok(),
        Value::Double(d) => Some(*d),
        Value::Int(i) => Some(*i as f64),
        _ => None,
    };
    match parsed {
        Some(f) if f.is_finite() && f >= 0.0 => Ok(f as u64),
        _ => Err(ControlFailure::Garbage(format!("bad count {value:?}"))),
    }
}

impl RedisControl {
    pub(crate) fn new(backend: RedisBackend) -> Self {
        let ctl = backend
            .inner
            .keys
            .child("ctl")
            .expect("a constant child of a valid prefix");
        Self { backend, ctl }
    }

    fn rule_key(&self, user: &str) -> String {
        self.ctl.key(user, "rule")
    }

    fn fleet(&self, suffix: &str) -> String {
        self.ctl.key("fleet", suffix)
    }

    /// Runs `cmd`, counting the round trip; while the backend knows Redis is down, answers
    /// `Unavailable` at once instead of waiting for another timeout.
    fn run<T: redis::FromRedisValue + Send + 'static>(
        &self,
        pipe: redis::Pipeline,
    ) -> ControlFuture<'static, T> {
        let inner = self.backend.inner.clone();
        Box::pin(async move {
            if inner.down.load(Ordering::Acquire)
                && inner.fallback.now_micros() < inner.retry_at.load(Ordering::Acquire)
            {
                return Err(ControlFailure::Unavailable("redis is down".into()));
            }
            let mut conn = inner.conn.clone();
            inner.round_trip();
            let result = pipe.query_async::<T>(&mut conn).await;
            match &result {
                Ok(_) => inner.mark(true, None),
                Err(e) if matches!(failure(e), ControlFailure::Unavailable(_)) => {
                    inner.mark(false, Some(e));
                }
                Err(_) => {}
            }
            result.map_err(|e| failure(&e))
        })
    }

    fn announce(&self, change: Change) -> ControlFuture<'static, ()> {
        let inner = self.backend.inner.clone();
        let channel = self.fleet("changes");
        Box::pin(async move {
            let mut conn = inner.conn.clone();
            publish(&mut conn, &channel, &encode_change(&change))
                .await
                .map(drop)
                .map_err(|e| failure(&e))
        })
    }
}

impl ControlStore for RedisControl {
    fn load_rule(&self, user: &str) -> ControlFuture<'static, StoredRule> {
        let mut pipe = redis::pipe();
        pipe.cmd("HMGET")
            .arg(self.rule_key(user))
            .arg("tier")
            .arg("limit");
        let fetch = self.run::<Vec<Vec<Value>>>(pipe);
        Box::pin(async move {
            let mut reply = fetch
                .await?
                .into_iter()
                .next()
                .unwrap_or_default()
                .into_iter();
            Ok(StoredRule {
                tier: text(reply.next().unwrap_or(Value::Nil))?,
                limit: text(reply.next().unwrap_or(Value::Nil))?,
            })
        })
    }

    fn store_rule(
        &self,
        user: &str,
        field: RuleField,
        value: Option<String>,
    ) -> ControlFuture<'static, ()> {
        let name = match field {
            RuleField::Tier => "tier",
            RuleField::Limit => "limit",
        };
        let mut pipe = redis::pipe();
        match value {
            Some(v) => pipe.cmd("HSET").arg(self.rule_key(user)).arg(name).arg(v),
            None => pipe.cmd("HDEL").arg(self.rule_key(user)).arg(name),
        }
        .ignore();
        let write = self.run::<()>(pipe);
        let announce = self.announce(Change::User(user.to_owned()));
        Box::pin(async move {
            write.await?;
            announce.await
        })
    }

    fn load_endpoints(&self) -> ControlFuture<'static, Vec<(String, Option<String>)>> {
        let mut pipe = redis::pipe();
        pipe.cmd("HGETALL").arg(self.fleet("endpoints"));
        let fetch = self.run::<Vec<Vec<Value>>>(pipe);
        Box::pin(async move {
            let flat = fetch.await?.into_iter().next().unwrap_or_default();
            let mut out = Vec::with_capacity(flat.len() / 2);
            let mut it = flat.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                let (Some(k), Some(v)) = (text(k)?, text(v)?) else {
                    continue;
                };
                out.push((k, (v != "-").then_some(v)));
            }
            Ok(out)
        })
    }

    fn store_endpoint(&self, endpoint: &str, limit: Option<String>) -> ControlFuture<'static, ()> {
        let key = self.fleet("endpoints");
        let mut count = redis::pipe();
        count.cmd("HLEN").arg(&key);
        let count = self.run::<(u64,)>(count);
        let mut pipe = redis::pipe();
        pipe.cmd("HSET")
            .arg(&key)
            .arg(endpoint)
            .arg(limit.as_deref().unwrap_or("-"))
            .ignore();
        let write = self.run::<()>(pipe);
        let announce = self.announce(Change::Endpoints);
        Box::pin(async move {
            if count.await?.0 as usize >= MAX_ENDPOINTS {
                return Err(ControlFailure::Garbage(format!(
                    "more than {MAX_ENDPOINTS} endpoint limits"
                )));
            }
            write.await?;
            announce.await
        })
    }

    fn add_usage(&self, batch: Vec<(String, Usage)>, keep: usize) -> ControlFuture<'static, ()> {
        let (total, rejected) = (self.fleet("usage"), self.fleet("rejected"));
        let mut pipe = redis::pipe();
        for (user, u) in &batch {
            pipe.cmd("ZINCRBY")
                .arg(&total)
                .arg(u.allowed + u.rejected)
                .arg(user)
                .ignore();
            if u.rejected > 0 {
                pipe.cmd("ZINCRBY")
                    .arg(&rejected)
                    .arg(u.rejected)
                    .arg(user)
                    .ignore();
            }
        }
        // Bounded: keep the heaviest `capacity` users of each set.
        let keep = -(keep.max(1) as i64) - 1;
        for key in [&total, &rejected] {
            pipe.cmd("ZREMRANGEBYRANK")
                .arg(key)
                .arg(0)
                .arg(keep)
                .ignore();
            pipe.cmd("EXPIRE").arg(key).arg(USAGE_TTL_SECS).ignore();
        }
        self.run::<()>(pipe)
    }

    fn usage(&self, user: &str) -> ControlFuture<'static, Usage> {
        let mut pipe = redis::pipe();
        pipe.cmd("ZSCORE").arg(self.fleet("usage")).arg(user);
        pipe.cmd("ZSCORE").arg(self.fleet("rejected")).arg(user);
        let fetch = self.run::<Vec<Value>>(pipe);
        Box::pin(async move {
            let reply = fetch.await?;
            let (total, rejected) = match reply.as_slice() {
                [t, r] => (score(t)?, score(r)?),
                _ => return Err(ControlFailure::Garbage("usage reply".into())),
            };
            Ok(Usage {
                allowed: total.saturating_sub(rejected),
                rejected: rejected.min(total),
            })
        })
    }

    fn top(&self, n: usize) -> ControlFuture<'static, Vec<(String, Usage)>> {
        let (total, rejected) = (self.fleet("usage"), self.fleet("rejected"));
        let this = self.clone();
        Box::pin(async move {
            if n == 0 {
                return Ok(Vec::new());
            }
            let mut pipe = redis::pipe();
            pipe.cmd("ZRANGE")
                .arg(&total)
                .arg(0)
                .arg(n - 1)
                .arg("REV")
                .arg("WITHSCORES");
            let flat = this.run::<Vec<Vec<Value>>>(pipe).await?;
            let flat = flat.into_iter().next().unwrap_or_default();
            let mut users = Vec::with_capacity(flat.len() / 2);
            let mut it = flat.into_iter();
            while let (Some(member), Some(count)) = (it.next(), it.next()) {
                let Some(member) = text(member)? else {
                    continue;
                };
                users.push((member, score(&count)?));
            }
            if users.is_empty() {
                return Ok(Vec::new());
            }
            let mut pipe = redis::pipe();
            pipe.cmd("ZMSCORE").arg(&rejected);
            for (u, _) in &users {
                pipe.arg(u);
            }
            let rejected = this.run::<Vec<Vec<Value>>>(pipe).await?;
            let rejected = rejected.into_iter().next().unwrap_or_default();
            users
                .into_iter()
                .enumerate()
                .map(|(i, (user, total))| {
                    let r = rejected.get(i).map_or(Ok(0), score)?.min(total);
                    Ok((
                        user,
                        Usage {
                            allowed: total - r,
                            rejected: r,
                        },
                    ))
                })
                .collect()
        })
    }

    fn forget_usage(&self, user: Option<&str>) -> ControlFuture<'static, ()> {
        let (total, rejected) = (self.fleet("usage"), self.fleet("rejected"));
        let mut pipe = redis::pipe();
        match user {
            Some(u) => {
                pipe.cmd("ZREM").arg(&total).arg(u).ignore();
                pipe.cmd("ZREM").arg(&rejected).arg(u).ignore();
            }
            None => {
                pipe.cmd("DEL").arg(&total).arg(&rejected).ignore();
            }
        }
        self.run::<()>(pipe)
    }

    fn changes(&self) -> ControlFuture<'static, Box<dyn ChangeStream>> {
        let config = self.backend.inner.config.clone();
        let channel = self.fleet("changes");
        Box::pin(async move {
            let sub = config
                .subscribe(&[channel.as_str()])
                .await
                .map_err(|e| ControlFailure::Unavailable(e.to_string()))?;
            Ok(Box::new(Changes { sub, seen: false }) as Box<dyn ChangeStream>)
        })
    }
}

/// The change channel as a [`ChangeStream`].
struct Changes {
    sub: Subscription,
    /// Whether the first subscription was confirmed (later ones are resyncs).
    seen: bool,
}

impl ChangeStream for Changes {
    fn next(&mut self) -> Pin<Box<dyn Future<Output = Option<Change>> + Send + '_>> {
        Box::pin(async move {
            loop {
                match self.sub.next().await? {
                    Event::Message { payload, .. } => match decode_change(&payload) {
                        Some(change) => return Some(change),
                        None => {
                            tracing::warn!(len = payload.len(), "ignored a garbage change message");
                        }
                    },
                    Event::Subscribed if !self.seen => self.seen = true,
                    Event::Subscribed => return Some(Change::Resync),
                    Event::Lost => return Some(Change::Lost),
                }
            }
        })
    }
}
