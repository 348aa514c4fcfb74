//! gRPC mode: tonic calls hedged, their request body replayed to each copy.
//!
//! A tonic client sends `http::Request<tonic::body::Body>`, whose body is a stream that can
//! be read once. [`GrpcReplay`] tees it: the first copy's body records each frame it
//! yields (up to a cap, [`DEFAULT_REPLAY_CAP`] by default), and each hedge's body replays
//! those frames, waiting for the ones the first copy has not read yet. So a unary call,
//! whose body is one message, is hedged whole; a request stream larger than the cap is not
//! replayed (the hedge fails with [`ReplayError`] and the first copy answers), and a
//! hedge of a stream the first copy abandoned fails the same way rather than wait.
//!
//! Every gRPC call is a POST: as with the gRPC retry policy, only put this layer in front
//! of methods that are safe to send twice (reads such as quotes and order books), as
//! gRPC's own hedging policy asks. The request's
//! [`Deadline`](reliability_core::deadline::Deadline) extension stops hedging.
//!
//! # Example
//!
//! ```
//! use hedge_layer::HedgeLayer;
//! use std::time::Duration;
//!
//! let layer = HedgeLayer::builder("prices")
//!     .grpc()
//!     .fixed_delay(Duration::from_millis(20))
//!     .build()
//!     .unwrap();
//! // `ServiceBuilder::new().layer(layer).service(channel)`, then a generated client.
//! # let _ = layer;
//! ```

use std::error::Error as StdError;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body::{Body, Frame, SizeHint};
use parking_lot::Mutex;
use reliability_core::deadline::{Deadline, HasDeadline};

use crate::policy::HedgeRequest;

/// The most request-body bytes recorded for replay by default (64 KiB): a unary request
/// is far smaller; a longer stream is sent once.
pub const DEFAULT_REPLAY_CAP: usize = 64 * 1024;

/// The gRPC policy (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcReplay {
    cap: usize,
}

impl Default for GrpcReplay {
    fn default() -> Self {
        Self::new(DEFAULT_REPLAY_CAP)
    }
}

impl GrpcReplay {
    /// The policy, recording up to `cap` bytes of each request body.
    pub const fn new(cap: usize) -> Self {
        Self { cap }
    }
}

/// Why a hedge's request body could not be replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayError {
    /// The body is longer than the replay cap.
    TooLong,
    /// The first copy's body failed, or was dropped before its end.
    Abandoned,
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReplayError::TooLong => "request body longer than the hedge replay cap",
            ReplayError::Abandoned => "request body of the first copy did not finish",
        })
    }
}

impl StdError for ReplayError {}

#[derive(Debug)]
enum Progress {
    Open,
    Ended(Option<HeaderMap>),
    Failed(ReplayError),
}

#[derive(Debug)]
struct Recording {
    frames: Vec<Bytes>,
    len: usize,
    progress: Progress,
    waiters: Vec<Waker>,
}

/// What the first copy's body has yielded so far, shared with the replays.
#[derive(Debug)]
struct Tape {
    cap: usize,
    recording: Mutex<Recording>,
}

impl Tape {
    fn update(&self, f: impl FnOnce(&mut Recording)) {
        let waiters = {
            let mut r = self.recording.lock();
            f(&mut r);
            std::mem::take(&mut r.waiters)
        };
        waiters.into_iter().for_each(Waker::wake);
    }

    fn fail(&self, error: ReplayError) {
        self.update(|r| {
            if matches!(r.progress, Progress::Open) {
                r.frames = Vec::new();
                r.progress = Progress::Failed(error);
            }
        });
    }
}

/// The handle of a request's tape, in its extensions.
#[derive(Debug, Clone)]
struct Taped(Arc<Tape>);

/// The first copy's body: the caller's, recording what it yields.
struct Recorder {
    inner: tonic::body::Body,
    tape: Arc<Tape>,
}

impl Body for Recorder {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let tape = &self.tape;
        match &polled {
            Poll::Pending => {}
            Poll::Ready(None) => tape.update(|r| {
                if matches!(r.progress, Progress::Open) {
                    r.progress = Progress::Ended(None);
                }
            }),
            Poll::Ready(Some(Err(_))) => tape.fail(ReplayError::Abandoned),
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let data = data.clone();
                    let too_long = {
                        let r = tape.recording.lock();
                        r.len.saturating_add(data.len()) > tape.cap
                    };
                    if too_long {
                        tape.fail(ReplayError::TooLong);
                    } else {
                        tape.update(|r| {
                            if matches!(r.progress, Progress::Open) {
                                r.len += data.len();
                                r.frames.push(data);
                            }
                        });
                    }
                } else if let Some(trailers) = frame.trailers_ref() {
                    let trailers = trailers.clone();
                    tape.update(|r| {
                        if matches!(r.progress, Progress::Open) {
                            r.progress = Progress::Ended(Some(trailers));
                        }
                    });
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        // A replay must not wait for frames nobody will read.
        self.tape.fail(ReplayError::Abandoned);
    }
}

/// A hedge's body: the first copy's frames, in order, as they are recorded.
struct Replay {
    tape: Arc<Tape>,
    next: usize,
    done: bool,
}

impl Body for Replay {
    type Data = Bytes;
    type Error = ReplayError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ReplayError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let tape = self.tape.clone();
        let mut r = tape.recording.lock();
        if let Progress::Failed(e) = r.progress {
            self.done = true;
            return Poll::Ready(Some(Err(e)));
        }
        if let Some(data) = r.frames.get(self.next) {
            self.next += 1;
            return Poll::Ready(Some(Ok(Frame::data(data.clone()))));
        }
        match &r.progress {
            Progress::Open => {
                if !r.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    r.waiters.push(cx.waker().clone());
                }
                Poll::Pending
            }
            Progress::Ended(trailers) => {
                self.done = true;
                Poll::Ready(trailers.clone().map(|t| Ok(Frame::trailers(t))))
            }
            Progress::Failed(e) => {
                self.done = true;
                Poll::Ready(Some(Err(*e)))
            }
        }
    }
}

impl HedgeRequest<Request<tonic::body::Body>> for GrpcReplay {
    fn prepare(&self, req: Request<tonic::body::Body>) -> Request<tonic::body::Body> {
        let tape = Arc::new(Tape {
            cap: self.cap,
            recording: Mutex::new(Recording {
                frames: Vec::new(),
                len: 0,
                progress: Progress::Open,
                waiters: Vec::new(),
            }),
        });
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(Taped(tape.clone()));
        let body = tonic::body::Body::new(Recorder { inner: body, tape });
        Request::from_parts(parts, body)
    }

    fn copy(&self, req: &Request<tonic::body::Body>) -> Option<Request<tonic::body::Body>> {
        let Taped(tape) = req.extensions().get::<Taped>()?;
        if !matches!(
            tape.recording.lock().progress,
            Progress::Open | Progress::Ended(_)
        ) {
            return None;
        }
        let body = tonic::body::Body::new(Replay {
            tape: tape.clone(),
            next: 0,
            done: false,
        });
        let mut copy = Request::new(body);
        *copy.method_mut() = req.method().clone();
        *copy.uri_mut() = req.uri().clone();
        *copy.version_mut() = req.version();
        *copy.headers_mut() = req.headers().clone();
        *copy.extensions_mut() = req.extensions().clone();
        Some(copy)
    }

    fn deadline(&self, req: &Request<tonic::body::Body>) -> Option<Deadline> {
        req.deadline()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full, StreamBody};

    fn request(body: tonic::body::Body) -> Request<tonic::body::Body> {
        let mut req = Request::new(body);
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = "http://prices/prices.Prices/Quote".parse().unwrap();
        req.headers_mut()
            .insert("te", http::HeaderValue::from_static("trailers"));
        req
    }

    #[tokio::test]
    async fn a_copy_replays_the_first_copys_body_and_headers() {
        let policy = GrpcReplay::default();
        let req = policy.prepare(request(tonic::body::Body::new(Full::new(
            Bytes::from_static(b"\0\0\0\0\x03abc"),
        ))));
        let copy = policy.copy(&req).unwrap();
        assert_eq!(copy.uri(), req.uri());
        assert_eq!(copy.headers()["te"], "trailers");
        // The copy waits for what the first copy reads, then gets the same bytes.
        let first = tokio::spawn(async move { req.into_body().collect().await.unwrap() });
        let replayed = copy.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(first.await.unwrap().to_bytes(), replayed);
        assert_eq!(&replayed[..], b"\0\0\0\0\x03abc");
    }

    #[tokio::test]
    async fn a_body_over_the_cap_is_not_replayed() {
        let policy = GrpcReplay::new(4);
        let req = policy.prepare(request(tonic::body::Body::new(Full::new(
            Bytes::from_static(b"0123456789"),
        ))));
        let copy = policy.copy(&req).unwrap();
        // The first copy is sent whole...
        let sent = req.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(sent.len(), 10);
        // ...and the hedge fails, clearly.
        let err = copy.into_body().collect().await.unwrap_err();
        assert_eq!(err.message(), ReplayError::TooLong.to_string());
    }

    #[tokio::test]
    async fn a_copy_of_an_abandoned_stream_fails_rather_than_waits() {
        let policy = GrpcReplay::default();
        let frames = futures_util::stream::pending::<Result<Frame<Bytes>, tonic::Status>>();
        let req = policy.prepare(request(tonic::body::Body::new(StreamBody::new(frames))));
        let copy = policy.copy(&req).unwrap();
        drop(req);
        let err = copy.into_body().collect().await.unwrap_err();
        assert_eq!(err.message(), ReplayError::Abandoned.to_string());
    }
}
