//! gRPC integration: refusals become `RESOURCE_EXHAUSTED` (`UNAVAILABLE` when the backend is
//! down and the limiter fails closed), as a trailers-only response, so a tonic server needs
//! no error mapping.
//!
//! A request without a key ([`KeyNotFound`]) becomes `INVALID_ARGUMENT` when the client is at
//! fault (missing metadata) and `INTERNAL` otherwise, as HTTP mode answers 400 and 500.

use crate::error::{KeyNotFound, RateLimited};
use crate::respond::Decorate;

/// gRPC mode adds nothing to decided responses: the wait travels in the refusal's status.
impl<B> Decorate<http::Response<B>> for reliability_core::answer::AsGrpc {}

impl From<RateLimited> for tonic::Status {
    /// `RESOURCE_EXHAUSTED` (`UNAVAILABLE` for a spent upstream quota or a fail-closed
    /// outage), with `retry-after` and `grpc-retry-pushback-ms` when the wait is known.
    fn from(r: RateLimited) -> Self {
        reliability_core::answer::grpc_status(r)
    }
}

impl From<KeyNotFound> for tonic::Status {
    /// `INVALID_ARGUMENT` when the client is at fault, else `INTERNAL`.
    fn from(missing: KeyNotFound) -> Self {
        reliability_core::answer::grpc_status(missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Reason;
    use crate::respond::Respond;
    use http::Response;
    use http::header::RETRY_AFTER;
    use reliability_core::answer::AsGrpc;
    use std::time::Duration;

    fn limited(reason: Reason) -> RateLimited {
        RateLimited::new(reason, "free", Some(Duration::from_millis(1500)), None)
    }

    #[test]
    fn status_codes_and_trailers_only_response() {
        let s = tonic::Status::from(limited(Reason::Exceeded));
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert_eq!(s.metadata().get("retry-after").unwrap(), "2");
        let down = tonic::Status::from(limited(Reason::BackendUnavailable));
        assert_eq!(down.code(), tonic::Code::Unavailable);
        let res: Response<String> =
            Respond::<Response<String>, ()>::rejected(&AsGrpc, limited(Reason::Exceeded)).unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["grpc-status"], "8");
        assert_eq!(res.headers()["retry-after"], "2");
        let status = tonic::Status::from_header_map(res.headers()).unwrap();
        assert!(
            status.message().starts_with("rate limited by `free`"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn missing_keys_are_invalid_argument_or_internal() {
        let client = KeyNotFound::client("the request has no usable `x-api-key` header");
        let server = KeyNotFound::server("no peer");
        assert_eq!(
            tonic::Status::from(client.clone()).code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            tonic::Status::from(server.clone()).code(),
            tonic::Code::Internal
        );
        let res: Response<String> =
            Respond::<Response<String>, ()>::key_not_found(&AsGrpc, client).unwrap();
        assert_eq!(res.headers()["grpc-status"], "3");
        assert!(res.headers().get(RETRY_AFTER).is_none());
        let status = tonic::Status::from_header_map(res.headers()).unwrap();
        assert!(
            status.message().contains("`x-api-key`"),
            "{}",
            status.message()
        );
        let res: Response<String> =
            Respond::<Response<String>, ()>::key_not_found(&AsGrpc, server).unwrap();
        assert_eq!(res.headers()["grpc-status"], "13");
    }
}
