//! tonic mode: a refused call answers gRPC `RESOURCE_EXHAUSTED` (a trailers-only
//! response with `grpc-retry-pushback-ms`), on the server or the client side of a
//! channel.
//!
//! Use [`ConcurrencyLimitBuilder::grpc`](crate::ConcurrencyLimitBuilder::grpc); the answer
//! itself is [`reliability_core::answer::AsGrpc`], built from the one failure table. In
//! generic code, a [`BulkheadFull`] converts to the same `tonic::Status`, its source kept
//! (so a retry layer reads "do not retry").

use crate::error::BulkheadFull;

impl From<BulkheadFull> for tonic::Status {
    fn from(full: BulkheadFull) -> Self {
        reliability_core::answer::grpc_status(full)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::Priority;
    use crate::error::{BulkheadFull, Rejection};

    #[test]
    fn resource_exhausted_with_pushback() {
        let full = BulkheadFull::new(
            "a".into(),
            Rejection::LimitReached,
            Priority::Normal,
            4,
            Duration::from_millis(250),
        );
        let status = tonic::Status::from(full);
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            status.metadata().get("grpc-retry-pushback-ms").unwrap(),
            "250"
        );
        assert!(reliability_core::error::is_do_not_retry(&status));
    }
}
