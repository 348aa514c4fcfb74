//! One request through a preset's reliable HTTP client, over HTTP or HTTPS.
//!
//! ```text
//! cargo run -p examples --bin client -- --preset cex --url https://api.example.com/v1/ticker
//!     [--method POST] [--header 'K: V']... [--body TEXT] [--ca-cert FILE] [--json]
//! ```
//!
//! Prints the status, the body, and what the stack did: attempts, retries, whether the
//! cache answered, and the host's breaker state. With `--json`, one JSON object with
//! `status`, `attempts`, `retries`, `cache`, `breaker`, `body` (or `error`). A `POST` or
//! `PATCH` is sent once unless it carries an `Idempotency-Key` header.

use std::process::ExitCode;

use hyper::body::Bytes;
use reliability::client::HttpClient;
use reliability::config::SourceKind;
use reliability::presets::Preset;
use tower::ServiceExt;

const USAGE: &str = "usage: client --url URL [--preset cex|dex|social] [--method M] \
                     [--header 'K: V']... [--body TEXT] [--ca-cert FILE] [--json]";

struct Args {
    preset: SourceKind,
    url: String,
    method: http::Method,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    body: Bytes,
    ca_cert: Option<String>,
    json: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut preset = SourceKind::Cex;
    let mut url = None;
    let mut method = http::Method::GET;
    let mut headers = Vec::new();
    let mut body = Bytes::new();
    let mut ca_cert = None;
    let mut json = false;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--preset" => {
                preset = match value("--preset")?.as_str() {
                    "cex" => SourceKind::Cex,
                    "dex" => SourceKind::Dex,
                    "social" => SourceKind::Social,
                    other => return Err(format!("--preset: unknown preset {other:?}")),
                }
            }
            "--url" => url = Some(value("--url")?),
            "--method" => {
                method = value("--method")?
                    .parse()
                    .map_err(|e| format!("--method: {e}"))?
            }
            "--header" => {
                let h = value("--header")?;
                let (name, v) = h
                    .split_once(':')
                    .ok_or(format!("--header {h:?}: expected 'Name: value'"))?;
                let name = name
                    .trim()
                    .parse()
                    .map_err(|e| format!("--header name: {e}"))?;
                let v = v
                    .trim()
                    .parse()
                    .map_err(|e| format!("--header value: {e}"))?;
                headers.push((name, v));
            }
            "--body" => body = Bytes::from(value("--body")?),
            "--ca-cert" => ca_cert = Some(value("--ca-cert")?),
            "--json" => json = true,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(Args {
        preset,
        url: url.ok_or(USAGE)?,
        method,
        headers,
        body,
        ca_cert,
        json,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(&args).await {
        Ok(report) => {
            if args.json {
                println!("{report}");
            } else {
                print_text(&report);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("client: {e}");
            ExitCode::from(2)
        }
    }
}

/// Sends the request; a failure of the stack is part of the report, not an `Err`.
async fn run(args: &Args) -> Result<serde_json::Value, String> {
    let mut client = HttpClient::builder();
    if let Some(path) = &args.ca_cert {
        let pem = std::fs::read(path).map_err(|e| format!("--ca-cert {path}: {e}"))?;
        client = client.add_root_certificate(&pem);
    }
    let client = client.build().map_err(|e| e.to_string())?;
    let name = args.preset.as_str();
    let stack = Preset::new(args.preset, name)
        .http_client(client)
        .map_err(|e| e.to_string())?;

    let mut request = http::Request::builder()
        .method(args.method.clone())
        .uri(&args.url);
    for (k, v) in &args.headers {
        request = request.header(k, v);
    }
    let request = request
        .body(args.body.clone())
        .map_err(|e| format!("--url {:?}: {e}", args.url))?;
    let host = request.uri().host().unwrap_or_default().to_owned();

    let result = stack.clone().oneshot(request).await;

    let handles = stack.handles();
    let retry = handles.retry().snapshot();
    let cache = handles.cache().map(|c| c.stats());
    let cache = match cache {
        Some(s) if s.hits + s.stale_revalidate + s.stale_if_error > 0 => "hit",
        Some(s) if s.misses > 0 => "miss",
        _ => "bypass",
    };
    let breaker = handles
        .breaker_registry()
        .and_then(|r| r.get(&host))
        .map_or(serde_json::json!("CLOSED"), |b| {
            serde_json::json!(b.state())
        });
    let mut report = serde_json::json!({
        "preset": name,
        "url": args.url,
        "method": args.method.as_str(),
        "attempts": retry.attempts,
        "retries": retry.retries,
        "cache": cache,
        "breaker": breaker,
    });
    match result {
        Ok(res) => {
            report["status"] = res.status().as_u16().into();
            report["body"] = String::from_utf8_lossy(res.body()).into_owned().into();
        }
        Err(e) => {
            let err = reliability::Error::from(e);
            report["status"] = serde_json::Value::Null;
            report["error"] = err.to_string().into();
            report["error_kind"] = format!("{:?}", err.kind()).into();
        }
    }
    Ok(report)
}

fn print_text(report: &serde_json::Value) {
    match report["status"].as_u64() {
        Some(status) => println!("status:   {status}"),
        None => println!(
            "error:    {} ({})",
            report["error"].as_str().unwrap_or_default(),
            report["error_kind"].as_str().unwrap_or_default()
        ),
    }
    println!(
        "attempts: {} ({} retries)",
        report["attempts"], report["retries"]
    );
    println!("cache:    {}", report["cache"].as_str().unwrap_or_default());
    println!(
        "breaker:  {}",
        report["breaker"].as_str().unwrap_or_default()
    );
    if let Some(body) = report["body"].as_str() {
        println!();
        println!("{body}");
    }
}
