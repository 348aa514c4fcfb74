//! A caching reverse proxy in front of one origin, with the cache layer in RFC 9111
//! shared mode: every method is forwarded; `Cache-Status` says what the cache did.
//!
//! ```text
//! cargo run -p examples --bin proxy -- --origin http://127.0.0.1:8000 [--addr 127.0.0.1:8080] [--name proxy]
//! ```
//!
//! It prints `listening on ADDR` once it accepts connections, and stops on SIGTERM or
//! Ctrl-C. `--store-set-cookie` stores and shares responses that set cookies when their
//! origin gives them an explicit lifetime, as RFC 9111 allows (off by default: an origin
//! that forgets `private` on a session response would hand it to everyone).

use examples::proxy::{ProxySettings, bind, serve};
use examples::server::stop_signal;

const USAGE: &str = "usage: proxy --origin http://HOST:PORT [--addr 127.0.0.1:8080] [--name proxy] [--max-entries N] [--store-set-cookie]";

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("proxy: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let mut addr = "127.0.0.1:8080".parse().expect("literal address");
    let mut origin = None;
    let mut name = None;
    let mut max_entries = None;
    let mut store_set_cookie = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--addr" => addr = value()?.parse().map_err(|e| format!("--addr: {e}"))?,
            "--origin" => origin = Some(value()?),
            "--name" => name = Some(value()?),
            "--max-entries" => {
                max_entries = Some(
                    value()?
                        .parse()
                        .map_err(|e| format!("--max-entries: {e}"))?,
                );
            }
            "--store-set-cookie" => store_set_cookie = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let origin = origin.ok_or(format!("--origin is required\n{USAGE}"))?;
    let mut settings = ProxySettings::new(&origin)?;
    if let Some(name) = name {
        settings.name = name;
    }
    if let Some(n) = max_entries {
        settings.max_entries = n;
    }
    settings.store_set_cookie = store_set_cookie;
    let listener = bind(addr).await?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on {local}");
    serve(listener, &settings, stop_signal()).await
}
