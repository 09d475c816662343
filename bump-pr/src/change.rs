//! What the user asked to change: `--set TARGET=VALUE` and `--document SELECTOR`, parsed.

use std::fmt;
use std::str::FromStr;

pub use modelsync_gitops::kustomize::ImageField;
use modelsync_gitops::path::YamlPath;

/// Where a value goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A YAML path in the file.
    Path(YamlPath),
    /// A kpt setter, found in a Kptfile or an apply-setters config.
    KptSetter(String),
    /// A field of the kustomize `images:` entry with this `name`.
    Image { name: String, field: ImageField },
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Path(p) => write!(f, "{p}"),
            Target::KptSetter(name) => write!(f, "kpt-setter:{name}"),
            Target::Image { name, field } => match field {
                ImageField::NewTag => write!(f, "image:{name}"),
                ImageField::Digest => write!(f, "image-digest:{name}"),
                ImageField::NewName => write!(f, "image-name:{name}"),
            },
        }
    }
}

/// One `--set TARGET=VALUE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub target: Target,
    pub value: String,
}

/// A `--set` value that cannot be understood.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid --set {spec:?}: {reason}")]
pub struct ChangeSyntaxError {
    pub spec: String,
    pub reason: String,
}

impl FromStr for Change {
    type Err = ChangeSyntaxError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let fail = |reason: String| ChangeSyntaxError {
            spec: spec.to_string(),
            reason,
        };
        let split = top_level_equals(spec).ok_or_else(|| {
            fail("expected TARGET=VALUE, e.g. data.model=m-2 or image:app=v2".into())
        })?;
        let (target, value) = (&spec[..split], &spec[split + 1..]);
        let prefixed = |prefix: &str| target.strip_prefix(prefix).map(str::to_string);
        let target = if let Some(name) = prefixed("kpt-setter:") {
            Target::KptSetter(name)
        } else if let Some(name) = prefixed("image:") {
            Target::Image {
                name,
                field: ImageField::NewTag,
            }
        } else if let Some(name) = prefixed("image-digest:") {
            Target::Image {
                name,
                field: ImageField::Digest,
            }
        } else if let Some(name) = prefixed("image-name:") {
            Target::Image {
                name,
                field: ImageField::NewName,
            }
        } else {
            Target::Path(YamlPath::parse(target).map_err(|e| fail(e.to_string()))?)
        };
        if let Target::KptSetter(name) | Target::Image { name, .. } = &target
            && name.is_empty()
        {
            return Err(fail("the name after the prefix is empty".into()));
        }
        if value.is_empty() {
            return Err(fail(
                "the value is empty; bump-pr pins a version and never blanks one".into(),
            ));
        }
        Ok(Change {
            target,
            value: value.to_string(),
        })
    }
}

/// The first `=` outside `[...]` and `"..."`, so selectors like `[name=main]` stay in the path.
fn top_level_equals(spec: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_quote = false;
    let mut escaped = false;
    for (i, c) in spec.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quote => escaped = true,
            '"' => in_quote = !in_quote,
            '[' if !in_quote => depth += 1,
            ']' if !in_quote => depth = depth.saturating_sub(1),
            '=' if !in_quote && depth == 0 => return Some(i),
            _ => {}
        }
    }
    None
}

/// `--document`: which document of a multi-document file the changes apply to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DocSelector {
    pub index: Option<usize>,
    pub kind: Option<String>,
    pub api_version: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid --document {spec:?}: {reason} (expected comma-separated KEY=VALUE with keys index, kind, apiVersion, name, namespace)"
)]
pub struct SelectorSyntaxError {
    pub spec: String,
    pub reason: String,
}

impl FromStr for DocSelector {
    type Err = SelectorSyntaxError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let fail = |reason: String| SelectorSyntaxError {
            spec: spec.to_string(),
            reason,
        };
        let mut selector = DocSelector::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| fail(format!("{part:?} has no '='")))?;
            let value = value.trim().to_string();
            let slot = match key.trim() {
                "index" => {
                    let index = value
                        .parse()
                        .map_err(|_| fail(format!("index {value:?} is not a number")))?;
                    selector.index = Some(index);
                    continue;
                }
                "kind" => &mut selector.kind,
                "apiVersion" => &mut selector.api_version,
                "name" => &mut selector.name,
                "namespace" => &mut selector.namespace,
                other => return Err(fail(format!("unknown key {other:?}"))),
            };
            *slot = Some(value);
        }
        if selector == DocSelector::default() {
            return Err(fail("it selects nothing".into()));
        }
        Ok(selector)
    }
}

impl fmt::Display for DocSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(i) = self.index {
            parts.push(format!("index={i}"));
        }
        for (key, value) in [
            ("kind", &self.kind),
            ("apiVersion", &self.api_version),
            ("name", &self.name),
            ("namespace", &self.namespace),
        ] {
            if let Some(v) = value {
                parts.push(format!("{key}={v}"));
            }
        }
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_kind_of_target() {
        let c: Change = "spec.containers[name=main].image=repo/app:v2=x"
            .parse()
            .unwrap();
        assert_eq!(
            c.target,
            Target::Path(YamlPath::parse("spec.containers[name=main].image").unwrap())
        );
        assert_eq!(c.value, "repo/app:v2=x");
        let c: Change = "kpt-setter:automl-model=m-2".parse().unwrap();
        assert_eq!(c.target, Target::KptSetter("automl-model".into()));
        let c: Change = "image:registry.example.com/acme/model=v2".parse().unwrap();
        assert_eq!(
            c.target,
            Target::Image {
                name: "registry.example.com/acme/model".into(),
                field: ImageField::NewTag
            }
        );
        let c: Change = "image-digest:app=sha256:abc".parse().unwrap();
        assert_eq!(c.value, "sha256:abc");
        assert_eq!(c.target.to_string(), "image-digest:app");
    }

    #[test]
    fn rejects_incomplete_specs() {
        for bad in [
            "data.model",
            "data.model=",
            "kpt-setter:=v",
            "a..b=v",
            "[x=1]",
        ] {
            assert!(bad.parse::<Change>().is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn parses_document_selectors() {
        let s: DocSelector = "kind=ConfigMap, name=foo".parse().unwrap();
        assert_eq!(s.kind.as_deref(), Some("ConfigMap"));
        assert_eq!(s.name.as_deref(), Some("foo"));
        assert_eq!(s.to_string(), "kind=ConfigMap,name=foo");
        let s: DocSelector = "index=2".parse().unwrap();
        assert_eq!(s.index, Some(2));
        assert!("colour=red".parse::<DocSelector>().is_err());
        assert!("".parse::<DocSelector>().is_err());
        assert!("index=x".parse::<DocSelector>().is_err());
    }
}
