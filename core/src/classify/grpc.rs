//! gRPC: the status-code table every layer shares and (feature `grpc`)
//! [`GrpcClassifier`] for `tonic::Status` and gRPC responses.

use super::{Classification, RetryClass};
#[cfg(feature = "grpc")]
use super::{Classify, as_dyn_error, classify_error};
#[cfg(feature = "grpc")]
use crate::error::is_do_not_retry;

/// What a gRPC status code (its numeric value) says about the upstream.
///
/// | code | outcome | retry |
/// |---|---|---|
/// | OK | success | no |
/// | CANCELLED | ignore | no |
/// | UNKNOWN, INTERNAL | failure | permanent |
/// | DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, UNAVAILABLE | failure | recoverable |
/// | ABORTED | failure | transient |
/// | DATA_LOSS | failure | critical |
/// | the client's faults (INVALID_ARGUMENT, NOT_FOUND, ...) | success | no |
pub fn classify_grpc_code(code: i32) -> Classification {
    match code {
        0 => Classification::SUCCESS,
        1 => Classification::IGNORE,
        2 | 13 => Classification::failure(RetryClass::Permanent),
        4 | 8 | 14 => Classification::failure(RetryClass::Recoverable),
        10 => Classification::failure(RetryClass::Transient),
        15 => Classification::failure(RetryClass::Critical),
        _ => Classification::SUCCESS,
    }
}

#[cfg(feature = "grpc")]
mod classifier {
    use super::*;

    /// gRPC calls through tonic: the status code decides (see [`classify_grpc_code`]);
    /// a failed call's `Status` is inspected for "do not retry" marks in its source.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct GrpcClassifier;

    impl GrpcClassifier {
        /// Classifies a tonic `Status`, honouring "do not retry" marks in its source.
        pub fn classify_status(status: &tonic::Status) -> Classification {
            if is_do_not_retry(status) {
                return classify_error(status);
            }
            classify_grpc_code(status.code() as i32)
        }
    }

    /// A tonic client or server's answer: a `Status` error, or an `http::Response` whose
    /// `grpc-status` header (a trailers-only answer) carries the code. Other errors
    /// (transport, timeouts) are recoverable failures unless marked "do not retry".
    impl<B, E: 'static> Classify<http::Response<B>, E> for GrpcClassifier {
        fn classify_full(&self, result: Result<&http::Response<B>, &E>) -> Classification {
            match result {
                Ok(res) => res
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map_or(Classification::SUCCESS, classify_grpc_code),
                Err(e) => {
                    let any = e as &dyn std::any::Any;
                    if let Some(status) = any.downcast_ref::<tonic::Status>() {
                        return Self::classify_status(status);
                    }
                    as_dyn_error(e).map_or(
                        Classification::failure(RetryClass::Recoverable),
                        |err| match crate::error::find_in_chain::<tonic::Status>(err) {
                            Some(status) if !is_do_not_retry(err) => Self::classify_status(status),
                            _ => classify_error(err),
                        },
                    )
                }
            }
        }
    }
}

#[cfg(feature = "grpc")]
pub use classifier::GrpcClassifier;
