//! Near-valid inputs: a valid text with a few small edits (a character dropped, a token of the
//! grammar inserted, a tail cut off). Random bytes rarely get past a parser's first check;
//! these get deep into it and then break one thing.

use proptest::prelude::*;

/// A place in a text, as a fraction of its length (in 65536ths), so it fits any text and
/// shrinks towards the start.
#[derive(Clone, Copy, Debug)]
pub struct Spot(pub u16);

impl Spot {
    /// The place in a text of `len` items, from 0 to `len` (the end is a place to insert).
    pub fn place(self, len: usize) -> usize {
        ((len + 1) * self.0 as usize) >> 16
    }
}

/// One edit.
#[derive(Clone, Debug)]
pub enum Mutation {
    Delete {
        at: Spot,
        len: u8,
    },
    Insert {
        at: Spot,
        token: &'static str,
    },
    Replace {
        at: Spot,
        token: &'static str,
    },
    Duplicate {
        at: Spot,
        len: u8,
    },
    Truncate {
        at: Spot,
    },
    /// A raw byte, possibly not UTF-8; only byte texts take it as is.
    Byte {
        at: Spot,
        value: u8,
    },
}

/// Tokens that break parsers of any text format.
pub const COMMON: &[&str] = &[
    "\"",
    "'",
    "\\",
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "#",
    "\n",
    "\r\n",
    "\t",
    " ",
    "\0",
    "\u{7f}",
    "é",
    "模型",
    "\u{feff}",
    "\u{2028}",
    "😀",
    "-1",
    "0",
    "1e309",
    "99999999999999999999",
    "null",
    "true",
    "",
    ".",
    "..",
    "=",
    "/",
    "%",
    "*",
    "&",
];

pub fn spot() -> impl Strategy<Value = Spot> + Clone {
    any::<u16>().prop_map(Spot)
}

/// Up to `max` edits using `tokens` and [`COMMON`].
pub fn mutations(tokens: &'static [&'static str], max: usize) -> BoxedStrategy<Vec<Mutation>> {
    let token = prop_oneof![
        proptest::sample::select(tokens),
        proptest::sample::select(COMMON)
    ];
    let one = prop_oneof![
        3 => (spot(), 1u8..8).prop_map(|(at, len)| Mutation::Delete { at, len }),
        4 => (spot(), token.clone()).prop_map(|(at, token)| Mutation::Insert { at, token }),
        3 => (spot(), token).prop_map(|(at, token)| Mutation::Replace { at, token }),
        1 => (spot(), 1u8..16).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
        1 => spot().prop_map(|at| Mutation::Truncate { at }),
        1 => (spot(), any::<u8>()).prop_map(|(at, value)| Mutation::Byte { at, value }),
    ];
    proptest::collection::vec(one, 1..=max).boxed()
}

/// `text` with `edits` applied, on character boundaries; a raw byte becomes the character
/// of that code point.
pub fn apply(text: &str, edits: &[Mutation]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for edit in edits {
        edit_vec(
            &mut chars,
            edit,
            |token| token.chars().collect(),
            char::from,
        );
    }
    chars.into_iter().collect()
}

/// `bytes` with `edits` applied byte by byte, so UTF-8 may break.
pub fn apply_bytes(bytes: &[u8], edits: &[Mutation]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for edit in edits {
        edit_vec(&mut out, edit, |token| token.as_bytes().to_vec(), |b| b);
    }
    out
}

fn edit_vec<T: Clone>(
    items: &mut Vec<T>,
    edit: &Mutation,
    token: impl Fn(&str) -> Vec<T>,
    byte: impl Fn(u8) -> T,
) {
    let place = |at: &Spot| at.place(items.len());
    match edit {
        Mutation::Delete { at, len } => {
            let start = place(at).min(items.len());
            let end = (start + *len as usize).min(items.len());
            items.drain(start..end);
        }
        Mutation::Insert { at, token: t } => {
            let start = place(at);
            items.splice(start..start, token(t));
        }
        Mutation::Replace { at, token: t } => {
            let start = place(at).min(items.len());
            let end = (start + 1).min(items.len());
            items.splice(start..end, token(t));
        }
        Mutation::Duplicate { at, len } => {
            let start = place(at).min(items.len());
            let end = (start + *len as usize).min(items.len());
            let copy: Vec<T> = items[start..end].to_vec();
            items.splice(end..end, copy);
        }
        Mutation::Truncate { at } => {
            let keep = place(at);
            items.truncate(keep);
        }
        Mutation::Byte { at, value } => {
            let start = place(at);
            items.insert(start, byte(*value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(fraction: f64) -> Spot {
        Spot((fraction * 65536.0) as u16)
    }

    #[test]
    fn edits_land_on_character_boundaries() {
        let text = "a模b";
        assert_eq!(
            apply(
                text,
                &[Mutation::Delete {
                    at: at(0.4),
                    len: 1
                }]
            ),
            "ab"
        );
        assert_eq!(apply(text, &[Mutation::Truncate { at: at(0.0) }]), "");
        let bytes = apply_bytes(
            b"{}",
            &[Mutation::Byte {
                at: at(0.5),
                value: 0xff,
            }],
        );
        assert_eq!(bytes, vec![b'{', 0xff, b'}']);
    }
}
