//! The command line.

use std::time::Duration;

pub(crate) struct Args {
    pub(crate) duration: Duration,
    pub(crate) seed: u64,
    pub(crate) json: bool,
    pub(crate) redis: Option<String>,
    pub(crate) simulated_time: bool,
}

const USAGE: &str =
    "usage: demo [--duration 30s] [--seed N] [--json] [--simulated-time] [--redis URL]";

pub(crate) fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        duration: Duration::from_secs(30),
        seed: 42,
        json: false,
        redis: None,
        simulated_time: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--duration" => {
                let v = it.next().ok_or("--duration needs a value (e.g. 30s)")?;
                args.duration =
                    humantime::parse_duration(&v).map_err(|e| format!("--duration: {e}"))?;
                if args.duration < Duration::from_secs(1)
                    || args.duration > Duration::from_secs(3600)
                {
                    return Err("--duration must be between 1s and 1h".into());
                }
            }
            "--seed" => {
                let v = it.next().ok_or("--seed needs a number")?;
                args.seed = v.parse().map_err(|e| format!("--seed: {e}"))?;
            }
            "--json" => args.json = true,
            "--simulated-time" => args.simulated_time = true,
            "--redis" => args.redis = Some(it.next().ok_or("--redis needs a URL")?),
            "--help" | "-h" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if args.simulated_time && args.redis.is_some() {
        // Redis keeps real time: a paused clock would race ahead of its quotas.
        return Err("--simulated-time and --redis do not go together".into());
    }
    Ok(args)
}
