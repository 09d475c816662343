//! Where a kpt setter's value lives in a document.
//!
//! kpt v1alpha1 (v0) Kptfiles keep setters under `openAPI.definitions`; kpt v1 uses the
//! `apply-setters` function, configured inline in the Kptfile pipeline (`configMap:`) or in a
//! ConfigMap file named by `configPath:` (`data:`).

use crate::path::{Segment, YamlPath};
use crate::tree::{Tree, lookup};

/// Paths in `doc` that hold the value of setter `name`, v1alpha1 first.
pub fn setter_paths<T: Tree>(doc: &T, name: &str) -> Vec<YamlPath> {
    let key = |k: &str| Segment::Key(k.to_string());
    let kind = doc.get_text("kind");
    let mut candidates = vec![YamlPath::new(vec![
        key("openAPI"),
        key("definitions"),
        key(&format!("io.k8s.cli.setters.{name}")),
        key("x-k8s-cli"),
        key("setter"),
        key("value"),
    ])];
    if kind.as_deref() == Some("Kptfile")
        && let Some(mutators) = doc
            .get("pipeline")
            .and_then(|p| p.get("mutators"))
            .and_then(Tree::items)
    {
        for (i, mutator) in mutators.iter().enumerate() {
            let is_apply_setters = mutator
                .get_text("image")
                .is_some_and(|image| image.contains("apply-setters"));
            if is_apply_setters {
                candidates.push(YamlPath::new(vec![
                    key("pipeline"),
                    key("mutators"),
                    Segment::Index(i),
                    key("configMap"),
                    key(name),
                ]));
            }
        }
    }
    if kind.as_deref() == Some("ConfigMap") {
        candidates.push(YamlPath::new(vec![key("data"), key(name)]));
    }
    candidates.retain(|path| lookup(doc, path).is_ok());
    candidates
}

/// Where `setter_paths` looks, for error messages.
pub const LOOKED_IN: &str = "a Kptfile's openAPI.definitions.\"io.k8s.cli.setters.NAME\", \
     an apply-setters mutator's configMap in a Kptfile pipeline, or the data of an \
     apply-setters ConfigMap";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_yaml_ng::Value;

    fn paths(text: &str, name: &str) -> Vec<String> {
        let doc: Value = serde_yaml_ng::from_str(text).unwrap();
        setter_paths(&doc, name)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn finds_v1alpha1_and_v1_setters() {
        let v1alpha1 = "apiVersion: kpt.dev/v1alpha1\nkind: Kptfile\nopenAPI:\n  definitions:\n    io.k8s.cli.setters.model:\n      x-k8s-cli:\n        setter:\n          name: model\n          value: m-1\n";
        assert_eq!(
            paths(v1alpha1, "model"),
            ["openAPI.definitions.\"io.k8s.cli.setters.model\".x-k8s-cli.setter.value"]
        );
        assert!(paths(v1alpha1, "other").is_empty());

        let v1 = "apiVersion: kpt.dev/v1\nkind: Kptfile\npipeline:\n  mutators:\n  - image: set-labels:v0.1\n    configMap:\n      model: no\n  - image: registry.example.com/kpt-fn/apply-setters:v0.2\n    configMap:\n      model: m-1\n";
        assert_eq!(paths(v1, "model"), ["pipeline.mutators[1].configMap.model"]);
    }

    #[test]
    fn finds_setters_in_an_apply_setters_configmap() {
        assert_eq!(
            paths("kind: ConfigMap\ndata:\n  model: m-1\n", "model"),
            ["data.model"]
        );
    }

    #[test]
    fn mutators_outside_a_kptfile_are_not_setters() {
        let text = "kind: Pipeline\npipeline:\n  mutators:\n  - image: apply-setters:v0.2\n    configMap:\n      model: m-1\n";
        assert!(paths(text, "model").is_empty());
    }
}
