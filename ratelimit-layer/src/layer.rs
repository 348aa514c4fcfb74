//! [`RateLimitLayer`]: wraps services with a [`RateLimiter`].

use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use crate::key::{GlobalKey, MissingKey};
use crate::limiter::RateLimiter;
use crate::service::{RateLimit, Shared};
use reliability_core::answer::AsError;

/// Applies [`RateLimit`] to services. Cheap to clone; every service it builds shares the
/// same limiter (and so the same state).
///
/// Modes:
/// - **generic** ([`AsError`], the default): a refusal is a
///   [`RateLimited`](crate::RateLimited) error inside `tower::BoxError`;
/// - **HTTP** ([`RateLimitLayer::http`]): a refusal is a 429 response with `Retry-After`,
///   `RateLimit-Policy` and `RateLimit`; admitted responses carry the two `RateLimit` fields;
/// - **gRPC** (`RateLimitLayer::grpc`, feature `grpc`): a refusal is a `RESOURCE_EXHAUSTED`
///   status;
/// - **client** ([`RateLimitLayer::wait_up_to`]): a refused request waits until the quota
///   admits it, up to a maximum wait, then fails as in the chosen mode.
///
/// A request for which the [key extractor](RateLimitLayer::key) finds nothing is refused
/// unless [`on_missing_key`](RateLimitLayer::on_missing_key) says otherwise.
#[derive(Debug)]
#[must_use]
pub struct RateLimitLayer<X = GlobalKey, R = AsError> {
    shared: Arc<Shared<X, R>>,
}

impl<X, R> Clone for RateLimitLayer<X, R> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl RateLimitLayer<GlobalKey, AsError> {
    /// A layer for `limiter`, every request counting against one global subject.
    pub fn new(limiter: RateLimiter) -> Self {
        Self {
            shared: Arc::new(Shared::new(
                limiter,
                GlobalKey,
                AsError,
                None,
                MissingKey::default(),
            )),
        }
    }
}

impl<X: Clone, R: Clone> RateLimitLayer<X, R> {
    fn map<X2, R2>(&self, extractor: X2, respond: R2) -> RateLimitLayer<X2, R2> {
        RateLimitLayer {
            shared: Arc::new(Shared::new(
                self.shared.limiter.clone(),
                extractor,
                respond,
                self.shared.max_wait,
                self.shared.on_missing_key,
            )),
        }
    }

    /// Chooses how requests map to subjects.
    pub fn key<X2>(self, extractor: X2) -> RateLimitLayer<X2, R> {
        let respond = self.shared.respond.clone();
        self.map(extractor, respond)
    }

    /// What to do with a request for which the extractor finds no key (default
    /// [`MissingKey::Reject`]; see [the `key` module](crate::key#requests-without-a-key)).
    ///
    /// ```
    /// use std::time::Duration;
    /// use ratelimit_layer::{KeyNotFound, MissingKey, Quota, RateLimitLayer, RateLimiter, Subject};
    /// use ratelimit_layer::key::key_fn;
    /// use tower::{Layer, ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let limiter = RateLimiter::builder()
    ///     .quota(Quota::per(1, Duration::from_secs(60)).unwrap())
    ///     .build()
    ///     .unwrap();
    /// let by_user = key_fn(|user: &Option<&str>| user.map(Subject::new));
    /// let echo = service_fn(|_: Option<&str>| async { Ok::<_, std::convert::Infallible>("ok") });
    ///
    /// let strict = RateLimitLayer::new(limiter.clone()).key(by_user.clone()).layer(echo);
    /// let refused = strict.oneshot(None).await.unwrap_err();
    /// assert!(refused.downcast_ref::<KeyNotFound>().is_some());
    ///
    /// let open = RateLimitLayer::new(limiter)
    ///     .key(by_user)
    ///     .on_missing_key(MissingKey::Bypass)
    ///     .layer(echo);
    /// for _ in 0..3 {
    ///     assert_eq!(open.clone().oneshot(None).await.unwrap(), "ok");
    /// }
    /// # }
    /// ```
    pub fn on_missing_key(self, choice: MissingKey) -> Self {
        let mut layer = self.map(self.shared.extractor.clone(), self.shared.respond.clone());
        Arc::get_mut(&mut layer.shared)
            .expect("fresh")
            .on_missing_key = choice;
        layer
    }

    /// Chooses how refusals are answered (see [`Respond`](crate::Respond)).
    pub fn respond_with<R2>(self, respond: R2) -> RateLimitLayer<X, R2> {
        let extractor = self.shared.extractor.clone();
        self.map(extractor, respond)
    }

    /// Client mode: a refused request waits (without holding any lock) until the limiter
    /// admits it, if that is at most `max_wait` away; otherwise it is refused at once with
    /// [`Reason::WaitExceeded`](crate::Reason::WaitExceeded).
    ///
    /// # Example
    ///
    /// A client respecting an upstream API's quota of 10 requests per second waits for its
    /// turn (at most 2 s) instead of failing:
    ///
    /// ```
    /// use std::time::Duration;
    /// use ratelimit_layer::{Quota, RateLimitLayer, RateLimiter};
    /// use tower::{ServiceBuilder, ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let upstream_quota = RateLimiter::builder()
    ///     .quota(Quota::per(10, Duration::from_secs(1)).unwrap())
    ///     .build()
    ///     .unwrap();
    /// let client = ServiceBuilder::new()
    ///     .layer(RateLimitLayer::new(upstream_quota.clone()).wait_up_to(Duration::from_secs(2)))
    ///     .service(service_fn(|n: u32| async move { Ok::<_, std::convert::Infallible>(n) }));
    ///
    /// let start = tokio::time::Instant::now();
    /// for n in 0..15 {
    ///     assert_eq!(client.clone().oneshot(n).await.unwrap(), n);
    /// }
    /// // 10 at once (the burst), then one every 100 ms.
    /// assert_eq!(start.elapsed(), Duration::from_millis(500));
    /// assert_eq!(upstream_quota.snapshot().waited, 5);
    /// # }
    /// ```
    pub fn wait_up_to(self, max_wait: Duration) -> Self {
        let mut layer = self.map(self.shared.extractor.clone(), self.shared.respond.clone());
        Arc::get_mut(&mut layer.shared).expect("fresh").max_wait = Some(max_wait);
        layer
    }

    /// Reads each request's own deadline
    /// ([`HasDeadline`](reliability_core::deadline::HasDeadline), e.g. an `http::Request`
    /// carrying a [`Deadline`](reliability_core::deadline::Deadline) in its extensions): in
    /// client mode a refused request waits only if its turn comes before both `max_wait`
    /// and its deadline; otherwise it is refused at once with
    /// [`Reason::WaitExceeded`](crate::Reason::WaitExceeded), the quota being the cause.
    /// Call it after `key`.
    pub fn with_deadlines(self) -> RateLimitLayer<crate::key::WithDeadlines<X>, R> {
        let extractor = crate::key::WithDeadlines(self.shared.extractor.clone());
        self.map(extractor, self.shared.respond.clone())
    }

    /// The limiter (for the operations API).
    pub fn limiter(&self) -> &RateLimiter {
        &self.shared.limiter
    }
}

#[cfg(feature = "http")]
impl<X: Clone, R: Clone> RateLimitLayer<X, R> {
    /// HTTP server mode (core's [`AsHttp`](reliability_core::answer::AsHttp)): 429 answers
    /// with `Retry-After`, and the IETF `RateLimit` fields on every decided response.
    pub fn http(self) -> RateLimitLayer<X, reliability_core::answer::AsHttp> {
        self.respond_with(reliability_core::answer::AsHttp)
    }
}

#[cfg(feature = "grpc")]
impl<X: Clone, R: Clone> RateLimitLayer<X, R> {
    /// gRPC server mode (core's [`AsGrpc`](reliability_core::answer::AsGrpc)):
    /// `RESOURCE_EXHAUSTED` answers.
    pub fn grpc(self) -> RateLimitLayer<X, reliability_core::answer::AsGrpc> {
        self.respond_with(reliability_core::answer::AsGrpc)
    }
}

impl<S, X: Clone, R: Clone> Layer<S> for RateLimitLayer<X, R> {
    type Service = RateLimit<S, X, R>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::from_shared(inner, self.shared.clone())
    }
}
