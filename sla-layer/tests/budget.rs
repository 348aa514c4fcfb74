//! Error budgets and the SRE Workbook's burn-rate alert table: each alert fires when the
//! burn rate over both of its windows exceeds its rate, and not otherwise; the minimum-
//! volume guard; alert events from a monitor.

use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use std::time::Duration;

use reliability_core::classify::Outcome::{Failure, Success};
use reliability_core::clock::ManualClock;
use sla_layer::budget::BudgetTracker;
use sla_layer::{AlertEvent, BurnRateAlert, Severity, SlaMonitor, SloConfig};

const SEC: u64 = 1_000_000_000;
const MIN: u64 = 60 * SEC;
const HOUR: u64 = 60 * MIN;
const DAY: u64 = 24 * HOUR;

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap()
}

/// The tracker at `now` after `batches` of (age, good, bad), fed oldest first.
fn firing_after(alert: &BurnRateAlert, batches: &[(u64, u64, u64)]) -> bool {
    let now = 40 * DAY;
    let mut t = BudgetTracker::new(SloConfig::new(0.999, Duration::from_secs(30 * 86_400)));
    let mut sorted = batches.to_vec();
    sorted.sort_by_key(|b| std::cmp::Reverse(b.0));
    for (age, good, bad) in sorted {
        t.observe(now - age, good, bad);
    }
    t.evaluate(now);
    t.alerts(now)
        .into_iter()
        .find(|s| s.alert.name == alert.name)
        .unwrap()
        .firing
}

/// Calls with an error rate of `burn * 0.001` (a burn rate of `burn` for a 99.9 % SLO).
fn at_burn(burn: f64, calls: u64) -> (u64, u64) {
    let bad = (burn * 0.001 * calls as f64).round() as u64;
    (calls - bad, bad)
}

#[test]
fn workbook_table_each_alert_needs_both_windows() {
    let alerts = BurnRateAlert::workbook_defaults();
    let expect = [
        ("page_fast", Severity::Page, 14.4, HOUR, 5 * MIN),
        ("page_slow", Severity::Page, 6.0, 6 * HOUR, 30 * MIN),
        ("ticket", Severity::Ticket, 1.0, 3 * DAY, 6 * HOUR),
    ];
    for (a, (name, severity, rate, long, short)) in alerts.iter().zip(expect) {
        assert_eq!(
            (a.name.as_str(), a.severity, a.burn_rate),
            (name, severity, rate)
        );
        assert_eq!((ns(a.long_window), ns(a.short_window)), (long, short));

        let inside_short = short / 2;
        let long_only = (short + long) / 2;
        let over = at_burn(rate * 1.5, 100_000);
        let under = at_burn(rate * 0.5, 100_000);

        // Both windows over the rate: fires.
        assert!(
            firing_after(a, &[(inside_short, over.0, over.1)]),
            "{name}: both over"
        );
        // Only the long window over (the short one is clean): does not fire.
        assert!(
            !firing_after(
                a,
                &[(long_only, over.0, over.1 * 3), (inside_short, 100_000, 0)]
            ),
            "{name}: long only"
        );
        // Only the short window over (the long one is diluted below the rate): does not.
        assert!(
            !firing_after(
                a,
                &[(long_only, 10_000_000, 0), (inside_short, over.0, over.1)]
            ),
            "{name}: short only"
        );
        // Both under: does not fire.
        assert!(
            !firing_after(a, &[(inside_short, under.0, under.1)]),
            "{name}: both under"
        );
        // Old trouble outside the long window never counts.
        assert!(
            !firing_after(a, &[(long + long / 10, over.0, over.1)]),
            "{name}: expired"
        );
    }
}

#[test]
fn min_volume_guards_low_traffic() {
    let mut cfg = SloConfig::new(0.999, Duration::from_secs(30 * 86_400));
    cfg.min_volume = 50;
    let mut t = BudgetTracker::new(cfg);
    let now = 2 * DAY;
    // 49 calls, all failed: a huge burn rate, but too little traffic to page on.
    t.observe(now, 0, 49);
    assert!(t.evaluate(now).is_empty());
    assert!(
        t.alerts(now)
            .iter()
            .all(|a| !a.firing && a.long_burn_rate > 900.0)
    );
    t.observe(now, 0, 1);
    let fired: Vec<_> = t.evaluate(now).into_iter().map(|s| s.alert.name).collect();
    assert_eq!(fired, vec!["page_fast", "page_slow", "ticket"]);
    assert!(t.evaluate(now).is_empty(), "events only on transitions");
}

#[test]
fn monitor_emits_alert_events_and_budget() {
    let clock = ManualClock::new();
    let events: Arc<Mutex<Vec<AlertEvent>>> = Arc::default();
    let sink = Arc::clone(&events);
    let m = SlaMonitor::builder("dex")
        .clock(clock.shared())
        .error_budget(0.99, Duration::from_secs(30 * 86_400))
        .min_volume(100)
        .max_consecutive_failures(u64::MAX)
        .on_alert(move |e| sink.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    clock.advance(Duration::from_secs(60));
    for i in 0..200 {
        m.record(
            Duration::from_millis(5),
            if i % 5 == 0 { Failure } else { Success },
        );
    }
    let r = m.report();
    let budget = r.error_budget.unwrap();
    assert_eq!((budget.calls, budget.failures), (200, 40));
    assert!(
        (budget.remaining - (1.0 - 40.0 / 2.0)).abs() < 1e-9,
        "{budget:?}"
    );
    assert_eq!(
        r.to_snapshot().error_budget_remaining,
        Some(0.0),
        "clamped for the snapshot"
    );
    {
        let ev = events.lock().unwrap();
        assert_eq!(ev.len(), 3);
        assert!(ev.iter().all(|e| e.status.firing && &*e.source == "dex"));
    }

    // Six clean minutes later the 5-minute window is clean: the fast page resolves.
    clock.advance(Duration::from_secs(6 * 60));
    for _ in 0..200 {
        m.record(Duration::from_millis(5), Success);
    }
    let r = m.report();
    let ev = events.lock().unwrap();
    assert_eq!(ev.len(), 4, "{ev:?}");
    assert_eq!(ev[3].status.alert.name, "page_fast");
    assert!(!ev[3].status.firing);
    assert!(r.alerts.iter().filter(|a| a.firing).count() == 2);
}

proptest! {
    /// A window of length W counts between W - W/30 and W of history, never anything older.
    #[test]
    fn alert_windows_never_count_expired_calls(
        mut batches in prop::collection::vec((0u64..4 * DAY, 0u64..1_000, 0u64..1_000), 1..40),
        min_volume in 0u64..3_000,
    ) {
        let now = 40 * DAY;
        let mut cfg = SloConfig::new(0.999, Duration::from_secs(30 * 86_400));
        cfg.min_volume = min_volume;
        let mut t = BudgetTracker::new(cfg);
        batches.sort_by_key(|b| std::cmp::Reverse(b.0));
        for (age, good, bad) in &batches {
            t.observe(now - age, *good, *bad);
        }
        t.evaluate(now);
        let within = |age_limit: u64| -> (u64, u64) {
            batches.iter().filter(|b| b.0 < age_limit).fold((0, 0), |(g, x), b| (g + b.1, x + b.2))
        };
        for s in t.alerts(now) {
            for (window, counts) in [(s.alert.long_window, s.long), (s.alert.short_window, s.short)] {
                let w = ns(window);
                let (most_good, most_bad) = within(w);
                let (least_good, least_bad) = within(w - w / 30);
                prop_assert!(counts.good <= most_good && counts.bad <= most_bad);
                prop_assert!(counts.good >= least_good && counts.bad >= least_bad);
            }
            let expect = s.long.total() >= min_volume
                && s.short.total() >= min_volume
                && s.long_burn_rate > s.alert.burn_rate
                && s.short_burn_rate > s.alert.burn_rate;
            prop_assert_eq!(s.firing, expect);
        }
    }
}
