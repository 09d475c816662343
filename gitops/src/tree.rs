//! Following a [`YamlPath`] through a parsed YAML document.
//!
//! The lambdas read files with `serde_yaml_ng`; bump-pr parses with positions so it can splice
//! one value. Both trees implement [`Tree`], so one walk (and one set of reasons why a path
//! leads nowhere) serves both.

use std::borrow::Cow;
use std::fmt;

use crate::path::{Segment, YamlPath};

/// The entries of a mapping, keys with values, in document order.
pub type Entries<'a, T> = Box<dyn Iterator<Item = (&'a T, &'a T)> + 'a>;

/// One node of a parsed YAML document, as the walk sees it.
pub enum View<'a, T> {
    /// A scalar's text as written (numbers and booleans too); null reads as empty.
    Scalar(Cow<'a, str>),
    Sequence(&'a [T]),
    Mapping(Entries<'a, T>),
    /// An alias (`*name`) left unresolved by the parser.
    Alias,
}

/// A parsed YAML node.
pub trait Tree: Sized {
    fn view(&self) -> View<'_, Self>;

    /// The scalar's text, if this is a scalar.
    fn text(&self) -> Option<Cow<'_, str>> {
        match self.view() {
            View::Scalar(text) => Some(text),
            _ => None,
        }
    }

    /// The value of the first entry with key `key`, if this is a mapping holding one.
    fn get(&self, key: &str) -> Option<&Self> {
        match self.view() {
            View::Mapping(mut entries) => entries
                .find(|(k, _)| k.text().as_deref() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The scalar text under `key` (e.g. `kind`), if there is one.
    fn get_text(&self, key: &str) -> Option<Cow<'_, str>> {
        self.get(key)?.text()
    }

    /// The items, if this is a sequence.
    fn items(&self) -> Option<&[Self]> {
        match self.view() {
            View::Sequence(items) => Some(items),
            _ => None,
        }
    }

    /// What kind of node this is, for messages.
    fn kind(&self) -> Kind {
        match self.view() {
            View::Scalar(_) => Kind::Scalar,
            View::Sequence(_) => Kind::List,
            View::Mapping(_) => Kind::Mapping,
            View::Alias => Kind::Alias,
        }
    }
}

/// The kinds of node, as messages name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Scalar,
    List,
    Mapping,
    Alias,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Scalar => "a scalar",
            Kind::List => "a list",
            Kind::Mapping => "a mapping",
            Kind::Alias => "an alias (*name)",
        })
    }
}

/// Why a path does not lead to a node, and how far it got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missing {
    /// The part of the path that did resolve.
    pub found: YamlPath,
    pub reason: MissingReason,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.found.segments.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "under {}: {}", self.found, self.reason)
        }
    }
}

impl std::error::Error for Missing {}

/// Where a walk stopped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MissingReason {
    #[error("it goes through an alias (*name); set the path of the anchored node (&name) instead")]
    ThroughAlias,
    #[error("no key {key:?}")]
    NoKey { key: String },
    /// The mapping has a merge key, which the walk does not follow.
    #[error(
        "no key {key:?} (a merge key `<<` may supply it: set the path of the anchored mapping instead)"
    )]
    NoKeyBesideMerge { key: String },
    #[error("key {key:?} appears more than once")]
    DuplicateKey { key: String },
    #[error("index [{index}] is past the end of a list of {len}")]
    PastEnd { index: usize, len: usize },
    #[error("no list item with {key}={value:?}")]
    NoItem { key: String, value: String },
    #[error("more than one list item has {key}={value:?}")]
    ManyItems { key: String, value: String },
    #[error("key {key:?} asked of {kind}")]
    KeyOfNonMapping { key: String, kind: Kind },
    #[error("a list step asked of {kind}")]
    ListStepOfNonList { kind: Kind },
}

/// Follows `path` from `root`. A key held twice and a selector matching two items are errors,
/// never a guess.
pub fn lookup<'a, T: Tree>(root: &'a T, path: &YamlPath) -> Result<&'a T, Missing> {
    let mut node = root;
    for (walked, segment) in path.segments.iter().enumerate() {
        let fail = |reason| Missing {
            found: YamlPath::new(path.segments[..walked].to_vec()),
            reason,
        };
        node = step(node, segment).map_err(fail)?;
    }
    Ok(node)
}

fn step<'a, T: Tree>(node: &'a T, segment: &Segment) -> Result<&'a T, MissingReason> {
    match (segment, node.view()) {
        (_, View::Alias) => Err(MissingReason::ThroughAlias),
        (Segment::Key(key), View::Mapping(entries)) => {
            let mut merge = false;
            let mut hits = Vec::new();
            for (k, v) in entries {
                match k.text().as_deref() {
                    Some(text) if text == key => hits.push(v),
                    Some("<<") => merge = true,
                    _ => {}
                }
            }
            let key = key.clone();
            match hits[..] {
                [one] => Ok(one),
                [] if merge => Err(MissingReason::NoKeyBesideMerge { key }),
                [] => Err(MissingReason::NoKey { key }),
                _ => Err(MissingReason::DuplicateKey { key }),
            }
        }
        (Segment::Index(index), View::Sequence(items)) => {
            items.get(*index).ok_or(MissingReason::PastEnd {
                index: *index,
                len: items.len(),
            })
        }
        (Segment::Select { key, value }, View::Sequence(items)) => {
            let mut hits = items
                .iter()
                .filter(|item| item.get_text(key).as_deref() == Some(value.as_str()));
            let (key, value) = (key.clone(), value.clone());
            match (hits.next(), hits.next()) {
                (Some(hit), None) => Ok(hit),
                (None, _) => Err(MissingReason::NoItem { key, value }),
                (Some(_), Some(_)) => Err(MissingReason::ManyItems { key, value }),
            }
        }
        (Segment::Key(key), _) => Err(MissingReason::KeyOfNonMapping {
            key: key.clone(),
            kind: node.kind(),
        }),
        (_, _) => Err(MissingReason::ListStepOfNonList { kind: node.kind() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_yaml_ng::Value;

    const DEPLOYMENT: &str = "spec:
  replicas: 2
  containers:
  - name: sidecar
    image: envoy:v1
  - name: main
    image: app:v1
    ports: [80]
  - name: 7
    image: seven:v1
";

    fn doc(text: &str) -> Value {
        serde_yaml_ng::from_str(text).unwrap()
    }

    fn get(doc: &Value, path: &str) -> Result<String, String> {
        lookup(doc, &YamlPath::parse(path).unwrap())
            .map(|v| {
                v.text()
                    .map(String::from)
                    .unwrap_or_else(|| v.kind().to_string())
            })
            .map_err(|m| m.to_string())
    }

    #[test]
    fn follows_keys_indexes_and_selectors() {
        let d = doc(DEPLOYMENT);
        let cases = [
            ("spec.replicas", "2"),
            ("spec.containers[1].image", "app:v1"),
            ("spec.containers[name=main].image", "app:v1"),
            ("spec.containers[name=\"main\"].ports[0]", "80"),
            ("spec.containers[name=7].image", "seven:v1"),
            ("[\"spec\"].containers", "a list"),
        ];
        for (path, want) in cases {
            assert_eq!(get(&d, path).as_deref(), Ok(want), "{path}");
        }
    }

    #[test]
    fn says_where_and_why_a_path_stops() {
        let d = doc(DEPLOYMENT);
        let cases = [
            ("spec.replica", "under spec: no key \"replica\""),
            ("status", "no key \"status\""),
            (
                "spec.containers[3]",
                "under spec.containers: index [3] is past the end of a list of 3",
            ),
            (
                "spec.containers[name=db].image",
                "under spec.containers: no list item with name=\"db\"",
            ),
            (
                "spec.containers[image=app:v1].ports.x",
                "under spec.containers[image=app:v1].ports: key \"x\" asked of a list",
            ),
            (
                "spec.replicas[0]",
                "under spec.replicas: a list step asked of a scalar",
            ),
            ("spec[name=x]", "under spec: a list step asked of a mapping"),
        ];
        for (path, want) in cases {
            assert_eq!(get(&d, path), Err(want.to_string()), "{path}");
        }
        let twice = doc("items:\n- {name: a, v: 1}\n- {name: a, v: 2}\n");
        assert_eq!(
            get(&twice, "items[name=a].v"),
            Err("under items: more than one list item has name=\"a\"".to_string())
        );
    }

    #[test]
    fn a_merge_key_is_named_when_a_key_is_missing() {
        let d = doc("base: &b {model: m1}\ncanary:\n  <<: *b\n  replicas: 1\n");
        let missing = lookup(&d, &YamlPath::parse("canary.model").unwrap()).unwrap_err();
        assert_eq!(
            missing.reason,
            MissingReason::NoKeyBesideMerge {
                key: "model".into()
            }
        );
    }
}
