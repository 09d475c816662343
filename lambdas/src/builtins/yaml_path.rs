//! Finding one scalar in a YAML file: a path like `data.model`, `spec.items[0].image` or
//! `metadata.annotations["example.com/model"]`, or a kpt setter in a Kptfile.

use serde_yaml_ng::Value;

/// Where the pinned value lives in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Locator {
    /// Keys and indexes from the document root.
    Path { text: String, steps: Vec<Step> },
    /// A kpt setter: `apply-setters` config in a Kptfile (kpt v1), or an OpenAPI setter
    /// definition `io.k8s.cli.setters.<name>` (kpt v0, as the original Kubeflow lambda used).
    KptSetter(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

impl std::fmt::Display for Locator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Locator::Path { text, .. } => f.write_str(text),
            Locator::KptSetter(name) => write!(f, "kpt setter {name}"),
        }
    }
}

/// Parses `a.b[0]["c.d"]`; the error says what is wrong with the path.
pub fn parse_path(text: &str) -> Result<Locator, String> {
    let mut steps = Vec::new();
    let mut rest = text;
    let mut expect_key = true;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let close = after
                .find(']')
                .ok_or_else(|| format!("{text:?} has a [ with no ]"))?;
            let inner = &after[..close];
            let step = if let Some(quoted) =
                inner.strip_prefix('"').and_then(|s| s.strip_suffix('"'))
            {
                Step::Key(quoted.to_owned())
            } else {
                Step::Index(inner.parse().map_err(|_| {
                    format!("{text:?}: [{inner}] is neither an index like [0] nor a quoted key like [\"a.b\"]")
                })?)
            };
            steps.push(step);
            rest = &after[close + 1..];
            expect_key = false;
        } else if let Some(after) = rest.strip_prefix('.') {
            if expect_key {
                return Err(format!("{text:?} has an empty key"));
            }
            rest = after;
            expect_key = true;
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            steps.push(Step::Key(rest[..end].to_owned()));
            rest = &rest[end..];
            expect_key = false;
        }
    }
    if steps.is_empty() || expect_key {
        return Err(format!("{text:?} is not a YAML path like data.model"));
    }
    Ok(Locator::Path {
        text: text.to_owned(),
        steps,
    })
}

/// The scalar at `locator` in the first document of `text` that has one.
pub fn lookup(text: &str, locator: &Locator) -> Result<String, String> {
    let mut found_docs = 0;
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let value: Value =
            serde::Deserialize::deserialize(doc).map_err(|e| format!("not YAML: {e}"))?;
        found_docs += 1;
        let hit = match locator {
            Locator::Path { steps, .. } => walk(&value, steps),
            Locator::KptSetter(name) => kpt_setter(&value, name),
        };
        if let Some(v) = hit {
            return scalar(v).ok_or_else(|| {
                format!("the value at {locator} is not a string, number or boolean")
            });
        }
    }
    if found_docs == 0 {
        return Err("the file is empty".into());
    }
    Err(format!("there is no value at {locator}"))
}

fn walk<'a>(mut value: &'a Value, steps: &[Step]) -> Option<&'a Value> {
    for step in steps {
        value = match step {
            Step::Key(k) => value.as_mapping()?.get(k.as_str())?,
            Step::Index(i) => value.as_sequence()?.get(*i)?,
        };
    }
    Some(value)
}

fn kpt_setter<'a>(doc: &'a Value, name: &str) -> Option<&'a Value> {
    if let Some(mutators) = doc
        .get("pipeline")
        .and_then(|p| p.get("mutators"))
        .and_then(Value::as_sequence)
    {
        for m in mutators {
            let is_setters = m
                .get("image")
                .and_then(Value::as_str)
                .is_some_and(|i| i.contains("apply-setters"));
            if is_setters && let Some(v) = m.get("configMap").and_then(|c| c.get(name)) {
                return Some(v);
            }
        }
    }
    doc.get("openAPI")?
        .get("definitions")?
        .get(format!("io.k8s.cli.setters.{name}").as_str())?
        .get("x-k8s-cli")?
        .get("setter")?
        .get("value")
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Tagged(t) => scalar(&t.value),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse() {
        let Locator::Path { steps, .. } = parse_path(r#"spec.items[2]["a.b/c"].x"#).unwrap() else {
            panic!()
        };
        assert_eq!(
            steps,
            [
                Step::Key("spec".into()),
                Step::Key("items".into()),
                Step::Index(2),
                Step::Key("a.b/c".into()),
                Step::Key("x".into())
            ]
        );
        for bad in ["", "a..b", "a.", ".a", "a[x]", "a[0"] {
            assert!(parse_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn looks_up_configmaps_and_multi_document_files() {
        let text =
            "kind: Namespace\n---\nkind: ConfigMap\ndata:\n  model: m1\n  n: 3\n  list: [a]\n";
        assert_eq!(
            lookup(text, &parse_path("data.model").unwrap()).unwrap(),
            "m1"
        );
        assert_eq!(lookup(text, &parse_path("data.n").unwrap()).unwrap(), "3");
        assert_eq!(
            lookup(text, &parse_path("data.other").unwrap()).unwrap_err(),
            "there is no value at data.other"
        );
        assert!(
            lookup(text, &parse_path("data.list").unwrap())
                .unwrap_err()
                .contains("not a string")
        );
        assert!(
            lookup("a: [", &parse_path("a").unwrap())
                .unwrap_err()
                .starts_with("not YAML")
        );
    }

    #[test]
    fn finds_kpt_setters_old_and_new() {
        let v0 = "apiVersion: kpt.dev/v1alpha1\nkind: Kptfile\nopenAPI:\n  definitions:\n    io.k8s.cli.setters.automl-model:\n      x-k8s-cli:\n        setter:\n          name: automl-model\n          value: projects/p/models/TCN1\n";
        let v1 = "apiVersion: kpt.dev/v1\nkind: Kptfile\npipeline:\n  mutators:\n  - image: gcr.example/kpt-fn/apply-setters:v0.2\n    configMap:\n      automl-model: TCN2\n";
        let setter = Locator::KptSetter("automl-model".into());
        assert_eq!(lookup(v0, &setter).unwrap(), "projects/p/models/TCN1");
        assert_eq!(lookup(v1, &setter).unwrap(), "TCN2");
        assert_eq!(
            lookup(v1, &Locator::KptSetter("x".into())).unwrap_err(),
            "there is no value at kpt setter x"
        );
    }
}
