//! The example server: an axum app over a simulated upstream, with the preset stacks,
//! per-API-key rate limits and, when `ADMIN_TOKEN` is set, the admin router and the live
//! dashboard.
//!
//! ```text
//! cargo run -p examples --bin server                      # 127.0.0.1:3000
//! ADMIN_TOKEN=change-me-please cargo run -p examples --bin server -- --addr 127.0.0.1:8080
//! curl -i localhost:3000/api/cex/orderbook/BTC-USDT -H 'x-api-key: demo-pro-key'
//! open http://127.0.0.1:3000/dashboard#token=change-me-please
//! ```
//!
//! `--config FILE` reads another `server.toml`; `--seed N` seeds the upstream;
//! `--redis redis://127.0.0.1:6379` shares the rate limits and the route caches with
//! every other server on that Redis (limits fail open while it is down);
//! `--redis-cluster redis://h1:p1,redis://h2:p2,...` does the same on a Redis Cluster.
//! Either way tier assignments, custom limits, usage statistics and cache clears made
//! through one server's admin router hold for all of them.
//!
//! `--disk DIR` puts a disk tier under each route cache (`DIR/<route>.redb`): a restart
//! with the same directory starts warm.
//!
//! On SIGTERM or Ctrl-C the server stops accepting, lets the requests in flight finish
//! (for at most `--drain`, 10 s by default), writes what is still queued (cache
//! write-behind, usage counts) and exits 0; 1 if the drain deadline passed.

use std::net::SocketAddr;
use std::time::Duration;

use examples::server::{
    DEFAULT_CONFIG, Drained, ServerConfig, app, app_with_redis, serve_until, stop_signal,
};
use examples::upstream::Upstream;
use reliability::core::redis::RedisConfig;

const USAGE: &str = "usage: server [--addr 127.0.0.1:3000] [--config examples/server.toml] [--seed N] [--drain 10s] [--disk DIR] \
     [--redis redis://HOST:PORT | --redis-cluster redis://HOST:PORT,redis://HOST:PORT,...]";

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("server: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let mut addr: SocketAddr = "127.0.0.1:3000".parse().expect("literal address");
    let mut config_text = DEFAULT_CONFIG.to_owned();
    let mut seed = 42;
    let mut redis = None;
    let mut drain = Duration::from_secs(10);
    let mut disk = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--addr" => addr = value()?.parse().map_err(|e| format!("--addr: {e}"))?,
            "--config" => {
                let path = value()?;
                config_text =
                    std::fs::read_to_string(&path).map_err(|e| format!("--config {path}: {e}"))?;
            }
            "--seed" => seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--disk" => disk = Some(std::path::PathBuf::from(value()?)),
            "--drain" => {
                drain =
                    humantime::parse_duration(&value()?).map_err(|e| format!("--drain: {e}"))?;
            }
            "--redis" => redis = Some(RedisConfig::single(value()?)),
            "--redis-cluster" => {
                let seeds: Vec<String> = value()?
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                redis = Some(RedisConfig::cluster(seeds));
            }
            _ => return Err(USAGE.to_owned()),
        }
    }
    let mut config = ServerConfig::parse(&config_text).map_err(|e| e.to_string())?;
    if disk.is_some() {
        config.disk.dir = disk;
    }
    let token = std::env::var("ADMIN_TOKEN").ok().filter(|t| !t.is_empty());
    let upstream = Upstream::new(seed);
    let (router, app) = match &redis {
        Some(redis) => app_with_redis(&config, upstream, token.as_deref(), redis).await,
        None => app(&config, upstream, token.as_deref()),
    }
    .map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("bind {addr}: {e}"))?;
    eprintln!(
        "listening on http://{} (admin router {})",
        listener.local_addr().map_err(|e| e.to_string())?,
        if token.is_some() {
            "on"
        } else {
            "off: set ADMIN_TOKEN"
        }
    );
    let drained = serve_until(listener, router, stop_signal(), drain)
        .await
        .map_err(|e| e.to_string())?;
    // The requests are done (or abandoned): what they queued is written before exiting.
    let unwritten = app.drain(drain).await;
    for line in &unwritten {
        eprintln!("server: on stop, {line}");
    }
    match drained {
        Drained::Clean => {
            eprintln!("stopped: drained");
            Ok(())
        }
        Drained::DeadlinePassed => Err(format!("requests still in flight after --drain {drain:?}")),
    }
}
