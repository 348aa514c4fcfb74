//! `--bin client` as a user runs it: one request through the CEX preset against a real
//! axum server that answers 503 to the first call of each request; the `--json` report
//! says how many attempts the stack made.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::StatusCode;

/// Per `METHOD path`: the `Idempotency-Key` of every call (empty when absent).
type Seen = Arc<Mutex<HashMap<String, Vec<String>>>>;

async fn flaky_once(State(seen): State<Seen>, req: Request) -> (StatusCode, String) {
    let key = format!("{} {}", req.method(), req.uri().path());
    let idem = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let n = {
        let mut seen = seen.lock().unwrap();
        let calls = seen.entry(key.clone()).or_default();
        calls.push(idem);
        calls.len()
    };
    if n == 1 {
        (StatusCode::SERVICE_UNAVAILABLE, "try again".into())
    } else {
        (StatusCode::OK, format!("{key} #{n}"))
    }
}

async fn serve(seen: Seen) -> SocketAddr {
    let app = axum::Router::new().fallback(flaky_once).with_state(seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Runs the client binary (off the runtime's threads) and parses its `--json` report.
async fn client(args: Vec<String>) -> serde_json::Value {
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_client"))
            .args(&args)
            .arg("--json")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn args(addr: SocketAddr, method: &str, path: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["--preset", "cex", "--method", method, "--url"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.push(format!("http://{addr}{path}"));
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_retried_post_not_post_with_key_retried_with_the_same_key() {
    let seen = Seen::default();
    let addr = serve(seen.clone()).await;
    let calls = |k: &str| seen.lock().unwrap().get(k).cloned().unwrap_or_default();

    let get = client(args(addr, "GET", "/book", &[])).await;
    assert_eq!(get["status"], 200, "{get}");
    assert_eq!(get["attempts"], 2, "{get}");
    assert_eq!(get["body"], "GET /book #2");
    assert_eq!(calls("GET /book").len(), 2);

    let post = client(args(addr, "POST", "/order", &["--body", "{\"qty\":1}"])).await;
    assert_eq!(post["status"], 503, "{post}");
    assert_eq!(post["attempts"], 1, "{post}");
    assert_eq!(calls("POST /order").len(), 1, "an order is sent once");

    let keyed = client(args(
        addr,
        "POST",
        "/order-2",
        &["--header", "Idempotency-Key: 4b1d", "--body", "{}"],
    ))
    .await;
    assert_eq!(keyed["status"], 200, "{keyed}");
    assert_eq!(keyed["attempts"], 2, "{keyed}");
    assert_eq!(calls("POST /order-2"), vec!["4b1d", "4b1d"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_clear_error() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_client"))
            .args(args)
            .output()
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("ca.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let out = run(&[
        "--url",
        "https://localhost:1/",
        "--ca-cert",
        garbage.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("certificate"), "{err}");

    let out = run(&["--url", "http://x/", "--header", "no colon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("'Name: value'"));

    // A host nobody listens on: a report with the error, not a hang nor a crash.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let out = run(&["--url", &format!("http://127.0.0.1:{port}/"), "--json"]);
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["status"].is_null(), "{report}");
    assert!(report["error"].is_string(), "{report}");
}
