use super::*;

fn run(status: Value) -> PipelineRun {
    let lineage = RunLineage {
        lambda_url: "http://lambdas/deploy".into(),
        inputs: vec![Dataset::new("http://git/ml.git", "models/m-2.yaml")],
        outputs: vec![Dataset::new("http://git/gitops.git", "deploy/model.yaml").at_version("abc")],
    };
    serde_json::from_value(json!({
        "apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
        "metadata": {
            "name": "deployer-1", "namespace": "ml", "uid": "0b6c3c1e-6a8f-4a52-9a43-3d1f0d7c2a10",
            "labels": {LABEL_NAME: "deployer"},
            "annotations": {
                ANNOTATION_PARAMETERS: r#"{"model":"m-2"}"#,
                ANNOTATION_REASON: "newest model m-2 differs",
                ANNOTATION_REVISION: "abc",
                ANNOTATION_DECIDED_AT: "2026-11-27T10:00:00.123456Z",
                modelsync_api::lineage::ANNOTATION_LINEAGE: serde_json::to_string(&lineage).unwrap(),
            },
        },
        "spec": {},
        "status": status,
    }))
    .unwrap()
}

fn now() -> DateTime<Utc> {
    "2026-11-27T11:00:00Z".parse().unwrap()
}

#[test]
fn start_names_job_run_decision_and_answer_datasets() {
    let e = run_event(&run(json!({})), Transition::Start, "modelsync", now()).unwrap();
    assert_eq!(e["eventType"], "START");
    assert_eq!(e["eventTime"], "2026-11-27T10:00:00.123Z");
    assert_eq!(e["run"]["runId"], "0b6c3c1e-6a8f-4a52-9a43-3d1f0d7c2a10");
    assert_eq!(
        e["job"],
        json!({"namespace": "modelsync", "name": "ml/deployer"})
    );
    let facet = &e["run"]["facets"]["modelsync_decision"];
    assert_eq!(facet["parameters"], json!({"model": "m-2"}));
    assert_eq!(facet["lambdaUrl"], "http://lambdas/deploy");
    assert_eq!(facet["revision"], "abc");
    assert_eq!(facet["needsSync"], true);
    assert_eq!(e["inputs"][0]["name"], "models/m-2.yaml");
    assert_eq!(
        e["outputs"],
        json!([{"namespace": "http://git/gitops.git", "name": "deploy/model.yaml"}])
    );
}

#[test]
fn complete_reports_artifact_results_as_outputs() {
    let status = json!({
        "conditions": [{"type": "Succeeded", "status": "True", "reason": "Succeeded"}],
        "completionTime": "2026-11-27T10:05:00Z",
        "results": [
            {"name": "pr-url", "value": "https://gh/o/r/pull/7"},
            {"name": "pr_ARTIFACT_OUTPUTS", "value": {
                "uri": "http://git/gitops.git#deploy/model.yaml",
                "digest": "sha1:0123abcd",
                "pr-url": "https://gh/o/r/pull/7",
            }},
            {"name": "broken_ARTIFACT_OUTPUTS", "value": {"uri": "nowhere"}},
        ],
    });
    let e = run_event(&run(status), Transition::Complete, "ns", now()).unwrap();
    assert_eq!(e["eventType"], "COMPLETE");
    assert_eq!(e["eventTime"], "2026-11-27T10:05:00.000Z");
    let outputs = e["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 1, "{outputs:?}");
    assert_eq!(outputs[0]["namespace"], "http://git/gitops.git");
    assert_eq!(
        outputs[0]["facets"]["version"]["datasetVersion"],
        "sha1:0123abcd"
    );
    let artifact = &outputs[0]["facets"]["modelsync_artifact"];
    assert_eq!(artifact["pr-url"], "https://gh/o/r/pull/7");
    assert_eq!(artifact["result"], "pr_ARTIFACT_OUTPUTS");
}

#[test]
fn failures_carry_the_message_and_cancellations_abort() {
    let failed = json!({"conditions": [{"type": "Succeeded", "status": "False", "reason": "Failed", "message": "task bump failed"}]});
    let r = run(failed);
    let end = Transition::end_of(r.result()).unwrap();
    assert_eq!(end, Transition::Fail);
    let e = run_event(&r, end, "ns", now()).unwrap();
    assert_eq!(
        e["eventTime"], "2026-11-27T11:00:00.000Z",
        "no completionTime: now"
    );
    assert_eq!(
        e["run"]["facets"]["errorMessage"]["message"],
        "Failed: task bump failed"
    );
    let cancelled = run(
        json!({"conditions": [{"type": "Succeeded", "status": "False", "reason": "Cancelled"}]}),
    );
    assert_eq!(
        Transition::end_of(cancelled.result()),
        Some(Transition::Abort)
    );
    assert_eq!(Transition::end_of(run(json!({})).result()), None);
}

#[test]
fn runs_without_identity_are_refused_and_old_runs_have_no_datasets() {
    let mut r = run(json!({}));
    r.metadata.uid = None;
    assert!(
        run_event(&r, Transition::Start, "ns", now())
            .unwrap_err()
            .contains("no uid")
    );
    let mut old = run(json!({}));
    old.annotations_mut()
        .remove(modelsync_api::lineage::ANNOTATION_LINEAGE);
    let e = run_event(&old, Transition::Start, "ns", now()).unwrap();
    assert_eq!(e["inputs"], json!([]));
    assert!(
        e["run"]["facets"]["modelsync_decision"]
            .get("lambdaUrl")
            .is_none()
    );
    let mut bad = run(json!({}));
    bad.annotations_mut().insert(
        modelsync_api::lineage::ANNOTATION_LINEAGE.into(),
        "{".into(),
    );
    assert!(
        run_event(&bad, Transition::Start, "ns", now())
            .unwrap_err()
            .contains("not the JSON")
    );
}
