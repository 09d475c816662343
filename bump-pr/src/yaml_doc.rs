//! A read-only YAML tree that remembers where each scalar sits in the source text.
//!
//! Built from saphyr-parser's events, whose spans give character positions; the editor uses
//! them to replace one scalar's bytes and nothing else.

use std::borrow::Cow;

use modelsync_gitops::{Tree, View};
use saphyr_parser::{Event, Parser, ScalarStyle};

/// Scalar styles the editor distinguishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
    Folded,
}

impl From<ScalarStyle> for Style {
    fn from(s: ScalarStyle) -> Self {
        match s {
            ScalarStyle::Plain => Style::Plain,
            ScalarStyle::SingleQuoted => Style::SingleQuoted,
            ScalarStyle::DoubleQuoted => Style::DoubleQuoted,
            ScalarStyle::Literal => Style::Literal,
            ScalarStyle::Folded => Style::Folded,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Scalar {
    pub value: String,
    pub style: Style,
    /// Byte range in the source, including any anchor (`&a`) or tag (`!!str`) before the value.
    pub span: (usize, usize),
    /// Whether a tag such as `!!str` fixes the scalar's type regardless of how it looks.
    pub tagged: bool,
}

#[derive(Clone, Debug)]
pub enum Node {
    Scalar(Scalar),
    Sequence(Vec<Node>),
    Mapping(Vec<(Node, Node)>),
    Alias,
}

impl Node {
    pub fn as_scalar(&self) -> Option<&Scalar> {
        match self {
            Node::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// The scalar text at `key` (e.g. `kind`), if there is one.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key)?.as_scalar().map(|s| s.value.as_str())
    }
}

/// Paths are followed by the shared walk, so they mean here what they mean to the lambdas.
impl Tree for Node {
    fn view(&self) -> View<'_, Self> {
        match self {
            Node::Scalar(s) => View::Scalar(Cow::Borrowed(&s.value)),
            Node::Sequence(items) => View::Sequence(items),
            Node::Mapping(entries) => View::Mapping(Box::new(entries.iter().map(|(k, v)| (k, v)))),
            Node::Alias => View::Alias,
        }
    }
}

/// A parsed YAML stream: one root node per document.
#[derive(Debug)]
pub struct Stream {
    pub documents: Vec<Node>,
}

/// The source is not YAML the parser accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Maps the parser's character positions to byte offsets.
struct Offsets {
    bytes: Vec<usize>,
}

impl Offsets {
    fn new(text: &str) -> Self {
        let mut bytes: Vec<usize> = text.char_indices().map(|(b, _)| b).collect();
        bytes.push(text.len());
        Self { bytes }
    }

    fn byte(&self, char_index: usize) -> usize {
        self.bytes
            .get(char_index)
            .copied()
            .unwrap_or_else(|| *self.bytes.last().unwrap_or(&0))
    }
}

enum Frame {
    Sequence(Vec<Node>),
    Mapping(Vec<(Node, Node)>, Option<Node>),
}

pub fn parse(text: &str) -> Result<Stream, ParseError> {
    let offsets = Offsets::new(text);
    let mut documents = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Node> = None;
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| ParseError {
            line: e.marker().line(),
            column: e.marker().col() + 1,
            message: e.info().to_string(),
        })?;
        let node = match event {
            Event::Scalar(value, style, _anchor, tag) => Node::Scalar(Scalar {
                value: value.into_owned(),
                style: style.into(),
                span: (
                    offsets.byte(span.start.index()),
                    offsets.byte(span.end.index()),
                ),
                tagged: tag.is_some(),
            }),
            Event::Alias(_) => Node::Alias,
            Event::SequenceStart(..) => {
                stack.push(Frame::Sequence(Vec::new()));
                continue;
            }
            Event::MappingStart(..) => {
                stack.push(Frame::Mapping(Vec::new(), None));
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Sequence(items)) => Node::Sequence(items),
                Some(Frame::Mapping(entries, _)) => Node::Mapping(entries),
                None => continue,
            },
            Event::DocumentEnd => {
                documents.push(root.take().unwrap_or(Node::Mapping(Vec::new())));
                continue;
            }
            _ => continue,
        };
        match stack.last_mut() {
            Some(Frame::Sequence(items)) => items.push(node),
            Some(Frame::Mapping(entries, pending)) => match pending.take() {
                Some(key) => entries.push((key, node)),
                None => *pending = Some(node),
            },
            None => root = Some(node),
        }
    }
    Ok(Stream { documents })
}

/// A flat record of the parse, used to prove an edit changed only what it meant to.
#[derive(Debug, PartialEq, Eq)]
pub enum Shape {
    Scalar(String),
    Alias,
    Start(&'static str),
    End,
    Document,
}

/// The events of `text` without positions or styles, in order.
pub fn shape(text: &str) -> Result<Vec<Shape>, ParseError> {
    let mut out = Vec::new();
    for event in Parser::new_from_str(text) {
        let (event, _) = event.map_err(|e| ParseError {
            line: e.marker().line(),
            column: e.marker().col() + 1,
            message: e.info().to_string(),
        })?;
        out.push(match event {
            Event::Scalar(v, ..) => Shape::Scalar(v.into_owned()),
            Event::Alias(_) => Shape::Alias,
            Event::SequenceStart(..) => Shape::Start("sequence"),
            Event::MappingStart(..) => Shape::Start("mapping"),
            Event::SequenceEnd | Event::MappingEnd => Shape::End,
            Event::DocumentStart(_) => Shape::Document,
            _ => continue,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use modelsync_gitops::{YamlPath, lookup};

    #[test]
    fn spans_are_byte_offsets_even_after_multibyte_text() {
        let text = "# é ü 模型\nk: \"v\"\n";
        let stream = parse(text).unwrap();
        let v = stream.documents[0].get("k").unwrap().as_scalar().unwrap();
        assert_eq!(&text[v.span.0..v.span.1], "\"v\"");
        assert_eq!(v.style, Style::DoubleQuoted);
    }

    #[test]
    fn lookup_follows_keys_indexes_and_selectors() {
        let text = "spec:\n  containers:\n  - name: a\n    image: x\n  - name: b\n    image: y\n";
        let doc = &parse(text).unwrap().documents[0];
        let get = |p: &str| {
            lookup(doc, &YamlPath::parse(p).unwrap()).map(|n| n.as_scalar().unwrap().value.clone())
        };
        assert_eq!(get("spec.containers[1].image").unwrap(), "y");
        assert_eq!(get("spec.containers[name=a].image").unwrap(), "x");
        let missing = get("spec.containers[name=c].image").unwrap_err();
        assert_eq!(missing.found.to_string(), "spec.containers");
        assert!(get("spec.containers[2]").is_err());
        assert!(get("spec.containers.image").is_err());
    }

    #[test]
    fn each_document_is_its_own_root() {
        let stream = parse("a: 1\n---\nb: 2\n---\n").unwrap();
        assert_eq!(stream.documents.len(), 3);
        assert_eq!(stream.documents[1].get_str("b"), Some("2"));
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let doc = &parse("a: 1\na: 2\n").unwrap().documents[0];
        let err = lookup(doc, &YamlPath::parse("a").unwrap()).unwrap_err();
        assert!(err.reason.to_string().contains("more than once"), "{err:?}");
    }
}
