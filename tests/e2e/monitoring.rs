//! The Grafana dashboard and the Prometheus alert rules under `monitoring/`: promtool (built
//! from Prometheus's own Go module) checks the rules and runs their unit tests, the
//! PrometheusRule in `kustomize/components/monitoring` must hold the same rules, and every
//! metric the dashboard and the rules name must be exported by a real `modelsync controller`
//! (against the local control plane) or a real `modelsync lambdas`, as must the families the
//! README documents for users' own dashboards (receiver, notifications, lambda server), so
//! renaming a metric breaks the build rather than a dashboard.

mod common;
mod secure_lambda;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use modelsync_testenv::kubectl::relative_path;
use modelsync_testenv::promtool;
use promql_parser::label::MatchOp;
use promql_parser::parser::{self, Expr};
use promql_parser::util::{ExprVisitor, walk_expr};
use serde::Deserialize as _;
use serde_json::Value;
use serde_yaml_ng::Value as Yaml;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

const RULES: &str = "monitoring/prometheus/rules.yaml";
const RULES_TEST: &str = "monitoring/prometheus/rules_test.yaml";
const DASHBOARD: &str = "monitoring/grafana/modelsync.json";
const COMPONENT: &str = "kustomize/components/monitoring";

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn yaml(path: &str) -> Yaml {
    serde_yaml_ng::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

fn promtool(args: &[&str]) -> String {
    let out = promtool::run(args).unwrap_or_else(|e| panic!("{e:#}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The alerting rules of a rules file: (alert name, rule).
fn alerts(rules: &Yaml) -> Vec<(String, Yaml)> {
    let groups = rules["groups"].as_sequence().expect("a groups list");
    groups
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("a rules list").iter())
        .filter_map(|r| Some((r["alert"].as_str()?.to_owned(), r.clone())))
        .collect()
}

#[test]
fn the_rules_pass_promtool_check() {
    let out = promtool(&["check", "rules", &root().join(RULES).to_string_lossy()]);
    assert!(out.contains("SUCCESS"), "{out}");
}

/// The component renders with kustomize, and its PrometheusRule's spec is the plain file.
#[test]
fn the_prometheus_rule_holds_the_plain_rules_and_passes_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let component = relative_path(dir.path(), &root().join(COMPONENT));
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
             components:\n- {component}\n"
        ),
    )
    .unwrap();
    let out = Command::new("kubectl")
        .args(["kustomize", &dir.path().to_string_lossy()])
        .output()
        .expect("running kubectl: install kubectl and put it on PATH");
    assert!(
        out.status.success(),
        "kubectl kustomize {COMPONENT} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = String::from_utf8(out.stdout).unwrap();
    let rule = serde_yaml_ng::Deserializer::from_str(&rendered)
        .map(|doc| Yaml::deserialize(doc).unwrap())
        .find(|doc| doc["kind"].as_str() == Some("PrometheusRule"))
        .expect("the component renders a PrometheusRule");
    assert_eq!(
        rule["spec"],
        yaml(RULES),
        "{COMPONENT}/prometheusrule.yaml differs from {RULES}: copy that file's groups into its \
         spec"
    );
    let spec = dir.path().join("spec.yaml");
    std::fs::write(&spec, serde_yaml_ng::to_string(&rule["spec"]).unwrap()).unwrap();
    let checked = promtool(&["check", "rules", &spec.to_string_lossy()]);
    assert!(checked.contains("SUCCESS"), "{checked}");
}

/// `promtool test rules` feeds the sample series of `rules_test.yaml`; each alert must have a
/// case where it fires and one where it must not, so no alert goes untested.
#[test]
fn every_alert_fires_when_it_should_and_not_when_it_should_not() {
    let tests = yaml(RULES_TEST);
    let mut fires = BTreeSet::new();
    let mut silent = BTreeSet::new();
    for group in tests["tests"].as_sequence().expect("a tests list") {
        for case in group["alert_rule_test"].as_sequence().into_iter().flatten() {
            let name = case["alertname"].as_str().unwrap().to_owned();
            match case["exp_alerts"].as_sequence() {
                Some(expected) if !expected.is_empty() => fires.insert(name),
                _ => silent.insert(name),
            };
        }
    }
    for (alert, _) in alerts(&yaml(RULES)) {
        assert!(
            fires.contains(&alert),
            "{RULES_TEST} never expects {alert} to fire"
        );
        assert!(
            silent.contains(&alert),
            "{RULES_TEST} never expects {alert} to stay silent"
        );
    }
    let dir = root().join("monitoring/prometheus");
    let out = Command::new(promtool::promtool().unwrap())
        .args(["test", "rules", "rules_test.yaml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool test rules failed:\n{text}");
    assert!(text.contains("SUCCESS"), "{text}");
}

#[test]
fn every_alert_says_what_happened_and_what_to_do() {
    for (alert, rule) in alerts(&yaml(RULES)) {
        for key in ["summary", "description"] {
            let text = rule["annotations"][key].as_str().unwrap_or_default();
            assert!(text.len() > 20, "{alert} has no useful {key} annotation");
        }
        let severity = rule["labels"]["severity"].as_str();
        assert!(
            matches!(severity, Some("warning" | "critical")),
            "{alert}: severity {severity:?}"
        );
    }
}

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD)).unwrap_or_else(|e| panic!("{DASHBOARD}: {e}"))
}

/// Panels, rows' nested panels included, that show data (rows only group).
fn data_panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("a panels list") {
        if panel["type"] == "row" {
            out.extend(panel["panels"].as_array().into_iter().flatten());
        } else {
            out.push(panel);
        }
    }
    out
}

const DATASOURCE: &str = "${datasource}";

#[test]
fn the_dashboard_is_grafana_json_whose_panels_all_use_the_datasource_variable() {
    let d = dashboard();
    assert!(
        d["title"].is_string() && d["uid"].is_string(),
        "title and uid"
    );
    assert!(d["schemaVersion"].as_u64().unwrap() >= 36);
    let variables = d["templating"]["list"].as_array().unwrap();
    assert!(
        variables.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "no Prometheus datasource variable named `datasource`"
    );
    let panels = data_panels(&d);
    assert!(panels.len() >= 12, "only {} panels", panels.len());
    let mut ids = BTreeSet::new();
    for panel in &panels {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "{title}: id reused"
        );
        assert_eq!(
            panel["datasource"]["uid"], DATASOURCE,
            "{title}: datasource"
        );
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(x + w <= 24, "{title}: wider than the 24-column grid");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            assert_eq!(
                target["datasource"]["uid"], DATASOURCE,
                "{title}: query datasource"
            );
            let expr = target["expr"].as_str().unwrap();
            parser::parse(&grafana_to_promql(expr))
                .unwrap_or_else(|e| panic!("{title}: {expr:?} is not PromQL: {e}"));
        }
    }
    for v in variables.iter().filter(|v| v["type"] == "query") {
        assert_eq!(v["datasource"]["uid"], DATASOURCE, "variable {}", v["name"]);
    }
}

/// Grafana's variables made PromQL: range variables become a duration, others (used inside
/// label matchers) a plain value.
fn grafana_to_promql(expr: &str) -> String {
    let mut out = expr.to_owned();
    for range in ["$__rate_interval", "$__interval", "$__range"] {
        out = out.replace(range, "5m");
    }
    let mut result = String::new();
    let mut chars = out.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            result.push(c);
            continue;
        }
        let braced = chars.peek() == Some(&'{');
        if braced {
            chars.next();
        }
        while chars
            .peek()
            .is_some_and(|c| c.is_alphanumeric() || *c == '_' || (braced && *c != '}'))
        {
            chars.next();
        }
        if braced {
            chars.next();
        }
        result.push('x');
    }
    result
}

struct Names(BTreeSet<String>);

impl ExprVisitor for Names {
    type Error = std::convert::Infallible;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, Self::Error> {
        let vs = match expr {
            Expr::VectorSelector(vs) => vs,
            Expr::MatrixSelector(ms) => &ms.vs,
            _ => return Ok(true),
        };
        self.0.extend(vs.name.clone());
        let by_label = vs
            .matchers
            .matchers
            .iter()
            .chain(vs.matchers.or_matchers.iter().flatten());
        self.0.extend(
            by_label
                .filter(|m| m.name == "__name__" && m.op == MatchOp::Equal)
                .map(|m| m.value.clone()),
        );
        Ok(true)
    }
}

/// Metric names an expression selects.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let parsed = parser::parse(expr).unwrap_or_else(|e| panic!("{expr:?} is not PromQL: {e}"));
    let mut names = Names(BTreeSet::new());
    walk_expr(&mut names, &parsed).unwrap();
    names.0
}

/// Every metric name the dashboard and the rules select, with where each is used.
fn used_metrics() -> BTreeMap<String, BTreeSet<String>> {
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let d = dashboard();
    for panel in data_panels(&d) {
        for target in panel["targets"].as_array().unwrap() {
            let expr = grafana_to_promql(target["expr"].as_str().unwrap());
            for name in metric_names(&expr) {
                let title = panel["title"].as_str().unwrap_or_default();
                used.entry(name)
                    .or_default()
                    .insert(format!("panel {title:?}"));
            }
        }
    }
    for v in d["templating"]["list"].as_array().unwrap() {
        // `label_values(METRIC, label)`: the metric is what the variable lists from.
        if let Some(q) = v["definition"]
            .as_str()
            .and_then(|q| q.strip_prefix("label_values("))
        {
            let name = q.split([',', ')']).next().unwrap().trim();
            for name in metric_names(name) {
                used.entry(name)
                    .or_default()
                    .insert(format!("variable {}", v["name"]));
            }
        }
    }
    for (alert, rule) in alerts(&yaml(RULES)) {
        for name in metric_names(rule["expr"].as_str().unwrap()) {
            used.entry(name)
                .or_default()
                .insert(format!("alert {alert}"));
        }
    }
    used
}

/// The series names a scrape can hold, from its `# TYPE` lines (so a labelled metric with no
/// sample yet counts) and its samples, with a histogram's `_bucket`, `_sum` and `_count` and a
/// counter's `_total` as Prometheus stores them from OpenMetrics text.
fn exported(scrape: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in scrape.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split_whitespace();
            let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" | "gaugehistogram" => &["_bucket", "_sum", "_count"],
                "summary" => &["", "_sum", "_count"],
                "info" => &["_info"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    names
}

#[test]
fn names_are_found_in_expressions_and_scrapes() {
    let names = metric_names(
        "sum by (le) (rate(a_bucket{x=\"1\"}[5m])) / on() b_total + {__name__=\"c\"} \
         unless absent(d)",
    );
    assert_eq!(
        names,
        ["a_bucket", "b_total", "c", "d"].map(String::from).into()
    );
    assert_eq!(
        grafana_to_promql("rate(m{ns=~\"$namespace\"}[$__rate_interval])"),
        "rate(m{ns=~\"x\"}[5m])"
    );
    let scrape = "# HELP h Time.\n# TYPE h histogram\n# TYPE c counter\n# TYPE g gauge\ng 1\n";
    let got = exported(scrape);
    for name in ["h_bucket", "h_sum", "h_count", "c_total", "g"] {
        assert!(got.contains(name), "{name} in {got:?}");
    }
    assert!(!got.contains("c"), "a counter is stored as c_total");
}

#[tokio::test]
async fn every_metric_the_dashboard_and_rules_use_is_exported_by_a_real_process() {
    let used = used_metrics();
    assert!(
        used.len() >= 15,
        "only {} metrics found: {:?}",
        used.len(),
        used.keys()
    );

    let env = common::Env::new("monitoring").await;
    let mut controller = env.controller();
    controller
        .wait_healthy(Duration::from_secs(60))
        .await
        .expect("the controller becomes healthy");
    let controller_scrape = controller.scrape().await.expect("scraping the controller");
    let (_server, port) = secure_lambda::start_lambdas(env.logs.path()).await;
    let lambdas_scrape = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .bearer_auth(secure_lambda::TOKEN)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("scraping modelsync lambdas")
        .text()
        .await
        .unwrap();

    let mut have = exported(&controller_scrape);
    have.extend(exported(&lambdas_scrape));
    let missing: Vec<String> = used
        .iter()
        .filter(|(name, _)| !have.contains(*name))
        .map(|(name, uses)| {
            format!(
                "{name} (used by {})",
                uses.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        })
        .collect();
    assert!(
        missing.is_empty(),
        "metrics used in {DASHBOARD} or {RULES} that neither `modelsync controller` nor \
         `modelsync lambdas` exports; rename them there or export them:\n  {}\n\
         controller:\n{controller_scrape}\nlambdas:\n{lambdas_scrape}",
        missing.join("\n  ")
    );
    for (process, scrape, names) in [
        (
            "modelsync controller",
            &controller_scrape,
            CONTROLLER_FAMILIES,
        ),
        ("modelsync lambdas", &lambdas_scrape, LAMBDAS_FAMILIES),
    ] {
        let exported = exported(scrape);
        let absent: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !exported.contains(*n))
            .collect();
        assert!(
            absent.is_empty(),
            "`{process}` does not export {absent:?} before its first event; register each \
             labelled family wrapped in modelsync_telemetry::Declared, or fix the name here and \
             in the README:\n{scrape}"
        );
    }
    controller.stop();
}

/// Families no panel or rule uses yet but a user's dashboard may: each must be in `/metrics`
/// from the start, at zero, so a rename breaks this test instead of someone's alert. The
/// labelled ones are the point: an undeclared family has no line until its first series.
const CONTROLLER_FAMILIES: &[&str] = &[
    "modelsync_receiver_hooks_total",
    "modelsync_receiver_annotations_written_total",
    "modelsync_receiver_annotation_errors_total",
    "modelsync_receiver_coalesced_total",
    "modelsync_notifications_sent_total",
    "modelsync_notifications_failed_total",
    "modelsync_notification_retries_total",
    "modelsync_notifications_dropped_total",
    "modelsync_notification_queue_depth",
];

/// The lambda server's, for the "when to add a replica" advice in the READMEs and for hooks
/// and notifications that the test's server has no configuration for.
const LAMBDAS_FAMILIES: &[&str] = &[
    "modelsync_lambda_server_requests_total",
    "modelsync_lambda_server_request_duration_seconds_bucket",
    "modelsync_lambda_server_answers_total",
    "modelsync_lambda_server_notifications_total",
    "modelsync_lambda_server_git_hooks_total",
    "git_sync_count_total",
    "git_sync_duration_seconds_bucket",
];

/// The value of the series `series` (name and labels exactly as exported) in a scrape.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The series the alerts read move with what really happens: a run that fails and one that
/// succeeds, a lambda that fails, a status write.
#[tokio::test]
async fn the_alerts_series_follow_a_real_modelsync() {
    use kube::ResourceExt;
    use modelsync_testenv::tekton::{self, RunEnd};
    use serde_json::json;

    let env = common::Env::new("monitoring-live").await;
    let lambda = common::Lambda::start(env.logs.path()).await;
    lambda
        .answer(
            "train",
            json!({"needsSync": true, "parameters": {"model": "m-1"}}),
        )
        .await;
    let controller = env.controller();
    env.apply(common::modelsync(
        "trainer",
        &lambda.url("train"),
        json!({}),
    ))
    .await;
    let ms = format!("namespace=\"{}\",name=\"trainer\"", env.ns);
    let wait = Duration::from_secs(30);

    let run = env
        .eventually(wait, "a run", || async {
            env.runs_of("trainer").await.pop()
        })
        .await;
    tekton::finish(&env.client, &env.ns, &run.name_any(), RunEnd::Failed)
        .await
        .unwrap();
    let failed = format!("modelsync_runs_finished_total{{{ms},result=\"Failed\"}}");
    let in_a_row = format!("modelsync_runs_failed_in_a_row{{{ms}}}");
    env.eventually(wait, "the failed run counted", || async {
        let text = controller.scrape().await.ok()?;
        (sample(&text, &failed) == Some(1.0) && sample(&text, &in_a_row) == Some(1.0)).then_some(())
    })
    .await;

    let second = env
        .eventually(wait, "a second run", || async {
            let runs = env.runs_of("trainer").await;
            runs.into_iter().find(|r| r.name_any() != run.name_any())
        })
        .await;
    // From now on the lambda answers a string, not an object: every call fails. Set before the
    // run ends, or a "yes" would start a third run and rest the lambda (Forbid).
    lambda.answer("train", json!("not an object")).await;
    tekton::finish(&env.client, &env.ns, &second.name_any(), RunEnd::Succeeded)
        .await
        .unwrap();
    env.eventually(wait, "a success resets the failures in a row", || async {
        let text = controller.scrape().await.ok()?;
        (sample(&text, &in_a_row) == Some(0.0)).then_some(())
    })
    .await;

    let failing = format!("modelsync_lambda_failing{{{ms}}}");
    let text = env
        .eventually(wait, "the lambda flagged as failing", || async {
            let text = controller.scrape().await.ok()?;
            (sample(&text, &failing) == Some(1.0)).then_some(text)
        })
        .await;
    let created =
        "modelsync_api_writes_total{resource=\"pipelineruns\",verb=\"create\",result=\"ok\"}";
    assert!(sample(&text, created) >= Some(2.0), "{text}");
    let written = sample(&text, "modelsync_last_status_write_timestamp_seconds").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (now - written).abs() < 60.0,
        "last status write at {written}, now {now}"
    );
}
