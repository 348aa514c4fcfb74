//! Breaker state shared across a fleet (feature `redis`): when one instance's breaker
//! trips for an upstream, the other instances' breakers for that upstream open too, within
//! milliseconds, and each probes on its own.
//!
//! # Why
//!
//! A breaker judges only the calls of its own process. That is right when the upstream
//! judges calls one by one, and wrong when it judges the *caller*: an exchange or a SaaS
//! API that bans a whole API key after too many failed requests counts the failures of
//! every instance using that key. Twenty instances whose breakers each trip after five
//! failures send a hundred before the last one stops, and the ban may come at fifty.
//! Linked with [`Breaker::share`], the first trip stops the fleet: the others open on the
//! message instead of spending their own failures to find out.
//!
//! # When to use it
//!
//! - **Use it** when a shared identity (API key, account, source IP behind a NAT) carries
//!   a quota or a ban, and calling a failing upstream costs more than a few seconds of
//!   not calling a healthy one.
//! - **Do not** when failures are the instance's own (its network path, its DNS, a bad
//!   pool): one sick instance would then open every healthy one. Plain per-instance
//!   breakers are right for that, and remain the default.
//! - **Do not** for per-key breakers of unbounded cardinality: a link is one subscription
//!   and two tasks per upstream.
//!
//! # What is shared
//!
//! | local event | fleet message | what a peer does |
//! |---|---|---|
//! | the breaker trips (any cause, `force_open` included) | `open`, with its open wait | opens as if it had tripped, if CLOSED or HALF_OPEN; probes after **its own** open wait |
//! | probes succeed, or `reset` | `closed` | nothing: each instance closes on its own probes |
//! | it opened because a peer did | nothing | (no echo: a trip crosses the fleet once) |
//! | `isolate` / `release`, OPEN → HALF_OPEN | nothing | these stay local |
//!
//! A remote `closed` does not close a local breaker: a peer's lucky probe says nothing
//! about this instance's calls, and closing on it would put the whole fleet's traffic on a
//! recovering upstream at once. Each open breaker admits its own probes, so the upstream
//! sees at most `half_open_probes` per instance.
//!
//! Pub/sub is lossy: a message published while a peer is disconnected never reaches it.
//! So each `open` is also written to a state key whose TTL is the open wait, and a link
//! reads it when it starts and after every resubscription. The keys and the message
//! format are in the crate README.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use breaker_layer::{CircuitBreakerLayer, CircuitOpen};
//! use reliability_core::redis::RedisConfig;
//! use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};
//! # use reliability_core::harness::RedisServer;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), BoxError> {
//! # let Some(server) = RedisServer::start() else { return Ok(()) };
//! # let url = server.url();
//! let redis = RedisConfig::single(url).key_prefix("shop");
//! // Two instances of one service, each with its breaker for the exchange's API key.
//! let here = CircuitBreakerLayer::builder("exchange").consecutive_failures(3).build()?;
//! let there = CircuitBreakerLayer::builder("exchange").consecutive_failures(3).build()?;
//! let _here_link = here.breaker().share("exchange/key-7", &redis).await?;
//! let _there_link = there.breaker().share("exchange/key-7", &redis).await?;
//!
//! let failing = service_fn(|_: ()| async { Err::<(), BoxError>("banned soon".into()) });
//! let svc = ServiceBuilder::new().layer(here).service(failing);
//! for _ in 0..3 {
//!     assert!(svc.clone().oneshot(()).await.is_err());
//! }
//!
//! // The other instance fails fast without having made a single call.
//! let healthy = service_fn(|_: ()| async { Ok::<_, BoxError>("ok") });
//! let other = ServiceBuilder::new().layer(there).service(healthy);
//! let rejected = tokio::time::timeout(Duration::from_secs(5), async {
//!     loop {
//!         match other.clone().oneshot(()).await {
//!             Err(e) if e.is::<CircuitOpen>() => break,
//!             _ => tokio::time::sleep(Duration::from_millis(2)).await,
//!         }
//!     }
//! });
//! assert!(rejected.await.is_ok());
//! # Ok(())
//! # }
//! ```
//!
//! # Failures
//!
//! - No tokio runtime, an invalid configuration, a Redis that refuses or does not answer:
//!   [`Breaker::share`] returns a [`FleetError`] (bounded by the configuration's timeouts)
//!   and the breaker works alone.
//! - Redis dies after linking: the breaker keeps judging its own calls; publishes fail
//!   within twice `response_timeout` each, off the call path, and are counted
//!   ([`FleetStats::publish_failures`]); the subscription reconnects by itself and then
//!   catches up from the state key.
//! - Garbage on the channel (anyone with access to Redis can publish): ignored and counted
//!   ([`FleetStats::ignored_messages`]), never a panic.
//! - The upstream name is a user string: it is escaped into a hash tag by
//!   [`KeySpace`](reliability_core::key::KeySpace), never a raw key, and is passed to Redis
//!   only as command arguments (no script).

mod error;
mod link;
mod message;

pub use self::error::FleetError;
pub use self::link::{FleetLink, FleetStats};

#[cfg(doc)]
use crate::Breaker;
