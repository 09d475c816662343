//! Reading the pinned value out of a file of the mirrored repository. Paths and kpt setters
//! are the shared pin grammar (`modelsync_gitops`), so they find what bump-pr would change.

use std::fmt;

use modelsync_gitops::{Tree, YamlPath, kpt, lookup};
use serde_yaml_ng::Value;

/// Where the pinned value lives in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Locator {
    /// A YAML path from the document root.
    Path(YamlPath),
    /// A kpt setter: `apply-setters` config in a Kptfile (kpt v1), an OpenAPI setter
    /// definition `io.k8s.cli.setters.<name>` (kpt v0, as the original Kubeflow lambda used),
    /// or the data of an apply-setters ConfigMap.
    KptSetter(String),
}

impl fmt::Display for Locator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Locator::Path(path) => write!(f, "{path}"),
            Locator::KptSetter(name) => write!(f, "kpt setter {name}"),
        }
    }
}

/// Why no pinned value could be read.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("not YAML: {0}")]
    NotYaml(serde_yaml_ng::Error),
    /// No document has the value (each is looked in, first to last).
    #[error("there is no value at {0}")]
    Missing(Locator),
    #[error("the value at {0} is not a string, number or boolean")]
    NotScalar(Locator),
}

/// The scalar at `locator` in the first document of `text` that has one. An empty file reads
/// as one empty document, so it has no value at any path.
pub fn read(text: &str, locator: &Locator) -> Result<String, PinError> {
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let value: Value = serde::Deserialize::deserialize(document).map_err(PinError::NotYaml)?;
        let hit = match locator {
            Locator::Path(path) => lookup(&value, path).ok(),
            Locator::KptSetter(name) => kpt::setter_paths(&value, name)
                .first()
                .and_then(|path| lookup(&value, path).ok()),
        };
        if let Some(v) = hit {
            return scalar(v).ok_or_else(|| PinError::NotScalar(locator.clone()));
        }
    }
    Err(PinError::Missing(locator.clone()))
}

/// A string, number or boolean as text; a null, list or mapping is no pin.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => v.text().map(String::from),
        Value::Tagged(t) => scalar(&t.value),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> Locator {
        Locator::Path(YamlPath::parse(text).unwrap())
    }

    #[test]
    fn looks_up_configmaps_and_multi_document_files() {
        let text =
            "kind: Namespace\n---\nkind: ConfigMap\ndata:\n  model: m1\n  n: 3\n  list: [a]\n";
        assert_eq!(read(text, &path("data.model")).unwrap(), "m1");
        assert_eq!(read(text, &path("data.n")).unwrap(), "3");
        assert_eq!(
            read(text, &path("data.other")).unwrap_err().to_string(),
            "there is no value at data.other"
        );
        assert!(
            read(text, &path("data.list"))
                .unwrap_err()
                .to_string()
                .contains("not a string")
        );
        assert!(
            read("a: [", &path("a"))
                .unwrap_err()
                .to_string()
                .starts_with("not YAML")
        );
    }

    #[test]
    fn finds_kpt_setters_old_and_new() {
        let v0 = "apiVersion: kpt.dev/v1alpha1\nkind: Kptfile\nopenAPI:\n  definitions:\n    io.k8s.cli.setters.automl-model:\n      x-k8s-cli:\n        setter:\n          name: automl-model\n          value: projects/p/models/TCN1\n";
        let v1 = "apiVersion: kpt.dev/v1\nkind: Kptfile\npipeline:\n  mutators:\n  - image: gcr.example/kpt-fn/apply-setters:v0.2\n    configMap:\n      automl-model: TCN2\n";
        let setter = Locator::KptSetter("automl-model".into());
        assert_eq!(read(v0, &setter).unwrap(), "projects/p/models/TCN1");
        assert_eq!(read(v1, &setter).unwrap(), "TCN2");
        assert_eq!(
            read(v1, &Locator::KptSetter("x".into()))
                .unwrap_err()
                .to_string(),
            "there is no value at kpt setter x"
        );
    }

    #[test]
    fn selectors_and_quoted_keys_read_what_bump_pr_would_set() {
        let text = "metadata:\n  annotations:\n    example.com/model: m3\nspec:\n  containers:\n  - name: side\n    image: envoy\n  - name: main\n    image: app:m4\n";
        let cases = [
            ("metadata.annotations[\"example.com/model\"]", "m3"),
            ("metadata.annotations.\"example.com/model\"", "m3"),
            ("spec.containers[name=main].image", "app:m4"),
            ("spec.containers[1].image", "app:m4"),
        ];
        for (p, want) in cases {
            assert_eq!(read(text, &path(p)).unwrap(), want, "{p}");
        }
        assert!(matches!(
            read("data:\n  model:\n", &path("data.model")),
            Err(PinError::NotScalar(_))
        ));
        for empty in ["", "# only a comment\n"] {
            assert!(
                matches!(read(empty, &path("a")), Err(PinError::Missing(_))),
                "{empty:?}"
            );
        }
    }
}
