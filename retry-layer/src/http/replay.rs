//! Request bodies that can be sent again: [`ReplayBody`] and the [`PrefixedBody`] that a
//! buffer which gave up at its cap puts back together.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::{BoxBody, UnsyncBoxBody};
use http_body_util::{BodyExt, Full};
use pin_project_lite::pin_project;

/// A request body type that can be rebuilt from buffered bytes.
///
/// Implemented for `Full<Bytes>`, `BoxBody<Bytes, E>`, `UnsyncBoxBody<Bytes, E>`,
/// (feature `axum`) `axum::body::Body` and (feature `grpc`) `tonic::body::Body`.
pub trait ReplayBody: Body<Data = Bytes> + Unpin + Send + Sized + 'static {
    /// A body holding exactly `bytes`.
    fn from_bytes(bytes: Bytes) -> Self;

    /// The body made of `prefix` (already read from `rest`) followed by what remains of
    /// `rest`.
    fn from_prefix(prefix: Bytes, rest: Self) -> Self;
}

impl ReplayBody for Full<Bytes> {
    fn from_bytes(bytes: Bytes) -> Self {
        Full::new(bytes)
    }

    fn from_prefix(prefix: Bytes, _rest: Self) -> Self {
        // `Full` yields its one frame at once: once anything was read, nothing remains.
        Full::new(prefix)
    }
}

impl<E: Send + Sync + 'static> ReplayBody for BoxBody<Bytes, E> {
    fn from_bytes(bytes: Bytes) -> Self {
        Full::new(bytes).map_err(never::<E>).boxed()
    }

    fn from_prefix(prefix: Bytes, rest: Self) -> Self {
        PrefixedBody::new(prefix, rest).boxed()
    }
}

impl<E: Send + 'static> ReplayBody for UnsyncBoxBody<Bytes, E> {
    fn from_bytes(bytes: Bytes) -> Self {
        Full::new(bytes).map_err(never::<E>).boxed_unsync()
    }

    fn from_prefix(prefix: Bytes, rest: Self) -> Self {
        PrefixedBody::new(prefix, rest).boxed_unsync()
    }
}

#[cfg(feature = "axum")]
impl ReplayBody for axum_core::body::Body {
    fn from_bytes(bytes: Bytes) -> Self {
        axum_core::body::Body::from(bytes)
    }

    fn from_prefix(prefix: Bytes, rest: Self) -> Self {
        axum_core::body::Body::new(PrefixedBody::new(prefix, rest))
    }
}

fn never<E>(never: Infallible) -> E {
    match never {}
}

pin_project! {
    /// A body that yields `prefix` first, then the rest of an inner body: what a buffer
    /// that gave up at its cap puts back together.
    #[derive(Debug)]
    pub struct PrefixedBody<B> {
        prefix: Option<Bytes>,
        #[pin]
        rest: B,
    }
}

impl<B> PrefixedBody<B> {
    /// `prefix`, then `rest`.
    pub fn new(prefix: Bytes, rest: B) -> Self {
        Self {
            prefix: (!prefix.is_empty()).then_some(prefix),
            rest,
        }
    }
}

impl<B: Body<Data = Bytes>> Body for PrefixedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        if let Some(prefix) = this.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        this.rest.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let extra = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(extra));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(extra));
        }
        hint
    }
}
