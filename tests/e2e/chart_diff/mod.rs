//! Two renderings of one install compared object by object: what `helm template` renders of
//! charts/modelsync against what `kubectl kustomize` renders of kustomize/. Pure: documents in,
//! differences out, each naming the object and the path inside it.
//!
//! Normalisation removes only what each tool adds by design, and nothing else:
//! [`normalise_helm`] and [`normalise_kustomize`] list them.

#![allow(dead_code)] // the unit tests here use parts the chart test does not

use std::collections::BTreeMap;

use serde_json::Value;

/// Labels a Helm chart puts on its objects to tie them to a release (Helm's recommended
/// labels); a kustomize install has no release, so it has none of them.
pub const HELM_RELEASE_LABELS: [&str; 3] = [
    "helm.sh/chart",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/instance",
];

/// Removes from a document `helm template` rendered what Helm adds by design:
/// - [`HELM_RELEASE_LABELS`] from `metadata.labels`;
/// - the annotation `helm.sh/resource-policy` on the CRD, which tells Helm to leave the CRD on
///   `helm uninstall` (kubectl has no uninstall to instruct);
/// - the pod template annotation `checksum/config`, Helm's way of rolling pods when their
///   ConfigMap changes (kustomize renames the ConfigMap after a hash of it instead, undone in
///   [`normalise_kustomize`]).
pub fn normalise_helm(doc: &mut Value) {
    for label in HELM_RELEASE_LABELS {
        remove_key(doc, &["metadata", "labels"], label);
    }
    if doc["kind"] == "CustomResourceDefinition" {
        remove_key(doc, &["metadata", "annotations"], "helm.sh/resource-policy");
    }
    remove_key(
        doc,
        &["spec", "template", "metadata", "annotations"],
        "checksum/config",
    );
}

/// Removes from a document `kubectl kustomize` rendered the hash suffix its
/// `configMapGenerator` appends to each generated ConfigMap's name (`<name>-<10 characters>`),
/// in the ConfigMap and in the pod volumes that mount it. `generated` names the generators;
/// a ConfigMap not made by one keeps its name.
pub fn normalise_kustomize(doc: &mut Value, generated: &[&str]) {
    if doc["kind"] == "ConfigMap"
        && let Some(name) = doc["metadata"]["name"].as_str()
        && let Some(base) = unhashed(name, generated)
    {
        doc["metadata"]["name"] = Value::String(base.to_owned());
    }
    // `pointer_mut`, not indexing: indexing a missing key would add it as null.
    if let Some(volumes) = doc
        .pointer_mut("/spec/template/spec/volumes")
        .and_then(Value::as_array_mut)
    {
        for volume in volumes {
            if let Some(name) = volume["configMap"]["name"].as_str()
                && let Some(base) = unhashed(name, generated)
            {
                volume["configMap"]["name"] = Value::String(base.to_owned());
            }
        }
    }
}

fn unhashed<'a>(name: &str, generated: &[&'a str]) -> Option<&'a str> {
    generated.iter().copied().find(|base| {
        name.strip_prefix(base)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|hash| {
                hash.len() == 10
                    && hash
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            })
    })
}

/// Removes `key` from the map at `path`, and the map itself when that empties it (an empty
/// `annotations: {}` is no annotations).
fn remove_key(doc: &mut Value, path: &[&str], key: &str) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut parent = doc;
    for step in parents {
        match parent.get_mut(*step) {
            Some(next) => parent = next,
            None => return,
        }
    }
    let Some(object) = parent.as_object_mut() else {
        return;
    };
    let emptied = match object.get_mut(*last).and_then(Value::as_object_mut) {
        Some(map) => {
            map.remove(key);
            map.is_empty()
        }
        None => false,
    };
    if emptied {
        object.remove(*last);
    }
}

/// `Kind namespace/name`, or `Kind name` for a cluster object.
pub fn describe(doc: &Value) -> String {
    let kind = doc["kind"].as_str().unwrap_or("?");
    let name = doc["metadata"]["name"].as_str().unwrap_or("?");
    match doc["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// The documents by [`describe`]; two documents for one object is an error naming it.
pub fn index(docs: &[Value]) -> Result<BTreeMap<String, &Value>, String> {
    let mut out = BTreeMap::new();
    for doc in docs {
        if out.insert(describe(doc), doc).is_some() {
            return Err(format!("{} is rendered twice", describe(doc)));
        }
    }
    Ok(out)
}

/// Every difference between the `expected` and `actual` objects, one line each, like
/// `Deployment modelsync/modelsync-controller: spec.replicas: kustomize has 2, helm has 1`.
/// `expected_from` and `actual_from` name the two sides in the lines.
pub fn diff(
    expected: &[Value],
    actual: &[Value],
    expected_from: &str,
    actual_from: &str,
) -> Vec<String> {
    let (expected, actual) = match (index(expected), index(actual)) {
        (Ok(e), Ok(a)) => (e, a),
        (Err(e), _) => return vec![format!("{expected_from}: {e}")],
        (_, Err(e)) => return vec![format!("{actual_from}: {e}")],
    };
    let mut out = Vec::new();
    for (what, e) in &expected {
        match actual.get(what) {
            None => out.push(format!("{what}: only {expected_from} renders it")),
            Some(a) => {
                let mut lines = Vec::new();
                diff_value("", e, a, (expected_from, actual_from), &mut lines);
                out.extend(lines.into_iter().map(|l| format!("{what}: {l}")));
            }
        }
    }
    for what in actual.keys().filter(|k| !expected.contains_key(*k)) {
        out.push(format!("{what}: only {actual_from} renders it"));
    }
    out
}

fn diff_value(path: &str, e: &Value, a: &Value, sides: (&str, &str), out: &mut Vec<String>) {
    let at = |path: &str| {
        if path.is_empty() {
            "(whole object)".to_owned()
        } else {
            path.to_owned()
        }
    };
    match (e, a) {
        (Value::Object(e), Value::Object(a)) => {
            let mut keys: Vec<&String> = e.keys().chain(a.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match (e.get(key), a.get(key)) {
                    (Some(ev), Some(av)) => diff_value(&child, ev, av, sides, out),
                    (Some(ev), None) => {
                        out.push(format!("{child}: only {} has it: {}", sides.0, short(ev)))
                    }
                    (None, Some(av)) => {
                        out.push(format!("{child}: only {} has it: {}", sides.1, short(av)))
                    }
                    (None, None) => {}
                }
            }
        }
        (Value::Array(ev), Value::Array(av)) if ev.len() == av.len() => {
            for (i, (ev, av)) in ev.iter().zip(av).enumerate() {
                diff_value(&format!("{path}[{i}]"), ev, av, sides, out);
            }
        }
        _ if e == a => {}
        _ => out.push(format!(
            "{}: {} has {}, {} has {}",
            at(path),
            sides.0,
            short(e),
            sides.1,
            short(a)
        )),
    }
}

/// A value in one line, cut short: the diff names the path, this only shows what differs.
fn short(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(160) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(args: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "modelsync-controller", "namespace": "modelsync",
                         "labels": {"app.kubernetes.io/part-of": "modelsync"}},
            "spec": {"template": {"spec": {"containers": [{"name": "controller", "args": args}]}}}
        })
    }

    #[test]
    fn equal_renderings_have_no_difference() {
        let d = deployment(json!(["controller"]));
        let same = std::slice::from_ref(&d);
        assert!(diff(same, same, "kustomize", "helm").is_empty());
    }

    #[test]
    fn a_changed_value_names_object_path_and_both_values() {
        let k = deployment(json!(["controller", "--log-format=json"]));
        let h = deployment(json!(["controller", "--log-format=text"]));
        let lines = diff(&[k], &[h], "kustomize", "helm");
        assert_eq!(
            lines,
            vec![
                "Deployment modelsync/modelsync-controller: \
                 spec.template.spec.containers[0].args[1]: kustomize has \"--log-format=json\", \
                 helm has \"--log-format=text\""
            ]
        );
    }

    #[test]
    fn added_fields_lists_and_objects_are_differences() {
        let k = deployment(json!(["controller"]));
        let mut h = deployment(json!(["controller", "--leader-elect"]));
        h["spec"]["replicas"] = json!(2);
        let pdb = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                         "metadata": {"name": "modelsync-controller", "namespace": "modelsync"}});
        let lines = diff(&[k], &[h, pdb], "kustomize", "helm").join("\n");
        assert!(
            lines.contains("spec.replicas: only helm has it: 2"),
            "{lines}"
        );
        assert!(
            lines.contains("containers[0].args: kustomize has [\"controller\"], helm has"),
            "{lines}"
        );
        assert!(
            lines.contains(
                "PodDisruptionBudget modelsync/modelsync-controller: only helm renders it"
            ),
            "{lines}"
        );
    }

    #[test]
    fn an_object_rendered_twice_is_reported() {
        let d = deployment(json!([]));
        let lines = diff(
            std::slice::from_ref(&d),
            &[d.clone(), d.clone()],
            "kustomize",
            "helm",
        );
        assert_eq!(
            lines,
            vec!["helm: Deployment modelsync/modelsync-controller is rendered twice"]
        );
    }

    #[test]
    fn helm_normalisation_removes_only_helms_own_marks() {
        let mut h = json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "modelsyncs.modelsync.dev",
                "labels": {"helm.sh/chart": "modelsync-0.1.0", "app.kubernetes.io/managed-by": "Helm",
                           "app.kubernetes.io/instance": "modelsync", "app.kubernetes.io/part-of": "x"},
                "annotations": {"helm.sh/resource-policy": "keep"}}
        });
        normalise_helm(&mut h);
        assert_eq!(
            h["metadata"],
            json!({"name": "modelsyncs.modelsync.dev", "labels": {"app.kubernetes.io/part-of": "x"}})
        );

        let mut d = deployment(json!([]));
        d["spec"]["template"]["metadata"] =
            json!({"annotations": {"checksum/config": "ab12", "prometheus.io/scrape": "true"}});
        normalise_helm(&mut d);
        assert_eq!(
            d["spec"]["template"]["metadata"],
            json!({"annotations": {"prometheus.io/scrape": "true"}}),
            "another annotation is not Helm's to remove"
        );
    }

    #[test]
    fn kustomize_normalisation_strips_only_a_generators_hash() {
        let mut cm = json!({"kind": "ConfigMap", "metadata": {"name": "modelsync-lambdas-config-c7dc2cg9g8"}});
        normalise_kustomize(&mut cm, &["modelsync-lambdas-config"]);
        assert_eq!(cm["metadata"]["name"], "modelsync-lambdas-config");

        let mut other = json!({"kind": "ConfigMap", "metadata": {"name": "settings-c7dc2cg9g8"}});
        normalise_kustomize(&mut other, &["modelsync-lambdas-config"]);
        assert_eq!(other["metadata"]["name"], "settings-c7dc2cg9g8");

        let mut d = json!({"kind": "Deployment", "spec": {"template": {"spec": {"volumes": [
            {"name": "config", "configMap": {"name": "modelsync-lambdas-config-c7dc2cg9g8"}},
            {"name": "other", "configMap": {"name": "modelsync-lambdas-config-v2"}}
        ]}}}});
        normalise_kustomize(&mut d, &["modelsync-lambdas-config"]);
        let volumes = &d["spec"]["template"]["spec"]["volumes"];
        assert_eq!(volumes[0]["configMap"]["name"], "modelsync-lambdas-config");
        assert_eq!(
            volumes[1]["configMap"]["name"],
            "modelsync-lambdas-config-v2"
        );

        let untouched = json!({"kind": "Service", "metadata": {"name": "modelsync-lambdas"}});
        let mut service = untouched.clone();
        normalise_kustomize(&mut service, &["modelsync-lambdas-config"]);
        assert_eq!(
            service, untouched,
            "nothing added to an object without volumes"
        );
    }
}
