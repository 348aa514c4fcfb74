//! Settings through the public API: the preset tables, precedence, environment variables
//! under the layers' field names, errors that name the setting's path, and old names
//! refused with the new one.

use std::path::Path;
use std::time::Duration;

use reliability::breaker::CircuitBreakerLayer;
use reliability::breaker::config::WindowConfig as BreakerWindow;
use reliability::cache::CacheLayer;
use reliability::config::{Settings, SettingsError, SourceKind, SourceSettings};
use reliability::presets::defaults;
use reliability::retry::RetryLayer;
use reliability::retry::backoff::{Backoff, Jitter};
use reliability::retry::budget::BudgetConfig;
use reliability::sla::SlaMonitor;

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn invalid_field(result: Result<Settings, SettingsError>) -> String {
    match result {
        Err(SettingsError::Invalid(e)) => e.field,
        other => panic!("expected a range error, got {other:?}"),
    }
}

#[test]
fn defaults_are_the_preset_tables() {
    let s = Settings::default();
    // source, SLA p95 / p99 / min success / max consecutive failures, breaker consecutive
    // failures / open wait / successes, TTL default / min / max.
    let rows = [
        (SourceKind::Cex, 1, 2, 0.95, 3, 5, 30, 2, 5, 2, 15),
        (SourceKind::Dex, 3, 5, 0.90, 5, 10, 60, 3, 30, 10, 120),
        (SourceKind::Social, 5, 10, 0.85, 3, 3, 120, 1, 300, 60, 900),
    ];
    for (kind, p95, p99, rate, consec, fail, wait, succ, ttl, min, max) in rows {
        let src = s.source(kind);
        let t = &src.sla.thresholds;
        assert_eq!(t.p95, Some(secs(p95)), "{kind:?}");
        assert_eq!(t.p99, Some(secs(p99)), "{kind:?}");
        assert_eq!(t.min_success_rate, rate, "{kind:?}");
        assert_eq!(t.max_consecutive_failures, consec, "{kind:?}");
        assert_eq!(src.breaker.consecutive_failures, Some(fail), "{kind:?}");
        assert_eq!(src.breaker.open_wait, secs(wait), "{kind:?}");
        assert_eq!(src.breaker.success_threshold, succ, "{kind:?}");
        assert_eq!(src.cache.ttl, secs(ttl), "{kind:?}");
        let adaptive = src.cache.adaptive.expect("adaptive TTL");
        assert_eq!(
            (adaptive.min, adaptive.max),
            (secs(min), secs(max)),
            "{kind:?}"
        );

        assert_eq!(src, &SourceSettings::preset(kind));
        assert_eq!(src.breaker, defaults::breaker(kind));
        assert_eq!(src.sla, defaults::sla(kind));
    }
    s.validate().unwrap();
}

#[test]
fn the_layers_build_from_the_defaults() {
    for kind in SourceKind::ALL {
        let s = SourceSettings::preset(kind);
        CircuitBreakerLayer::from_config("source", &s.breaker).unwrap();
        RetryLayer::from_config(&s.retry).unwrap();
        SlaMonitor::from_config("source", &s.sla).unwrap();
        CacheLayer::<_, String>::from_config(s.cache.clone(), |k: &String| Some(k.clone()))
            .unwrap();
        s.rate_limit.quota().unwrap();
    }
}

#[test]
fn an_empty_file_gives_the_defaults() {
    // The defaults reach figment serialized: nothing may be lost on the way.
    assert_eq!(Settings::from_toml_str("").unwrap(), Settings::default());
}

#[test]
fn precedence_env_over_file_over_preset() {
    let toml = "[cex.breaker]\nopen_wait = \"45s\"\nsuccess_threshold = 1\n";
    let env = [
        ("RELIABILITY__CEX__BREAKER__OPEN_WAIT", "50s"),
        ("RELIABILITY__DEX__RETRY__MAX_ATTEMPTS", "5"),
        ("UNRELATED", "x"),
    ];
    let mut s = Settings::from_sources(toml, env).unwrap();
    assert_eq!(s.cex.breaker.open_wait, secs(50), "env beats file");
    assert_eq!(s.cex.breaker.success_threshold, 1, "file beats preset");
    assert_eq!(s.cex.breaker.consecutive_failures, Some(5), "preset stays");
    assert_eq!(s.dex.retry.max_attempts, 5);
    // Code comes last.
    s.cex.breaker.open_wait = secs(60);
    assert_eq!(s.cex.breaker.open_wait, secs(60));
}

#[test]
fn env_overrides_use_the_layer_field_names() {
    let env = [
        ("RELIABILITY__CEX__BREAKER__CONSECUTIVE_FAILURES", "7"),
        ("RELIABILITY__DEX__SLA__THRESHOLDS__P95", "4s"),
        ("RELIABILITY__SOCIAL__RETRY__BACKOFF__BASE", "1s"),
        ("RELIABILITY__CEX__RATE_LIMIT__WINDOW__LIMIT", "30"),
        ("RELIABILITY__DEX__CACHE__ADAPTIVE__MAX", "5m"),
    ];
    let s = Settings::from_sources("", env).unwrap();
    assert_eq!(s.cex.breaker.consecutive_failures, Some(7));
    assert_eq!(s.dex.sla.thresholds.p95, Some(secs(4)));
    assert_eq!(
        s.dex.sla.thresholds.p99,
        Some(secs(5)),
        "its neighbours stay"
    );
    assert_eq!(
        s.social.retry.backoff,
        Backoff::exponential(secs(1), secs(10), Jitter::Full)
    );
    assert_eq!(s.cex.rate_limit.window.limit, 30);
    assert_eq!(s.cex.rate_limit.window.period, secs(1));
    assert_eq!(s.dex.cache.adaptive.unwrap().max, secs(300));
}

#[test]
fn a_tagged_setting_can_change_its_kind() {
    let toml = r#"
        [cex.breaker.window]
        kind = "time"
        seconds = 30

        [dex.retry.backoff]
        kind = "constant"
        delay = "1s"

        [social.retry]
        budget = { kind = "token_bucket" }

        [cex.retry.backoff]
        kind = "exponential"
        base = "10ms"
    "#;
    let s = Settings::from_toml_str(toml).unwrap();
    assert_eq!(s.cex.breaker.window, BreakerWindow::Time { seconds: 30 });
    assert_eq!(s.dex.retry.backoff, Backoff::constant(secs(1)));
    assert!(matches!(
        s.social.retry.budget,
        BudgetConfig::TokenBucket(_)
    ));
    assert_eq!(
        s.cex.retry.backoff,
        Backoff::exponential(Duration::from_millis(10), secs(1), Jitter::Full),
        "the same kind keeps the preset's other fields"
    );
}

#[test]
fn the_bulkhead_comes_from_the_table_and_is_overridden_like_the_rest() {
    use reliability::concurrency::AlgorithmConfig;
    let s = Settings::default();
    assert_eq!(
        (s.cex.concurrency.limit, s.cex.concurrency.queue_capacity),
        (32, 0)
    );
    assert!(
        s.cex.concurrency.adaptive.is_none(),
        "CEX: fixed and strict"
    );
    assert!(matches!(
        s.social.concurrency.adaptive,
        Some(AlgorithmConfig::Gradient2(_))
    ));
    assert_eq!(s.dex.concurrency, defaults::concurrency(SourceKind::Dex));

    let toml = "[cex.concurrency]\nlimit = 4\nadaptive = { kind = \"vegas\" }\n";
    let env = [("RELIABILITY__SOCIAL__CONCURRENCY__QUEUE_TIMEOUT", "500ms")];
    let s = Settings::from_sources(toml, env).unwrap();
    assert_eq!(s.cex.concurrency.limit, 4);
    assert!(matches!(
        s.cex.concurrency.adaptive,
        Some(AlgorithmConfig::Vegas(_))
    ));
    assert_eq!(
        s.cex.concurrency.queue_capacity, 0,
        "the preset's other fields stay"
    );
    assert_eq!(
        s.social.concurrency.queue_timeout,
        Duration::from_millis(500)
    );

    let bad = Settings::from_toml_str("[dex.concurrency]\nlimit = 0\n");
    assert_eq!(invalid_field(bad), "dex.concurrency.limit");
}

#[test]
fn unknown_key_is_named() {
    let err = Settings::from_toml_str("[dex.cache]\nttll = \"5s\"").unwrap_err();
    assert!(err.to_string().contains("ttll"), "{err}");
    let err = Settings::from_toml_str("[nope]\nx = 1").unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn wrong_type_is_named() {
    let err = Settings::from_toml_str("[cex.breaker]\nopen_wait = 12").unwrap_err();
    assert!(err.to_string().contains("open_wait"), "{err}");
    let err = Settings::from_toml_str("[cex.breaker]\nopen_wait = \"soon\"").unwrap_err();
    assert!(err.to_string().contains("open_wait"), "{err}");
    let err =
        Settings::from_sources("", [("RELIABILITY__CEX__SLA__COUNT_WINDOW", "many")]).unwrap_err();
    assert!(err.to_string().contains("count_window"), "{err}");
}

#[test]
fn out_of_range_is_named_with_its_path() {
    let cases = [
        (
            "[cex.breaker]\nfailure_rate = 150.0",
            "cex.breaker.failure_rate",
        ),
        (
            "[cex.breaker]\nsuccess_threshold = 3",
            "cex.breaker.success_threshold",
        ),
        ("[dex.breaker]\nopen_wait = \"0s\"", "dex.breaker.open_wait"),
        (
            "[dex.sla.thresholds]\nmin_success_rate = 1.5",
            "dex.sla.thresholds.min_success_rate",
        ),
        ("[cex.sla]\ntime_window = \"7s\"", "cex.sla.time_window"),
        ("[social.cache]\nttl = \"0s\"", "social.cache.ttl"),
        (
            "[social.cache.adaptive]\nmin = \"1h\"",
            "social.cache.adaptive.min",
        ),
        ("[cex.retry]\nmax_attempts = 0", "cex.retry.max_attempts"),
        ("[cex.retry]\nmax_attempts = 101", "cex.retry.max_attempts"),
        (
            "[cex.retry.backoff]\nbase = \"10s\"",
            "cex.retry.backoff.base",
        ),
        (
            "[cex.rate_limit.window]\nlimit = 0",
            "cex.rate_limit.window.limit",
        ),
        ("[cex]\nattempt_timeout = \"0s\"", "cex.attempt_timeout"),
        ("[redis]\nurl = \"http://x\"", "redis.url"),
    ];
    for (toml, path) in cases {
        assert_eq!(invalid_field(Settings::from_toml_str(toml)), path, "{toml}");
    }
}

#[test]
fn an_invalid_env_value_names_its_nested_path() {
    let result = Settings::from_sources("", [("RELIABILITY__CEX__BREAKER__OPEN_WAIT", "0s")]);
    assert_eq!(invalid_field(result), "cex.breaker.open_wait");
    let result = Settings::from_sources(
        "",
        [(
            "RELIABILITY__SOCIAL__SLA__THRESHOLDS__MAX_CONSECUTIVE_FAILURES",
            "0",
        )],
    );
    assert_eq!(
        invalid_field(result),
        "social.sla.thresholds.max_consecutive_failures"
    );
}

#[test]
fn an_old_name_is_refused_with_the_new_one() {
    let err = Settings::from_toml_str("[cex.breaker]\nfailure_threshold = 5").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("`failure_threshold` is now `consecutive_failures`"),
        "{msg}"
    );
    assert!(msg.contains("cex.breaker.failure_threshold"), "{msg}");
    assert!(matches!(err, SettingsError::Renamed { .. }));

    let cases = [
        ("[dex.sla]\np95 = \"1s\"", "`p95` is now `thresholds.p95`"),
        ("[dex.sla]\nwindow = 50", "`window` is now `count_window`"),
        (
            "[cex.breaker]\nmin_calls = 5",
            "`min_calls` is now `minimum_calls`",
        ),
        (
            "[cex.breaker]\nwindow = 20",
            "`window` is now `window.size`",
        ),
        (
            "[social.cache]\nmax_ttl = \"1h\"",
            "`max_ttl` is now `adaptive.max`",
        ),
        (
            "[cex.retry]\nbudget_ratio = 0.5",
            "`budget_ratio` is now `budget.ratio`",
        ),
        (
            "[cex.rate_limit]\nburst = 5",
            "`burst` is now `window.burst`",
        ),
    ];
    for (toml, hint) in cases {
        let msg = Settings::from_toml_str(toml).unwrap_err().to_string();
        assert!(msg.contains(hint), "{toml}: {msg}");
    }
    let err = Settings::from_sources("", [("RELIABILITY__DEX__RETRY__BASE", "1s")]).unwrap_err();
    assert!(
        err.to_string().contains("`base` is now `backoff.base`"),
        "{err}"
    );
}

#[test]
fn missing_file_is_an_error() {
    let err = Settings::load(Some(Path::new("/nonexistent/reliability.toml"))).unwrap_err();
    assert!(err.to_string().contains("config_file"), "{err}");
}

#[test]
fn file_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.toml");
    std::fs::write(
        &path,
        "[redis]\nurl = \"redis://127.0.0.1:6379\"\nkey_prefix = \"app\"\n\n\
         [dex.breaker]\nconsecutive_failures = 4\n",
    )
    .unwrap();
    let s = Settings::load(Some(&path)).unwrap();
    assert_eq!(s.redis.unwrap().key_prefix, "app");
    assert_eq!(s.dex.breaker.consecutive_failures, Some(4));
}

/// The TOML example of the crate's README loads, and sets what it says (the hedge and
/// deadline keys included): the README cannot drift from the settings.
#[test]
fn the_readme_example_loads() {
    let readme = include_str!("../README.md");
    let start = readme.find("```toml\n").expect("a TOML example") + "```toml\n".len();
    let end = start + readme[start..].find("```").expect("its end");
    let s = Settings::from_toml_str(&readme[start..end]).unwrap();
    let dex = s.source(SourceKind::Dex);
    assert_eq!(dex.deadline, Some(std::time::Duration::from_secs(3)));
    assert_eq!(dex.hedge.budget_ratio, 0.05);
    assert!(matches!(
        dex.hedge.delay,
        reliability::hedge::HedgeDelay::Percentile { percentile, .. } if percentile == 99.0
    ));
    assert_eq!(dex.retry.max_attempts, 4);
    assert_eq!(
        s.source(SourceKind::Cex).breaker.open_wait,
        std::time::Duration::from_secs(45)
    );
}
