//! A load driver for the example server: `N` concurrent clients (one connection each)
//! send GET requests for a duration or a number of requests each, then the driver prints
//! the requests sent, the count of each status, transport errors, latency percentiles and
//! the throughput (as text, or one JSON object with `--json`).
//!
//! ```text
//! cargo run -p examples --bin server &
//! cargo run --release -p examples --bin load -- --clients 1000 --duration 10s
//! cargo run -p examples --bin load -- --clients 50 --requests 20 \
//!     --key demo-enterprise-key --key "" --json
//! ```
//!
//! Requests cycle through the `--path`s (default: the server's three routes) and the
//! `--key`s (sent as `x-api-key`; an empty key sends none, i.e. anonymous).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;

const USAGE: &str = "usage: load [--url http://127.0.0.1:3000] [--clients 100] \
     [--duration 10s] [--requests N] [--timeout 10s] [--key KEY]... [--path PATH]... [--json]";

/// The default paths: one per route of the server.
const PATHS: [&str; 3] = [
    "/api/cex/orderbook/BTC-USDT",
    "/api/dex/quote/ETH-USDC",
    "/api/social/search?q=rust",
];

#[derive(Debug)]
struct Options {
    url: String,
    clients: usize,
    duration: Duration,
    requests: Option<u64>,
    timeout: Duration,
    keys: Vec<String>,
    paths: Vec<String>,
    json: bool,
}

fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let mut o = Options {
        url: "http://127.0.0.1:3000".to_owned(),
        clients: 100,
        duration: Duration::from_secs(10),
        requests: None,
        timeout: Duration::from_secs(10),
        keys: Vec::new(),
        paths: Vec::new(),
        json: false,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value\n{USAGE}"));
        let duration = |v: String| humantime::parse_duration(&v).map_err(|e| format!("{v}: {e}"));
        match arg.as_str() {
            "--url" => o.url = value()?.trim_end_matches('/').to_owned(),
            "--clients" => o.clients = value()?.parse().map_err(|e| format!("--clients: {e}"))?,
            "--duration" => o.duration = duration(value()?)?,
            "--requests" => {
                o.requests = Some(value()?.parse().map_err(|e| format!("--requests: {e}"))?);
            }
            "--timeout" => o.timeout = duration(value()?)?,
            "--key" => o.keys.push(value()?),
            "--path" => o.paths.push(value()?),
            "--json" => o.json = true,
            _ => return Err(USAGE.to_owned()),
        }
    }
    if o.clients == 0 || o.clients > 1_000_000 {
        return Err("--clients must be 1 to 1000000".to_owned());
    }
    if o.requests == Some(0) {
        return Err("--requests must be at least 1".to_owned());
    }
    if o.keys.is_empty() {
        o.keys.push(String::new());
    }
    if o.paths.is_empty() {
        o.paths = PATHS.iter().map(|p| (*p).to_owned()).collect();
    }
    Ok(o)
}

/// What one client saw.
#[derive(Default)]
struct Tally {
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<String, u64>,
    latencies_us: Vec<u64>,
}

async fn client(o: &Options, id: usize, deadline: Instant) -> Tally {
    let http = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1)
        .build_http::<Empty<Bytes>>();
    let mut tally = Tally::default();
    let mut n = 0u64;
    while o.requests.is_none_or(|r| n < r) && Instant::now() < deadline {
        let i = id + n as usize;
        let key = &o.keys[i % o.keys.len()];
        let mut req = http::Request::get(format!("{}{}", o.url, o.paths[i % o.paths.len()]));
        if !key.is_empty() {
            req = req.header("x-api-key", key.as_str());
        }
        let req = match req.body(Empty::new()) {
            Ok(req) => req,
            Err(e) => {
                *tally.errors.entry(format!("request: {e}")).or_default() += 1;
                break;
            }
        };
        let began = Instant::now();
        let answer = tokio::time::timeout(o.timeout, async {
            let res = http.request(req).await.map_err(|e| format!("send: {e}"))?;
            let status = res.status().as_u16();
            res.into_body()
                .collect()
                .await
                .map_err(|e| format!("body: {e}"))?;
            Ok::<_, String>(status)
        })
        .await
        .unwrap_or_else(|_| Err("timeout".to_owned()));
        match answer {
            Ok(status) => {
                *tally.statuses.entry(status).or_default() += 1;
                tally
                    .latencies_us
                    .push(u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX));
            }
            Err(e) => *tally.errors.entry(e).or_default() += 1,
        }
        n += 1;
    }
    tally
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    let o = match parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("load: {e}");
            std::process::exit(2);
        }
    };
    let o: &'static Options = Box::leak(Box::new(o));
    let began = Instant::now();
    let deadline = began + o.duration;
    let tasks: Vec<_> = (0..o.clients)
        .map(|id| tokio::spawn(client(o, id, deadline)))
        .collect();
    let mut total = Tally::default();
    for task in tasks {
        let tally = task.await.unwrap_or_else(|e| Tally {
            errors: BTreeMap::from([(format!("client task: {e}"), 1)]),
            ..Tally::default()
        });
        for (status, n) in tally.statuses {
            *total.statuses.entry(status).or_default() += n;
        }
        for (error, n) in tally.errors {
            *total.errors.entry(error).or_default() += n;
        }
        total.latencies_us.extend(tally.latencies_us);
    }
    let elapsed = began.elapsed().as_secs_f64();
    total.latencies_us.sort_unstable();
    let answered = total.latencies_us.len() as u64;
    let errors: u64 = total.errors.values().sum();
    let lat = &total.latencies_us;
    let max_ms = lat.last().map_or(0.0, |m| *m as f64 / 1000.0);
    let report = json!({
        "clients": o.clients,
        "requests": answered + errors,
        "answered": answered,
        "errors": errors,
        "statuses": total.statuses.iter().map(|(s, n)| (s.to_string(), n)).collect::<BTreeMap<_, _>>(),
        "error_kinds": total.errors,
        "elapsed_s": elapsed,
        "throughput_rps": answered as f64 / elapsed.max(1e-9),
        "p50_ms": percentile(lat, 50.0),
        "p95_ms": percentile(lat, 95.0),
        "p99_ms": percentile(lat, 99.0),
        "max_ms": max_ms,
    });
    if o.json {
        println!("{report}");
    } else {
        println!("clients     {}", o.clients);
        println!(
            "requests    {} ({answered} answered, {errors} errors)",
            answered + errors
        );
        println!("elapsed     {elapsed:.2} s");
        println!(
            "throughput  {:.0} req/s",
            report["throughput_rps"].as_f64().unwrap_or(0.0)
        );
        for (status, n) in &total.statuses {
            println!("status {status}  {n}");
        }
        for (error, n) in &total.errors {
            println!("error       {n} × {error}");
        }
        println!(
            "latency ms  p50 {:.2}  p95 {:.2}  p99 {:.2}  max {max_ms:.2}",
            percentile(lat, 50.0),
            percentile(lat, 95.0),
            percentile(lat, 99.0)
        );
    }
    if errors > 0 {
        std::process::exit(1);
    }
}
