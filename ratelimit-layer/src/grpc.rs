//! gRPC integration: refusals become `RESOURCE_EXHAUSTED` (`UNAVAILABLE` when the backend is
//! down and the limiter fails closed), as a trailers-only response, so a tonic server needs
//! no error mapping.

use http::header::{HeaderValue, RETRY_AFTER};
use http::{HeaderMap, Response};

use crate::error::{RateLimited, Reason};
use crate::service::Respond;

const RESOURCE_EXHAUSTED: &str = "8";
const UNAVAILABLE: &str = "14";

/// Server mode for gRPC (tonic): see the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcResponse;

fn status_headers(headers: &mut HeaderMap, rejection: &RateLimited) {
    let code = match rejection.reason {
        Reason::BackendUnavailable => UNAVAILABLE,
        _ => RESOURCE_EXHAUSTED,
    };
    headers.insert("content-type", HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from_static(code));
    // grpc-message is percent-encoded text; ours is plain ASCII without `%` from a
    // validated policy name, so only spaces and separators need care.
    let message: String = rejection
        .to_string()
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
    if let Some(wait) = rejection.retry_after {
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from(wait.as_micros().div_ceil(1_000_000).max(1) as u64),
        );
    }
}

impl<B: Default, E> Respond<Response<B>, E> for GrpcResponse {
    type Error = E;

    fn rejected(&self, rejection: RateLimited) -> Result<Response<B>, E> {
        let mut res = Response::new(B::default());
        status_headers(res.headers_mut(), &rejection);
        Ok(res)
    }

    fn inner_error(&self, error: E) -> E {
        error
    }
}

impl From<RateLimited> for tonic::Status {
    fn from(r: RateLimited) -> Self {
        let mut status = match r.reason {
            Reason::BackendUnavailable => tonic::Status::unavailable(r.to_string()),
            _ => tonic::Status::resource_exhausted(r.to_string()),
        };
        if let Some(wait) = r.retry_after
            && let Ok(v) = wait
                .as_micros()
                .div_ceil(1_000_000)
                .max(1)
                .to_string()
                .parse()
        {
            status.metadata_mut().insert("retry-after", v);
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limited(reason: Reason) -> RateLimited {
        RateLimited {
            retry_after: Some(Duration::from_millis(1500)),
            reason,
            policy: "free".into(),
            decision: None,
        }
    }

    #[test]
    fn status_codes_and_trailers_only_response() {
        let s = tonic::Status::from(limited(Reason::Exceeded));
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert_eq!(s.metadata().get("retry-after").unwrap(), "2");
        let down = tonic::Status::from(limited(Reason::BackendUnavailable));
        assert_eq!(down.code(), tonic::Code::Unavailable);
        let res: Response<String> =
            Respond::<Response<String>, ()>::rejected(&GrpcResponse, limited(Reason::Exceeded))
                .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["grpc-status"], "8");
        assert_eq!(res.headers()["retry-after"], "2");
        let message = res.headers()["grpc-message"].to_str().unwrap();
        assert!(
            message.starts_with("rate%20limited%20by%20`free`"),
            "{message}"
        );
    }
}
