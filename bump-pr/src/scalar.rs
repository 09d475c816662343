//! Writing a new value in the style of the scalar it replaces.

use crate::yaml_doc::Style;

/// Why a value cannot be written in place of a scalar.
#[derive(Debug, PartialEq, Eq)]
pub enum RenderError {
    /// Block scalars (`|`, `>`) span lines whose indentation belongs to the file's layout.
    Block,
}

/// The source text for `new`, written in `style` where that keeps its meaning.
///
/// A plain scalar stays plain unless the new value would read differently: it needs quoting
/// (`a: b`, `#x`), or the old value was a string and the new one would load as a number, bool
/// or null (`1.10` as a float would break an image tag). Then double quotes are used.
pub fn render(style: Style, old: &str, tagged: bool, new: &str) -> Result<String, RenderError> {
    match style {
        Style::Literal | Style::Folded => Err(RenderError::Block),
        Style::Plain => {
            let changes_type = !tagged && !is_non_string(old) && is_non_string(new);
            if plain_safe(new) && !changes_type {
                Ok(new.to_string())
            } else {
                Ok(double_quoted(new))
            }
        }
        Style::SingleQuoted => {
            if new.chars().all(|c| c == ' ' || !needs_escape(c)) {
                Ok(format!("'{}'", new.replace('\'', "''")))
            } else {
                Ok(double_quoted(new))
            }
        }
        Style::DoubleQuoted => Ok(double_quoted(new)),
    }
}

pub fn double_quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether `value` can be written unquoted in block or flow context and read back unchanged.
fn plain_safe(value: &str) -> bool {
    let Some(first) = value.chars().next() else {
        return false;
    };
    if value.trim() != value || value.starts_with("---") || value.starts_with("...") {
        return false;
    }
    let second = value.chars().nth(1);
    let indicator_start = match first {
        '-' => second.is_none_or(|c| c == ' '),
        // YAML 1.2 allows `?x` and `:x` as plain scalars, but YAML 1.1 readers (libyaml,
        // and the lambdas' serde_yaml_ng) read `[?0]` as a mapping or refuse `:x` in flow.
        '?' | ':' => true,
        '#' | '&' | '*' | '!' | '|' | '>' | '\'' | '"' | '%' | '@' | '`' | ',' | '[' | ']'
        | '{' | '}' => true,
        _ => false,
    };
    !indicator_start
        && !value.contains(": ")
        // libyaml refuses ':' then '?' inside a plain scalar in a flow collection.
        && !value.contains(":?")
        && !value.contains(" #")
        && !value.ends_with(':')
        && !value.contains([',', '[', ']', '{', '}'])
        && !value.chars().any(needs_escape)
}

/// Characters YAML does not take as they are in a scalar: control characters, the byte
/// order mark (only allowed before a document) and the non-characters U+FFFE and U+FFFF.
fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{feff}' | '\u{fffe}' | '\u{ffff}')
}

/// Whether a plain scalar with this text loads as something other than a string, under YAML
/// 1.2's core schema or YAML 1.1 (which Kubernetes tooling still uses for booleans like `yes`).
pub fn is_non_string(value: &str) -> bool {
    const WORDS: &[&str] = &[
        "", "~", "null", "true", "false", "yes", "no", "on", "off", "y", "n",
    ];
    let lower = value.to_ascii_lowercase();
    if WORDS.contains(&lower.as_str()) {
        return true;
    }
    if matches!(
        lower.trim_start_matches(['+', '-']),
        ".inf" | ".nan" | "inf" | "nan" | "infinity"
    ) {
        return true;
    }
    // Numbers in any base or YAML 1.1 form (1_000, 0x1f, 0o17, 1:30, 1e3): anything made only of
    // number characters that holds a digit is treated as a number.
    let unsigned = lower.trim_start_matches(['+', '-']);
    let hex = unsigned
        .strip_prefix("0x")
        .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit() || c == '_'));
    let numeric = unsigned.chars().any(|c| c.is_ascii_digit())
        && unsigned
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '_' | ':' | 'e' | '+' | '-' | 'o'))
        && unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.');
    hex || numeric
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_stays_plain_when_the_meaning_is_kept() {
        assert_eq!(render(Style::Plain, "m-1", false, "m-2").unwrap(), "m-2");
        assert_eq!(
            render(Style::Plain, "gs://b/m/1", false, "gs://b/m/2").unwrap(),
            "gs://b/m/2"
        );
        assert_eq!(render(Style::Plain, "3", false, "4").unwrap(), "4");
        assert_eq!(render(Style::Plain, "v1", false, "-v2").unwrap(), "-v2");
    }

    #[test]
    fn plain_is_quoted_when_it_would_change_meaning() {
        assert_eq!(
            render(Style::Plain, "v1", false, "1.10").unwrap(),
            "\"1.10\""
        );
        assert_eq!(render(Style::Plain, "v1", false, "yes").unwrap(), "\"yes\"");
        assert_eq!(
            render(Style::Plain, "v1", false, "a: b").unwrap(),
            "\"a: b\""
        );
        assert_eq!(render(Style::Plain, "v1", false, "#x").unwrap(), "\"#x\"");
        assert_eq!(render(Style::Plain, "v1", false, "- x").unwrap(), "\"- x\"");
        assert_eq!(render(Style::Plain, "v1", true, "1.10").unwrap(), "1.10");
    }

    // Found by the edit fuzz target: `[?0]` and `{k: :x}` read back fine with the editor's
    // YAML 1.2 parser, but libyaml-based readers read a mapping or refuse the file.
    #[test]
    fn question_marks_and_colons_first_are_quoted() {
        for value in ["?0", "?!", ":x", ":¡", "?", ":", "¡:?", "a:?b"] {
            assert_eq!(
                render(Style::Plain, "v1", false, value).unwrap(),
                format!("\"{value}\""),
                "{value}"
            );
        }
        assert_eq!(render(Style::Plain, "v1", false, "-x").unwrap(), "-x");
    }

    #[test]
    fn quoted_styles_are_kept_and_escaped() {
        assert_eq!(
            render(Style::SingleQuoted, "a", false, "it's").unwrap(),
            "'it''s'"
        );
        assert_eq!(
            render(Style::DoubleQuoted, "a", false, "say \"hi\"\\").unwrap(),
            "\"say \\\"hi\\\"\\\\\""
        );
        assert_eq!(
            render(Style::SingleQuoted, "a", false, "two\nlines").unwrap(),
            "\"two\\nlines\""
        );
        assert_eq!(
            render(Style::Literal, "a", false, "b"),
            Err(RenderError::Block)
        );
    }

    // Found by the edit fuzz target: a byte order mark was written as it is, and a YAML
    // parser refuses one inside a document.
    #[test]
    fn a_byte_order_mark_and_non_characters_are_escaped() {
        for style in [Style::Plain, Style::SingleQuoted, Style::DoubleQuoted] {
            assert_eq!(
                render(style, "a", false, "\u{feff}x\u{fffe}\u{ffff}").unwrap(),
                "\"\\ufeffx\\ufffe\\uffff\"",
                "{style:?}"
            );
        }
    }

    #[test]
    fn recognises_non_strings() {
        for s in [
            "1", "-1", "1.5", "1e3", "0x1F", "0o17", "1_000", ".inf", "NULL", "~", "Yes", "off", "",
        ] {
            assert!(is_non_string(s), "{s:?}");
        }
        for s in [
            "v1",
            "m-20261122",
            "1.0-rc1",
            "latest",
            "e5",
            "sha256:ab",
            "x1",
        ] {
            assert!(!is_non_string(s), "{s:?}");
        }
    }
}
