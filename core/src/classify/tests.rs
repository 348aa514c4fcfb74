use super::*;
use crate::error::DoNotRetry;

#[derive(Debug)]
struct Wrapped(DoNotRetry);
impl fmt::Display for Wrapped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("circuit open")
    }
}
impl StdError for Wrapped {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.0)
    }
}

#[test]
fn http_status_table() {
    let fails = [408, 429, 500, 502, 503, 504, 599];
    let ok = [200, 201, 204, 301, 304, 400, 401, 403, 404, 409, 422];
    for s in fails {
        assert_eq!(classify_http_status(s).outcome, Outcome::Failure, "{s}");
        assert_eq!(classify_http_status(s).retry, Some(RetryClass::Recoverable));
    }
    for s in ok {
        assert_eq!(classify_http_status(s), Classification::SUCCESS, "{s}");
    }
    for s in [501, 505] {
        assert_eq!(classify_http_status(s).retry, Some(RetryClass::Permanent));
    }
}

#[test]
fn grpc_code_table() {
    let expect = [
        (0, Outcome::Success, None),
        (1, Outcome::Ignore, None),
        (2, Outcome::Failure, Some(RetryClass::Permanent)),
        (3, Outcome::Success, None),
        (4, Outcome::Failure, Some(RetryClass::Recoverable)),
        (5, Outcome::Success, None),
        (6, Outcome::Success, None),
        (7, Outcome::Success, None),
        (8, Outcome::Failure, Some(RetryClass::Recoverable)),
        (9, Outcome::Success, None),
        (10, Outcome::Failure, Some(RetryClass::Transient)),
        (11, Outcome::Success, None),
        (12, Outcome::Success, None),
        (13, Outcome::Failure, Some(RetryClass::Permanent)),
        (14, Outcome::Failure, Some(RetryClass::Recoverable)),
        (15, Outcome::Failure, Some(RetryClass::Critical)),
        (16, Outcome::Success, None),
    ];
    for (code, outcome, retry) in expect {
        let c = classify_grpc_code(code);
        assert_eq!((c.outcome, c.retry), (outcome, retry), "code {code}");
    }
}

#[test]
fn tonic_status_classified() {
    let c = GrpcClassifier;
    let unavailable = tonic::Status::unavailable("down");
    let r: Result<&::http::Response<()>, &tonic::Status> = Err(&unavailable);
    assert_eq!(c.classify(r), Outcome::Failure);
    assert_eq!(c.retry_class(r), Some(RetryClass::Recoverable));
    let nf = tonic::Status::not_found("x");
    let r: Result<&::http::Response<()>, &tonic::Status> = Err(&nf);
    assert_eq!(c.classify(r), Outcome::Success);
    let boxed: Box<dyn StdError + Send + Sync> = Box::new(tonic::Status::data_loss("gone"));
    let r: Result<&::http::Response<()>, _> = Err(&boxed);
    assert_eq!(c.retry_class(r), Some(RetryClass::Critical));
}

#[test]
fn grpc_header_classified() {
    let res = ::http::Response::builder()
        .header("grpc-status", "14")
        .body(())
        .unwrap();
    let r: Result<_, &std::io::Error> = Ok(&res);
    assert_eq!(GrpcClassifier.classify(r), Outcome::Failure);
}

#[test]
fn do_not_retry_marker_found_in_chain() {
    // A concrete error type outside `as_dyn_error`'s list is a plain failure.
    let err = Wrapped(DoNotRetry);
    let r: Result<&(), &Wrapped> = Err(&err);
    assert_eq!(
        ErrorClassifier.retry_class(r),
        Some(RetryClass::Recoverable)
    );

    let boxed: Box<dyn StdError + Send + Sync> = Box::new(Wrapped(DoNotRetry));
    let r: Result<&(), _> = Err(&boxed);
    assert_eq!(ErrorClassifier.retry_class(r), Some(RetryClass::Permanent));
    assert_eq!(ErrorClassifier.classify(r), Outcome::Ignore);

    let plain: Box<dyn StdError + Send + Sync> = "boom".into();
    let r: Result<&(), _> = Err(&plain);
    assert_eq!(
        ErrorClassifier.retry_class(r),
        Some(RetryClass::Recoverable)
    );
}

#[test]
fn http_classifier_reads_retry_after_and_429_switch() {
    let res = ::http::Response::builder()
        .status(503)
        .header("retry-after", "7")
        .body(())
        .unwrap();
    let c = HttpClassifier::new().classify_full(Ok::<_, &std::io::Error>(&res));
    assert_eq!(c.outcome, Outcome::Failure);
    assert_eq!(c.retry_after, Some(Duration::from_secs(7)));

    let res = ::http::Response::builder().status(429).body(()).unwrap();
    let c = HttpClassifier::new().too_many_requests_as(Outcome::Ignore);
    let full = c.classify_full(Ok::<_, &std::io::Error>(&res));
    assert_eq!(full.outcome, Outcome::Ignore);
    assert_eq!(full.retry, Some(RetryClass::Recoverable));

    let res = ::http::Response::builder().status(404).body(()).unwrap();
    assert_eq!(
        HttpClassifier::new().classify(Ok::<_, &std::io::Error>(&res)),
        Outcome::Success
    );

    // Our own layers' answers are the stack's, not the upstream's.
    use crate::failure::{Failure, FailureKind};
    for kind in [FailureKind::CallerLimited, FailureKind::CircuitOpen] {
        let res: ::http::Response<()> = Failure::new(kind).to_http_response();
        let full = HttpClassifier::new().classify_full(Ok::<_, &std::io::Error>(&res));
        assert_eq!(full.outcome, Outcome::Ignore, "{kind:?}");
        assert_eq!(full.retry, Some(RetryClass::Permanent), "{kind:?}");
    }
    let res: ::http::Response<()> = Failure::new(FailureKind::TimedOut).to_http_response();
    let full = HttpClassifier::new().classify_full(Ok::<_, &std::io::Error>(&res));
    assert_eq!(full.outcome, Outcome::Failure);
}

#[tokio::test(start_paused = true)]
async fn timeouts_are_recoverable_failures() {
    let elapsed = tokio::time::timeout(Duration::from_millis(1), std::future::pending::<()>())
        .await
        .unwrap_err();
    let boxed: Box<dyn StdError + Send + Sync> = Box::new(elapsed);
    let r: Result<&::http::Response<()>, _> = Err(&boxed);
    let c = HttpClassifier::new().classify_full(r);
    assert_eq!(c.outcome, Outcome::Failure);
    assert_eq!(c.retry, Some(RetryClass::Recoverable));
    assert!(is_timeout(&*boxed));
}

#[test]
fn retry_after_forms_and_hostile_values() {
    let now = std::time::UNIX_EPOCH + Duration::from_secs(784_111_777);
    assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
    assert_eq!(parse_retry_after(" 5 ", now), Some(Duration::from_secs(5)));
    assert_eq!(
        parse_retry_after("99999999999999999999999", now),
        Some(MAX_RETRY_AFTER)
    );
    assert_eq!(parse_retry_after("-1", now), None);
    assert_eq!(parse_retry_after("1.5", now), None);
    assert_eq!(parse_retry_after("", now), None);
    assert_eq!(parse_retry_after(&"9".repeat(10_000), now), None);
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
        Some(Duration::ZERO)
    );
    assert_eq!(
        parse_retry_after("Sat, 05 Nov 1994 08:49:37 GMT", now),
        None
    );
    assert_eq!(
        parse_retry_after("Sun, 06 Foo 1994 08:49:37 GMT", now),
        None
    );
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 1994 25:49:37 GMT", now),
        None
    );
    assert_eq!(
        parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now),
        Some(MAX_RETRY_AFTER)
    );
    // The obsolete forms recipients must still accept (RFC 9110 §5.6.7).
    let ten = Some(Duration::from_secs(10));
    assert_eq!(
        parse_retry_after("Sunday, 06-Nov-94 08:49:47 GMT", now),
        ten
    );
    assert_eq!(parse_retry_after("Sun Nov  6 08:49:47 1994", now), ten);
    assert_eq!(
        parse_retry_after("Sunday, 06-Nov-94 08:49:27 GMT", now),
        None
    );
    assert_eq!(parse_retry_after("Sun Nov  6 99:49:47 1994", now), None);
    assert_eq!(parse_retry_after("\u{0}\u{ff}garbage", now), None);
}
