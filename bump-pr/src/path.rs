//! The YAML path syntax of `--set`: dotted keys, list indexes and list selectors.
//!
//! `spec.template.spec.containers[0].image`, `spec.containers[name=main].image`,
//! `metadata.annotations."example.com/model"`. See the crate README for the full grammar.

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

/// Why a path could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid YAML path {path:?}: {reason}")]
pub struct PathSyntaxError {
    pub path: String,
    pub reason: String,
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

    pub fn parse(text: &str) -> Result<Self, PathSyntaxError> {
        let fail = |reason: &str| PathSyntaxError {
            path: text.to_string(),
            reason: reason.to_string(),
        };
        let chars: Vec<char> = text.chars().collect();
        let mut segments = Vec::new();
        let mut i = 0;
        // A key is expected at the start and after every dot; a bracket may follow any segment.
        let mut expect_key = true;
        while i < chars.len() {
            match chars[i] {
                '[' => {
                    let close = find_close_bracket(&chars, i)
                        .ok_or_else(|| fail("a '[' is never closed"))?;
                    let inner: String = chars[i + 1..close].iter().collect();
                    segments.push(parse_bracket(&inner).map_err(|r| fail(&r))?);
                    i = close + 1;
                    expect_key = false;
                }
                '.' if !expect_key => {
                    i += 1;
                    expect_key = true;
                    if i == chars.len() {
                        return Err(fail("it ends with '.'"));
                    }
                }
                '.' => return Err(fail("it has an empty key (two dots, or a leading dot)")),
                _ if !expect_key => {
                    return Err(fail("a key must follow a '.' (write a.b or a[0].b)"));
                }
                '"' => {
                    let (key, next) = parse_quoted(&chars, i).map_err(|r| fail(&r))?;
                    segments.push(Segment::Key(key));
                    i = next;
                    expect_key = false;
                }
                _ => {
                    let start = i;
                    while i < chars.len() && !matches!(chars[i], '.' | '[' | ']' | '"') {
                        i += 1;
                    }
                    if i < chars.len() && matches!(chars[i], ']' | '"') {
                        return Err(fail(&format!(
                            "unexpected '{}' in a key (quote keys holding it: \"a.b\")",
                            chars[i]
                        )));
                    }
                    segments.push(Segment::Key(chars[start..i].iter().collect()));
                    expect_key = false;
                }
            }
        }
        if segments.is_empty() {
            return Err(fail("it is empty"));
        }
        Ok(Self { segments })
    }
}

fn find_close_bracket(chars: &[char], open: usize) -> Option<usize> {
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

/// Reads a double-quoted key starting at `open`; returns it and the index after the closing quote.
fn parse_quoted(chars: &[char], open: usize) -> Result<(String, usize), String> {
    let mut out = String::new();
    let mut i = open + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if i + 1 < chars.len() => {
                out.push(chars[i + 1]);
                i += 2;
            }
            '"' => return Ok((out, i + 1)),
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Err("a '\"' is never closed".to_string())
}

fn parse_bracket(inner: &str) -> Result<Segment, String> {
    let inner = inner.trim();
    if let Ok(index) = inner.parse::<usize>() {
        return Ok(Segment::Index(index));
    }
    let Some((key, value)) = inner.split_once('=') else {
        return Err(format!(
            "[{inner}] is neither an index like [0] nor a selector like [name=main]"
        ));
    };
    let key = key.trim();
    let value = value.trim();
    if key.is_empty() {
        return Err(format!("selector [{inner}] has no key before '='"));
    }
    let value = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => value.to_string(),
    };
    Ok(Segment::Select {
        key: key.to_string(),
        value,
    })
}

fn key_needs_quotes(key: &str) -> bool {
    key.is_empty() || key.contains(['.', '[', ']', '"', '='])
}

impl fmt::Display for YamlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Key(key) => {
                    if n > 0 {
                        f.write_str(".")?;
                    }
                    if key_needs_quotes(key) {
                        write!(f, "\"{}\"", key.replace('\\', "\\\\").replace('"', "\\\""))?;
                    } else {
                        f.write_str(key)?;
                    }
                }
                Segment::Index(i) => write!(f, "[{i}]")?,
                Segment::Select { key, value } => {
                    if value.contains([']', '"']) {
                        write!(f, "[{key}=\"{}\"]", value.replace('"', "\\\""))?;
                    } else {
                        write!(f, "[{key}={value}]")?;
                    }
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

    #[test]
    fn parses_keys_indexes_and_selectors() {
        let p = YamlPath::parse("spec.template.spec.containers[0].image").unwrap();
        assert_eq!(
            p.segments,
            vec![
                key("spec"),
                key("template"),
                key("spec"),
                key("containers"),
                Segment::Index(0),
                key("image")
            ]
        );
        let p = YamlPath::parse("spec.containers[name=main].image").unwrap();
        assert_eq!(
            p.segments[2],
            Segment::Select {
                key: "name".into(),
                value: "main".into()
            }
        );
        let p = YamlPath::parse("metadata.annotations.\"example.com/model\"").unwrap();
        assert_eq!(p.segments[2], key("example.com/model"));
        let p = YamlPath::parse("[1][2].a").unwrap();
        assert_eq!(
            p.segments,
            vec![Segment::Index(1), Segment::Index(2), key("a")]
        );
        let p = YamlPath::parse("items[name=\"a]b\"].v").unwrap();
        assert_eq!(
            p.segments[1],
            Segment::Select {
                key: "name".into(),
                value: "a]b".into()
            }
        );
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "data.model",
            "spec.containers[name=main].image",
            "a.\"x.y\"[3].b",
            "[0].k",
        ] {
            let p = YamlPath::parse(text).unwrap();
            assert_eq!(p.to_string(), text);
            assert_eq!(YamlPath::parse(&p.to_string()).unwrap(), p);
        }
    }

    #[test]
    fn rejects_malformed_paths() {
        for bad in [
            "", "a..b", ".a", "a.", "a[0", "a[x]", "a[=v]", "a]b", "a\"b\"", "a[0]b", "\"a",
        ] {
            let err = YamlPath::parse(bad).unwrap_err();
            assert_eq!(err.path, bad, "{bad:?} should fail");
        }
    }
}
