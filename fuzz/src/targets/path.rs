//! The pin grammar (`modelsync_gitops`): parsing and printing YAML paths, following them
//! through documents as the lambdas read them (`serde_yaml_ng`) and as bump-pr reads them
//! (with positions), and the kpt setter and kustomize image lookups built on them.

use modelsync_bump_pr::yaml_doc;
use modelsync_gitops::kpt::setter_paths;
use modelsync_gitops::kustomize::{ImageField, ImageLookup, image_path};
use modelsync_gitops::{Segment, Tree, YamlPath, lookup};
use proptest::prelude::*;
use serde_yaml_ng::{Mapping, Value};

use crate::mutate::{self, Mutation};
use crate::target::{Target, Verdict};
use crate::yaml::double_quoted as quoted;

pub struct Paths;

/// A path as segments, spelled one of the ways the grammar allows, maybe mutated, and a
/// document built so the path leads to a known node.
#[derive(Clone, Debug)]
pub struct Case {
    pub segments: Vec<Segment>,
    /// How each segment is spelled (0 is the canonical spelling).
    pub spelling: Vec<u8>,
    pub mutations: Vec<Mutation>,
    /// Unrelated siblings put around each node on the way.
    pub decoys: Vec<u8>,
    /// The name a kpt setter and a kustomize image are looked up by.
    pub name: String,
}

const TOKENS: &[&str] = &[
    ".", "[", "]", "\"", "=", "\\", "[0]", "[name=x]", "..", " ", "[\"", "\"]", "[-1]", "[+1]",
];

impl Case {
    fn text(&self) -> String {
        mutate::apply(&spell(&self.segments, &self.spelling), &self.mutations)
    }
}

impl Target for Paths {
    const NAME: &'static str = "path";
    const ABOUT: &'static str = "the pin grammar: YAML paths parsed and printed, looked up in both YAML readers, kpt setters, kustomize images";
    type Input = Case;

    fn inputs() -> BoxedStrategy<Case> {
        let segments = proptest::collection::vec(segment(), 1..6);
        let mutations = prop_oneof![2 => Just(Vec::new()), 1 => mutate::mutations(TOKENS, 3)];
        (
            segments,
            proptest::collection::vec(0u8..3, 6),
            mutations,
            proptest::collection::vec(0u8..3, 6),
            key(),
        )
            .prop_map(|(segments, spelling, mutations, decoys, name)| Case {
                segments,
                spelling,
                mutations,
                decoys,
                name,
            })
            .boxed()
    }

    fn check(case: &Case) -> Verdict {
        let text = case.text();
        let path = match YamlPath::parse(&text) {
            Ok(path) => path,
            Err(e) => {
                let message = e.to_string();
                if case.mutations.is_empty() {
                    return Verdict::broken("refused", format!("{text:?}: {message}"));
                }
                if e.path != text || !message.starts_with(&format!("{text:?} ")) {
                    return Verdict::broken(
                        "names",
                        format!("{message:?} does not quote {text:?}"),
                    );
                }
                let kind = format!("{:?}", e.problem);
                let kind = kind.split(['(', ' ']).next().unwrap_or_default();
                return Verdict::Rejected(kind.to_string());
            }
        };
        if case.mutations.is_empty() && path.segments != case.segments {
            return Verdict::broken("parse", format!("{text:?} read as {:?}", path.segments));
        }
        let printed = path.to_string();
        match YamlPath::parse(&printed) {
            Ok(again) if again == path => {}
            other => {
                return Verdict::broken(
                    "round-trip",
                    format!("{path:?} printed {printed:?} read {other:?}"),
                );
            }
        }
        if case.mutations.is_empty() && case.spelling.iter().all(|s| *s == 0) && printed != text {
            return Verdict::broken("canonical", format!("{text:?} printed as {printed:?}"));
        }
        if let Err(problem) = walk(case, &path) {
            return Verdict::Broken(problem);
        }
        if let Err(problem) = setters_and_images(&case.name) {
            return Verdict::Broken(problem);
        }
        Verdict::Accepted
    }

    fn show(case: &Case) -> String {
        format!("text: {:?}\nbuilt from: {case:#?}\n", case.text())
    }
}

/// Follows the path through a document built for it, in both readers, and checks they agree
/// and that a path that stops says where.
fn walk(case: &Case, path: &YamlPath) -> Result<(), String> {
    let (doc, target) = build(&case.segments, &case.decoys, 0);
    let text = serde_yaml_ng::to_string(&doc).map_err(|e| format!("yaml-write: {e}"))?;
    let stream = yaml_doc::parse(&text).map_err(|e| format!("yaml-read: {e:?} in {text:?}"))?;
    let node = stream.documents.first().ok_or("yaml-read: no document")?;
    let by_lambdas = lookup(&doc, path);
    let by_bump_pr = lookup(node, path);
    match (&by_lambdas, &by_bump_pr) {
        (Ok(a), Ok(b)) => {
            if a.text() != b.text() || a.kind() != b.kind() {
                return Err(format!(
                    "readers-differ: {path} finds {a:?} and {b:?} in {text:?}"
                ));
            }
        }
        (Err(a), Err(b)) if a == b => {}
        _ => {
            return Err(format!(
                "readers-differ: {path} gives {by_lambdas:?} and {:?} in {text:?}",
                by_bump_pr.as_ref().map(|n| n.kind())
            ));
        }
    }
    match by_lambdas {
        Ok(found) => {
            if case.mutations.is_empty() && findable(&case.segments) && found != &target {
                return Err(format!("lookup: {path} found {found:?}, not {target:?}"));
            }
        }
        Err(missing) => {
            if case.mutations.is_empty() && findable(&case.segments) {
                return Err(format!("lookup: {path} not found in {text:?}: {missing}"));
            }
            let prefix = path.segments.starts_with(&missing.found.segments)
                && missing.found.segments.len() < path.segments.len();
            if !prefix || lookup(&doc, &missing.found).is_err() {
                return Err(format!("missing-found: {missing:?} for {path}"));
            }
            let message = missing.to_string();
            let under = format!("under {}: ", missing.found);
            if !missing.found.segments.is_empty() && !message.starts_with(&under) {
                return Err(format!("missing-names: {message:?}"));
            }
        }
    }
    Ok(())
}

/// Whether the built document holds the path: a selector is followed by a key other than
/// its own, or ends the path.
fn findable(segments: &[Segment]) -> bool {
    segments.windows(2).all(|w| match (&w[0], &w[1]) {
        (Segment::Select { key, .. }, Segment::Key(next)) => key != next,
        (Segment::Select { .. }, _) => false,
        _ => true,
    })
}

/// A document in which `segments` lead to a node, and that node.
fn build(segments: &[Segment], decoys: &[u8], depth: usize) -> (Value, Value) {
    let count = decoys.get(depth).copied().unwrap_or(0) as usize;
    let decoy = |i: usize| Value::String(format!("decoy-{depth}-{i}"));
    let Some((first, rest)) = segments.split_first() else {
        let leaf = Value::String(format!("leaf-{depth}"));
        return (leaf.clone(), leaf);
    };
    match first {
        Segment::Key(key) => {
            let (below, target) = build(rest, decoys, depth + 1);
            let mut m = Mapping::new();
            for i in 0..count {
                m.insert(Value::String(format!("{key}~{i}")), decoy(i));
            }
            m.insert(Value::String(key.clone()), below);
            (Value::Mapping(m), target)
        }
        Segment::Index(index) => {
            let (below, target) = build(rest, decoys, depth + 1);
            let mut items: Vec<Value> = (0..*index).map(decoy).collect();
            items.push(below);
            items.extend((0..count).map(decoy));
            (Value::Sequence(items), target)
        }
        Segment::Select { key, value } => {
            let (below, target) = build(rest, decoys, depth + 1);
            let mut item = match below {
                Value::Mapping(m) => m,
                _ => Mapping::new(),
            };
            if rest.is_empty() {
                item.insert(Value::String("leaf".into()), Value::String("here".into()));
            }
            item.insert(Value::String(key.clone()), Value::String(value.clone()));
            let target = if rest.is_empty() {
                Value::Mapping(item.clone())
            } else {
                target
            };
            let mut items = Vec::new();
            for i in 0..count {
                let mut other = Mapping::new();
                other.insert(
                    Value::String(key.clone()),
                    Value::String(format!("{value}~{i}")),
                );
                items.push(Value::Mapping(other));
            }
            items.insert(count / 2, Value::Mapping(item));
            (Value::Sequence(items), target)
        }
    }
}

/// Setter and image lookups return only paths that lead to a value.
fn setters_and_images(name: &str) -> Result<(), String> {
    let docs = [
        format!(
            "apiVersion: kpt.dev/v1alpha1\nkind: Kptfile\nopenAPI:\n  definitions:\n    {}:\n      x-k8s-cli:\n        setter:\n          name: {}\n          value: m-1\n",
            quoted(&format!("io.k8s.cli.setters.{name}")),
            quoted(name)
        ),
        format!(
            "apiVersion: kpt.dev/v1\nkind: Kptfile\npipeline:\n  mutators:\n  - image: set-labels:v1\n    configMap: {{{n}: x}}\n  - image: kpt-fn/apply-setters:v0.2\n    configMap:\n      {n}: m-1\n",
            n = quoted(name)
        ),
        format!("kind: ConfigMap\ndata:\n  {}: m-1\n", quoted(name)),
        format!(
            "kind: Kustomization\nimages:\n- name: {n}\n  newTag: v1\n- name: other\n  digest: sha256:aa\n- {{name: {nx}, newName: reg/x}}\n",
            n = quoted(name),
            nx = quoted(&format!("{name}x"))
        ),
    ];
    for text in &docs {
        let doc: Value =
            serde_yaml_ng::from_str(text).map_err(|e| format!("setup: {e} {text:?}"))?;
        let node = &yaml_doc::parse(text)
            .map_err(|e| format!("setup: {e:?}"))?
            .documents[0];
        let (a, b) = (setter_paths(&doc, name), setter_paths(node, name));
        if a != b {
            return Err(format!("setters-differ: {a:?} and {b:?} in {text:?}"));
        }
        for path in &a {
            if lookup(&doc, path).ok().and_then(Tree::text).is_none() {
                return Err(format!("setter: {path} leads to no value in {text:?}"));
            }
        }
        for field in [ImageField::NewTag, ImageField::Digest, ImageField::NewName] {
            let (a, b) = (image_path(&doc, name, field), image_path(node, name, field));
            if a != b {
                return Err(format!("images-differ: {a:?} and {b:?} in {text:?}"));
            }
            let fine = match &a {
                ImageLookup::Found(p) => lookup(&doc, p).ok().and_then(Tree::text).is_some(),
                ImageLookup::FieldMissing(entry) => {
                    let field_path = entry.join([Segment::Key(field.key().into())]);
                    lookup(&doc, entry).is_ok() && lookup(&doc, &field_path).is_err()
                }
                ImageLookup::NotHere => true,
            };
            if !fine {
                return Err(format!("image: {a:?} for {name:?} {field:?} in {text:?}"));
            }
        }
    }
    Ok(())
}

/// The path spelled with `spelling` choosing, per segment, among the grammar's spellings.
fn spell(segments: &[Segment], spelling: &[u8]) -> String {
    let mut out = String::new();
    for (n, segment) in segments.iter().enumerate() {
        let how = spelling.get(n).copied().unwrap_or(0);
        match segment {
            Segment::Key(key) if how == 1 => out.push_str(&format!("[{}]", escaped(key))),
            Segment::Key(key) => {
                if n > 0 {
                    out.push('.');
                }
                let plain = !(key.is_empty() || key.contains(['.', '[', ']', '"', '=']));
                if plain && how == 0 {
                    out.push_str(key);
                } else {
                    out.push_str(&escaped(key));
                }
            }
            Segment::Index(i) => match how {
                0 => out.push_str(&format!("[{i}]")),
                1 => out.push_str(&format!("[ {i} ]")),
                _ if n > 0 => out.push_str(&format!(".[{i}]")),
                _ => out.push_str(&format!("[{i}]")),
            },
            Segment::Select { key, value } => {
                let plain = !(value.contains([']', '"'])
                    || value.trim() != value
                    || value.starts_with('"'));
                if how == 0 && plain {
                    out.push_str(&format!("[{key}={value}]"));
                } else if how == 0 {
                    out.push_str(&format!("[{key}={}]", escaped(value)));
                } else {
                    out.push_str(&format!("[ {key} = {} ]", escaped(value)));
                }
            }
        }
    }
    out
}

fn escaped(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn key() -> BoxedStrategy<String> {
    prop_oneof![
        6 => "[a-zA-Z_][a-zA-Z0-9_/-]{0,8}",
        1 => proptest::sample::select(vec![
            "", " ", "a.b", "example.com/model", "x[0]", "a]b", "q\"t", "k=v", "\\", "<<", "~",
            "true", "1", "模型", "é", "tab\t", "-", "? x", "a: b", "#c",
        ])
        .prop_map(String::from),
        1 => "(?s).{0,6}",
    ]
    .boxed()
}

fn segment() -> BoxedStrategy<Segment> {
    prop_oneof![
        5 => key().prop_map(Segment::Key),
        2 => (0usize..4).prop_map(Segment::Index),
        2 => (
            prop_oneof![3 => Just("name".to_string()), 1 => "[a-zA-Z][a-zA-Z0-9_.-]{0,5}"],
            prop_oneof![3 => "[a-z0-9-]{0,6}", 1 => key()],
        )
            .prop_map(|(key, value)| Segment::Select { key, value }),
    ]
    .boxed()
}
