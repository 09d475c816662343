//! JSON building blocks shared by the targets that read JSON.

use proptest::prelude::*;
use serde_json::{Number, Value};

/// Strings people and programs put in answers and templates: ids, words, and odd text
/// (control characters, quotes, non-ASCII, line breaks).
pub fn string() -> BoxedStrategy<String> {
    prop_oneof![
        6 => "[a-z][a-z0-9-]{0,14}",
        2 => proptest::sample::select(vec![
            "", " ", "m-20261122", "gs://bucket/models/7", "1.10", "yes", "null", "~", "a: b",
            "#x", "- x", "\"q\"", "it's", "\\", "two\nlines", "tab\there", "模型", "é", "\u{0}",
            "\u{feff}", "😀", "x]", "[0]", "a.b", "name=main",
        ])
        .prop_map(String::from),
        2 => "(?s).{0,12}",
    ]
    .boxed()
}

/// Object keys, mostly tame.
pub fn key() -> BoxedStrategy<String> {
    prop_oneof![
        8 => "[a-zA-Z][a-zA-Z0-9_-]{0,10}",
        1 => string(),
    ]
    .boxed()
}

/// Any small JSON value, nested at most three deep.
pub fn value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        // No filter: rejected cases add up over a million-case run and stop it.
        any::<f64>().prop_map(|f| Value::Number(Number::from_f64(f).unwrap_or(0.into()))),
        string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 12, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((key(), inner), 0..4)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
    .boxed()
}
