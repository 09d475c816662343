//! Where a kpt setter's value lives in a document.
//!
//! kpt v1alpha1 Kptfiles keep setters under `openAPI.definitions`; kpt v1 uses the
//! `apply-setters` function, configured inline in the Kptfile pipeline (`configMap:`) or in a
//! ConfigMap file named by `configPath:` (`data:`).

use crate::path::{Segment, YamlPath};
use crate::yaml_doc::{Node, lookup};

/// Paths in `doc` that hold the value of setter `name`.
pub fn setter_paths(doc: &Node, name: &str) -> Vec<YamlPath> {
    let key = |k: &str| Segment::Key(k.to_string());
    let mut found = Vec::new();
    let v1alpha1 = YamlPath::new(vec![
        key("openAPI"),
        key("definitions"),
        key(&format!("io.k8s.cli.setters.{name}")),
        key("x-k8s-cli"),
        key("setter"),
        key("value"),
    ]);
    if lookup(doc, &v1alpha1).is_ok() {
        found.push(v1alpha1);
    }
    if doc.get_str("kind") == Some("Kptfile")
        && let Some(Node::Sequence(mutators)) = doc.get("pipeline").and_then(|p| p.get("mutators"))
    {
        for (i, mutator) in mutators.iter().enumerate() {
            let is_apply_setters = mutator
                .get_str("image")
                .is_some_and(|image| image.contains("apply-setters"));
            let path = YamlPath::new(vec![
                key("pipeline"),
                key("mutators"),
                Segment::Index(i),
                key("configMap"),
                key(name),
            ]);
            if is_apply_setters && lookup(doc, &path).is_ok() {
                found.push(path);
            }
        }
    }
    if doc.get_str("kind") == Some("ConfigMap") {
        let path = YamlPath::new(vec![key("data"), key(name)]);
        if lookup(doc, &path).is_ok() {
            found.push(path);
        }
    }
    found
}

/// Where `setter_paths` looks, for error messages.
pub const LOOKED_IN: &str = "a Kptfile's openAPI.definitions.\"io.k8s.cli.setters.NAME\", \
     an apply-setters mutator's configMap in a Kptfile pipeline, or the data of an \
     apply-setters ConfigMap";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml_doc::parse;

    #[test]
    fn finds_v1alpha1_and_v1_setters() {
        let v1alpha1 = "apiVersion: kpt.dev/v1alpha1\nkind: Kptfile\nopenAPI:\n  definitions:\n    io.k8s.cli.setters.model:\n      x-k8s-cli:\n        setter:\n          name: model\n          value: m-1\n";
        let doc = &parse(v1alpha1).unwrap().documents[0];
        let paths = setter_paths(doc, "model");
        assert_eq!(paths.len(), 1);
        assert_eq!(
            paths[0].to_string(),
            "openAPI.definitions.\"io.k8s.cli.setters.model\".x-k8s-cli.setter.value"
        );
        assert!(setter_paths(doc, "other").is_empty());

        let v1 = "apiVersion: kpt.dev/v1\nkind: Kptfile\npipeline:\n  mutators:\n  - image: set-labels:v0.1\n    configMap:\n      model: no\n  - image: registry.example.com/kpt-fn/apply-setters:v0.2\n    configMap:\n      model: m-1\n";
        let doc = &parse(v1).unwrap().documents[0];
        let paths = setter_paths(doc, "model");
        assert_eq!(paths.len(), 1);
        assert_eq!(paths[0].to_string(), "pipeline.mutators[1].configMap.model");
    }

    #[test]
    fn finds_setters_in_an_apply_setters_configmap() {
        let doc = &parse("kind: ConfigMap\ndata:\n  model: m-1\n")
            .unwrap()
            .documents[0];
        assert_eq!(setter_paths(doc, "model")[0].to_string(), "data.model");
    }
}
