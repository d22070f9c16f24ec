//! What the dashboard test knows about pgweir's metrics: the agreed list of issue 6
//! ([`METRICS`]) and a small PromQL scanner that finds the series names and labels an
//! expression uses, so the dashboard cannot query a metric or label pgweir lacks.

use std::collections::BTreeSet;

/// Every metric pgweir exports, one a line: its type, its name and its labels. The
/// agreed list of issue 6; a histogram `NAME` is exported as `NAME_bucket` (with the
/// extra label `le`), `NAME_sum` and `NAME_count`.
pub const METRICS: &str = "
    gauge      pgweir_clients                        database user state
    gauge      pgweir_servers                        database user node state
    gauge      pgweir_pool_size                      database user node
    gauge      pgweir_reserve_in_use                 database user node
    gauge      pgweir_max_wait_seconds               database user node
    gauge      pgweir_replica_lag_seconds            database replica
    gauge      pgweir_replica_banned                 database replica
    gauge      pgweir_up
    counter    pgweir_transactions_total             database user
    counter    pgweir_queries_total                  database user
    counter    pgweir_received_bytes_total           database user
    counter    pgweir_sent_bytes_total               database user
    counter    pgweir_server_connects_total          database user node
    counter    pgweir_server_connect_failures_total  database user node
    counter    pgweir_client_logins_total            database user
    counter    pgweir_client_auth_failures_total     database user
    counter    pgweir_errors_total                   database user class
    counter    pgweir_timeouts_total                 kind
    counter    pgweir_prepared_cache_hits_total      database user
    counter    pgweir_prepared_cache_misses_total    database user
    counter    pgweir_replica_bans_total             database replica
    histogram  pgweir_wait_seconds                   database user
    histogram  pgweir_transaction_seconds            database user
    histogram  pgweir_query_seconds                  database user
";

/// One line of [`METRICS`].
pub struct Metric {
    kind: &'static str,
    pub name: &'static str,
    labels: Vec<&'static str>,
}

pub fn metrics() -> impl Iterator<Item = Metric> {
    METRICS
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut words = line.split_whitespace();
            let kind = words.next().unwrap();
            assert!(["gauge", "counter", "histogram"].contains(&kind), "{line}");
            Metric {
                kind,
                name: words.next().unwrap(),
                labels: words.collect(),
            }
        })
}

/// The metric a series name belongs to (`pgweir_wait_seconds_bucket` belongs to the
/// histogram `pgweir_wait_seconds`), with its labels.
fn metric(series: &str) -> Option<(&'static str, Vec<&'static str>)> {
    metrics().find_map(|mut m| {
        match (m.kind, series.strip_prefix(m.name)?) {
            ("histogram", "_bucket") => m.labels.push("le"),
            ("histogram", "_sum" | "_count") | ("gauge" | "counter", "") => {}
            _ => return None,
        }
        Some((m.name, m.labels))
    })
}

/// Checks a PromQL expression's `pgweir_*` series names and the labels it matches on
/// or aggregates by (`by (...)`), returning the metrics it uses. A label is fine if
/// any metric in the expression has it: a cheap check that still catches typos and a
/// `user` filter on a metric without users.
pub fn check_expr(expr: &str) -> Result<BTreeSet<&'static str>, String> {
    let mut metrics = BTreeSet::new();
    let mut known_labels = BTreeSet::new();
    let mut labels = Vec::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    // Each label list starts after `{` (matchers) or `by (` / `without (`.
    let mut in_matchers = false;
    let mut in_grouping = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            let end = chars[i + 1..].iter().position(|&d| d == c);
            i += 2 + end.ok_or("unterminated string")?;
            continue;
        }
        if c == '[' {
            let end = chars[i..].iter().position(|&d| d == ']');
            i += 1 + end.ok_or("unterminated range")?;
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace()).copied();
            if in_matchers || in_grouping {
                labels.push(word);
            } else if word.starts_with("pgweir_") {
                let (name, metric_labels) =
                    metric(&word).ok_or(format!("unknown metric {word}"))?;
                metrics.insert(name);
                known_labels.extend(metric_labels);
            } else if (word == "by" || word == "without") && next == Some('(') {
                in_grouping = true;
                i = start + chars[start..].iter().position(|&d| d == '(').unwrap() + 1;
            }
            continue;
        }
        match c {
            '{' => in_matchers = true,
            '}' => in_matchers = false,
            ')' => in_grouping = false,
            _ => {}
        }
        i += 1;
    }
    match labels.iter().find(|l| !known_labels.contains(l.as_str())) {
        Some(label) => Err(format!("label {label} is on none of {metrics:?}")),
        None => Ok(metrics),
    }
}

/// The scanner itself: it must reject what the dashboard test relies on it to reject.
#[test]
fn check_expr_rejects_unknown_metrics_and_labels() {
    let ok = |e: &str| check_expr(e).map(|m| m.into_iter().collect::<Vec<_>>());
    assert_eq!(
        ok(
            r#"histogram_quantile(0.99, sum by (le) (rate(pgweir_wait_seconds_bucket{user=~"$u"}[5m])))"#
        ),
        Ok(vec!["pgweir_wait_seconds"])
    );
    assert_eq!(
        ok(r#"sum by (kind) (pgweir_timeouts_total{kind!="{by (y)}"})"#).map(|m| m.len()),
        Ok(1)
    );
    assert!(
        ok("rate(pgweir_transactions[1m])").is_err(),
        "unknown metric"
    );
    assert!(
        ok("pgweir_wait_seconds").is_err(),
        "a histogram has no bare series"
    );
    assert!(ok("pgweir_up_bucket").is_err(), "a gauge has no buckets");
    assert!(
        ok(r#"pgweir_timeouts_total{user="a"}"#).is_err(),
        "label not on the metric"
    );
    assert!(
        ok("sum by (state) (pgweir_queries_total)").is_err(),
        "grouping label"
    );
    assert!(ok(r#"pgweir_up{a="}"#).is_err(), "unterminated string");
}
