//! The pin editor (`modelsync_bump_pr::yaml_edit::edit`) with the `--set` and `--document`
//! parsers in front of it: only the pinned value's bytes change, and reading the file again
//! (with another YAML parser than the editor's) gives the new value and nothing else new.

use modelsync_bump_pr::change::{Change, DocSelector};
use modelsync_bump_pr::scalar::is_non_string;
use modelsync_bump_pr::yaml_doc::{self, Node as DocNode};
use modelsync_bump_pr::yaml_edit::{Edit, EditError, edit};
use modelsync_gitops::{Segment, Tree, YamlPath, lookup};
use proptest::prelude::*;
use proptest::sample::Index;
use serde::Deserialize;
use serde_yaml_ng::Value;

use crate::mutate::{self, Mutation};
use crate::target::{Target, Verdict};
use crate::targets::json;
use crate::yaml::{self, Layout, Node, Scalar, Style};

pub struct Edits;

const FILE: &str = "manifests/model.yaml";

/// A YAML file, the `--set` flags and the `--document` flag given to the editor.
#[derive(Clone, Debug)]
pub struct Case {
    pub docs: Vec<Node>,
    pub layout: Layout,
    pub start_marker: bool,
    pub crlf: bool,
    pub mutations: Vec<Mutation>,
    /// `--set` flags as typed.
    pub sets: Vec<String>,
    pub document: Option<String>,
}

impl Case {
    fn text(&self) -> String {
        let mut text = yaml::stream(&self.docs, &self.layout, self.start_marker);
        if self.crlf {
            text = text.replace('\n', "\r\n");
        }
        mutate::apply(&text, &self.mutations)
    }
}

const TOKENS: &[&str] = &[
    ": ", "- ", "  ", "---\n", "...\n", "&a ", "*a", "!!str ", "|\n", ">\n", "? ", "{", "[", "'",
    "\"", "#", "\n  ", "\t",
];

impl Target for Edits {
    const NAME: &'static str = "edit";
    const ABOUT: &'static str =
        "the YAML pin editor (yaml_edit::edit, --set, --document): only the pin changes";
    type Input = Case;

    fn inputs() -> BoxedStrategy<Case> {
        let layout = (
            0usize..5,
            prop_oneof![Just(2usize), Just(4)],
            any::<bool>(),
            0usize..4,
        )
            .prop_map(|(flow_from, indent, compact_seq, comment_every)| Layout {
                flow_from: if flow_from == 0 { 0 } else { flow_from + 1 },
                indent,
                compact_seq,
                comment_every,
            });
        let mutations = prop_oneof![4 => Just(Vec::new()), 1 => mutate::mutations(TOKENS, 2)];
        let picks =
            proptest::collection::vec((any::<Index>(), any::<Index>(), 0u8..20, new_value()), 1..3);
        (
            proptest::collection::vec(document(), 1..4),
            layout,
            proptest::bool::weighted(0.2),
            proptest::bool::weighted(0.1),
            mutations,
            picks,
            prop_oneof![4 => Just(None), 1 => any::<Index>().prop_map(Some)],
        )
            .prop_map(
                |(mut docs, layout, start_marker, crlf, mutations, picks, document)| {
                    anchor_some(&mut docs);
                    let sets = picks
                        .into_iter()
                        .map(|(doc, path, how, value)| {
                            let doc = doc.get(&docs);
                            format!("{}={value}", pick_target(doc, &path, how))
                        })
                        .collect();
                    let document = document.map(|i| format!("index={}", i.index(docs.len())));
                    Case {
                        docs,
                        layout,
                        start_marker,
                        crlf,
                        mutations,
                        sets,
                        document,
                    }
                },
            )
            .boxed()
    }

    fn check(case: &Case) -> Verdict {
        let text = case.text();
        let mut changes = Vec::new();
        for set in &case.sets {
            match set.parse::<Change>() {
                Ok(change) => changes.push(change),
                Err(e) => {
                    let message = e.to_string();
                    if !message.starts_with(&format!("invalid --set {set:?}: ")) {
                        return Verdict::broken("set-names", message);
                    }
                    return Verdict::Rejected("set_syntax".into());
                }
            }
        }
        let selector = match case.document.as_deref().map(str::parse::<DocSelector>) {
            None => None,
            Some(Ok(s)) => Some(s),
            Some(Err(e)) => return Verdict::broken("document", e),
        };
        match edit(FILE, &text, &changes, selector.as_ref()) {
            Ok(edited) => check_edit(case, &text, &changes, &edited),
            Err(err) => refused(&err, &changes),
        }
    }

    fn show(case: &Case) -> String {
        format!(
            "sets: {:?}\ndocument: {:?}\nfile:\n{}\n--- as a Rust string: {:?}\n",
            case.sets,
            case.document,
            case.text(),
            case.text()
        )
    }
}

fn refused(err: &EditError, changes: &[Change]) -> Verdict {
    let message = err.to_string();
    let kind = format!("{err:?}");
    let kind = kind
        .split([' ', '{', '('])
        .next()
        .unwrap_or_default()
        .to_string();
    if let EditError::Verify { .. } = err {
        return Verdict::broken("verify", message);
    }
    if !message.starts_with(FILE) {
        return Verdict::broken("names-file", message);
    }
    let names = match err {
        EditError::Parse { line, column, .. } => {
            message.contains(&format!("line {line}, column {column}"))
        }
        EditError::SetTwice { path, .. } => message.contains(path.as_str()),
        EditError::NoDocument { .. } => message.contains("--document"),
        _ => changes
            .iter()
            .any(|c| message.contains(&c.target.to_string())),
    };
    if !names {
        return Verdict::broken("names", message);
    }
    Verdict::Rejected(kind)
}

fn check_edit(case: &Case, before: &str, changes: &[Change], edited: &Edit) -> Verdict {
    if edited.applied.len() != changes.len()
        || edited
            .applied
            .iter()
            .zip(changes)
            .any(|(a, c)| a.new != c.value)
    {
        return Verdict::broken("applied", format!("{:?}", edited.applied));
    }
    let after = &edited.text;
    if !edited.changed() && after != before {
        return Verdict::broken("unchanged", "no value changed but the text did");
    }
    // Where each changed value sat, by the editor's own parse of the original.
    let stream = match yaml_doc::parse(before) {
        Ok(s) => s,
        Err(e) => return Verdict::broken("reparse", format!("{e:?}")),
    };
    let mut spans = Vec::new();
    for a in edited.applied.iter().filter(|a| a.changed()) {
        match lookup(&stream.documents[a.document], &a.path) {
            Ok(DocNode::Scalar(s)) if s.value.is_empty() && s.style == yaml_doc::Style::Plain => {
                spans.push(widened(before, s.span))
            }
            Ok(DocNode::Scalar(s)) => spans.push(s.span),
            other => return Verdict::broken("target", format!("{} is {other:?}", a.path)),
        }
    }
    if let Err(problem) = only_spans_changed(before, after, spans) {
        return Verdict::Broken(problem);
    }
    match read_again(case, before, after, edited) {
        Ok(()) => Verdict::Accepted,
        Err(problem) => Verdict::Broken(problem),
    }
}

/// An empty value's span is where the parser puts it, at the end of its key or after a
/// comment on its line: the new value may go after the ':' that follows, or before the
/// comment.
fn widened(text: &str, (start, end): (usize, usize)) -> (usize, usize) {
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line = &text.as_bytes()[line_start..start];
    let comment = (0..line.len())
        .find(|&i| line[i] == b'#' && (i == 0 || matches!(line[i - 1], b' ' | b'\t')));
    let start = comment.map_or(start, |i| {
        line_start + text[line_start..line_start + i].trim_end().len()
    });
    let rest = &text[end..];
    let spaces = rest.len() - rest.trim_start_matches([' ', '\t']).len();
    let colon = usize::from(rest[spaces..].starts_with(':'));
    if colon == 1 {
        (start, end + spaces + 1)
    } else {
        (start, end)
    }
}

/// Outside the changed values' spans, the edited text is the original, byte for byte.
fn only_spans_changed(
    before: &str,
    after: &str,
    mut spans: Vec<(usize, usize)>,
) -> Result<(), String> {
    spans.sort();
    let Some(first) = spans.first() else {
        return Ok(());
    };
    let last = spans.last().expect("not empty");
    let (head, tail) = (&before[..first.0], &before[last.1..]);
    if !after.starts_with(head) || !after[head.len()..].ends_with(tail) {
        return Err(format!(
            "bytes: text outside {spans:?} changed: {before:?} became {after:?}"
        ));
    }
    let mut at = head.len();
    for pair in spans.windows(2) {
        let between = &before[pair[0].1..pair[1].0];
        match after[at..].find(between) {
            Some(i) => at += i + between.len(),
            None => {
                return Err(format!(
                    "bytes: {between:?} between two values changed in {after:?}"
                ));
            }
        }
    }
    Ok(())
}

/// Read by `serde_yaml_ng` (the lambdas' reader, not the editor's): each target reads as the
/// new value, and with the targets put back the documents are the original ones.
fn read_again(case: &Case, before: &str, after: &str, edited: &Edit) -> Result<(), String> {
    let (Ok(old), Ok(new)) = (documents(before), documents(after)) else {
        return match (documents(before), documents(after)) {
            (Ok(_), Err(e)) => Err(format!("reread: the edited text does not load: {e}")),
            _ => Ok(()),
        };
    };
    if old.len() != new.len() {
        return Err(format!(
            "reread: {} documents became {}",
            old.len(),
            new.len()
        ));
    }
    let mut restored = new.clone();
    for a in &edited.applied {
        let (Some(o), Some(n)) = (old.get(a.document), new.get(a.document)) else {
            continue;
        };
        // By position, as the new value may be the one a selector matched on.
        let path = by_index(o, &a.path);
        let Ok(was) = lookup(o, &path) else {
            // serde_yaml_ng keeps numbers, not their text: a key or selector value written
            // `1.10` or `1e3` reads as 1.1 or 1000.0 there, so the path cannot be followed.
            // A known difference between the two readers, not an editing fault.
            return Ok(());
        };
        let Ok(now) = lookup(n, &path) else {
            return Err(format!("reread: {} not found again", a.path));
        };
        let old_text = was.text().map(|t| t.into_owned()).unwrap_or_default();
        let now_text = now.text().map(|t| t.into_owned());
        let now_string = matches!(now, Value::String(_));
        // A value that reads as a string under YAML 1.1 too must come back as exactly that
        // string; one that may be typed (a number, `yes`, a date) may be written typed, and
        // then reads as its kind (`1e3` as 1000.0).
        let plainly_string = matches!(was, Value::String(_)) && !is_non_string(&old_text);
        let exact = now_string && now_text.as_deref() == Some(a.new.as_str());
        let typed = !plainly_string
            && (now_text.as_deref() == Some(a.new.as_str()) || is_non_string(&a.new));
        if !(exact || typed) {
            return Err(format!(
                "reread: {} set to {:?} loads as {now:?} (was {was:?})",
                a.path, a.new
            ));
        }
        put(&mut restored[a.document], &path.segments, was.clone());
    }
    let anchored = case.text().contains('&');
    if !anchored && restored != old {
        return Err(format!(
            "reread: more than the targets changed: {old:?} became {new:?}"
        ));
    }
    Ok(())
}

fn documents(text: &str) -> Result<Vec<Value>, serde_yaml_ng::Error> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(Value::deserialize)
        .collect()
}

/// `path` with each selector replaced by the index of the item it picks in `root`.
fn by_index(root: &Value, path: &YamlPath) -> YamlPath {
    let mut node = Some(root);
    let mut out = Vec::new();
    for segment in &path.segments {
        let step = match (segment, node.and_then(Tree::items)) {
            (Segment::Select { key, value }, Some(items)) => items
                .iter()
                .position(|i| i.get_text(key).as_deref() == Some(value.as_str()))
                .map_or_else(|| segment.clone(), Segment::Index),
            _ => segment.clone(),
        };
        out.push(step);
        node = node.and_then(|n| lookup(n, &YamlPath::new(vec![segment.clone()])).ok());
    }
    YamlPath::new(out)
}

/// Sets the node at `path` (which exists) to `value`.
fn put(node: &mut Value, path: &[Segment], value: Value) {
    let Some((first, rest)) = path.split_first() else {
        *node = value;
        return;
    };
    if let Value::Tagged(t) = node {
        return put(&mut t.value, path, value);
    }
    let next = match (first, node) {
        (Segment::Key(k), Value::Mapping(m)) => m
            .iter_mut()
            .find(|(key, _)| key.text().as_deref() == Some(k.as_str()))
            .map(|(_, v)| v),
        (Segment::Index(i), Value::Sequence(items)) => items.get_mut(*i),
        (Segment::Select { key, value }, Value::Sequence(items)) => items
            .iter_mut()
            .find(|item| item.get_text(key).as_deref() == Some(value.as_str())),
        _ => None,
    };
    if let Some(next) = next {
        put(next, rest, value);
    }
}

/// Names the first few plain scalars `&aN` and refers to each once more at the end of the
/// first mapping document, so the editor meets anchored values and aliases.
fn anchor_some(docs: &mut [Node]) {
    let Some(Node::Map(entries)) = docs.first_mut() else {
        return;
    };
    let mut names = Vec::new();
    for (_, node) in entries.iter_mut() {
        if let Node::Scalar(s) = node
            && s.value.len() % 3 == 0
            && names.len() < 2
        {
            let name = format!("a{}", names.len());
            s.anchor = Some(name.clone());
            names.push(name);
        }
    }
    for name in names {
        entries.push((format!("ref-{name}"), Node::Alias(name)));
    }
}

/// A `--set` target in `doc`: usually a scalar, sometimes a collection, an alias or a key
/// that is not there; with a selector where a list's items have unique names.
fn pick_target(doc: &Node, pick: &Index, how: u8) -> String {
    let mut found = Vec::new();
    paths(doc, &mut Vec::new(), &mut found, how.is_multiple_of(2));
    let mut path = if found.is_empty() {
        vec![Segment::Key("data".into())]
    } else {
        found[pick.index(found.len())].clone()
    };
    match how {
        18 => path.push(Segment::Key("nope".into())),
        19 => {
            path.pop();
        }
        _ => {}
    }
    if path.is_empty() {
        return "[0]".into();
    }
    YamlPath::new(path).to_string()
}

/// Paths of every node under `node`; list items by selector when `select` and their names
/// allow it.
fn paths(node: &Node, at: &mut Vec<Segment>, out: &mut Vec<Vec<Segment>>, select: bool) {
    match node {
        Node::Scalar(_) | Node::Alias(_) => out.push(at.clone()),
        Node::Map(entries) => {
            for (k, v) in entries {
                at.push(Segment::Key(k.clone()));
                paths(v, at, out, select);
                at.pop();
            }
        }
        Node::Seq(items) => {
            let names: Vec<Option<&str>> = items.iter().map(item_name).collect();
            for (i, item) in items.iter().enumerate() {
                let unique =
                    names[i].filter(|n| names.iter().filter(|m| **m == Some(*n)).count() == 1);
                at.push(match unique {
                    Some(name) if select => Segment::Select {
                        key: "name".into(),
                        value: name.into(),
                    },
                    _ => Segment::Index(i),
                });
                paths(item, at, out, select);
                at.pop();
            }
        }
    }
}

fn item_name(item: &Node) -> Option<&str> {
    let Node::Map(entries) = item else {
        return None;
    };
    entries.iter().find_map(|(k, v)| match v {
        Node::Scalar(s) if k == "name" && s.style == Style::Plain => Some(s.value.as_str()),
        _ => None,
    })
}

fn plain_value() -> BoxedStrategy<String> {
    prop_oneof![
        6 => "[a-z][a-z0-9-]{0,10}",
        2 => "v[0-9]\\.[0-9]{1,2}\\.[0-9]",
        2 => proptest::sample::select(vec![
            "1.10", "007", "3", "-1", "1e3", "0x1F", "yes", "No", "on", "true", "null", "~",
            "sha256:ab12", "gs://b/m/7", "m-20261122", "1.0-rc1", "latest", "e5", "a#b", "x.y/z",
            ".inf", "2026-01-01",
        ])
        .prop_map(String::from),
    ]
    .boxed()
}

/// A value given to `--set`: ids, typed-looking words, and text that needs quoting.
fn new_value() -> BoxedStrategy<String> {
    prop_oneof![
        5 => plain_value(),
        3 => json::string(),
        2 => proptest::sample::select(vec![
            "- x", "? x", "a: b", "#x", " lead", "trail ", "'", "\"", "\\", "two\nlines", "\t", "|",
            ">", "*a", "&a", "!x", "%x", "@x", "`x", "---", "...", "[a]", "{a}", "a, b", "\u{85}",
            "\u{2028}", "\u{feff}x", "é", "模型", "-", "?", ":", "a:", "a :b", "x # y", "\r",
        ])
        .prop_map(String::from),
    ]
    .boxed()
}

fn scalar() -> BoxedStrategy<Node> {
    let styled = prop_oneof![
        10 => plain_value().prop_map(|v| (Style::Plain, v)),
        4 => json::string().prop_map(|v| (Style::Single, v)),
        4 => json::string().prop_map(|v| (Style::Double, v)),
        1 => "[a-z][a-z ]{0,8}(\n[a-z][a-z ]{0,8}){0,2}\n".prop_map(|v| (Style::Literal, v)),
        1 => "[a-z][a-z ]{0,8}(\n[a-z][a-z ]{0,8}){0,2}\n".prop_map(|v| (Style::Folded, v)),
    ];
    (
        styled,
        proptest::bool::weighted(0.05),
        proptest::option::weighted(0.1, "[a-z][a-z ]{0,8}"),
    )
        .prop_map(|((style, value), tagged, comment)| {
            Node::Scalar(Scalar {
                value,
                style,
                anchor: None,
                tagged,
                comment,
            })
        })
        .boxed()
}

fn key() -> BoxedStrategy<String> {
    prop_oneof![
        8 => "[a-z][a-zA-Z0-9_-]{0,8}",
        1 => proptest::sample::select(vec!["name", "image", "model", "data", "spec"]).prop_map(String::from),
        1 => json::key(),
    ]
    .boxed()
}

/// Keys made unique, as the editor refuses a key held twice.
fn unique(entries: Vec<(String, Node)>) -> Vec<(String, Node)> {
    let mut seen = std::collections::BTreeSet::new();
    entries
        .into_iter()
        .enumerate()
        .map(|(i, (k, v))| {
            let k = if seen.contains(&k) {
                format!("{k}-{i}")
            } else {
                k
            };
            seen.insert(k.clone());
            (k, v)
        })
        .collect()
}

fn node() -> BoxedStrategy<Node> {
    scalar()
        .prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                3 => proptest::collection::vec((key(), inner.clone()), 0..4)
                    .prop_map(|e| Node::Map(unique(e))),
                2 => proptest::collection::vec(inner.clone(), 0..4).prop_map(Node::Seq),
                1 => proptest::collection::vec(("[a-z]{1,4}", inner), 1..4).prop_map(|items| {
                    Node::Seq(
                        items
                            .into_iter()
                            .map(|(name, v)| {
                                Node::Map(vec![
                                    ("name".into(), Node::Scalar(Scalar::plain(&name))),
                                    ("image".into(), v),
                                ])
                            })
                            .collect(),
                    )
                }),
            ]
        })
        .boxed()
}

/// A document: usually a mapping, sometimes a Kubernetes-looking one with kind and name.
fn document() -> BoxedStrategy<Node> {
    prop_oneof![
        6 => proptest::collection::vec((key(), node()), 1..5).prop_map(|e| Node::Map(unique(e))),
        2 => (proptest::sample::select(vec!["ConfigMap", "Deployment"]), "[a-z]{1,5}", node())
            .prop_map(|(kind, name, data)| Node::Map(vec![
                ("kind".into(), Node::Scalar(Scalar::plain(kind))),
                ("metadata".into(), Node::Map(vec![("name".into(), Node::Scalar(Scalar::plain(&name)))])),
                ("data".into(), data),
            ])),
        1 => node(),
    ]
    .boxed()
}
