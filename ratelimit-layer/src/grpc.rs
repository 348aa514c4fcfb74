//! gRPC integration: refusals become `RESOURCE_EXHAUSTED` (`UNAVAILABLE` when the backend is
//! down and the limiter fails closed), as a trailers-only response, so a tonic server needs
//! no error mapping.
//!
//! A request without a key ([`KeyNotFound`]) becomes `INVALID_ARGUMENT` when the client is at
//! fault (missing metadata) and `INTERNAL` otherwise, as HTTP mode answers 400 and 500.

use http::header::{HeaderValue, RETRY_AFTER};
use http::{HeaderMap, Response};

use crate::error::{KeyNotFound, RateLimited};
use crate::respond::Respond;

/// Server mode for gRPC (tonic): refusals and requests without a key become trailers-only
/// responses (see the module docs); the inner error passes through unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct AsGrpc;

fn status_headers(headers: &mut HeaderMap, rejection: &RateLimited) {
    let failure = rejection.failure();
    trailers_only(headers, failure.kind().grpc_code(), &rejection.to_string());
    if let Some(secs) = failure.retry_after_secs() {
        headers.insert(RETRY_AFTER, HeaderValue::from(secs));
    }
}

fn trailers_only(headers: &mut HeaderMap, code: tonic::Code, message: &str) {
    headers.insert("content-type", HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(code as i32));
    // grpc-message is percent-encoded UTF-8: everything but a few safe ASCII bytes is
    // escaped, so any text (a header name in a hint, a policy name) is a valid value.
    let message: String = message
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.;:`".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&message) {
        headers.insert("grpc-message", v);
    }
}

impl<B: Default, E> Respond<Response<B>, E> for AsGrpc {
    type Error = E;

    fn rejected(&self, rejection: RateLimited) -> Result<Response<B>, E> {
        let mut res = Response::new(B::default());
        status_headers(res.headers_mut(), &rejection);
        Ok(res)
    }

    fn key_not_found(&self, missing: KeyNotFound) -> Result<Response<B>, E> {
        let mut res = Response::new(B::default());
        let code = missing.failure().kind().grpc_code();
        trailers_only(res.headers_mut(), code, &missing.to_string());
        Ok(res)
    }

    fn inner_error(&self, error: E) -> E {
        error
    }
}

impl From<RateLimited> for tonic::Status {
    fn from(r: RateLimited) -> Self {
        let failure = *r.failure();
        let mut status = tonic::Status::new(failure.kind().grpc_code(), r.to_string());
        if let Some(secs) = failure.retry_after_secs() {
            status.metadata_mut().insert("retry-after", secs.into());
        }
        status.set_source(std::sync::Arc::new(r));
        status
    }
}

impl From<KeyNotFound> for tonic::Status {
    fn from(missing: KeyNotFound) -> Self {
        let code = missing.failure().kind().grpc_code();
        let mut status = tonic::Status::new(code, missing.to_string());
        status.set_source(std::sync::Arc::new(missing));
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Reason;
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
        let message = res.headers()["grpc-message"].to_str().unwrap();
        assert!(
            message.starts_with("rate%20limited%20by%20`free`"),
            "{message}"
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
        let message = res.headers()["grpc-message"].to_str().unwrap();
        assert!(message.contains("`x-api-key`"), "{message}");
        let res: Response<String> =
            Respond::<Response<String>, ()>::key_not_found(&AsGrpc, server).unwrap();
        assert_eq!(res.headers()["grpc-status"], "13");
    }
}
