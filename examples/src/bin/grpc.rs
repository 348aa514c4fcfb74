//! A tonic service and its client with the reliability layers stacked on both sides.
//!
//! The service is `prices.Prices` from `examples/proto/prices.proto`, compiled at build
//! time; the server ([`examples::grpc::service`]) answers from the simulated upstream,
//! behind
//!
//! - a rate limit keyed by the `x-api-key` metadata (else the peer's IP), answering
//!   `RESOURCE_EXHAUSTED` (with `retry-after`) when the quota is spent;
//! - an SLA monitor classifying gRPC statuses;
//! - a circuit breaker answering `UNAVAILABLE` (with `grpc-retry-pushback-ms`) while open;
//!
//! and serves gRPC reflection beside them. The client ([`examples::grpc::client`]) wraps its
//! channel in an SLA monitor, gRPC retries (UNAVAILABLE and RESOURCE_EXHAUSTED, waiting as
//! long as an open server breaker's pushback asks) and its own breaker, which does not
//! count a spent quota against the server.
//!
//! Without a subcommand, a scripted session runs against an in-process server: steady
//! traffic, a burst from a noisy client that spends its quota, an upstream outage that
//! opens the breakers, and the recovery. The summary shows what each side saw. With
//! `serve`, the server runs alone until Ctrl-C or SIGTERM, for any gRPC client.
//!
//! ```text
//! cargo run -p examples --bin grpc
//! cargo run -p examples --bin grpc -- --requests 100 --seed 7
//! cargo run -p examples --bin grpc -- --addr 127.0.0.1:50051 --json
//! cargo run -p examples --bin grpc -- serve --addr 127.0.0.1:50051 [--quota 5] [--outage]
//! grpcurl -plaintext 127.0.0.1:50051 list
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use breaker_layer::Breaker;
use examples::grpc::proto::PriceReply;
use examples::grpc::{PriceClient, ServerSettings, bind, start_server};
use examples::server::stop_signal;
use examples::upstream::{FaultSettings, Phase, Source, Upstream};
use serde_json::{Value, json};
use sla_layer::SlaMonitor;
use tonic::{Code, Status};
use tower::BoxError;

/// Final statuses of the calls a client made.
#[derive(Debug, Default)]
struct Tally {
    calls: AtomicU64,
    ok: AtomicU64,
    unavailable: AtomicU64,
    resource_exhausted: AtomicU64,
    other: AtomicU64,
}

impl Tally {
    fn record(&self, result: &Result<PriceReply, Status>) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let slot = match result {
            Ok(_) => &self.ok,
            Err(s) if s.code() == Code::Unavailable => &self.unavailable,
            Err(s) if s.code() == Code::ResourceExhausted => &self.resource_exhausted,
            Err(_) => &self.other,
        };
        slot.fetch_add(1, Ordering::Relaxed);
    }

    fn json(&self) -> Value {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        json!({
            "calls": n(&self.calls),
            "ok": n(&self.ok),
            "unavailable": n(&self.unavailable),
            "resource_exhausted": n(&self.resource_exhausted),
            "other": n(&self.other),
        })
    }
}

fn sla_json(monitor: &SlaMonitor) -> Value {
    let report = monitor.report();
    let w = report.count_window;
    let ms = |d: Duration| (d.as_secs_f64() * 1e4).round() / 10.0;
    json!({
        "status": report.status.as_str(),
        "calls": report.totals.successes + report.totals.failures,
        "failures": report.totals.failures,
        "p50_ms": ms(w.p50),
        "p95_ms": ms(w.p95),
        "p99_ms": ms(w.p99),
    })
}

fn breaker_json(breaker: &Breaker) -> Value {
    let s = breaker.snapshot();
    json!({
        "state": s.state,
        "rejections": s.rejections,
        "state_changes": s.state_changes,
    })
}

/// The upstream's faults in `phase`, with latencies shortened so a run takes seconds.
fn faults(phase: Phase) -> FaultSettings {
    let f = phase.faults();
    FaultSettings {
        latency_factor: f.latency_factor * 0.05,
        ..f
    }
}

/// The scripted session's command line.
#[derive(Debug)]
struct DemoArgs {
    addr: SocketAddr,
    requests: u32,
    seed: u64,
    json: bool,
}

/// `grpc serve`'s command line.
#[derive(Debug)]
struct ServeArgs {
    addr: SocketAddr,
    seed: u64,
    quota_per_second: u64,
    error_rate: f64,
    outage: bool,
}

#[derive(Debug)]
enum Args {
    Demo(DemoArgs),
    Serve(ServeArgs),
}

const USAGE: &str = "usage: grpc [--addr 127.0.0.1:0] [--requests 200] [--seed N] [--json]
       grpc serve [--addr 127.0.0.1:50051] [--quota 20] [--error-rate 0.01] [--outage] [--seed N]";

fn value<T: std::str::FromStr>(
    it: &mut impl Iterator<Item = String>,
    flag: &str,
    what: &str,
) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    let v = it.next().ok_or_else(|| format!("{flag} needs {what}"))?;
    v.parse().map_err(|e| format!("{flag}: {e}"))
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut it = args.into_iter().peekable();
    if it.peek().is_some_and(|a| a == "serve") {
        it.next();
        return parse_serve(it).map(Args::Serve);
    }
    let mut args = DemoArgs {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        requests: 200,
        seed: 42,
        json: false,
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--addr" => args.addr = value(&mut it, "--addr", "host:port")?,
            "--requests" => {
                args.requests = value(&mut it, "--requests", "a number")?;
                if !(20..=100_000).contains(&args.requests) {
                    return Err("--requests: 20 to 100000".into());
                }
            }
            "--seed" => args.seed = value(&mut it, "--seed", "a number")?,
            "--json" => args.json = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(Args::Demo(args))
}

fn parse_serve(mut it: impl Iterator<Item = String>) -> Result<ServeArgs, String> {
    let mut args = ServeArgs {
        addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
        seed: 42,
        quota_per_second: ServerSettings::default().quota_per_second,
        error_rate: Phase::Normal.faults().error_rate,
        outage: false,
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--addr" => args.addr = value(&mut it, "--addr", "host:port")?,
            "--seed" => args.seed = value(&mut it, "--seed", "a number")?,
            "--quota" => {
                args.quota_per_second = value(&mut it, "--quota", "calls per second")?;
                if !(1..=1_000_000).contains(&args.quota_per_second) {
                    return Err("--quota: 1 to 1000000 calls per second".into());
                }
            }
            "--error-rate" => {
                args.error_rate = value(&mut it, "--error-rate", "a share")?;
                if !(0.0..=1.0).contains(&args.error_rate) {
                    return Err("--error-rate: 0 to 1".into());
                }
            }
            "--outage" => args.outage = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(args)
}

/// `grpc serve`: the server alone, over an upstream that fails `error_rate` of its calls
/// (every call with `--outage`), until a stop signal. Calls in flight then finish.
async fn serve(args: &ServeArgs) -> Result<(), BoxError> {
    let upstream = Upstream::new(args.seed);
    upstream.set_faults(FaultSettings {
        error_rate: args.error_rate,
        outage: args.outage,
        ..faults(Phase::Normal)
    });
    let settings = ServerSettings {
        quota_per_second: args.quota_per_second,
        ..ServerSettings::default()
    };
    let (server, serving) = bind(args.addr, upstream.clone(), &settings, stop_signal())?;
    println!(
        "prices server on {addr}: {quota} calls/s per x-api-key (or IP), breaker opens after \
         {failures} failures in a row, reflection on; Ctrl-C stops\n\
         try: grpcurl -plaintext {addr} list",
        addr = server.addr,
        quota = settings.quota_per_second,
        failures = settings.breaker_failures,
    );
    serving.await?;
    let breaker = server.breaker.breaker().snapshot();
    println!(
        "stopped: RESOURCE_EXHAUSTED sent {}, UNAVAILABLE sent {} (breaker open), upstream \
         calls {} (failed {})",
        server.limiter.snapshot().rejected,
        breaker.rejections,
        upstream.calls(Source::Dex),
        upstream.failures(Source::Dex),
    );
    Ok(())
}

/// The scripted session: steady calls paced a few milliseconds apart; at 30 % a noisy
/// client bursts past its quota; from 45 % to 65 % the upstream is down; then it recovers.
async fn run(args: &DemoArgs) -> Result<Value, BoxError> {
    let upstream = Upstream::new(args.seed);
    upstream.set_faults(faults(Phase::Normal));
    let settings = ServerSettings::default();
    let server = start_server(args.addr, upstream.clone(), &settings).await?;
    let say = |line: String| {
        if !args.json {
            println!("{line}");
        }
    };
    say(format!("prices server on {}", server.addr));

    let steady = PriceClient::connect(server.addr, "steady-client", args.seed).await?;
    let noisy =
        PriceClient::connect(server.addr, "noisy-client", args.seed.wrapping_add(1)).await?;
    let (steady_tally, noisy_tally) = (Tally::default(), Tally::default());

    let n = args.requests;
    let burst_at = n * 30 / 100;
    let outage = (n * 45 / 100)..(n * 65 / 100);
    let mut tick = tokio::time::interval(Duration::from_millis(4));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = tokio::time::Instant::now();
    for i in 0..n {
        tick.tick().await;
        if i == burst_at {
            let burst = settings.quota_per_second * 3;
            say(format!(
                "[{i:>4}] burst: noisy-client sends {burst} calls at once (quota {}/s)",
                settings.quota_per_second
            ));
            let calls = (0..burst).map(|_| noisy.get_price("SOL-USDC"));
            for result in futures_util::future::join_all(calls).await {
                noisy_tally.record(&result);
            }
        }
        if i == outage.start {
            say(format!("[{i:>4}] upstream outage begins"));
            upstream.set_faults(faults(Phase::Outage));
        }
        if i == outage.end {
            say(format!("[{i:>4}] upstream recovers"));
            upstream.set_faults(faults(Phase::Recovery));
        }
        let result = steady.get_price("ETH-USDC").await;
        steady_tally.record(&result);
    }

    let (steady_calls, noisy_calls) = (steady_tally.json(), noisy_tally.json());
    let totals = |key: &str| {
        steady_calls[key].as_u64().unwrap_or(0) + noisy_calls[key].as_u64().unwrap_or(0)
    };
    let server_breaker = server.breaker.breaker().snapshot();
    let limits = server.limiter.snapshot();
    Ok(json!({
        "elapsed_ms": started.elapsed().as_millis() as u64,
        "calls": totals("calls"),
        "ok": totals("ok"),
        "unavailable": totals("unavailable"),
        "resource_exhausted": totals("resource_exhausted"),
        "other": totals("other"),
        "client_retries": steady.retry().snapshot().retries
            + noisy.retry().snapshot().retries,
        "clients": {
            "steady-client": {
                "tally": steady_calls,
                "retries": steady.retry().snapshot().retries,
                "breaker": breaker_json(steady.breaker()),
                "sla": sla_json(steady.sla()),
            },
            "noisy-client": {
                "tally": noisy_calls,
                "retries": noisy.retry().snapshot().retries,
                "breaker": breaker_json(noisy.breaker()),
                "sla": sla_json(noisy.sla()),
            },
        },
        "server": {
            "resource_exhausted_sent": limits.rejected,
            "unavailable_sent_by_breaker": server_breaker.rejections,
            "upstream_failures": upstream.failures(Source::Dex),
            "breaker": breaker_json(server.breaker.breaker()),
            "sla": sla_json(&server.sla),
        },
    }))
}

/// A JSON value as a table cell: strings without quotes.
fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn breaker_cell(breaker: &Value) -> Value {
    Value::from(format!(
        "{} ({})",
        cell(&breaker["state"]),
        breaker["state_changes"]
    ))
}

fn print_row(cells: [&Value; 11]) {
    let c = cells.map(cell);
    println!(
        "{:<14} {:>6} {:>6} {:>11} {:>18} {:>7} {:>17} {:>7} {:>7} {:>7}  {}",
        c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10]
    );
}

fn print_summary(s: &Value) {
    println!();
    println!(
        "calls {}  ok {}  unavailable {}  resource_exhausted {}  other {}  client retries {}  ({} ms)",
        s["calls"],
        s["ok"],
        s["unavailable"],
        s["resource_exhausted"],
        s["other"],
        s["client_retries"],
        s["elapsed_ms"]
    );
    println!();
    let dash = Value::from("-");
    let header = [
        "side",
        "calls",
        "ok",
        "unavailable",
        "resource_exhausted",
        "retries",
        "breaker (changes)",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "sla",
    ]
    .map(Value::from);
    print_row(header.each_ref());
    for (name, c) in s["clients"].as_object().into_iter().flatten() {
        let t = &c["tally"];
        print_row([
            &Value::from(name.as_str()),
            &t["calls"],
            &t["ok"],
            &t["unavailable"],
            &t["resource_exhausted"],
            &c["retries"],
            &breaker_cell(&c["breaker"]),
            &c["sla"]["p50_ms"],
            &c["sla"]["p95_ms"],
            &c["sla"]["p99_ms"],
            &c["sla"]["status"],
        ]);
    }
    let srv = &s["server"];
    print_row([
        &Value::from("server (sent)"),
        &srv["sla"]["calls"],
        &dash,
        &srv["unavailable_sent_by_breaker"],
        &srv["resource_exhausted_sent"],
        &dash,
        &breaker_cell(&srv["breaker"]),
        &srv["sla"]["p50_ms"],
        &srv["sla"]["p95_ms"],
        &srv["sla"]["p99_ms"],
        &srv["sla"]["status"],
    ]);
    println!();
    println!(
        "server: RESOURCE_EXHAUSTED sent {} (rate limit), UNAVAILABLE sent {} (breaker open), \
         upstream failures {}, breaker state changes {}",
        srv["resource_exhausted_sent"],
        srv["unavailable_sent_by_breaker"],
        srv["upstream_failures"],
        srv["breaker"]["state_changes"],
    );
}

#[tokio::main]
async fn main() {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let outcome = match &args {
        Args::Serve(serve_args) => serve(serve_args).await,
        Args::Demo(demo) => run(demo).await.map(|summary| {
            if demo.json {
                println!("{summary}");
            } else {
                print_summary(&summary);
            }
        }),
    };
    if let Err(e) = outcome {
        eprintln!("grpc failed: {e}");
        std::process::exit(1);
    }
}
