//! The policies of HTTP requests: [`HttpPolicy`] (only inside an `HttpRetryLayer`) and
//! the [`Idempotent`] wrapper for any other policy of `http::Request<B>`.

use http::{Request, Response};
use reliability_core::classify::{Classification, Classify, HttpClassifier};
use reliability_core::deadline::{Deadline, HasDeadline};

use super::buffer::BufferedBody;
use super::{ReplayBody, may_replay};
use crate::error::RetryStopped;
use crate::policy::RetryPolicy;
use crate::schedule::StopReason;

/// Retries HTTP requests: [`may_replay`], classification of responses (`C`, default
/// [`HttpClassifier`]), copies from the body that
/// [`BufferRequest`](super::BufferRequest) kept.
///
/// It comes only inside an [`HttpRetryLayer`](super::HttpRetryLayer) (there is no public
/// constructor): without the buffer in front there is no body to copy, and nothing would
/// ever be retried.
#[derive(Debug, Clone, Copy)]
pub struct HttpPolicy<C = HttpClassifier> {
    classifier: C,
    pub(super) retry_non_idempotent: bool,
}

impl<C> HttpPolicy<C> {
    /// Responses judged by `classifier`.
    pub(crate) fn new(classifier: C) -> Self {
        Self {
            classifier,
            retry_non_idempotent: false,
        }
    }
}

impl<B, ResB, E, C> RetryPolicy<Request<B>, Response<ResB>, E> for HttpPolicy<C>
where
    B: ReplayBody,
    C: Classify<Response<ResB>, E> + Send + Sync + 'static,
{
    fn replay(&self, req: &Request<B>) -> Option<Request<B>> {
        if !may_replay(req, self.retry_non_idempotent) {
            return None;
        }
        let BufferedBody(bytes) = req.extensions().get::<BufferedBody>()?;
        let mut copy = Request::new(B::from_bytes(bytes.clone()));
        *copy.method_mut() = req.method().clone();
        *copy.uri_mut() = req.uri().clone();
        *copy.version_mut() = req.version();
        // The same headers on every attempt: an `Idempotency-Key` is repeated as is.
        *copy.headers_mut() = req.headers().clone();
        *copy.extensions_mut() = req.extensions().clone();
        Some(copy)
    }

    fn classify(&self, result: Result<&Response<ResB>, &E>) -> Classification {
        self.classifier.classify_full(result)
    }

    #[inline]
    fn deadline(&self, req: &Request<B>) -> Option<Deadline> {
        req.deadline()
    }

    fn describe_request(&self, req: &Request<B>) -> String {
        describe(req)
    }

    fn describe_response(&self, res: &Response<ResB>) -> String {
        format!("HTTP {}", res.status())
    }

    fn on_stop(&self, res: &mut Response<ResB>, attempts: u32, reason: StopReason) {
        res.extensions_mut()
            .insert(RetryStopped { attempts, reason });
    }
}

fn describe<B>(req: &Request<B>) -> String {
    // Method and path only: queries and headers may hold credentials.
    format!("{} {}", req.method(), req.uri().path())
}

/// Applies [`may_replay`] to any policy of `http::Request<B>`: a request that may not be
/// sent twice is sent once; everything else is the inner policy's.
///
/// For requests already held in memory, such as `http::Request<Bytes>`, that a plain
/// [`RetryLayer`](crate::RetryLayer) copies with
/// [`ClassifierPolicy`](crate::ClassifierPolicy). That policy clones any `Clone` request
/// and never looks at a method: it is generic over the request type, and without
/// specialisation Rust cannot give it other behaviour for
/// `http::Request<B>` alone. Hence this wrapper, which is where the HTTP rule is added.
/// There is no layer-wide opt-in here: to retry every method, leave the policy unwrapped.
///
/// ```
/// use bytes::Bytes;
/// use reliability_core::classify::HttpClassifier;
/// use retry_layer::{http::Idempotent, ClassifierPolicy, RetryLayer};
///
/// let layer = RetryLayer::builder()
///     .policy(Idempotent::new(ClassifierPolicy::new(HttpClassifier::new())))
///     .build()
///     .unwrap();
/// # let _ = layer;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Idempotent<P> {
    inner: P,
}

impl<P> Idempotent<P> {
    /// `inner`, restricted to the requests that [`may_replay`].
    pub fn new(inner: P) -> Self {
        Self { inner }
    }

    /// The wrapped policy.
    pub fn get_ref(&self) -> &P {
        &self.inner
    }

    /// The wrapped policy, owned.
    pub fn into_inner(self) -> P {
        self.inner
    }
}

impl<B, Res, E, P> RetryPolicy<Request<B>, Res, E> for Idempotent<P>
where
    P: RetryPolicy<Request<B>, Res, E>,
{
    fn replay(&self, req: &Request<B>) -> Option<Request<B>> {
        if !may_replay(req, false) {
            return None;
        }
        self.inner.replay(req)
    }

    fn classify(&self, result: Result<&Res, &E>) -> Classification {
        self.inner.classify(result)
    }

    /// An HTTP request's deadline is in its extensions, whatever the inner policy says.
    fn deadline(&self, req: &Request<B>) -> Option<Deadline> {
        req.deadline().or_else(|| self.inner.deadline(req))
    }

    fn describe_request(&self, req: &Request<B>) -> String {
        self.inner.describe_request(req)
    }

    fn describe_response(&self, res: &Res) -> String {
        self.inner.describe_response(res)
    }

    fn on_stop(&self, res: &mut Res, attempts: u32, reason: StopReason) {
        self.inner.on_stop(res, attempts, reason);
    }
}
