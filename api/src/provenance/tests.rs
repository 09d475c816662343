use serde_json::{Value, json};

use super::*;
use crate::lineage::{ANNOTATION_LINEAGE, RunLineage};

const ML: &str = "http://git.test/ml.git";

fn run(name: &str, owner: &str, inputs: Vec<Dataset>, ended: &str, results: Value) -> PipelineRun {
    let lineage = RunLineage {
        lambda_url: format!("http://lambdas/{owner}"),
        inputs,
        outputs: vec![],
    };
    serde_json::from_value(json!({
        "apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
        "metadata": {"name": name, "namespace": "ml", "labels": {LABEL_NAME: owner},
            "annotations": {ANNOTATION_REASON: format!("why {name}"), ANNOTATION_REVISION: "rev",
                ANNOTATION_LINEAGE: serde_json::to_string(&lineage).unwrap()}},
        "spec": {},
        "status": {"conditions": [{"type": "Succeeded", "status": "True", "reason": "Succeeded"}],
            "completionTime": ended, "results": results},
    }))
    .unwrap()
}

fn trainer(name: &str, model: &str) -> PipelineRun {
    run(
        name,
        "trainer",
        vec![Dataset::new(ML, "data").at_version("c0ffee")],
        "2026-11-27T09:00:00Z",
        json!([{"name": "model_ARTIFACT_OUTPUTS", "value": {"uri": format!("{ML}#models/{model}.yaml"), "digest": "sha1:1111"}}]),
    )
}

fn deployer(name: &str, model: &str, ended: &str) -> PipelineRun {
    run(
        name,
        "deployer",
        vec![Dataset::new(ML, format!("models/{model}.yaml"))],
        ended,
        json!([{"name": "pr_ARTIFACT_OUTPUTS", "value": {"uri": "http://git.test/gitops.git#deploy/model.yaml", "digest": "sha1:2222", "pr-url": "https://gh.test/o/g/pull/3"}}]),
    )
}

#[test]
fn the_newest_deploy_is_traced_to_the_run_that_made_its_model() {
    let runs = [
        trainer("train-1", "m-1"),
        trainer("train-2", "m-2"),
        deployer("deploy-1", "m-1", "2026-11-27T10:00:00Z"),
        deployer("deploy-2", "m-2", "2026-11-27T11:00:00Z"),
    ];
    let p = trace("ml", "deployer", &runs).unwrap();
    assert_eq!(p.deploy.name, "deploy-2");
    assert_eq!(p.training.name, "train-2");
    assert_eq!(p.model, Dataset::new(ML, "models/m-2.yaml"));
    assert_eq!(
        p.pull_request.as_deref(),
        Some("https://gh.test/o/g/pull/3")
    );
    assert_eq!(p.data_revision.as_deref(), Some("c0ffee"));
    let table = p.table();
    assert!(
        table.contains("ml/deployer run deploy-2 (Succeeded"),
        "{table}"
    );
    assert!(
        table.contains("MODEL") && table.contains("#models/m-2.yaml at sha1:1111"),
        "{table}"
    );
}

#[test]
fn each_missing_link_is_named() {
    let only_training = [trainer("train-1", "m-1")];
    let err = trace("ml", "deployer", &only_training).unwrap_err();
    assert!(
        err.contains("has no succeeded run to trace (0 run(s)"),
        "{err}"
    );

    let gc = [
        deployer("deploy-1", "m-9", "2026-11-27T10:00:00Z"),
        trainer("t", "m-1"),
    ];
    let err = trace("ml", "deployer", &gc).unwrap_err();
    assert!(
        err.contains("models/m-9.yaml, but no succeeded run"),
        "{err}"
    );

    let mut blind = deployer("deploy-1", "m-1", "2026-11-27T10:00:00Z");
    blind.annotations_mut().insert(
        ANNOTATION_LINEAGE.into(),
        r#"{"lambdaUrl":"http://old"}"#.into(),
    );
    let err = trace("ml", "deployer", &[blind.clone()]).unwrap_err();
    assert!(err.contains("answered without `inputs`"), "{err}");
    blind.annotations_mut().remove(ANNOTATION_LINEAGE);
    let err = trace("ml", "deployer", &[blind]).unwrap_err();
    assert!(err.contains("controller without lineage"), "{err}");
}
