//! Keys of older releases, which re-declared every layer's settings under names of their
//! own. Each is refused with the key that replaced it: serde's "unknown field" lists
//! every field of the table, but does not say which one is meant.

use figment::Figment;

use super::{SettingsError, SourceKind};

/// `(table, old key, what replaced it in the same table)`.
const RENAMED: &[(&str, &str, &str)] = &[
    ("breaker", "failure_threshold", "`consecutive_failures`"),
    ("breaker", "min_calls", "`minimum_calls`"),
    ("sla", "p95", "`thresholds.p95`"),
    ("sla", "p99", "`thresholds.p99`"),
    ("sla", "min_success_rate", "`thresholds.min_success_rate`"),
    (
        "sla",
        "max_consecutive_failures",
        "`thresholds.max_consecutive_failures`",
    ),
    ("sla", "window", "`count_window`"),
    ("cache", "min_ttl", "`adaptive.min`"),
    ("cache", "max_ttl", "`adaptive.max`"),
    ("retry", "base", "`backoff.base`"),
    ("retry", "cap", "`backoff.cap`"),
    ("retry", "jitter", "`backoff.jitter`"),
    ("retry", "budget_ratio", "`budget.ratio`"),
    (
        "rate_limit",
        "per_second",
        "`window.limit` calls per `window.period`",
    ),
    ("rate_limit", "burst", "`window.burst`"),
];

/// The first old key set in `user` (the file and the environment, not the defaults).
pub(super) fn check(user: &Figment) -> Result<(), SettingsError> {
    for kind in SourceKind::ALL {
        let source = kind.as_str();
        for &(table, old, now) in RENAMED {
            let key = format!("{source}.{table}.{old}");
            if user.contains(&key) {
                return Err(SettingsError::Renamed { key, old, now });
            }
        }
        // The breaker's `window` kept its name but is a table now, not a call count.
        let key = format!("{source}.breaker.window");
        if user.find_value(&key).is_ok_and(|v| v.to_num().is_some()) {
            return Err(SettingsError::Renamed {
                key,
                old: "window",
                now: "`window.size` (`window = { kind = \"count\", size = 20 }`)",
            });
        }
    }
    Ok(())
}
