//! The lambda answer parser (`modelsync_api::lambda::parse_answer`), which the controller and
//! `modelsync lambda-check` both use to judge a lambda's reply.

use modelsync_api::lambda::{AnswerError, MAX_ANSWER_BYTES, NeedsSyncAnswer, parse_answer};
use proptest::prelude::*;
use serde_json::{Map, Value};

use crate::mutate::{self, Mutation};
use crate::target::{Target, Verdict};
use crate::targets::json;

pub struct Answer;

/// A reply: a status and a body, written from `json` and then maybe mutated byte by byte.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub json: Value,
    pub pretty: bool,
    pub mutations: Vec<Mutation>,
    /// Padded with spaces past the size limit.
    pub oversize: bool,
}

impl Reply {
    fn body(&self) -> Vec<u8> {
        let text = if self.pretty {
            serde_json::to_vec_pretty(&self.json)
        } else {
            serde_json::to_vec(&self.json)
        };
        let mut body = mutate::apply_bytes(&text.unwrap_or_default(), &self.mutations);
        if self.oversize {
            body.resize(MAX_ANSWER_BYTES + 1, b' ');
        }
        body
    }
}

const TOKENS: &[&str] = &[
    "needsSync",
    "\"needsSync\":",
    "parameters",
    "true",
    "false",
    "[]",
    "{}",
    "\"x\"",
    "1",
    "\\u0000",
    "\\ud800",
    "\\",
];

impl Target for Answer {
    const NAME: &'static str = "answer";
    const ABOUT: &'static str =
        "lambda answers (parse_answer): status, JSON shape, field types, size";
    type Input = Reply;

    fn inputs() -> BoxedStrategy<Reply> {
        let status = prop_oneof![
            16 => Just(200u16),
            1 => proptest::sample::select(vec![201u16, 202, 204, 299]),
            3 => proptest::sample::select(vec![0u16, 100, 199, 300, 301, 400, 404, 500, 503, 999, 65535]),
        ];
        let json = prop_oneof![19 => answer_object(), 1 => json::value()];
        let mutations = prop_oneof![
            3 => Just(Vec::new()),
            1 => mutate::mutations(TOKENS, 3),
        ];
        let oversize = proptest::bool::weighted(0.0005);
        (status, json, any::<bool>(), mutations, oversize)
            .prop_map(|(status, json, pretty, mutations, oversize)| Reply {
                status,
                json,
                pretty,
                mutations,
                oversize,
            })
            .boxed()
    }

    fn check(reply: &Reply) -> Verdict {
        let body = reply.body();
        let result = parse_answer(reply.status, &body);
        let err = match result {
            Ok(answer) => return accepted(reply, &answer),
            Err(err) => err,
        };
        let message = err.to_string();
        if reply.oversize {
            return match err {
                AnswerError::TooLarge { bytes } if bytes == body.len() => {
                    Verdict::Rejected(err.kind().into())
                }
                _ => Verdict::broken("size", format!("a {} byte body gave {err:?}", body.len())),
            };
        }
        if !(200..300).contains(&reply.status) {
            return status_error(reply.status, &body, err);
        }
        let names = match &err {
            AnswerError::NotJson { .. } => {
                message.contains(" line ") && message.contains(" column ")
            }
            AnswerError::WrongType { field, .. } => message.contains(&format!("field {field}")),
            AnswerError::MissingNeedsSync => message.contains("needsSync"),
            AnswerError::NotObject { .. } => message.contains("expected an object"),
            AnswerError::Status { .. }
            | AnswerError::Redirect { .. }
            | AnswerError::TooLarge { .. } => false,
        };
        if !names {
            return Verdict::broken("names", format!("{message:?} names no field or position"));
        }
        if reply.mutations.is_empty() {
            // The body is exactly the JSON, so the error must be about a field that is wrong.
            match expected_problems(&reply.json) {
                Problems::Valid => {
                    return Verdict::broken("valid-refused", format!("{message:?}"));
                }
                Problems::NotObject => {
                    if !matches!(err, AnswerError::NotObject { .. }) {
                        return Verdict::broken("not-object", format!("gave {message:?}"));
                    }
                }
                Problems::Fields(fields) => {
                    let named = match &err {
                        AnswerError::WrongType { field, .. } => fields.contains(field),
                        AnswerError::MissingNeedsSync => fields.iter().any(|f| f == "needsSync"),
                        _ => false,
                    };
                    if !named {
                        return Verdict::broken(
                            "wrong-field",
                            format!("{message:?}, but the wrong fields are {fields:?}"),
                        );
                    }
                }
            }
        }
        Verdict::Rejected(err.kind().into())
    }

    fn show(reply: &Reply) -> String {
        format!(
            "status: {}\nbody: {:?}\nwritten from: {}\nmutations: {:?}\noversize: {}\n",
            reply.status,
            String::from_utf8_lossy(&reply.body()),
            reply.json,
            reply.mutations,
            reply.oversize
        )
    }
}

/// An accepted reply means what its JSON says, and prints back to itself.
fn accepted(reply: &Reply, answer: &NeedsSyncAnswer) -> Verdict {
    if reply.oversize || !(200..300).contains(&reply.status) {
        return Verdict::broken(
            "accepted-bad-reply",
            "status or size should have refused it",
        );
    }
    if reply.mutations.is_empty() {
        match expected_problems(&reply.json) {
            Problems::Valid => {}
            other => return Verdict::broken("invalid-accepted", format!("{other:?}")),
        }
        let fields = reply.json.as_object().expect("valid answers are objects");
        let text = |name: &str| fields.get(name).and_then(Value::as_str).map(String::from);
        let params = fields
            .get("parameters")
            .filter(|p| !p.is_null())
            .map(|p| serde_json::from_value(p.clone()).expect("checked params"))
            .unwrap_or_default();
        let datasets = |name: &str| {
            fields
                .get(name)
                .filter(|v| !v.is_null())
                .map(|v| serde_json::from_value(v.clone()).expect("checked datasets"))
                .unwrap_or_default()
        };
        let meant = NeedsSyncAnswer {
            needs_sync: fields["needsSync"] == Value::Bool(true),
            parameters: params,
            reason: text("reason"),
            revision: text("revision"),
            inputs: datasets("inputs"),
            outputs: datasets("outputs"),
        };
        if &meant != answer {
            return Verdict::broken("meaning", format!("read {answer:?}, written {meant:?}"));
        }
    }
    let printed = serde_json::to_vec(answer).expect("answers serialize");
    match parse_answer(200, &printed) {
        Ok(again) if &again == answer => Verdict::Accepted,
        other => Verdict::broken(
            "round-trip",
            format!("{answer:?} printed and read is {other:?}"),
        ),
    }
}

fn status_error(status: u16, body: &[u8], err: AnswerError) -> Verdict {
    let AnswerError::Status { code, body: quoted } = &err else {
        return Verdict::broken("status", format!("HTTP {status} gave {err:?}"));
    };
    let text = String::from_utf8_lossy(body);
    let head: String = text.trim().chars().take(200).collect();
    let quote_ok = quoted.strip_suffix("...").unwrap_or(quoted) == head;
    if *code != status || !err.to_string().contains(&format!("HTTP {status}")) || !quote_ok {
        return Verdict::broken("status", format!("HTTP {status} gave {err:?}"));
    }
    Verdict::Rejected(err.kind().into())
}

#[derive(Debug)]
enum Problems {
    Valid,
    NotObject,
    /// Every field whose value breaks the protocol, by the name the parser should use.
    Fields(Vec<String>),
}

/// What the protocol says of `v`, worked out apart from the parser.
fn expected_problems(v: &Value) -> Problems {
    let Value::Object(fields) = v else {
        return Problems::NotObject;
    };
    let mut wrong = Vec::new();
    if !matches!(fields.get("needsSync"), Some(Value::Bool(_))) {
        wrong.push("needsSync".to_string());
    }
    match fields.get("parameters") {
        None | Some(Value::Null) => {}
        Some(Value::Object(params)) => {
            for (key, value) in params {
                match value {
                    Value::String(_) => {}
                    Value::Array(items) => {
                        for (i, item) in items.iter().enumerate() {
                            if !item.is_string() {
                                wrong.push(format!("parameters.{key}[{i}]"));
                            }
                        }
                    }
                    _ => wrong.push(format!("parameters.{key}")),
                }
            }
        }
        Some(_) => wrong.push("parameters".into()),
    }
    for name in ["reason", "revision"] {
        if !matches!(
            fields.get(name),
            None | Some(Value::Null | Value::String(_))
        ) {
            wrong.push(name.into());
        }
    }
    // Lineage datasets: lists of {namespace, name, version?}, each a non-empty string.
    let text = |v: Option<&Value>| v.and_then(Value::as_str).is_some_and(|s| !s.is_empty());
    for list in ["inputs", "outputs"] {
        match fields.get(list) {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let Some(d) = item.as_object() else {
                        wrong.push(format!("{list}[{i}]"));
                        continue;
                    };
                    for key in ["namespace", "name", "version"] {
                        let optional =
                            key == "version" && matches!(d.get(key), None | Some(Value::Null));
                        if !optional && !text(d.get(key)) {
                            wrong.push(format!("{list}[{i}].{key}"));
                        }
                    }
                }
            }
            Some(_) => wrong.push(list.into()),
        }
    }
    if wrong.is_empty() {
        Problems::Valid
    } else {
        Problems::Fields(wrong)
    }
}

/// Usually right, sometimes missing, sometimes of another JSON type.
fn field(right: BoxedStrategy<Value>) -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        12 => right.prop_map(Some),
        1 => Just(None),
        1 => json::value().prop_map(Some),
    ]
    .boxed()
}

fn optional(right: BoxedStrategy<Value>) -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        4 => Just(None),
        1 => Just(Some(Value::Null)),
        6 => right.prop_map(Some),
        1 => json::value().prop_map(Some),
    ]
    .boxed()
}

fn param_value() -> BoxedStrategy<Value> {
    prop_oneof![
        8 => json::string().prop_map(Value::String),
        3 => proptest::collection::vec(json::string().prop_map(Value::String), 0..4)
            .prop_map(Value::Array),
        1 => proptest::collection::vec(json::value(), 1..3).prop_map(Value::Array),
        1 => json::value(),
    ]
    .boxed()
}

/// An object shaped like a protocol v1 answer (or an original Kubeflow one), each field
/// sometimes missing or mistyped.
fn answer_object() -> BoxedStrategy<Value> {
    let params = proptest::collection::vec((json::key(), param_value()), 0..4)
        .prop_map(|entries| Value::Object(entries.into_iter().collect()))
        .boxed();
    let text = json::string().prop_map(Value::String).boxed();
    let extra_key = prop_oneof![
        proptest::sample::select(vec!["kind", "apiVersion", "metadata", "inputs", "outputs"])
            .prop_map(String::from),
        json::key(),
    ];
    (
        field(any::<bool>().prop_map(Value::Bool).boxed()),
        optional(params),
        optional(text.clone()),
        optional(text),
        proptest::collection::vec((extra_key, json::value()), 0..3),
    )
        .prop_map(|(needs_sync, params, reason, revision, extra)| {
            let mut fields: Map<String, Value> = extra.into_iter().collect();
            for (name, value) in [
                ("needsSync", needs_sync),
                ("parameters", params),
                ("reason", reason),
                ("revision", revision),
            ] {
                match value {
                    Some(v) => fields.insert(name.into(), v),
                    None => fields.remove(name),
                };
            }
            Value::Object(fields)
        })
        .boxed()
}
