//! The published OpenAPI document and the Rust protocol types say the same thing.

use std::collections::BTreeSet;

use modelsync_api::lambda::{self, NeedsSyncAnswer};
use modelsync_api::lineage;
use serde_yaml_ng::Value;

fn document() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/lambda-protocol.openapi.yaml"
    );
    let text = std::fs::read_to_string(path).expect("docs/lambda-protocol.openapi.yaml exists");
    serde_yaml_ng::from_str(&text).expect("the OpenAPI document is YAML")
}

#[test]
fn schema_fields_match_the_answer_type() {
    let doc = document();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let schema = &doc["components"]["schemas"]["NeedsSyncAnswer"];
    let documented: BTreeSet<&str> = schema["properties"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    let full = NeedsSyncAnswer {
        needs_sync: true,
        parameters: [("k".to_owned(), "v".into())].into(),
        reason: Some("r".into()),
        revision: Some("v".into()),
        inputs: vec![lineage::Dataset::new("https://h/r.git", "data/")],
        outputs: vec![lineage::Dataset::new("https://h/g.git", "model.yaml")],
    };
    let serialized = serde_json::to_value(full).unwrap();
    let in_rust: BTreeSet<&str> = serialized
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(documented, in_rust);
    assert_eq!(
        schema["required"],
        serde_yaml_ng::from_str::<Value>("[needsSync]").unwrap()
    );
}

#[test]
fn documented_headers_are_the_ones_sent() {
    let doc = document();
    let params = doc["paths"]["/{lambdaPath}"]["get"]["parameters"]
        .as_sequence()
        .unwrap();
    let headers: BTreeSet<&str> = params
        .iter()
        .filter(|p| p["in"] == "header")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for h in [
        lambda::HEADER_NAMESPACE,
        lambda::HEADER_NAME,
        lambda::HEADER_LAST_RUN,
        "Accept",
    ] {
        assert!(headers.contains(h), "{h} is not documented");
    }
}

#[test]
fn documented_examples_are_valid_answers() {
    let doc = document();
    let examples = doc["paths"]["/{lambdaPath}"]["get"]["responses"]["200"]["content"]["application/json"]
        ["examples"]
        .as_mapping()
        .unwrap();
    assert!(examples.len() >= 3);
    for (name, example) in examples {
        let body = serde_json::to_vec(&example["value"]).unwrap();
        lambda::parse_answer(200, &body).unwrap_or_else(|e| panic!("example {name:?}: {e}"));
    }
}

/// Every `lambdas.yaml` shipped under `examples/` is a valid configuration.
#[test]
fn example_configs_parse() {
    fn walk(dir: &std::path::Path, found: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.file_name().is_some_and(|n| n == "lambdas.yaml") {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples"),
        &mut found,
    );
    assert!(
        !found.is_empty(),
        "examples/lambdas/lambdas.yaml is missing"
    );
    for path in found {
        let text = std::fs::read_to_string(&path).unwrap();
        modelsync_lambdas::config::parse(&text, path.parent().unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

/// Model records shipped in the sample GitOps repository follow the documented format.
#[test]
fn example_model_records_parse() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for repo in std::fs::read_dir(&examples).unwrap() {
        let repo = repo.unwrap().path();
        if repo.join("models").is_dir() {
            let models = modelsync_lambdas::sources::records::load(&repo, "models/")
                .unwrap_or_else(|e| panic!("{}: {e}", repo.display()));
            assert!(!models.is_empty(), "{}: no records", repo.display());
        }
    }
}
