//! Retries of tonic client calls.
//!
//! A tonic client sends `http::Request<tonic::body::Body>` through its channel; wrap the
//! channel in [`GrpcRetryLayer`] and hand the result to `tonic::client::Grpc` (or a
//! generated client's `new`). Every gRPC call is a POST, so the gRPC policy treats calls as
//! replayable: only put it in front of methods that are safe to repeat, as gRPC's own
//! retry policy asks.
//!
//! Statuses come from reliability-core's `GrpcClassifier`: UNAVAILABLE, RESOURCE_EXHAUSTED
//! and DEADLINE_EXCEEDED are retried with backoff, ABORTED once at once, DATA_LOSS is
//! critical, the rest are returned. The delay a server asks for is honoured (clamped like
//! `Retry-After`): the `grpc-retry-pushback-ms` header of gRFC A6 (a negative value means
//! "do not retry") and a `google.rpc.RetryInfo` in `grpc-status-details-bin`.
//!
//! Only trailers-only answers (a status without a message, which is how servers answer
//! errors) can be judged: a status sent in trailers after a message arrives after the
//! layer has handed the response on.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Response};
use reliability_core::classify::{
    Classification, Classify, GrpcClassifier, MAX_RETRY_AFTER, RetryClass,
};
use reliability_core::error::ConfigError;

use crate::RetryConfig;
use crate::http::{Http, HttpPolicy, HttpRetryLayer, PrefixedBody, ReplayBody};
use crate::layer::RetryBuilder;

impl ReplayBody for tonic::body::Body {
    fn from_bytes(bytes: Bytes) -> Self {
        tonic::body::Body::new(http_body_util::Full::new(bytes))
    }

    fn from_prefix(prefix: Bytes, rest: Self) -> Self {
        tonic::body::Body::new(PrefixedBody::new(prefix, rest))
    }
}

/// `GrpcClassifier` plus the server's requested delay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GrpcRetryClassifier;

impl<B, E: 'static> Classify<Response<B>, E> for GrpcRetryClassifier {
    fn classify_full(&self, result: Result<&Response<B>, &E>) -> Classification {
        let mut verdict = GrpcClassifier.classify_full(result);
        if verdict.retry.is_some()
            && let Ok(res) = result
        {
            match pushback(res.headers()) {
                Pushback::After(delay) => verdict.retry_after = Some(delay),
                Pushback::Stop => verdict.retry = Some(RetryClass::Permanent),
                Pushback::None => verdict.retry_after = retry_info(res.headers()),
            }
        }
        verdict
    }
}

enum Pushback {
    None,
    After(Duration),
    Stop,
}

/// gRFC A6: `grpc-retry-pushback-ms` is a non-negative integer; a negative one asks the
/// client not to retry. Unreadable values are ignored.
fn pushback(headers: &HeaderMap) -> Pushback {
    let Some(value) = headers
        .get("grpc-retry-pushback-ms")
        .and_then(|v| v.to_str().ok())
    else {
        return Pushback::None;
    };
    let value = value.trim();
    if value.len() > 20 {
        return Pushback::None;
    }
    match value.parse::<i64>() {
        Ok(ms) if ms < 0 => Pushback::Stop,
        Ok(ms) => Pushback::After(Duration::from_millis(ms.unsigned_abs()).min(MAX_RETRY_AFTER)),
        Err(_) => Pushback::None,
    }
}

#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<ProtoAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ProtoAny {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// The `google.rpc.RetryInfo` delay of a trailers-only error answer, if any.
fn retry_info(headers: &HeaderMap) -> Option<Duration> {
    if !headers.contains_key("grpc-status-details-bin") {
        return None;
    }
    let status = tonic::Status::from_header_map(headers)?;
    retry_info_from_details(status.details())
}

fn retry_info_from_details(details: &[u8]) -> Option<Duration> {
    use prost::Message;
    let status = RpcStatus::decode(details).ok()?;
    let any = status
        .details
        .iter()
        .find(|d| d.type_url == RETRY_INFO_TYPE)?;
    let delay = RetryInfo::decode(any.value.as_slice()).ok()?.retry_delay?;
    let seconds = u64::try_from(delay.seconds).ok()?;
    let nanos = u32::try_from(delay.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)?;
    Some(Duration::new(seconds, nanos).min(MAX_RETRY_AFTER))
}

/// The gRPC policy: [`HttpPolicy`] with [`GrpcRetryClassifier`], every call replayable.
pub type GrpcPolicy = HttpPolicy<GrpcRetryClassifier>;

/// A retry layer for tonic channels.
pub type GrpcRetryLayer = HttpRetryLayer<GrpcRetryClassifier>;

impl GrpcRetryLayer {
    /// A builder with the defaults of [`RetryLayer::builder`](crate::RetryLayer::builder),
    /// the gRPC classifier and `retry_non_idempotent` on (every gRPC call is a POST); its
    /// `build` makes a [`GrpcRetryLayer`], body buffer included.
    ///
    /// Turn `retry_non_idempotent` off to retry only the calls marked safe, with an
    /// `idempotency-key` metadata entry or the
    /// [`RetryNonIdempotent`](crate::http::RetryNonIdempotent) extension on the
    /// `tonic::Request` (tonic carries both into the HTTP request).
    pub fn grpc_builder() -> RetryBuilder<GrpcPolicy, Http> {
        RetryBuilder::in_mode(HttpPolicy::new(GrpcRetryClassifier)).retry_non_idempotent(true)
    }

    /// A layer from configuration (`retry_non_idempotent` is forced on: gRPC calls are
    /// POSTs).
    pub fn from_grpc_config(config: &RetryConfig) -> Result<Self, ConfigError> {
        Self::grpc_builder()
            .config(config.clone())
            .retry_non_idempotent(true)
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn retry_info_status(seconds: i64, nanos: i32) -> Vec<u8> {
        let info = RetryInfo {
            retry_delay: Some(ProtoDuration { seconds, nanos }),
        };
        RpcStatus {
            code: 8,
            message: "slow down".into(),
            details: vec![ProtoAny {
                type_url: RETRY_INFO_TYPE.into(),
                value: info.encode_to_vec(),
            }],
        }
        .encode_to_vec()
    }

    #[test]
    fn retry_info_is_read_and_bounded() {
        assert_eq!(
            retry_info_from_details(&retry_info_status(2, 500_000_000)),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(
            retry_info_from_details(&retry_info_status(i64::MAX, 0)),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(retry_info_from_details(&retry_info_status(-5, 0)), None);
        assert_eq!(retry_info_from_details(&retry_info_status(1, -1)), None);
        assert_eq!(retry_info_from_details(b"\xff\xff garbage"), None);
    }

    #[test]
    fn pushback_header_rules() {
        let mut h = HeaderMap::new();
        assert!(matches!(pushback(&h), Pushback::None));
        h.insert("grpc-retry-pushback-ms", "1500".parse().unwrap());
        assert!(matches!(pushback(&h), Pushback::After(d) if d == Duration::from_millis(1500)));
        h.insert("grpc-retry-pushback-ms", "-1".parse().unwrap());
        assert!(matches!(pushback(&h), Pushback::Stop));
        h.insert("grpc-retry-pushback-ms", "soon".parse().unwrap());
        assert!(matches!(pushback(&h), Pushback::None));
    }

    #[test]
    fn status_headers_classified() {
        let res = Response::builder()
            .header("grpc-status", "8")
            .header("grpc-retry-pushback-ms", "300")
            .body(())
            .unwrap();
        let c = GrpcRetryClassifier.classify_full(Ok::<_, &std::io::Error>(&res));
        assert_eq!(c.retry, Some(RetryClass::Recoverable));
        assert_eq!(c.retry_after, Some(Duration::from_millis(300)));
        let ok = Response::builder()
            .header("grpc-status", "0")
            .body(())
            .unwrap();
        let c = GrpcRetryClassifier.classify_full(Ok::<_, &std::io::Error>(&ok));
        assert_eq!(c.retry, None);
    }
}
