//! The template converter (`modelsync_controller::template::v1_spec`, Tekton v1beta1 → v1)
//! and the run builder that puts a lambda's parameters into the converted spec.

use std::collections::{BTreeMap, BTreeSet};

use modelsync_api::lambda::{NeedsSyncAnswer, ParamValue};
use modelsync_api::modelsync::{PipelineRunTemplate, TemplateMetadata};
use modelsync_controller::template::{RunRequest, build_run, v1_spec};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Map, Value, json};

use crate::target::{Target, Verdict};
use crate::targets::{json, tekton};

pub struct Templates;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    V1beta1,
    V1,
}

/// A template spec written in one of Tekton's shapes, maybe with one value replaced by JSON
/// of another shape, and the parameters a lambda answered with.
#[derive(Clone, Debug)]
pub struct Case {
    pub shape: Shape,
    pub spec: Value,
    /// Where the spec was broken, when it was.
    pub broken: Option<String>,
    pub params: BTreeMap<String, ParamValue>,
}

const V1BETA1_ONLY: [&str; 5] = [
    "serviceAccountName",
    "serviceAccountNames",
    "podTemplate",
    "timeout",
    "resources",
];
const FIELD: &str = "spec.pipelineRunTemplate.spec";

impl Target for Templates {
    const NAME: &'static str = "template";
    const ABOUT: &'static str =
        "PipelineRun templates, v1beta1 and v1 (v1_spec, build_run): output parses as v1";
    type Input = Case;

    fn inputs() -> BoxedStrategy<Case> {
        let spec = prop_oneof![
            3 => v1beta1().prop_map(|s| (Shape::V1beta1, s)),
            1 => v1().prop_map(|s| (Shape::V1, s)),
        ];
        let breakage = prop_oneof![
            2 => Just(None),
            1 => (any::<Index>(), any::<Index>(), any::<Index>(), any::<u8>(), json::value())
                .prop_map(Some),
        ];
        let params = proptest::collection::btree_map(
            param_name(),
            prop_oneof![
                3 => "[a-z0-9.-]{1,10}".prop_map(ParamValue::String),
                1 => proptest::collection::vec("[a-z0-9]{1,5}", 1..3).prop_map(ParamValue::Array),
            ],
            0..3,
        );
        (spec, breakage, params)
            .prop_map(|((shape, mut spec), breakage, params)| {
                let broken = breakage.map(|(a, b, c, depth, with)| {
                    break_value(&mut spec, [a, b, c], depth % 3, with)
                });
                Case {
                    shape,
                    spec,
                    broken,
                    params,
                }
            })
            .boxed()
    }

    fn check(case: &Case) -> Verdict {
        let template = PipelineRunTemplate {
            metadata: TemplateMetadata::default(),
            spec: case.spec.clone(),
        };
        let converted = match v1_spec(&template) {
            Ok(spec) => spec,
            Err(err) => return refused(case, &err.0, "invalid_template"),
        };
        if let Err(problem) = check_conversion(case, &converted) {
            return Verdict::Broken(problem);
        }
        match run_from(&template, &case.params) {
            Ok(run) => check_run(&converted, &case.params, &run),
            Err(message) => refused(case, &message, "invalid_params"),
        }
    }

    fn show(case: &Case) -> String {
        format!(
            "shape: {:?}\nbroken at: {:?}\nspec:\n{}\nparams: {:?}\n",
            case.shape,
            case.broken,
            serde_json::to_string_pretty(&case.spec).unwrap_or_default(),
            case.params
        )
    }
}

fn refused(case: &Case, message: &str, kind: &str) -> Verdict {
    if !message.contains(FIELD) {
        return Verdict::broken("names", format!("{message:?} names no field"));
    }
    let has_pipeline = case
        .spec
        .as_object()
        .is_some_and(|s| s.contains_key("pipelineRef") || s.contains_key("pipelineSpec"));
    let has_resources = case.spec.get("resources").is_some();
    if case.broken.is_none() && has_pipeline && !has_resources {
        return Verdict::broken("valid-refused", message);
    }
    let kind = if has_resources && kind == "invalid_template" {
        "pipeline_resources"
    } else {
        kind
    };
    Verdict::Rejected(kind.into())
}

fn run_from(
    template: &PipelineRunTemplate,
    params: &BTreeMap<String, ParamValue>,
) -> Result<Value, String> {
    let answer = NeedsSyncAnswer {
        needs_sync: true,
        parameters: params.clone(),
        reason: Some("fuzz".into()),
        revision: None,
    };
    build_run(&RunRequest {
        name: "fuzz-0123456789",
        namespace: "default",
        modelsync: "fuzz",
        owner: json!({"kind": "ModelSync", "name": "fuzz"}),
        template,
        params,
        answer: &answer,
        decided_at: "2026-01-01T00:00:00Z",
        shard: None,
    })
    .map_err(|e| e.0)
}

/// What a conversion must give: for a valid template, a strict v1 spec meaning the same; for
/// any template, no v1beta1 field left, nothing dropped, no null made up, and a second
/// conversion changing nothing.
fn check_conversion(case: &Case, out: &Map<String, Value>) -> Result<(), String> {
    let input = case
        .spec
        .as_object()
        .ok_or("conversion: a non-object converted")?;
    let out_value = Value::Object(out.clone());
    if let Some(left) = V1BETA1_ONLY.iter().find(|k| out.contains_key(**k)) {
        return Err(format!("v1beta1-left: {left} is still in {out_value}"));
    }
    if nulls(&out_value) > nulls(&case.spec) {
        return Err(format!("null-made-up: {out_value}"));
    }
    let again = v1_spec(&PipelineRunTemplate {
        metadata: TemplateMetadata::default(),
        spec: out_value.clone(),
    });
    if again.as_ref() != Ok(out) {
        return Err(format!(
            "idempotent: {out_value} converted again is {again:?}"
        ));
    }
    dropped(input, out)?;
    if case.broken.is_some() {
        return Ok(());
    }
    if let Err(e) = serde_json::from_value::<tekton::PipelineRunSpec>(out_value.clone()) {
        return Err(format!("not-v1: {e} in {out_value}"));
    }
    match case.shape {
        Shape::V1 if input != out => Err(format!("v1-changed: {out_value}")),
        Shape::V1 => Ok(()),
        Shape::V1beta1 => same_meaning(input, out),
    }
}

/// Each v1beta1 value is in its v1 home, or the template was refused.
fn dropped(input: &Map<String, Value>, out: &Map<String, Value>) -> Result<(), String> {
    let at = |path: &[&str]| path.iter().try_fold(out, |m, k| m.get(*k)?.as_object());
    let home = |path: &[&str], key: &str| at(path).and_then(|m| m.get(key));
    for (key, path, v1_key) in [
        (
            "serviceAccountName",
            &["taskRunTemplate"][..],
            "serviceAccountName",
        ),
        ("podTemplate", &["taskRunTemplate"][..], "podTemplate"),
    ] {
        if let Some(v) = input.get(key)
            && home(path, v1_key) != Some(v)
        {
            return Err(format!(
                "dropped: {key} {v} is not at {}.{v1_key}",
                path.join(".")
            ));
        }
    }
    if let Some(v) = input.get("timeout")
        && !v.is_null()
    {
        let pipeline = home(&["timeouts"], "pipeline");
        if pipeline.is_none() {
            return Err(format!("dropped: timeout {v} is not at timeouts.pipeline"));
        }
    }
    if let Some(names) = input.get("serviceAccountNames")
        && !names.is_null()
    {
        let Some(names) = names.as_array() else {
            return Err(format!(
                "dropped: serviceAccountNames {names} accepted and lost"
            ));
        };
        for entry in names {
            let task = entry.get("taskName");
            let found = out
                .get("taskRunSpecs")
                .and_then(Value::as_array)
                .is_some_and(|specs| specs.iter().any(|s| s.get("pipelineTaskName") == task));
            if !found {
                return Err(format!(
                    "dropped: serviceAccountNames entry {entry} has no taskRunSpecs entry"
                ));
            }
        }
    }
    Ok(())
}

/// The v1 spec says what the v1beta1 one said.
fn same_meaning(input: &Map<String, Value>, out: &Map<String, Value>) -> Result<(), String> {
    for kept in [
        "pipelineRef",
        "pipelineSpec",
        "params",
        "workspaces",
        "status",
    ] {
        if input.get(kept) != out.get(kept) {
            return Err(format!("changed: {kept}"));
        }
    }
    if let Some(t) = input.get("timeout")
        && input.get("timeouts").is_none()
        && out["timeouts"]["pipeline"] != *t
    {
        return Err(format!("timeout: {t} became {}", out["timeouts"]));
    }
    let empty = Vec::new();
    let specs = out
        .get("taskRunSpecs")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let named = |task: &Value| -> Vec<&Value> {
        specs
            .iter()
            .filter(|s| s.get("pipelineTaskName") == Some(task))
            .collect()
    };
    let old_specs = input.get("taskRunSpecs").and_then(Value::as_array);
    for old in old_specs.unwrap_or(&empty) {
        let task = &old["pipelineTaskName"];
        let [new] = named(task)[..] else {
            return Err(format!(
                "task-run-specs: {task} is not in exactly one entry"
            ));
        };
        for (beta, v1) in [
            ("taskServiceAccountName", "serviceAccountName"),
            ("taskPodTemplate", "podTemplate"),
            ("stepOverrides", "stepSpecs"),
            ("sidecarOverrides", "sidecarSpecs"),
            ("metadata", "metadata"),
            ("computeResources", "computeResources"),
        ] {
            let moved_sa = beta == "taskServiceAccountName" && old.get(beta).is_none();
            if !moved_sa && old.get(beta) != new.get(v1) {
                return Err(format!("task-run-specs: {task} {beta} became {new}"));
            }
        }
    }
    for entry in input
        .get("serviceAccountNames")
        .and_then(Value::as_array)
        .unwrap_or(&empty)
    {
        let task = &entry["taskName"];
        let [new] = named(task)[..] else {
            return Err(format!(
                "service-account-names: {task} is not in exactly one entry"
            ));
        };
        // A taskRunSpecs account wins over a serviceAccountNames one, as in Tekton v1beta1.
        let own = old_specs
            .into_iter()
            .flatten()
            .find(|s| s.get("pipelineTaskName") == Some(task))
            .and_then(|s| s.get("taskServiceAccountName"));
        let want = own.or(entry.get("serviceAccountName"));
        if new.get("serviceAccountName") != want {
            return Err(format!(
                "service-account-names: {task} has {new}, want {want:?}"
            ));
        }
    }
    Ok(())
}

/// The run holds the converted spec with every answered parameter set once.
fn check_run(
    converted: &Map<String, Value>,
    params: &BTreeMap<String, ParamValue>,
    run: &Value,
) -> Verdict {
    if run["apiVersion"] != "tekton.dev/v1" || run["kind"] != "PipelineRun" {
        return Verdict::broken("run-kind", format!("{}", run["apiVersion"]));
    }
    let Some(list) = run["spec"]["params"].as_array() else {
        return Verdict::broken("run-params", "no params list");
    };
    for (name, value) in params {
        let set: Vec<&Value> = list.iter().filter(|p| p["name"] == *name).collect();
        let want = serde_json::to_value(value).expect("params serialize");
        if set.is_empty() || set.iter().any(|p| p["value"] != want) {
            return Verdict::broken("run-params", format!("{name} is {set:?}, want {want}"));
        }
    }
    for (key, value) in converted {
        if key != "params" && run["spec"][key] != *value {
            return Verdict::broken("run-spec", format!("{key} changed"));
        }
    }
    Verdict::Accepted
}

fn nulls(v: &Value) -> usize {
    match v {
        Value::Null => 1,
        Value::Array(items) => items.iter().map(nulls).sum(),
        Value::Object(m) => m.values().map(nulls).sum(),
        _ => 0,
    }
}

/// Replaces the value up to `depth + 1` steps down a path picked by `picks` with `with`;
/// returns the path, for the failure file.
fn break_value(spec: &mut Value, picks: [Index; 3], depth: u8, with: Value) -> String {
    let path = replace_at(spec, &picks[..=depth as usize], with);
    if path.is_empty() {
        "(the spec)".into()
    } else {
        path
    }
}

fn replace_at(node: &mut Value, picks: &[Index], with: Value) -> String {
    let Some((pick, rest)) = picks.split_first() else {
        *node = with;
        return String::new();
    };
    match node {
        Value::Object(m) if !m.is_empty() => {
            let key = m
                .keys()
                .nth(pick.index(m.len()))
                .cloned()
                .unwrap_or_default();
            let below = replace_at(m.get_mut(&key).expect("picked from the keys"), rest, with);
            format!(".{key}{below}")
        }
        Value::Array(items) if !items.is_empty() => {
            let i = pick.index(items.len());
            let below = replace_at(&mut items[i], rest, with);
            format!("[{i}]{below}")
        }
        _ => {
            *node = with;
            String::new()
        }
    }
}

fn name() -> BoxedStrategy<String> {
    "[a-z][a-z0-9-]{0,8}".boxed()
}

fn param_name() -> BoxedStrategy<String> {
    prop_oneof![
        proptest::sample::select(vec!["model", "model-id", "branch"]).prop_map(String::from),
        name()
    ]
    .boxed()
}

fn maybe<T: std::fmt::Debug + Clone + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<Option<T>> {
    proptest::option::weighted(0.4, s).boxed()
}

fn pod_template() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(json!({"securityContext": {"runAsNonRoot": true}})),
        name().prop_map(|n| json!({"nodeSelector": {"pool": n}})),
    ]
    .boxed()
}

fn duration() -> BoxedStrategy<Value> {
    proptest::sample::select(vec!["1h", "30m", "1h30m0s", "0s", "90s"])
        .prop_map(Value::from)
        .boxed()
}

fn pipeline() -> BoxedStrategy<Vec<(&'static str, Value)>> {
    prop_oneof![
        8 => name().prop_map(|n| vec![("pipelineRef", json!({"name": n}))]),
        3 => name().prop_map(|n| vec![("pipelineSpec", json!({"tasks": [{"name": n, "taskRef": {"name": n}}]}))]),
        1 => Just(Vec::new()),
    ]
    .boxed()
}

fn template_params() -> BoxedStrategy<Option<Value>> {
    maybe(
        proptest::collection::btree_map(param_name(), "[a-z0-9]{0,6}", 0..4).prop_map(|m| {
            Value::Array(
                m.into_iter()
                    .map(|(n, v)| json!({"name": n, "value": v}))
                    .collect(),
            )
        }),
    )
}

fn workspaces() -> BoxedStrategy<Option<Value>> {
    maybe(proptest::collection::btree_set(name(), 1..3).prop_map(|s| {
        s.into_iter()
            .map(|n| json!({"name": n, "emptyDir": {}}))
            .collect()
    }))
}

/// Tasks named in per-task settings, with which of them each setting covers.
fn tasks() -> BoxedStrategy<Vec<(String, bool, bool)>> {
    proptest::collection::btree_set(name(), 0..4)
        .prop_flat_map(|names: BTreeSet<String>| {
            let n = names.len();
            (
                Just(names),
                proptest::collection::vec((any::<bool>(), any::<bool>()), n),
            )
        })
        .prop_map(|(names, cover)| {
            names
                .into_iter()
                .zip(cover)
                .map(|(n, (a, b))| (n, a, b))
                .collect()
        })
        .boxed()
}

type Fields = Vec<(&'static str, Value)>;

fn object(fields: Fields) -> Value {
    Value::Object(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

/// A v1beta1 spec: service accounts, pod template and timeout at the top, per-task settings
/// under their v1beta1 names; rarely with PipelineResources.
fn v1beta1() -> BoxedStrategy<Value> {
    let timing = prop_oneof![
        2 => Just(Vec::new()),
        2 => duration().prop_map(|t| vec![("timeout", t)]),
        1 => duration().prop_map(|t| vec![("timeouts", json!({"pipeline": t}))]),
        1 => (duration(), duration()).prop_map(|(a, b)| vec![("timeout", a), ("timeouts", json!({"tasks": b}))]),
    ];
    let per_task = (tasks(), name(), maybe(pod_template()), any::<bool>()).prop_map(
        |(tasks, account, pod, steps)| {
            let names: Vec<Value> = tasks
                .iter()
                .filter(|t| t.1)
                .map(|(n, ..)| json!({"taskName": n, "serviceAccountName": format!("{account}-{n}")}))
                .collect();
            let specs: Vec<Value> = tasks
                .iter()
                .filter(|t| t.2)
                .map(|(n, ..)| {
                    let mut s = json!({"pipelineTaskName": n, "taskServiceAccountName": format!("own-{n}")});
                    if let Some(p) = &pod {
                        s["taskPodTemplate"] = p.clone();
                    }
                    if steps {
                        s["stepOverrides"] = json!([{"name": "build", "computeResources": {"requests": {"cpu": "1"}}}]);
                        s["metadata"] = json!({"labels": {"task": n}});
                    }
                    s
                })
                .collect();
            let mut out = Vec::new();
            if !names.is_empty() {
                out.push(("serviceAccountNames", Value::Array(names)));
            }
            if !specs.is_empty() {
                out.push(("taskRunSpecs", Value::Array(specs)));
            }
            out
        },
    );
    (
        pipeline(),
        template_params(),
        maybe(name()),
        maybe(pod_template()),
        timing,
        workspaces(),
        per_task,
        proptest::bool::weighted(0.03),
    )
        .prop_map(
            |(pipeline, params, sa, pod, timing, ws, per_task, resources)| {
                let mut fields: Fields = pipeline;
                fields.extend(params.map(|p| ("params", p)));
                fields.extend(sa.map(|s| ("serviceAccountName", Value::String(s))));
                fields.extend(pod.map(|p| ("podTemplate", p)));
                fields.extend(timing);
                fields.extend(ws.map(|w| ("workspaces", w)));
                fields.extend(per_task);
                if resources {
                    fields.push((
                        "resources",
                        json!([{"name": "repo", "resourceRef": {"name": "git"}}]),
                    ));
                }
                object(fields)
            },
        )
        .boxed()
}

/// A v1 spec: the converter must leave it as it is.
fn v1() -> BoxedStrategy<Value> {
    let specs = proptest::collection::btree_set(name(), 0..3).prop_map(|names| {
        names
            .into_iter()
            .map(|n| json!({"pipelineTaskName": n, "serviceAccountName": format!("sa-{n}"), "stepSpecs": [{"name": "s"}]}))
            .collect::<Vec<_>>()
    });
    (
        pipeline(),
        template_params(),
        maybe(name()),
        maybe(pod_template()),
        maybe(duration()),
        workspaces(),
        specs,
        maybe(Just("PipelineRunPending")),
    )
        .prop_map(|(pipeline, params, sa, pod, timeout, ws, specs, status)| {
            let mut fields: Fields = pipeline;
            fields.extend(params.map(|p| ("params", p)));
            let mut trt = Map::new();
            if let Some(sa) = sa {
                trt.insert("serviceAccountName".into(), sa.into());
            }
            if let Some(pod) = pod {
                trt.insert("podTemplate".into(), pod);
            }
            if !trt.is_empty() {
                fields.push(("taskRunTemplate", Value::Object(trt)));
            }
            fields.extend(timeout.map(|t| ("timeouts", json!({"pipeline": t}))));
            fields.extend(ws.map(|w| ("workspaces", w)));
            if !specs.is_empty() {
                fields.push(("taskRunSpecs", Value::Array(specs)));
            }
            fields.extend(status.map(|s| ("status", Value::from(s))));
            object(fields)
        })
        .boxed()
}
