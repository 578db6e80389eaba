//! The Grafana dashboard (examples/grafana/portcullis.json) and the
//! Prometheus alerts (examples/prometheus/alerts.yml) shipped for
//! operators: the rules load and fire as their unit tests say (promtool),
//! and every metric they read is one portcullis really exports.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::idp::Idp;
use common::service::{Service, local_toml};
use common::{browser, login, plain, verify};
use serde_json::Value;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Whether promtool (Debian: the `prometheus` package) is installed. Its
/// checks are skipped without it, saying so; the metric names are checked
/// either way.
fn have_promtool() -> bool {
    let found = Command::new("promtool").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        eprintln!(
            "skipping the promtool checks: promtool is not installed (Debian: apt-get install prometheus; \
             or the promtool of a Prometheus release)"
        );
    }
    found
}

fn promtool(args: &[&str]) -> (bool, String) {
    let out = Command::new("promtool").args(args).current_dir(repo("examples/prometheus")).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn the_alert_rules_load_and_fire_as_their_tests_say() {
    if !have_promtool() {
        return;
    }
    let (ok, out) = promtool(&["check", "rules", "alerts.yml"]);
    assert!(ok, "promtool check rules examples/prometheus/alerts.yml:\n{out}");
    assert!(out.contains("SUCCESS: 8 rules found"), "{out}");
    let (ok, out) = promtool(&["test", "rules", "alerts.test.yml"]);
    assert!(ok, "promtool test rules examples/prometheus/alerts.test.yml:\n{out}");

    // The unit tests would notice an alert that never fires: one whose
    // threshold cannot be reached fails them.
    let dir = tempfile::tempdir().unwrap();
    let rules = std::fs::read_to_string(repo("examples/prometheus/alerts.yml")).unwrap();
    let broken = rules.replace("rate(portcullis_store_errors_total[5m])) > 0", "rate(portcullis_store_errors_total[5m])) > 1000");
    assert_ne!(broken, rules);
    std::fs::write(dir.path().join("alerts.yml"), broken).unwrap();
    std::fs::copy(repo("examples/prometheus/alerts.test.yml"), dir.path().join("alerts.test.yml")).unwrap();
    let out = Command::new("promtool").args(["test", "rules", "alerts.test.yml"]).current_dir(dir.path()).output().unwrap();
    assert!(!out.status.success(), "promtool passed alert tests for an alert that cannot fire");
}

/// The `portcullis_…` metric names a text uses.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("portcullis_") {
        let name: String =
            rest[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':').collect();
        rest = &rest[i + name.len()..];
        out.insert(name);
    }
    out
}

/// Every PromQL expression of the dashboard: panel targets and template
/// variable queries.
fn expressions(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "definition", Value::String(s)) => out.push(s.clone()),
                    ("query", Value::String(s)) if s.contains('(') => out.push(s.clone()),
                    _ => expressions(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| expressions(i, out)),
        _ => {}
    }
}

/// The sample names a `/metrics` answer holds: those of its samples, and
/// those its `# TYPE` lines promise (a family appears there before it has
/// counted anything).
fn exported(metrics: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in metrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split_whitespace();
            let (Some(name), Some(kind)) = (words.next(), words.next()) else { continue };
            out.insert(name.to_string());
            let suffixes: &[&str] = match kind {
                "counter" => &["_total", "_created"],
                "histogram" => &["_bucket", "_sum", "_count", "_created"],
                _ => &[],
            };
            out.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        } else if !line.starts_with('#') && !line.is_empty() {
            let name: String = line.chars().take_while(|c| *c != '{' && *c != ' ').collect();
            out.insert(name);
        }
    }
    out
}

#[tokio::test]
async fn the_dashboard_and_alerts_read_metrics_portcullis_exports() {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(repo("examples/grafana/portcullis.json")).unwrap())
            .expect("examples/grafana/portcullis.json is JSON");
    let panels = dashboard["panels"].as_array().expect("the dashboard has panels");
    let mut ids = BTreeSet::new();
    for panel in panels {
        assert!(ids.insert(panel["id"].as_u64().expect("every panel has an id")), "two panels share id {}", panel["id"]);
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"].as_array().map(Vec::len).unwrap_or(0);
        assert!(targets > 0, "panel {:?} queries nothing", panel["title"]);
        // Each panel asks the data source chosen in the dashboard's menu.
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "panel {:?}", panel["title"]);
    }
    let mut exprs = Vec::new();
    expressions(&dashboard, &mut exprs);
    let alerts = std::fs::read_to_string(repo("examples/prometheus/alerts.yml")).unwrap();
    let mut used = metric_names(&exprs.join("\n"));
    used.extend(metric_names(&alerts));
    // What the issue asks the dashboard to show, each by its metric.
    for name in [
        "portcullis_verify_requests_total",
        "portcullis_verify_duration_seconds_bucket",
        "portcullis_logins_total",
        "portcullis_store_errors_total",
        "portcullis_store_duration_seconds_bucket",
        "portcullis_graph_calls_total",
        "portcullis_cache_lookups_total",
        "portcullis_sessions_created_total",
        "portcullis_sessions_ended_total",
    ] {
        assert!(metric_names(&exprs.join("\n")).contains(name), "the dashboard does not show {name}");
    }

    // A login, a few verifies and a sign-out, then what /metrics says.
    let idp = Idp::start().await;
    let svc = Service::start(&local_toml(&idp)).await;
    svc.wait_ready().await;
    let client = browser();
    let home = format!("{}/", svc.url);
    assert_eq!(verify(&client, &svc.url, &home).await.status(), 401);
    login(&client, &svc.url, &home).await;
    assert_eq!(verify(&client, &svc.url, &home).await.status(), 200);
    let out = client.get(format!("{}/oauth2/logout", svc.url)).send().await.unwrap();
    assert!(out.status().is_redirection(), "sign-out: {}", out.status());
    assert_eq!(verify(&client, &svc.url, &home).await.status(), 401);
    let r = plain().get(format!("{}/metrics", svc.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let metrics = r.text().await.unwrap();
    let have = exported(&metrics);
    assert!(have.contains("portcullis_logins_total"), "no login counted:\n{metrics}");

    let unknown: Vec<&String> = used.iter().filter(|n| !have.contains(*n)).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard or the alerts read metrics portcullis does not export: {unknown:?}\n/metrics:\n{metrics}"
    );
}

#[test]
fn names_are_read_from_queries_and_from_the_exposition() {
    assert_eq!(
        metric_names("sum(rate(portcullis_a_total{x=\"portcullis_not\"}[5m])) / portcullis_b"),
        BTreeSet::from(["portcullis_a_total".into(), "portcullis_b".into(), "portcullis_not".into()])
    );
    let exposition = "# TYPE portcullis_h histogram\n# TYPE portcullis_c counter\nportcullis_g 1\n# EOF\n";
    let have = exported(exposition);
    for name in ["portcullis_h_bucket", "portcullis_h_count", "portcullis_c_total", "portcullis_g"] {
        assert!(have.contains(name), "{name}");
    }
    assert!(!have.contains("portcullis_c_bucket"));
}
