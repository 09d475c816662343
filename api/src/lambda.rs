//! The needs-sync lambda protocol, version 1 (see `docs/lambda-protocol.openapi.yaml`).
//!
//! The controller sends `GET <needsSyncUrl>` with the headers below and expects `200` with a
//! [`NeedsSyncAnswer`]. Fields other than those named here are ignored, so answers of the
//! original Kubeflow lambdas (`{"kind":"NeedsSync","apiVersion":"v1alpha1",...}`) parse unchanged.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::lineage::Dataset;

/// Header naming the namespace of the ModelSync that asks.
pub const HEADER_NAMESPACE: &str = "X-ModelSync-Namespace";
/// Header naming the ModelSync that asks.
pub const HEADER_NAME: &str = "X-ModelSync-Name";
/// Header naming the newest PipelineRun of that ModelSync, when it has one.
pub const HEADER_LAST_RUN: &str = "X-ModelSync-Last-Run";
/// The largest answer body a lambda may send; a longer one is a protocol error.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// A lambda's answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NeedsSyncAnswer {
    /// Whether the world is stale and a run should start.
    pub needs_sync: bool,
    /// Values for the run, keyed by answer key; mapped to pipeline params by the ModelSync.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub parameters: BTreeMap<String, ParamValue>,
    /// Why the lambda decided so, for people reading status and events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the decision was computed from (a commit, a registry version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Datasets the decision read (OpenLineage naming); optional, for lineage events.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_none"
    )]
    pub inputs: Vec<Dataset>,
    /// Datasets a run started by this answer writes, where the lambda knows them.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_none"
    )]
    pub outputs: Vec<Dataset>,
}

/// A parameter value: a string, or an array of strings for Tekton array params.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    String(String),
    Array(Vec<String>),
}

impl ParamValue {
    /// True for `""` and for an array with no element or only empty ones: a value no run can use.
    pub fn is_empty(&self) -> bool {
        match self {
            ParamValue::String(s) => s.trim().is_empty(),
            ParamValue::Array(items) => items.iter().all(|s| s.trim().is_empty()),
        }
    }
}

impl From<&str> for ParamValue {
    fn from(s: &str) -> Self {
        ParamValue::String(s.to_owned())
    }
}

impl std::fmt::Display for ParamValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamValue::String(s) => f.write_str(s),
            ParamValue::Array(items) => write!(f, "[{}]", items.join(", ")),
        }
    }
}

fn null_as_none<'de, D>(d: D) -> Result<Vec<Dataset>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Ok(Option::<Vec<Dataset>>::deserialize(d)?.unwrap_or_default())
}

fn null_as_empty<'de, D>(d: D) -> Result<BTreeMap<String, ParamValue>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Ok(Option::<BTreeMap<String, ParamValue>>::deserialize(d)?.unwrap_or_default())
}

/// Why a lambda's reply is not a valid answer; the message says exactly what was wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnswerError {
    /// The lambda answered with a status other than 2xx.
    Status { code: u16, body: String },
    /// The lambda answered with a redirect (3xx). Redirects are never followed: a lambda that
    /// moved could point the controller anywhere, past the egress rules' first look.
    Redirect { code: u16, location: Option<String> },
    /// The body is longer than [`MAX_ANSWER_BYTES`].
    TooLarge { bytes: usize },
    /// The body is not JSON at all.
    NotJson { detail: String },
    /// The body is JSON but not an object.
    NotObject { found: &'static str },
    /// `needsSync` is absent.
    MissingNeedsSync,
    /// A field has the wrong JSON type.
    WrongType {
        field: String,
        expected: &'static str,
        found: &'static str,
    },
}

impl AnswerError {
    /// A short stable name for metrics labels and condition reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            AnswerError::Status { .. } => "status",
            AnswerError::Redirect { .. } => "redirect",
            AnswerError::TooLarge { .. } => "too_large",
            AnswerError::NotJson { .. } => "not_json",
            AnswerError::NotObject { .. } => "not_object",
            AnswerError::MissingNeedsSync => "missing_needs_sync",
            AnswerError::WrongType { .. } => "wrong_type",
        }
    }
}

impl std::fmt::Display for AnswerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnswerError::Status { code, body } if body.is_empty() => {
                write!(f, "lambda answered HTTP {code}, expected 200")
            }
            AnswerError::Status { code, body } => {
                write!(f, "lambda answered HTTP {code}, expected 200: {body}")
            }
            AnswerError::Redirect {
                code,
                location: Some(location),
            } => write!(
                f,
                "lambda answered HTTP {code} redirecting to {location}; redirects are not \
                 followed: set the URL to where the lambda answers"
            ),
            AnswerError::Redirect {
                code,
                location: None,
            } => write!(
                f,
                "lambda answered HTTP {code}, a redirect without a Location, expected 200"
            ),
            AnswerError::TooLarge { bytes } => write!(
                f,
                "answer is {bytes} bytes, more than the {MAX_ANSWER_BYTES} bytes a lambda may send"
            ),
            AnswerError::NotJson { detail } => write!(f, "answer is not JSON: {detail}"),
            AnswerError::NotObject { found } => {
                write!(
                    f,
                    "answer is {found}, expected an object like {{\"needsSync\": false}}"
                )
            }
            AnswerError::MissingNeedsSync => {
                f.write_str("answer has no field needsSync (a boolean, required)")
            }
            AnswerError::WrongType {
                field,
                expected,
                found,
            } => {
                write!(f, "field {field} is {found}, expected {expected}")
            }
        }
    }
}

impl std::error::Error for AnswerError {}

/// The longest part of an error body (or a redirect's `Location`) quoted back in an
/// [`AnswerError`]: conditions and events stay small whatever a lambda sends.
const QUOTED_BODY_CHARS: usize = 200;

fn capped(text: &str) -> String {
    let text = text.trim();
    let mut quoted: String = text.chars().take(QUOTED_BODY_CHARS).collect();
    if quoted.len() < text.len() {
        quoted.push_str("...");
    }
    quoted
}

impl AnswerError {
    /// A 3xx answer, its `Location` (if any) cut to a quotable length.
    pub fn redirect(code: u16, location: Option<&str>) -> Self {
        AnswerError::Redirect {
            code,
            location: location.map(capped),
        }
    }
}

/// Checks a lambda's reply against the protocol and returns the answer, or what was wrong.
///
/// Used by the controller and by `modelsync lambda-check`, so both judge a reply the same way.
pub fn parse_answer(status: u16, body: &[u8]) -> Result<NeedsSyncAnswer, AnswerError> {
    if body.len() > MAX_ANSWER_BYTES {
        return Err(AnswerError::TooLarge { bytes: body.len() });
    }
    if !(200..300).contains(&status) {
        return Err(AnswerError::Status {
            code: status,
            body: capped(&String::from_utf8_lossy(body)),
        });
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| AnswerError::NotJson {
            detail: e.to_string(),
        })?;
    let serde_json::Value::Object(fields) = &value else {
        return Err(AnswerError::NotObject {
            found: json_type(&value),
        });
    };
    match fields.get("needsSync") {
        None => return Err(AnswerError::MissingNeedsSync),
        Some(serde_json::Value::Bool(_)) => {}
        Some(other) => return Err(wrong("needsSync", "a boolean", other)),
    }
    match fields.get("parameters") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Object(params)) => {
            for (key, v) in params {
                let field = || format!("parameters.{key}");
                match v {
                    serde_json::Value::String(_) => {}
                    serde_json::Value::Array(items) => {
                        if let Some((i, bad)) =
                            items.iter().enumerate().find(|(_, i)| !i.is_string())
                        {
                            return Err(wrong(&format!("{}[{i}]", field()), "a string", bad));
                        }
                    }
                    other => {
                        return Err(wrong(&field(), "a string or an array of strings", other));
                    }
                }
            }
        }
        Some(other) => return Err(wrong("parameters", "an object", other)),
    }
    for name in ["reason", "revision"] {
        match fields.get(name) {
            None | Some(serde_json::Value::Null) | Some(serde_json::Value::String(_)) => {}
            Some(other) => return Err(wrong(name, "a string", other)),
        }
    }
    for list in ["inputs", "outputs"] {
        check_datasets(list, fields.get(list))?;
    }
    // Every shape was checked above, so this only fails if the checks and the type disagree.
    serde_json::from_value(value).map_err(|e| AnswerError::NotJson {
        detail: e.to_string(),
    })
}

fn check_datasets(list: &str, value: Option<&serde_json::Value>) -> Result<(), AnswerError> {
    let items = match value {
        None | Some(serde_json::Value::Null) => return Ok(()),
        Some(serde_json::Value::Array(items)) => items,
        Some(other) => return Err(wrong(list, "an array of {namespace, name}", other)),
    };
    for (i, item) in items.iter().enumerate() {
        let serde_json::Value::Object(d) = item else {
            return Err(wrong(
                &format!("{list}[{i}]"),
                "an object {namespace, name}",
                item,
            ));
        };
        for (key, required) in [("namespace", true), ("name", true), ("version", false)] {
            match d.get(key) {
                Some(serde_json::Value::String(s)) if !s.is_empty() => {}
                None if !required => {}
                Some(serde_json::Value::Null) if !required => {}
                None => {
                    return Err(AnswerError::WrongType {
                        field: format!("{list}[{i}].{key}"),
                        expected: "a non-empty string",
                        found: "absent",
                    });
                }
                Some(other) => {
                    return Err(wrong(
                        &format!("{list}[{i}].{key}"),
                        "a non-empty string",
                        other,
                    ));
                }
            }
        }
    }
    Ok(())
}

fn wrong(field: &str, expected: &'static str, found: &serde_json::Value) -> AnswerError {
    AnswerError::WrongType {
        field: field.to_owned(),
        expected,
        found: json_type(found),
    }
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_answer_accepts_kubeflow_and_v1() {
        let kubeflow = br#"{"kind":"NeedsSync","apiVersion":"v1alpha1","metadata":{"creationTimestamp":null},"needsSync":true,"parameters":{"name":"m1"}}"#;
        let answer = parse_answer(200, kubeflow).unwrap();
        assert_eq!(answer.parameters["name"], ParamValue::from("m1"));
        let v1 = br#"{"needsSync":false,"reason":"fresh","revision":"abc","parameters":null}"#;
        assert_eq!(
            parse_answer(200, v1).unwrap().reason.as_deref(),
            Some("fresh")
        );
    }

    #[test]
    fn parse_answer_names_what_is_wrong() {
        let cases: [(u16, &[u8], &str); 9] = [
            (
                500,
                br#"{"errors":[{"message":"boom"}]}"#,
                "HTTP 500, expected 200: {\"errors\"",
            ),
            (200, b"<html>", "not JSON"),
            (200, b"[true]", "answer is an array, expected an object"),
            (200, b"{}", "no field needsSync"),
            (
                200,
                br#"{"needsSync":"yes"}"#,
                "field needsSync is a string, expected a boolean",
            ),
            (
                200,
                br#"{"needsSync":true,"parameters":["a"]}"#,
                "field parameters is an array",
            ),
            (
                200,
                br#"{"needsSync":true,"parameters":{"n":1}}"#,
                "field parameters.n is a number",
            ),
            (
                200,
                br#"{"needsSync":true,"parameters":{"t":["a",2]}}"#,
                "field parameters.t[1] is a number",
            ),
            (
                200,
                br#"{"needsSync":true,"reason":7}"#,
                "field reason is a number, expected a string",
            ),
        ];
        for (status, body, want) in cases {
            let err = parse_answer(status, body).unwrap_err().to_string();
            assert!(
                err.contains(want),
                "{}: got {err:?}, want {want:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn redirects_name_their_location_capped() {
        let moved = AnswerError::redirect(302, Some("http://elsewhere/x"));
        assert_eq!(moved.kind(), "redirect");
        assert_eq!(
            moved.to_string(),
            "lambda answered HTTP 302 redirecting to http://elsewhere/x; redirects are not \
             followed: set the URL to where the lambda answers"
        );
        let long = format!("http://h/{}", "x".repeat(500));
        let AnswerError::Redirect {
            location: Some(quoted),
            ..
        } = AnswerError::redirect(301, Some(&long))
        else {
            panic!("a redirect");
        };
        assert_eq!(quoted.chars().count(), QUOTED_BODY_CHARS + 3);
        assert!(
            AnswerError::redirect(307, None)
                .to_string()
                .contains("HTTP 307, a redirect without a Location")
        );
    }

    #[test]
    fn parse_answer_rejects_large_bodies() {
        let mut body = br#"{"needsSync":false,"reason":""#.to_vec();
        body.resize(MAX_ANSWER_BYTES + 10, b'x');
        let err = parse_answer(200, &body).unwrap_err();
        assert_eq!(
            err,
            AnswerError::TooLarge {
                bytes: MAX_ANSWER_BYTES + 10
            }
        );
    }

    #[test]
    fn kubeflow_answer_parses() {
        let body = r#"{"kind":"NeedsSync","apiVersion":"v1alpha1","metadata":{"creationTimestamp":null},"needsSync":true,"parameters":{"name":"projects/p/locations/l/models/TCN123"}}"#;
        let answer: NeedsSyncAnswer = serde_json::from_str(body).unwrap();
        assert!(answer.needs_sync);
        assert_eq!(
            answer.parameters["name"],
            ParamValue::from("projects/p/locations/l/models/TCN123")
        );
        assert_eq!(answer.reason, None);
    }

    #[test]
    fn array_params_and_reason_parse() {
        let body = r#"{"needsSync":false,"parameters":{"tags":["a","b"]},"reason":"fresh","revision":"3f2c9e1"}"#;
        let answer: NeedsSyncAnswer = serde_json::from_str(body).unwrap();
        assert!(!answer.needs_sync);
        assert_eq!(
            answer.parameters["tags"],
            ParamValue::Array(vec!["a".into(), "b".into()])
        );
        assert_eq!(answer.revision.as_deref(), Some("3f2c9e1"));
    }

    #[test]
    fn wrong_types_are_rejected() {
        for body in [
            r#"{"needsSync":"yes"}"#,
            r#"{"parameters":{}}"#,
            r#"{"needsSync":true,"parameters":{"n":1}}"#,
            r#"{"needsSync":true,"parameters":["a"]}"#,
            r#"{"needsSync":true,"reason":7}"#,
        ] {
            assert!(
                serde_json::from_str::<NeedsSyncAnswer>(body).is_err(),
                "accepted {body}"
            );
        }
    }

    #[test]
    fn datasets_are_optional_and_checked() {
        let body = br#"{"needsSync":true,"inputs":[{"namespace":"https://h/r.git","name":"data/","version":"abc"}],"outputs":null}"#;
        let answer = parse_answer(200, body).unwrap();
        assert_eq!(
            answer.inputs,
            vec![Dataset::new("https://h/r.git", "data/").at_version("abc")]
        );
        assert!(answer.outputs.is_empty());
        let back = serde_json::to_string(&parse_answer(200, br#"{"needsSync":false}"#).unwrap());
        assert_eq!(back.unwrap(), r#"{"needsSync":false}"#);
        for (body, want) in [
            (
                &br#"{"needsSync":true,"inputs":{}}"#[..],
                "field inputs is an object",
            ),
            (
                br#"{"needsSync":true,"outputs":["x"]}"#,
                "field outputs[0] is a string",
            ),
            (
                br#"{"needsSync":true,"inputs":[{"name":"d"}]}"#,
                "inputs[0].namespace is absent",
            ),
            (
                br#"{"needsSync":true,"inputs":[{"namespace":"n","name":""}]}"#,
                "inputs[0].name is a string, expected a non-empty",
            ),
        ] {
            let err = parse_answer(200, body).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn null_parameters_mean_none() {
        let answer: NeedsSyncAnswer =
            serde_json::from_str(r#"{"needsSync":false,"parameters":null}"#).unwrap();
        assert!(answer.parameters.is_empty());
    }
}
