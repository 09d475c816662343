//! [`Tree`] for documents loaded with `serde_yaml_ng`, as the built-in lambdas read them.
//!
//! The loader has already resolved aliases, so a walk never meets one here.

use std::borrow::Cow;

use serde_yaml_ng::Value;

use crate::tree::{Tree, View};

impl Tree for Value {
    fn view(&self) -> View<'_, Self> {
        match self {
            Value::Null => View::Scalar(Cow::Borrowed("")),
            Value::Bool(b) => View::Scalar(Cow::Owned(b.to_string())),
            Value::Number(n) => View::Scalar(Cow::Owned(n.to_string())),
            Value::String(s) => View::Scalar(Cow::Borrowed(s)),
            Value::Sequence(items) => View::Sequence(items),
            Value::Mapping(entries) => View::Mapping(Box::new(entries.iter())),
            Value::Tagged(tagged) => tagged.value.view(),
        }
    }
}
