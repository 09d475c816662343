//! The YAML path grammar: dotted keys, quoted keys, list indexes and list selectors.
//!
//! `data.model`, `spec.template.spec.containers[0].image`, `spec.containers[name=main].image`,
//! `metadata.annotations."example.com/model"` and `metadata.annotations["example.com/model"]`.
//! The grammar is written out for users in the crate README.

use std::fmt;

/// One step from a node to one of its children.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    /// A mapping key.
    Key(String),
    /// A sequence index, from 0.
    Index(usize),
    /// The one sequence item that is a mapping whose `key` holds the scalar `value`.
    Select { key: String, value: String },
}

/// A parsed YAML path: the steps from a document's root to one node.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct YamlPath {
    pub segments: Vec<Segment>,
}

/// A path that cannot be parsed: the text and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path:?} {problem}")]
pub struct PathError {
    pub path: String,
    pub problem: PathProblem,
}

/// What is wrong with a path; each reads on from the quoted path.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathProblem {
    #[error("is empty; write a path like data.model")]
    Empty,
    #[error("has an empty key (two dots, or a leading dot)")]
    EmptyKey,
    #[error("ends with '.'")]
    TrailingDot,
    #[error("has a '[' with no ']'")]
    UnclosedBracket,
    #[error("has a '\"' with no closing '\"'")]
    UnclosedQuote,
    #[error("has a key right after a ']' or a quoted key; a '.' must come between (a[0].b)")]
    MissingDot,
    #[error("has '{0}' in a key; quote keys holding it: \"a.b\" or [\"a.b\"]")]
    InKey(char),
    #[error(
        "has [{0}], which is neither an index like [0], a quoted key like [\"a.b\"] nor a selector like [name=main]"
    )]
    Bracket(String),
    #[error("has a selector [{0}] with no key before '='")]
    SelectorKey(String),
    #[error(
        "has a selector [{0}] whose key holds '\"'; a selector key is a field name written as it is, like [name=main]"
    )]
    SelectorKeyQuote(String),
    #[error("has text after the closing '\"' in [{0}]")]
    AfterQuote(String),
}

impl YamlPath {
    pub fn new(segments: Vec<Segment>) -> Self {
        Self { segments }
    }

    /// This path followed by `more`.
    pub fn join(&self, more: impl IntoIterator<Item = Segment>) -> Self {
        let mut segments = self.segments.clone();
        segments.extend(more);
        Self { segments }
    }

    pub fn parse(text: &str) -> Result<Self, PathError> {
        let fail = |problem| PathError {
            path: text.to_string(),
            problem,
        };
        let chars: Vec<char> = text.chars().collect();
        let mut segments = Vec::new();
        let mut i = 0;
        // A key is expected at the start and after every dot; a bracket may follow anything.
        let mut expect_key = true;
        while i < chars.len() {
            match chars[i] {
                '[' => {
                    let close = close_bracket(&chars, i)
                        .ok_or_else(|| fail(PathProblem::UnclosedBracket))?;
                    let inner: String = chars[i + 1..close].iter().collect();
                    segments.push(parse_bracket(&inner).map_err(fail)?);
                    i = close + 1;
                    expect_key = false;
                }
                '.' if expect_key => return Err(fail(PathProblem::EmptyKey)),
                '.' => {
                    i += 1;
                    expect_key = true;
                    if i == chars.len() {
                        return Err(fail(PathProblem::TrailingDot));
                    }
                }
                _ if !expect_key => return Err(fail(PathProblem::MissingDot)),
                '"' => {
                    let (key, next) =
                        unquote(&chars, i).ok_or_else(|| fail(PathProblem::UnclosedQuote))?;
                    segments.push(Segment::Key(key));
                    i = next;
                    expect_key = false;
                }
                _ => {
                    let start = i;
                    while i < chars.len() && !matches!(chars[i], '.' | '[' | ']' | '"') {
                        i += 1;
                    }
                    if let Some(&c @ (']' | '"')) = chars.get(i) {
                        return Err(fail(PathProblem::InKey(c)));
                    }
                    segments.push(Segment::Key(chars[start..i].iter().collect()));
                    expect_key = false;
                }
            }
        }
        if segments.is_empty() {
            return Err(fail(PathProblem::Empty));
        }
        Ok(Self { segments })
    }
}

/// The `]` closing the `[` at `open`, skipping any inside a quoted string.
fn close_bracket(chars: &[char], open: usize) -> Option<usize> {
    let mut in_quote = false;
    let mut i = open + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if in_quote => i += 1,
            '"' => in_quote = !in_quote,
            ']' if !in_quote => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// The double-quoted string starting at `open` with `\` escapes removed, and the index after
/// its closing quote.
fn unquote(chars: &[char], open: usize) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut i = open + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if i + 1 < chars.len() => {
                out.push(chars[i + 1]);
                i += 2;
            }
            '"' => return Some((out, i + 1)),
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    None
}

/// A bracket's text (without the brackets): an index, a quoted key or a selector.
fn parse_bracket(inner: &str) -> Result<Segment, PathProblem> {
    let trimmed = inner.trim();
    if let Ok(index) = trimmed.parse::<usize>() {
        return Ok(Segment::Index(index));
    }
    let chars: Vec<char> = trimmed.chars().collect();
    if chars.first() == Some(&'"') {
        let (key, next) = unquote(&chars, 0).ok_or(PathProblem::UnclosedQuote)?;
        if next == chars.len() {
            return Ok(Segment::Key(key));
        }
    }
    let Some((key, value)) = trimmed.split_once('=') else {
        return Err(PathProblem::Bracket(inner.to_string()));
    };
    let key = key.trim();
    if key.is_empty() {
        return Err(PathProblem::SelectorKey(inner.to_string()));
    }
    // The printer writes selector keys bare, so a quote in one could not be read back (and
    // `["name"=x]` would look for a key spelled with quotes).
    if key.contains('"') {
        return Err(PathProblem::SelectorKeyQuote(inner.to_string()));
    }
    let value = value.trim();
    let value: Vec<char> = value.chars().collect();
    let value = if value.first() == Some(&'"') {
        match unquote(&value, 0) {
            Some((text, next)) if next == value.len() => text,
            Some(_) => return Err(PathProblem::AfterQuote(inner.to_string())),
            None => return Err(PathProblem::UnclosedQuote),
        }
    } else {
        value.into_iter().collect()
    };
    Ok(Segment::Select {
        key: key.to_string(),
        value,
    })
}

fn key_needs_quotes(key: &str) -> bool {
    key.is_empty() || key.contains(['.', '[', ']', '"', '='])
}

fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The canonical spelling: keys quoted as `."a.b"` only when they must be, so that parsing
/// the text gives the path back.
impl fmt::Display for YamlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Key(key) => {
                    if n > 0 {
                        f.write_str(".")?;
                    }
                    if key_needs_quotes(key) {
                        f.write_str(&quoted(key))?;
                    } else {
                        f.write_str(key)?;
                    }
                }
                Segment::Index(i) => write!(f, "[{i}]")?,
                Segment::Select { key, value } => {
                    let needs_quotes = value.contains([']', '"'])
                        || value.trim() != value
                        || value.starts_with('"');
                    let value = if needs_quotes {
                        quoted(value)
                    } else {
                        value.clone()
                    };
                    write!(f, "[{key}={value}]")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Segment {
        Segment::Key(k.to_string())
    }

    fn select(k: &str, v: &str) -> Segment {
        Segment::Select {
            key: k.into(),
            value: v.into(),
        }
    }

    #[test]
    fn each_syntax_parses() {
        let cases: &[(&str, Vec<Segment>)] = &[
            ("data.model", vec![key("data"), key("model")]),
            (
                "spec.template.spec.containers[0].image",
                vec![
                    key("spec"),
                    key("template"),
                    key("spec"),
                    key("containers"),
                    Segment::Index(0),
                    key("image"),
                ],
            ),
            (
                "spec.containers[name=main].image",
                vec![
                    key("spec"),
                    key("containers"),
                    select("name", "main"),
                    key("image"),
                ],
            ),
            (
                "metadata.annotations.\"example.com/model\"",
                vec![
                    key("metadata"),
                    key("annotations"),
                    key("example.com/model"),
                ],
            ),
            (
                "metadata.annotations[\"example.com/model\"]",
                vec![
                    key("metadata"),
                    key("annotations"),
                    key("example.com/model"),
                ],
            ),
            (
                r#"spec.items[2]["a.b/c"].x"#,
                vec![
                    key("spec"),
                    key("items"),
                    Segment::Index(2),
                    key("a.b/c"),
                    key("x"),
                ],
            ),
            (
                "[1][2].a",
                vec![Segment::Index(1), Segment::Index(2), key("a")],
            ),
            (
                "items[name=\"a]b\"].v",
                vec![key("items"), select("name", "a]b"), key("v")],
            ),
            (
                "items[ name = main ]",
                vec![key("items"), select("name", "main")],
            ),
            ("items[name=]", vec![key("items"), select("name", "")]),
            ("a[\"x=y\"]", vec![key("a"), key("x=y")]),
            (r#""a\"b".c"#, vec![key("a\"b"), key("c")]),
            ("a.[0]", vec![key("a"), Segment::Index(0)]),
        ];
        for (text, want) in cases {
            let got = YamlPath::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(&got.segments, want, "{text}");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "data.model",
            "spec.containers[name=main].image",
            "a.\"x.y\"[3].b",
            "[0].k",
            "\"a.b\".c",
            "items[name=\"a]b\"]",
            "items[name=\" padded \"]",
        ] {
            let p = YamlPath::parse(text).unwrap();
            assert_eq!(p.to_string(), text);
            assert_eq!(YamlPath::parse(&p.to_string()).unwrap(), p);
        }
        let bracketed = YamlPath::parse("metadata.annotations[\"example.com/model\"]").unwrap();
        assert_eq!(
            bracketed.to_string(),
            "metadata.annotations.\"example.com/model\""
        );
    }

    #[test]
    fn malformed_paths_say_what_is_wrong() {
        let cases = [
            ("", PathProblem::Empty),
            ("a..b", PathProblem::EmptyKey),
            (".a", PathProblem::EmptyKey),
            ("a.", PathProblem::TrailingDot),
            ("a[0", PathProblem::UnclosedBracket),
            ("a[x]", PathProblem::Bracket("x".into())),
            ("a[=v]", PathProblem::SelectorKey("=v".into())),
            ("a]b", PathProblem::InKey(']')),
            ("a\"b\"", PathProblem::InKey('"')),
            ("a[0]b", PathProblem::MissingDot),
            ("\"a\"b", PathProblem::MissingDot),
            ("\"a", PathProblem::UnclosedQuote),
            ("a[\"b]", PathProblem::UnclosedBracket),
            ("a[k=\"v\"x]", PathProblem::AfterQuote("k=\"v\"x".into())),
            (
                "a[\"k\"=v]",
                PathProblem::SelectorKeyQuote("\"k\"=v".into()),
            ),
        ];
        for (text, problem) in cases {
            let err = YamlPath::parse(text).unwrap_err();
            assert_eq!(err.path, text);
            assert_eq!(err.problem, problem, "{text:?}");
        }
        assert_eq!(
            YamlPath::parse("data..model").unwrap_err().to_string(),
            "\"data..model\" has an empty key (two dots, or a leading dot)"
        );
    }

    // Found by the path fuzz target: `[ a" ][b=c"]` read as a selector whose key holds a quote
    // and a ']', which printed as a path that no longer parsed.
    #[test]
    fn selector_keys_with_quotes_are_refused() {
        for text in [
            "[ na\" ][aA=a0-]a_\"]",
            "items[\"name\"=main]",
            "a[k\"x\"=v]",
        ] {
            let err = YamlPath::parse(text).unwrap_err();
            assert!(
                matches!(err.problem, PathProblem::SelectorKeyQuote(_)),
                "{text}: {err}"
            );
        }
        let quoted_value = YamlPath::parse("a[k=\"v]\\\"\"]").unwrap();
        assert_eq!(
            YamlPath::parse(&quoted_value.to_string()).unwrap(),
            quoted_value
        );
    }

    #[test]
    fn join_appends() {
        let p = YamlPath::parse("images[1]").unwrap();
        assert_eq!(p.join([key("digest")]).to_string(), "images[1].digest");
    }
}
