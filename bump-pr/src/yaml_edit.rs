//! The pin editor: file text in, file text out, with only the target scalars' bytes replaced.
//!
//! Comments, key order, indentation, quoting of everything else, anchors, document markers and
//! line ends (CRLF included) are never touched because the rest of the text is never rewritten:
//! the parser says where each target scalar sits and only that span is spliced. The result is
//! parsed again and compared with the input to prove nothing else changed meaning.

use modelsync_gitops::kpt;
use modelsync_gitops::kustomize::{ImageLookup, image_path};
use modelsync_gitops::{Tree, YamlPath, lookup};

use crate::change::{Change, DocSelector, Target};
use crate::scalar::{RenderError, render};
use crate::yaml_doc::{self, Node, Scalar, Shape, Style};

/// One value set in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// What the user asked for, e.g. `image:app` or `data.model`.
    pub target: String,
    /// The concrete path that was set.
    pub path: YamlPath,
    /// Which document of the file (0-based).
    pub document: usize,
    pub old: String,
    pub new: String,
}

impl Applied {
    pub fn changed(&self) -> bool {
        self.old != self.new
    }
}

/// The edited text and what was set in it.
#[derive(Clone, Debug)]
pub struct Edit {
    pub text: String,
    pub applied: Vec<Applied>,
}

impl Edit {
    pub fn changed(&self) -> bool {
        self.applied.iter().any(Applied::changed)
    }
}

/// Why a file could not be edited. Every message names the file and the target.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EditError {
    /// The file is not YAML.
    #[error("{file} is not valid YAML at line {line}, column {column}: {message}")]
    Parse {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// The target does not exist; bump-pr never inserts keys.
    #[error(
        "{file}: {target} not found: {reason}. bump-pr only changes values that already exist; check the path, or add the field to the file once"
    )]
    NotFound {
        file: String,
        target: String,
        reason: String,
    },
    /// The target exists in more than one document.
    #[error(
        "{file}: {target} matches more than one place ({places}); pick one document with --document kind=KIND,name=NAME or a more precise path"
    )]
    Ambiguous {
        file: String,
        target: String,
        places: String,
    },
    /// `--document` matches nothing.
    #[error("{file}: no document matches --document {selector} (the file has {documents})")]
    NoDocument {
        file: String,
        selector: String,
        documents: String,
    },
    /// The target is a mapping or list, not a value.
    #[error(
        "{file}: {target} at {path} is {what}, not a single value; point the path at a scalar inside it"
    )]
    NotScalar {
        file: String,
        target: String,
        path: String,
        what: String,
    },
    /// The target is a `|` or `>` block scalar.
    #[error(
        "{file}: {target} at {path} is a block scalar (| or >); bump-pr rewrites single-line values only"
    )]
    BlockScalar {
        file: String,
        target: String,
        path: String,
    },
    /// Two `--set` flags name the same value.
    #[error("{file}: {path} is set by more than one --set; keep one")]
    SetTwice { file: String, path: String },
    /// The rewritten text did not read back as intended (a bug in bump-pr, not in the file).
    #[error(
        "{file}: the edited text does not parse back to the intended values ({detail}); this is a bug in bump-pr, please report it with the file"
    )]
    Verify { file: String, detail: String },
}

/// Sets every change in `text`, the contents of `file` (used in messages).
pub fn edit(
    file: &str,
    text: &str,
    changes: &[Change],
    selector: Option<&DocSelector>,
) -> Result<Edit, EditError> {
    let parse_error = |e: yaml_doc::ParseError| EditError::Parse {
        file: file.to_string(),
        line: e.line,
        column: e.column,
        message: e.message,
    };
    let stream = yaml_doc::parse(text).map_err(parse_error)?;
    let documents = select_documents(file, &stream.documents, selector)?;

    let mut splices: Vec<(Scalar, String, String)> = Vec::new();
    let mut applied = Vec::new();
    let mut targeted: Vec<(usize, usize)> = Vec::new();
    for change in changes {
        let (document, path) = resolve(file, &stream.documents, &documents, &change.target)?;
        let node = lookup(&stream.documents[document], &path).map_err(|m| EditError::NotFound {
            file: file.to_string(),
            target: change.target.to_string(),
            reason: m.reason.to_string(),
        })?;
        let scalar = match node {
            Node::Scalar(s) => s,
            other => {
                return Err(EditError::NotScalar {
                    file: file.to_string(),
                    target: change.target.to_string(),
                    path: path.to_string(),
                    what: match other {
                        Node::Mapping(_) => "a mapping".into(),
                        Node::Sequence(_) => "a list".into(),
                        _ => "an alias (*name); set the anchored value (&name) instead".into(),
                    },
                });
            }
        };
        // Compared by position: two different paths (a[0], a[name=x]) can name one value.
        if targeted.contains(&scalar.span) {
            return Err(EditError::SetTwice {
                file: file.to_string(),
                path: path.to_string(),
            });
        }
        targeted.push(scalar.span);
        if scalar.value != change.value {
            let rendered = render(scalar.style, &scalar.value, scalar.tagged, &change.value)
                .map_err(|RenderError::Block| EditError::BlockScalar {
                    file: file.to_string(),
                    target: change.target.to_string(),
                    path: path.to_string(),
                })?;
            splices.push((scalar.clone(), rendered, change.value.clone()));
        }
        applied.push(Applied {
            target: change.target.to_string(),
            path,
            document,
            old: scalar.value.clone(),
            new: change.value.clone(),
        });
    }

    let mut out = text.to_string();
    splices.sort_by_key(|(s, _, _)| std::cmp::Reverse(s.span.0));
    for (scalar, rendered, _) in &splices {
        let (range, replacement) = placement(text, scalar, rendered);
        out.replace_range(range, &replacement);
    }
    verify(file, text, &out, &splices)?;
    Ok(Edit { text: out, applied })
}

/// Documents the changes may apply to, by index.
fn select_documents(
    file: &str,
    documents: &[Node],
    selector: Option<&DocSelector>,
) -> Result<Vec<usize>, EditError> {
    let Some(selector) = selector else {
        return Ok((0..documents.len()).collect());
    };
    let matches = |i: usize, doc: &Node| {
        let metadata = doc.get("metadata");
        let meta = |key: &str| metadata.and_then(|m| m.get_str(key));
        selector.index.is_none_or(|want| want == i)
            && selector
                .kind
                .as_deref()
                .is_none_or(|k| doc.get_str("kind") == Some(k))
            && selector
                .api_version
                .as_deref()
                .is_none_or(|v| doc.get_str("apiVersion") == Some(v))
            && selector
                .name
                .as_deref()
                .is_none_or(|n| meta("name") == Some(n))
            && selector
                .namespace
                .as_deref()
                .is_none_or(|n| meta("namespace") == Some(n))
    };
    let selected: Vec<usize> = documents
        .iter()
        .enumerate()
        .filter(|(i, d)| matches(*i, d))
        .map(|(i, _)| i)
        .collect();
    if selected.is_empty() {
        return Err(EditError::NoDocument {
            file: file.to_string(),
            selector: selector.to_string(),
            documents: describe_documents(documents),
        });
    }
    Ok(selected)
}

fn describe_document(i: usize, doc: &Node) -> String {
    let kind = doc.get_str("kind").unwrap_or("no kind");
    match doc.get("metadata").and_then(|m| m.get_str("name")) {
        Some(name) => format!("document {i} ({kind} {name})"),
        None => format!("document {i} ({kind})"),
    }
}

fn describe_documents(documents: &[Node]) -> String {
    documents
        .iter()
        .enumerate()
        .map(|(i, d)| describe_document(i, d))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The one (document, path) a target names among the selected documents.
fn resolve(
    file: &str,
    all: &[Node],
    selected: &[usize],
    target: &Target,
) -> Result<(usize, YamlPath), EditError> {
    let mut found: Vec<(usize, YamlPath)> = Vec::new();
    let mut reasons: Vec<String> = Vec::new();
    for &i in selected {
        let doc = &all[i];
        match target {
            Target::Path(path) => match lookup(doc, path) {
                Ok(_) => found.push((i, path.clone())),
                Err(missing) => reasons.push(missing.to_string()),
            },
            Target::KptSetter(name) => {
                found.extend(kpt::setter_paths(doc, name).into_iter().map(|p| (i, p)))
            }
            Target::Image { name, field } => match image_path(doc, name, *field) {
                ImageLookup::Found(p) => found.push((i, p)),
                ImageLookup::FieldMissing(entry) => reasons.push(format!(
                    "the images entry {name:?} ({entry}) has no {} field",
                    field.key()
                )),
                ImageLookup::NotHere => {}
            },
        }
    }
    let mut found = found.into_iter();
    match (found.next(), found.next()) {
        (Some(one), None) => Ok(one),
        (Some(first), Some(second)) => {
            let places = [first, second]
                .into_iter()
                .chain(found)
                .map(|(i, p)| format!("{} in {}", p, describe_document(i, &all[i])))
                .collect::<Vec<_>>()
                .join("; ");
            Err(EditError::Ambiguous {
                file: file.to_string(),
                target: target.to_string(),
                places,
            })
        }
        (None, _) => {
            reasons.dedup();
            let reason = match target {
                Target::KptSetter(name) => format!(
                    "no setter {name:?} in {}",
                    kpt::LOOKED_IN.replace("NAME", name)
                ),
                Target::Image { name, .. } if reasons.is_empty() => {
                    format!("no kustomization images entry with name {name:?}")
                }
                _ if reasons.is_empty() => "the file has no documents".to_string(),
                _ => reasons.join("; "),
            };
            Err(EditError::NotFound {
                file: file.to_string(),
                target: target.to_string(),
                reason,
            })
        }
    }
}

/// The bytes of `text` that `rendered` replaces for `scalar`, and what goes there.
fn placement(text: &str, scalar: &Scalar, rendered: &str) -> (std::ops::Range<usize>, String) {
    let (span_start, span_end) = scalar.span;
    let span_text = &text[span_start..span_end];
    let start = value_offset(span_text);
    // An empty value (`model:`, `- `, `{model}`) has no bytes of its own: the parser puts it
    // at the end of its key, before the ':', or over the ',' or '}' after a flow key.
    let empty = scalar.value.is_empty()
        && scalar.style == Style::Plain
        && span_text[start..]
            .chars()
            .all(|c| matches!(c, ',' | '}' | ']' | ' ' | '\t'));
    if empty {
        let mut at = span_start + start;
        // The parser may put it after a comment on its line (`- # none yet`): it goes before.
        let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        if let Some(hash) = comment_start(&text[line_start..at]) {
            at = line_start + text[line_start..line_start + hash].trim_end().len();
        }
        let rest = text[at..].trim_start_matches([' ', '\t']);
        if rest.starts_with(':') {
            let after_colon = text.len() - rest.len() + 1;
            return (after_colon..after_colon, format!(" {rendered}"));
        }
        let after_key = start == 0 && !text[..at].ends_with([' ', '\t', '\n', '-', '[', '{', ',']);
        if after_key && rest.starts_with([',', '}']) {
            return (at..at, format!(": {rendered}"));
        }
        // After a '-', an anchor or a tag: a space keeps the value apart from them.
        let spaced = text[..at].ends_with([' ', '\t']);
        let replacement = if spaced {
            rendered.to_string()
        } else {
            format!(" {rendered}")
        };
        return (at..at, replacement);
    }
    let end = value_end(scalar.style, &span_text[start..]).map_or(span_text.len(), |e| start + e);
    (span_start + start..span_start + end, rendered.to_string())
}

/// Where a comment starts in `line`: a '#' at its start or after a space or tab.
fn comment_start(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    (0..bytes.len()).find(|&i| bytes[i] == b'#' && (i == 0 || matches!(bytes[i - 1], b' ' | b'\t')))
}

/// Bytes of anchor (`&a`), tag (`!!str`) and comments before a scalar's value in its span.
/// None of these can start a scalar's value, so skipping them never skips value text.
fn value_offset(span_text: &str) -> usize {
    let bytes = span_text.as_bytes();
    let mut i = 0;
    loop {
        while i < bytes.len() && matches!(bytes[i], b' ' | b'\t' | b'\r' | b'\n') {
            i += 1;
        }
        match bytes.get(i) {
            Some(b'&' | b'!') => {
                while i < bytes.len() && !matches!(bytes[i], b' ' | b'\t' | b'\r' | b'\n') {
                    i += 1;
                }
            }
            Some(b'#') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            _ => return i,
        }
    }
}

/// Length of a quoted scalar's text including its closing quote. The parser's span of a quoted
/// scalar can run on over trailing spaces and a comment, which must stay.
fn value_end(style: Style, value_text: &str) -> Option<usize> {
    let mut chars = value_text.char_indices().skip(1).peekable();
    match style {
        Style::SingleQuoted => {
            while let Some((i, c)) = chars.next() {
                if c == '\'' {
                    if chars.peek().is_some_and(|(_, n)| *n == '\'') {
                        chars.next();
                    } else {
                        return Some(i + 1);
                    }
                }
            }
            None
        }
        Style::DoubleQuoted => {
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => return Some(i + 1),
                    _ => {}
                }
            }
            None
        }
        _ => None,
    }
}

/// Parses the output and checks it equals the input with only the target values replaced,
/// each now reading as exactly the value asked for.
fn verify(
    file: &str,
    before: &str,
    after: &str,
    splices: &[(Scalar, String, String)],
) -> Result<(), EditError> {
    let fail = |detail: String| EditError::Verify {
        file: file.to_string(),
        detail,
    };
    let old = yaml_doc::shape(before).map_err(|e| fail(e.message))?;
    let new = yaml_doc::shape(after).map_err(|e| fail(e.message))?;
    if old.len() != new.len() {
        return Err(fail(format!(
            "{} parse events before, {} after",
            old.len(),
            new.len()
        )));
    }
    // The tree lists scalars in event order, so a target's place among the tree's scalars is
    // its place among the scalar events.
    let stream = yaml_doc::parse(before).map_err(|e| fail(e.message))?;
    let mut order = Vec::new();
    for doc in &stream.documents {
        scalars_in_order(doc, &mut order);
    }
    let wanted = |position: usize| {
        let scalar = order.get(position)?;
        splices
            .iter()
            .find(|(s, _, _)| s.span == scalar.span)
            .map(|(_, _, value)| value.as_str())
    };
    let mut position = 0;
    for (a, b) in old.iter().zip(new.iter()) {
        match (a, b) {
            (Shape::Scalar(x), Shape::Scalar(y)) => {
                let expected = wanted(position).unwrap_or(x);
                position += 1;
                if y != expected {
                    return Err(fail(format!("expected {expected:?}, read back {y:?}")));
                }
            }
            (x, y) if x != y => return Err(fail(format!("{x:?} became {y:?}"))),
            _ => {}
        }
    }
    Ok(())
}

/// Scalars (keys included) in the order the parser emits them.
fn scalars_in_order<'a>(node: &'a Node, out: &mut Vec<&'a Scalar>) {
    match node {
        Node::Scalar(s) => out.push(s),
        Node::Sequence(items) => items.iter().for_each(|n| scalars_in_order(n, out)),
        Node::Mapping(entries) => entries.iter().for_each(|(k, v)| {
            scalars_in_order(k, out);
            scalars_in_order(v, out);
        }),
        Node::Alias => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(text: &str, spec: &str) -> Result<String, EditError> {
        let change: Change = spec.parse().expect("a valid --set");
        edit("f.yaml", text, &[change], None).map(|e| e.text)
    }

    // Found by the edit fuzz target: an empty value has a zero-length span at the end of its
    // key, so the new value was spliced in before the ':' and the edit failed verification.
    #[test]
    fn empty_values_are_set_after_their_indicator() {
        let cases = [
            ("a:\n", "a=m-2", "a: m-2\n"),
            ("a:", "a=m-2", "a: m-2"),
            ("a: \n", "a=m-2", "a: m-2 \n"),
            ("a:\r\nb: 1\r\n", "a=m-2", "a: m-2\r\nb: 1\r\n"),
            ("a: # pin\n", "a=m-2", "a: m-2 # pin\n"),
            ("{a: }\n", "a=m-2", "{a: m-2 }\n"),
            ("{a:}\n", "a=m-2", "{a: m-2}\n"),
            ("\"a\":\n", "a=m-2", "\"a\": m-2\n"),
            ("l:\n-\n", "l[0]=m-2", "l:\n- m-2\n"),
            ("l:\n- \n", "l[0]=m-2", "l:\n- m-2\n"),
            ("l:\n-", "l[0]=m-2", "l:\n- m-2"),
            ("a: &x\nb: *x\n", "a=m-2", "a: &x m-2\nb: *x\n"),
            ("a: !!str\n", "a=m-2", "a: !!str m-2\n"),
            ("- a:\n  b:\n", "[0].b=m-2", "- a:\n  b: m-2\n"),
            ("a:\n", "a=yes", "a: yes\n"),
            ("{kind: K, data}\n", "data=m-2", "{kind: K, data: m-2}\n"),
            ("{a, b: 1}\n", "a=m-2", "{a: m-2, b: 1}\n"),
            ("{a: &x, b: *x}\n", "a=m-2", "{a: &x m-2, b: *x}\n"),
            ("[{a: }]\n", "[0].a=m-2", "[{a: m-2 }]\n"),
            ("a:\n- #", "a[0]=m-2", "a:\n- m-2 #"),
            (
                "a:\n  - # none yet\nb: 1\n",
                "a[0]=m-2",
                "a:\n  - m-2 # none yet\nb: 1\n",
            ),
        ];
        for (text, spec, want) in cases {
            assert_eq!(set(text, spec).as_deref(), Ok(want), "{text:?} {spec}");
        }
    }
}
