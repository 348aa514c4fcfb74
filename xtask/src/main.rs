//! The project's chores, as `cargo xtask <task>`:
//!
//! - `ci`: format check, clippy (warnings denied), the promtool checks, the test suite
//!   (`cargo test --workspace`, the README's command), the HTTP caching conformance
//!   suite against the example proxy, and the docs with broken intra-doc links denied.
//! - `cache-tests [--report] [--update-baseline]`: the cache-tests suite against
//!   `examples --bin proxy`, gated on the committed baseline (see `src/conformance.rs`).
//! - `promtool`: `promtool check rules` on the Prometheus rules and on the Grafana
//!   dashboard's queries, and `promtool test rules` on the rules' unit tests (see
//!   `src/promtool.rs`).
//! - `bench [args]`: `cargo bench --workspace` (extra args go to cargo).
//! - `bench --report [--skip-run]`: runs the benches behind the generated rows of
//!   `BENCHMARKS.md` and rewrites those rows from criterion's estimates (see
//!   `src/report.rs`).
//! - `redis up|down|status`: a single node on 6379 and a 3-master cluster on 7000-7002
//!   under `.redis/`, for manual runs and the examples' `--redis` flag. Tests never use
//!   these: they start their own through `reliability_core::harness`.

mod conformance;
mod promtool;
mod report;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["ci"] => ci(),
        ["promtool"] => promtool::promtool(),
        ["cache-tests", rest @ ..] => conformance::cache_tests(rest),
        ["bench", "--report", rest @ ..] => report::report(rest),
        ["bench", rest @ ..] => bench(rest),
        ["redis", "up"] => redis_up(),
        ["redis", "down"] => redis_down(),
        ["redis", "status"] => redis_status(),
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: cargo xtask <ci | promtool | cache-tests [--report] [--update-baseline] | bench [--report [--skip-run] | cargo args] | redis up|down|status>";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn run(program: &str, args: &[&str], envs: &[(&str, &str)]) -> Result {
    eprintln!("$ {program} {}", args.join(" "));
    let started = Instant::now();
    let status = Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(root())
        .status()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    eprintln!("  ({:.1}s)", started.elapsed().as_secs_f64());
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{program} {}` failed: {status}", args.join(" ")))
    }
}

fn cargo(args: &[&str]) -> Result {
    run(env!("CARGO"), args, &[])
}

fn ci() -> Result {
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    promtool::promtool()?;
    // The README's test command, as a user runs it.
    cargo(&["test", "--workspace"])?;
    conformance::cache_tests(&[])?;
    run(
        env!("CARGO"),
        &["doc", "--workspace", "--no-deps"],
        &[("RUSTDOCFLAGS", "-D rustdoc::broken_intra_doc_links")],
    )
}

fn bench(rest: &[&str]) -> Result {
    let mut args = vec!["bench", "--workspace"];
    args.extend_from_slice(rest);
    cargo(&args)
}

const SINGLE_PORT: u16 = 6379;
const CLUSTER_PORTS: [u16; 3] = [7000, 7001, 7002];

fn redis_dir() -> PathBuf {
    root().join(".redis")
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

fn start_node(port: u16, cluster: bool) -> Result {
    if port_open(port) {
        eprintln!("port {port} already answers; leaving it as it is");
        return Ok(());
    }
    let dir = redis_dir().join(port.to_string());
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let dir_s = dir.to_string_lossy().into_owned();
    let port_s = port.to_string();
    let mut args = vec![
        "--port",
        &port_s,
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "yes",
        "--dir",
        &dir_s,
        "--pidfile",
        "redis.pid",
        "--logfile",
        "redis.log",
    ];
    if cluster {
        args.extend_from_slice(&[
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "2000",
        ]);
    }
    run("redis-server", &args, &[])?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !port_open(port) {
        if Instant::now() > deadline {
            return Err(format!("redis-server on {port} did not start"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn redis_up() -> Result {
    start_node(SINGLE_PORT, false)?;
    for port in CLUSTER_PORTS {
        start_node(port, true)?;
    }
    let info = Command::new("redis-cli")
        .args(["-p", "7000", "cluster", "info"])
        .output()
        .map_err(|e| format!("cannot run redis-cli: {e}"))?;
    if !String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
        let nodes: Vec<String> = CLUSTER_PORTS
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(nodes.iter().map(String::as_str));
        args.extend_from_slice(&["--cluster-replicas", "0", "--cluster-yes"]);
        run("redis-cli", &args, &[])?;
    }
    eprintln!(
        "redis: single node redis://127.0.0.1:{SINGLE_PORT}, cluster redis://127.0.0.1:7000,7001,7002"
    );
    Ok(())
}

fn redis_down() -> Result {
    let ports = std::iter::once(SINGLE_PORT).chain(CLUSTER_PORTS);
    for port in ports {
        let pidfile = redis_dir().join(port.to_string()).join("redis.pid");
        // Only servers this task started (they have a pid file under .redis/).
        if pidfile.exists() {
            let _ = run(
                "redis-cli",
                &["-p", &port.to_string(), "shutdown", "nosave"],
                &[],
            );
        }
    }
    let _ = std::fs::remove_dir_all(redis_dir());
    Ok(())
}

fn redis_status() -> Result {
    for port in std::iter::once(SINGLE_PORT).chain(CLUSTER_PORTS) {
        let state = if port_open(port) { "up" } else { "down" };
        println!("127.0.0.1:{port} {state}");
    }
    Ok(())
}
