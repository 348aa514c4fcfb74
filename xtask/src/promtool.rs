//! `cargo xtask promtool`: the Prometheus rules, their unit tests and the Grafana
//! dashboard's queries, checked by `promtool`.
//!
//! Grafana stores PromQL in panel targets, where nothing parses it until someone opens the
//! panel. This task collects every query of the dashboard (nested rows included), fills in
//! the template variables with values that keep the query valid (`$source` → `.+`,
//! `$__rate_interval` → `5m`), and writes them as recording rules to
//! `target/promtool/dashboard-rules.yml`, so `promtool check rules` parses each one.
//!
//! Without `promtool` on `PATH` the promtool steps are skipped with a note (the queries are
//! still collected, so a broken JSON file or an unknown variable fails anyway), unless
//! `RELIABILITY_REQUIRE_PROMTOOL=1`, as in CI.

use std::collections::HashMap;
use std::fmt::Write;
use std::process::Command;

use serde_json::Value;

use crate::{Result, root, run};

pub(crate) const DASHBOARD: &str = "examples/grafana/reliability.json";
pub(crate) const RULES: &str = "examples/prometheus/rules.yml";
pub(crate) const RULE_TESTS: &str = "examples/prometheus/rules.test.yml";
const GENERATED: &str = "target/promtool/dashboard-rules.yml";

/// What a duration variable becomes: long enough for `rate` over any scrape interval.
const INTERVAL: &str = "5m";
/// What a label variable becomes: a regex matching any value, valid in `=~"..."`.
const ANY_VALUE: &str = ".+";

pub(crate) fn promtool() -> Result {
    let path = root().join(DASHBOARD);
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("cannot read {DASHBOARD}: {e}"))?;
    let dashboard: Value =
        serde_json::from_str(&text).map_err(|e| format!("{DASHBOARD} is not JSON: {e}"))?;
    let queries = dashboard_queries(&dashboard).map_err(|e| format!("{DASHBOARD}: {e}"))?;
    if queries.is_empty() {
        return Err(format!("{DASHBOARD}: no PromQL queries found"));
    }
    let out = root().join(GENERATED);
    std::fs::create_dir_all(out.parent().expect("GENERATED has a parent"))
        .map_err(|e| e.to_string())?;
    std::fs::write(&out, rules_file(DASHBOARD, &queries))
        .map_err(|e| format!("cannot write {GENERATED}: {e}"))?;
    eprintln!("{} dashboard queries written to {GENERATED}", queries.len());

    if !promtool_available() {
        let hint = "install Debian's `prometheus` package or a Prometheus release";
        if std::env::var("RELIABILITY_REQUIRE_PROMTOOL").as_deref() == Ok("1") {
            return Err(format!(
                "promtool not found and RELIABILITY_REQUIRE_PROMTOOL=1 ({hint})"
            ));
        }
        eprintln!(
            "skipping promtool checks: promtool not found ({hint}; set \
             RELIABILITY_REQUIRE_PROMTOOL=1 to make this a failure)"
        );
        return Ok(());
    }
    run("promtool", &["check", "rules", GENERATED, RULES], &[])?;
    run("promtool", &["test", "rules", RULE_TESTS], &[])
}

fn promtool_available() -> bool {
    Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// One PromQL query of the dashboard, variables filled in.
#[derive(Debug, PartialEq)]
pub(crate) struct Query {
    /// Where it came from, for the generated file's comments and error messages.
    pub(crate) origin: String,
    pub(crate) expr: String,
}

/// Every PromQL query in `dashboard` (a dashboard, or the API's `{"dashboard": ...}`):
/// panel targets at any depth (rows hold their panels while collapsed) and annotation
/// queries. Targets of other data sources and empty queries are left out.
pub(crate) fn dashboard_queries(dashboard: &Value) -> Result<Vec<Query>> {
    let dashboard = dashboard.get("dashboard").unwrap_or(dashboard);
    let vars = variables(dashboard);
    let mut out = Vec::new();
    if let Some(panels) = dashboard.get("panels").and_then(Value::as_array) {
        collect_panels(panels, &vars, &mut out)?;
    }
    let annotations = dashboard
        .pointer("/annotations/list")
        .and_then(Value::as_array);
    for a in annotations.into_iter().flatten() {
        let name = a.get("name").and_then(Value::as_str).unwrap_or("?");
        if let Some(expr) = prometheus_expr(a) {
            push(&mut out, format!("annotation {name:?}"), expr, &vars)?;
        }
    }
    Ok(out)
}

fn collect_panels(panels: &[Value], vars: &Vars, out: &mut Vec<Query>) -> Result {
    for panel in panels {
        let title = panel.get("title").and_then(Value::as_str).unwrap_or("");
        let id = panel
            .get("id")
            .map_or_else(|| "?".to_owned(), Value::to_string);
        let targets = panel.get("targets").and_then(Value::as_array);
        for target in targets.into_iter().flatten() {
            if let Some(expr) = prometheus_expr(target) {
                let ref_id = target.get("refId").and_then(Value::as_str).unwrap_or("?");
                push(
                    out,
                    format!("panel {id} {title:?} target {ref_id}"),
                    expr,
                    vars,
                )?;
            }
        }
        if let Some(nested) = panel.get("panels").and_then(Value::as_array) {
            collect_panels(nested, vars, out)?;
        }
    }
    Ok(())
}

/// A target's or annotation's `expr` unless its data source is set and not Prometheus
/// (Grafana expressions, other back ends).
fn prometheus_expr(item: &Value) -> Option<&str> {
    let kind = item.pointer("/datasource/type").and_then(Value::as_str);
    if kind.is_some_and(|k| k != "prometheus") {
        return None;
    }
    item.get("expr")
        .and_then(Value::as_str)
        .filter(|e| !e.trim().is_empty())
}

fn push(out: &mut Vec<Query>, origin: String, expr: &str, vars: &Vars) -> Result {
    let expr = substitute(expr, vars).map_err(|e| format!("{origin}: {e}"))?;
    out.push(Query { origin, expr });
    Ok(())
}

/// The dashboard's template variables and what each stands for in a check.
type Vars = HashMap<String, String>;

fn variables(dashboard: &Value) -> Vars {
    let list = dashboard
        .pointer("/templating/list")
        .and_then(Value::as_array);
    list.into_iter()
        .flatten()
        .filter_map(|v| {
            let name = v.get("name")?.as_str()?.to_owned();
            let value = match v.get("type").and_then(Value::as_str) {
                Some("interval") => INTERVAL.to_owned(),
                Some("constant") => v.get("query")?.as_str()?.to_owned(),
                _ => ANY_VALUE.to_owned(),
            };
            Some((name, value))
        })
        .collect()
}

/// Grafana's built-in variables that may appear in a query.
fn builtin(name: &str) -> Option<&'static str> {
    Some(match name {
        "__rate_interval" | "__interval" | "__range" => INTERVAL,
        "__rate_interval_ms" | "__interval_ms" | "__range_ms" => "300000",
        "__range_s" => "300",
        _ => return None,
    })
}

/// Replaces `$name`, `${name}`, `${name:format}`, `[[name]]` and `[[name:format]]`. A `$`
/// not followed by a name (a regex anchor) stays; an unknown name is an error, so a typo in
/// a variable fails here rather than in front of someone reading the dashboard.
fn substitute(expr: &str, vars: &Vars) -> Result<String> {
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr;
    while let Some(at) = rest.find(['$', '[']) {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let Some((name, len)) = reference(tail) else {
            out.push_str(&tail[..1]);
            rest = &tail[1..];
            continue;
        };
        let value = builtin(name)
            .or_else(|| vars.get(name).map(String::as_str))
            .ok_or_else(|| format!("unknown variable `${name}` in `{expr}`"))?;
        out.push_str(value);
        rest = &tail[len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The variable name a reference at the start of `s` names, and the reference's length.
fn reference(s: &str) -> Option<(&str, usize)> {
    let name_len = |t: &str| {
        t.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(t.len())
    };
    let (open, close) = if let Some(t) = s.strip_prefix("${") {
        (t, '}')
    } else if let Some(t) = s.strip_prefix("[[") {
        (t, ']')
    } else if let Some(t) = s.strip_prefix('$') {
        let n = name_len(t);
        return (n > 0).then(|| (&t[..n], 1 + n));
    } else {
        return None;
    };
    let n = name_len(open);
    if n == 0 {
        return None;
    }
    let after = &open[n..];
    let end = if close == '}' {
        after.find('}')?
    } else {
        after.find("]]")?
    };
    // Only a `:format` may sit between the name and the closing bracket.
    if end > 0 && !after.starts_with(':') {
        return None;
    }
    let closing = if close == '}' { 1 } else { 2 };
    Some((&open[..n], 2 + n + end + closing))
}

/// A rule file with one recording rule per query. Expressions are written as JSON
/// strings, which are YAML double-quoted scalars, so no query needs YAML escaping.
fn rules_file(source: &str, queries: &[Query]) -> String {
    let mut s = format!(
        "# The PromQL queries of {source}, one recording rule each, for\n\
         # `promtool check rules`. Written by `cargo xtask promtool`; not for a Prometheus server.\n\
         groups:\n  - name: dashboard-queries\n    rules:\n"
    );
    for (i, q) in queries.iter().enumerate() {
        let origin = q.origin.replace(['\n', '\r'], " ");
        let expr = serde_json::to_string(&q.expr).expect("a string serialises");
        let _ = write!(
            s,
            "      # {origin}\n      - record: dashboard:query_{n}\n        expr: {expr}\n",
            n = i + 1
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn exprs(dashboard: &Value) -> Vec<String> {
        dashboard_queries(dashboard)
            .unwrap()
            .into_iter()
            .map(|q| q.expr)
            .collect()
    }

    #[test]
    fn queries_come_from_every_level_of_panels() {
        let dashboard = json!({
            "templating": {"list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus"},
                {"name": "source", "type": "query"},
                {"name": "step", "type": "interval"},
                {"name": "q", "type": "constant", "query": "0.99"}
            ]},
            "annotations": {"list": [
                {"name": "builtin", "datasource": {"type": "grafana", "uid": "-- Grafana --"}},
                {"name": "alerts", "datasource": {"type": "prometheus", "uid": "${datasource}"},
                 "expr": "ALERTS{source=~\"$source\"}"}
            ]},
            "panels": [
                {"id": 1, "type": "timeseries", "title": "top",
                 "targets": [
                    {"refId": "A", "expr": "rate(a_total{source=~\"$source\"}[$__rate_interval])"},
                    {"refId": "B", "expr": ""},
                    {"refId": "C", "datasource": {"type": "__expr__"}, "expression": "$A * 2"}
                 ]},
                {"id": 2, "type": "row", "title": "open row", "collapsed": false, "panels": []},
                {"id": 3, "type": "row", "title": "collapsed", "collapsed": true, "panels": [
                    {"id": 4, "type": "stat", "title": "nested",
                     "datasource": {"type": "prometheus", "uid": "${datasource}"},
                     "targets": [{"refId": "A",
                                  "expr": "histogram_quantile($q, rate(b_bucket{source=~\"${source:regex}\"}[$step]))"}]},
                    {"id": 5, "type": "row", "title": "deeper", "panels": [
                        {"id": 6, "type": "timeseries", "title": "deepest",
                         "targets": [{"refId": "A", "expr": "increase(c_total{source=\"[[source]]\"}[$__range])"}]}
                    ]}
                ]},
                {"id": 7, "type": "text", "title": "no targets"}
            ]
        });
        assert_eq!(
            exprs(&dashboard),
            [
                "rate(a_total{source=~\".+\"}[5m])",
                "histogram_quantile(0.99, rate(b_bucket{source=~\".+\"}[5m]))",
                "increase(c_total{source=\".+\"}[5m])",
                "ALERTS{source=~\".+\"}",
            ]
        );
        let queries = dashboard_queries(&dashboard).unwrap();
        assert_eq!(queries[1].origin, "panel 4 \"nested\" target A");
    }

    #[test]
    fn api_wrapped_dashboards_are_read() {
        let wrapped = json!({"dashboard": {"panels": [
            {"id": 1, "title": "x", "targets": [{"refId": "A", "expr": "up"}]}
        ]}});
        assert_eq!(exprs(&wrapped), ["up"]);
    }

    #[test]
    fn unknown_variables_are_errors_and_anchors_are_not_variables() {
        let vars = Vars::from([("source".to_owned(), ANY_VALUE.to_owned())]);
        assert_eq!(
            substitute(r#"x{a=~"^b$", c=~"$source|d$"} [$__interval]"#, &vars).unwrap(),
            r#"x{a=~"^b$", c=~".+|d$"} [5m]"#
        );
        assert_eq!(substitute("a[5m]", &vars).unwrap(), "a[5m]");
        assert_eq!(substitute("${source} $", &vars).unwrap(), ".+ $");
        let err = substitute("x{a=~\"$sorce\"}", &vars).unwrap_err();
        assert!(err.contains("$sorce"), "{err}");
    }

    #[test]
    fn the_rules_file_quotes_every_expression() {
        let queries = [Query {
            origin: "panel 1 \"a\nb\" target A".to_owned(),
            expr: "sum by (x) (\n  rate(a{b=\"c\\\\d\"}[5m])\n)".to_owned(),
        }];
        let file = rules_file("d.json", &queries);
        assert!(
            file.contains("      # panel 1 \"a b\" target A\n"),
            "{file}"
        );
        assert!(
            file.contains(
                "      - record: dashboard:query_1\n        expr: \"sum by (x) (\\n  rate(a{b=\\\"c\\\\\\\\d\\\"}[5m])\\n)\"\n"
            ),
            "{file}"
        );
    }
}
