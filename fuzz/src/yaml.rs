//! Writing YAML for generated inputs: scalars in each style, and whole documents from a small
//! tree with comments, anchors, flow and block collections and multi-document streams.

/// Whether YAML allows `c` in a document as it is (its printable set).
pub fn printable(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | ' '..='~' | '\u{85}' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
        && c != '\u{feff}'
}

/// `text` as a YAML double-quoted scalar, escaping all YAML does not allow as it is.
pub fn double_quoted(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            // Line breaks to YAML 1.1 readers.
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            c if printable(c) && c != '\u{85}' => out.push(c),
            c if (c as u32) <= 0xffff => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// How a scalar is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Plain,
    Single,
    Double,
    Literal,
    Folded,
}

#[derive(Clone, Debug)]
pub struct Scalar {
    pub value: String,
    pub style: Style,
    pub anchor: Option<String>,
    /// Written with `!!str` before it.
    pub tagged: bool,
    /// A comment after it on its line.
    pub comment: Option<String>,
}

impl Scalar {
    pub fn plain(value: &str) -> Self {
        Scalar {
            value: value.into(),
            style: Style::Plain,
            anchor: None,
            tagged: false,
            comment: None,
        }
    }
}

#[derive(Clone, Debug)]
pub enum Node {
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
    /// `*name`, for an anchor written earlier.
    Alias(String),
}

/// How a document is laid out.
#[derive(Clone, Debug)]
pub struct Layout {
    /// Collections this deep or deeper are written in flow style (`{a: 1}`, `[x]`).
    pub flow_from: usize,
    pub indent: usize,
    /// Items of a sequence under a key start at the key's column (`a:\n- x`).
    pub compact_seq: bool,
    /// A whole-line comment before entries whose position is a multiple of this (0: none).
    pub comment_every: usize,
}

/// `docs` as a stream, `---` between documents (and before the first if `start` is set).
pub fn stream(docs: &[Node], layout: &Layout, start: bool) -> String {
    let mut out = String::new();
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 || start {
            out.push_str("---\n");
        }
        out.push_str(&document(doc, layout));
    }
    out
}

/// One document's text, ending with a line break.
pub fn document(node: &Node, layout: &Layout) -> String {
    let mut out = String::new();
    match node {
        Node::Map(entries) if !entries.is_empty() && layout.flow_from > 0 => {
            block_map(&mut out, entries, 0, 0, layout)
        }
        Node::Seq(items) if !items.is_empty() && layout.flow_from > 0 => {
            block_seq(&mut out, items, 0, 0, layout)
        }
        other => {
            out.push_str(&flow(other));
            out.push('\n');
        }
    }
    out
}

fn key_text(key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
    if plain {
        key.to_string()
    } else {
        double_quoted(key)
    }
}

fn scalar_head(s: &Scalar) -> String {
    let mut head = String::new();
    if let Some(a) = &s.anchor {
        head.push_str(&format!("&{a} "));
    }
    if s.tagged {
        head.push_str("!!str ");
    }
    head
}

/// A scalar on one line (block styles become double-quoted).
fn inline_scalar(s: &Scalar) -> String {
    let body = match s.style {
        Style::Plain => s.value.clone(),
        Style::Single
            if s.value
                .chars()
                .all(|c| c != '\n' && c != '\r' && printable(c)) =>
        {
            format!("'{}'", s.value.replace('\'', "''"))
        }
        _ => double_quoted(&s.value),
    };
    format!("{}{body}", scalar_head(s))
}

fn flow(node: &Node) -> String {
    match node {
        Node::Scalar(s) => inline_scalar(s),
        Node::Alias(a) => format!("*{a}"),
        Node::Seq(items) => format!(
            "[{}]",
            items.iter().map(flow).collect::<Vec<_>>().join(", ")
        ),
        Node::Map(entries) => format!(
            "{{{}}}",
            entries
                .iter()
                .map(|(k, v)| format!("{}: {}", key_text(k), flow(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The value after `key:` or `- `: on the same line, or on the lines below at `indent`.
fn value(out: &mut String, node: &Node, indent: usize, depth: usize, layout: &Layout) {
    let nested_block = depth < layout.flow_from;
    match node {
        Node::Scalar(s) if matches!(s.style, Style::Literal | Style::Folded) => {
            let mark = if s.style == Style::Literal { "|" } else { ">" };
            out.push_str(&format!(" {}{mark}", scalar_head(s)));
            if let Some(c) = &s.comment {
                out.push_str(&format!(" # {c}"));
            }
            out.push('\n');
            for line in s.value.lines() {
                out.push_str(&" ".repeat(indent));
                out.push_str(line);
                out.push('\n');
            }
        }
        Node::Scalar(s) => {
            out.push(' ');
            out.push_str(&inline_scalar(s));
            if let Some(c) = &s.comment {
                out.push_str(&format!(" # {c}"));
            }
            out.push('\n');
        }
        Node::Map(entries) if nested_block && !entries.is_empty() => {
            out.push('\n');
            block_map(out, entries, indent, depth, layout);
        }
        Node::Seq(items) if nested_block && !items.is_empty() => {
            out.push('\n');
            block_seq(out, items, indent, depth, layout);
        }
        other => {
            out.push(' ');
            out.push_str(&flow(other));
            out.push('\n');
        }
    }
}

fn block_map(
    out: &mut String,
    entries: &[(String, Node)],
    indent: usize,
    depth: usize,
    layout: &Layout,
) {
    let pad = " ".repeat(indent);
    for (i, (k, v)) in entries.iter().enumerate() {
        if layout.comment_every > 0 && i % layout.comment_every == 0 {
            let about: String = k
                .chars()
                .filter(|c| printable(*c) && !matches!(c, '\n' | '\r' | '\u{85}'))
                .collect();
            out.push_str(&format!("{pad}# about {about}\n"));
        }
        out.push_str(&pad);
        out.push_str(&key_text(k));
        out.push(':');
        let below = match v {
            Node::Seq(_) if layout.compact_seq => indent,
            _ => indent + layout.indent,
        };
        value(out, v, below, depth + 1, layout);
    }
}

fn block_seq(out: &mut String, items: &[Node], indent: usize, depth: usize, layout: &Layout) {
    let pad = " ".repeat(indent);
    for item in items {
        out.push_str(&pad);
        out.push('-');
        match item {
            Node::Map(entries) if depth + 1 < layout.flow_from && !entries.is_empty() => {
                // The first entry goes on the dash's line, the others line up under it.
                let mut inner = String::new();
                block_map(&mut inner, entries, indent + 2, depth + 1, layout);
                out.push(' ');
                out.push_str(&inner[indent + 2..]);
            }
            _ => value(out, item, indent + 2, depth + 1, layout),
        }
    }
}
