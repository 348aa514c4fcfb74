//! HTTP services: `SlaLayer::new(m).http()` counts 5xx, 429 and 408 as failures, other answers as
//! successes, and passes responses through unchanged.
#![cfg(feature = "http")]

use std::sync::Arc;

use http::{Response, StatusCode};
use reliability_core::clock::TokioClock;
use sla_layer::{SlaLayer, SlaMonitor};
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};

#[tokio::test(start_paused = true)]
async fn http_statuses_are_classified() {
    let m = SlaMonitor::builder("api")
        .clock(Arc::new(TokioClock))
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(SlaLayer::new(m.clone()).http())
        .service(service_fn(|code: u16| async move {
            Ok::<_, BoxError>(Response::builder().status(code).body(()).unwrap())
        }));
    for code in [200, 204, 404, 503, 429, 500] {
        let res = svc.clone().oneshot(code).await.unwrap();
        assert_eq!(res.status(), StatusCode::from_u16(code).unwrap());
    }
    let r = m.report();
    assert_eq!((r.totals.successes, r.totals.failures), (3, 3));
    assert_eq!(m.consecutive_failures(), 3);
}
