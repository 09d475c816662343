use super::*;
use modelsync_api::modelsync::TemplateMetadata;

fn template(spec: Value) -> PipelineRunTemplate {
    PipelineRunTemplate {
        metadata: TemplateMetadata {
            labels: [("team".to_owned(), "ml".to_owned())].into(),
            annotations: [("note".to_owned(), "kept".to_owned())].into(),
        },
        spec,
    }
}

fn answer(params: &[(&str, ParamValue)]) -> NeedsSyncAnswer {
    NeedsSyncAnswer {
        needs_sync: true,
        parameters: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        reason: Some("newer model".into()),
        revision: Some("abc123".into()),
    }
}

fn mapping(from: &str, to: &str) -> ParameterMapping {
    ParameterMapping {
        needs_sync_name: from.into(),
        pipeline_name: to.into(),
    }
}

#[test]
fn v1beta1_fields_move_to_their_v1_homes() {
    let t = template(json!({
        "pipelineRef": {"name": "update-model-pr"},
        "serviceAccountName": "auto-update",
        "timeout": "1h",
        "serviceAccountNames": [{"taskName": "pr", "serviceAccountName": "bot"}],
    }));
    let spec = v1_spec(&t).unwrap();
    assert_eq!(spec["taskRunTemplate"]["serviceAccountName"], "auto-update");
    assert_eq!(spec["timeouts"]["pipeline"], "1h");
    assert_eq!(spec["taskRunSpecs"][0]["pipelineTaskName"], "pr");
    assert_eq!(spec["taskRunSpecs"][0]["serviceAccountName"], "bot");
    for gone in ["serviceAccountName", "timeout", "serviceAccountNames"] {
        assert!(!spec.contains_key(gone), "{gone} left in {spec:?}");
    }
}

#[test]
fn pipeline_resources_are_refused_with_a_reason() {
    let t = template(json!({
        "pipelineRef": {"name": "p"},
        "resources": [{"name": "repo", "resourceRef": {"name": "git"}}],
    }));
    let err = v1_spec(&t).unwrap_err();
    assert!(err.0.contains("PipelineResources"), "{err}");
    assert!(err.0.contains("resources"), "{err}");
}

#[test]
fn a_run_carries_its_modelsyncs_shard_whatever_the_template_says() {
    let mut t = template(json!({"pipelineRef": {"name": "p"}}));
    t.metadata
        .labels
        .insert(LABEL_SHARD.to_owned(), "from-template".to_owned());
    let a = answer(&[]);
    let params = BTreeMap::new();
    let build = |shard| {
        build_run(&RunRequest {
            name: "m-0123456789",
            namespace: "ns",
            modelsync: "m",
            owner: json!({"uid": "u"}),
            template: &t,
            params: &params,
            answer: &a,
            decided_at: "2026-11-22T10:00:00Z",
            shard,
        })
        .unwrap()
    };
    assert_eq!(build(Some("b"))["metadata"]["labels"][LABEL_SHARD], "b");
    // Unsharded ModelSync: its runs must be unlabelled too, or the default controller's
    // `!modelsync.dev/shard` watch would never see them.
    assert!(build(None)["metadata"]["labels"].get(LABEL_SHARD).is_none());
}

#[test]
fn a_template_without_a_pipeline_is_invalid() {
    assert!(v1_spec(&template(json!({"params": []}))).is_err());
    assert!(v1_spec(&template(json!("text"))).is_err());
}

#[test]
fn mapped_params_override_template_params_and_others_stay() {
    let t = template(json!({
        "pipelineRef": {"name": "update-model-pr"},
        "params": [
            {"name": "automl-model", "value": "notavlidmodel"},
            {"name": "branchName", "value": "auto-update"},
        ],
    }));
    let a = answer(&[
        ("name", "m-2".into()),
        ("unmapped", "ignored".into()),
        ("tags", ParamValue::Array(vec!["x".into()])),
    ]);
    let params = mapped_params(
        &[mapping("name", "automl-model"), mapping("tags", "tags")],
        &a,
    )
    .unwrap();
    let run = build_run(&RunRequest {
        name: "deploy-0123456789",
        namespace: "ns",
        modelsync: "deploy",
        owner: json!({"uid": "u"}),
        template: &t,
        params: &params,
        answer: &a,
        decided_at: "2026-11-22T10:00:00Z",
        shard: None,
    })
    .unwrap();
    let got = run["spec"]["params"].as_array().unwrap();
    assert_eq!(
        got,
        &vec![
            json!({"name": "automl-model", "value": "m-2"}),
            json!({"name": "branchName", "value": "auto-update"}),
            json!({"name": "tags", "value": ["x"]}),
        ]
    );
    // No nameless or unmapped param sneaks in.
    assert!(
        got.iter()
            .all(|p| p["name"] != "" && p["name"] != "unmapped")
    );
    assert_eq!(run["metadata"]["labels"]["team"], "ml");
    assert_eq!(run["metadata"]["labels"][LABEL_NAME], "deploy");
    assert_eq!(run["metadata"]["annotations"]["note"], "kept");
    assert_eq!(
        run["metadata"]["annotations"][ANNOTATION_REASON],
        "newer model"
    );
    assert_eq!(
        run["metadata"]["annotations"][ANNOTATION_REVISION],
        "abc123"
    );
    let recorded: BTreeMap<String, String> =
        serde_json::from_value(run["metadata"]["annotations"].clone()).unwrap();
    let annotation = recorded.get(ANNOTATION_PARAMETERS).map(String::as_str);
    assert_eq!(recorded_params(annotation).unwrap(), params);
    assert_eq!(run["apiVersion"], "tekton.dev/v1");
}

#[test]
fn empty_or_missing_mapped_params_are_reported() {
    let m = [mapping("name", "automl-model")];
    let err = mapped_params(&m, &answer(&[("name", "".into())])).unwrap_err();
    assert!(
        err.0.contains("empty") && err.0.contains("automl-model"),
        "{err}"
    );
    let err = mapped_params(&m, &answer(&[])).unwrap_err();
    assert!(err.0.contains("lack"), "{err}");
    let err = mapped_params(
        &m,
        &answer(&[("name", ParamValue::Array(vec![" ".into()]))]),
    );
    assert!(err.is_err());
}

#[test]
fn run_names_are_deterministic_per_decision_and_fit_labels() {
    let p1: BTreeMap<_, _> = [("m".to_owned(), ParamValue::from("1"))].into();
    let p2: BTreeMap<_, _> = [("m".to_owned(), ParamValue::from("2"))].into();
    let a = run_name("deploy", "uid", None, &p1);
    assert_eq!(a, run_name("deploy", "uid", None, &p1));
    assert_ne!(a, run_name("deploy", "uid", None, &p2));
    assert_ne!(a, run_name("deploy", "uid", Some(&a), &p1));
    assert_ne!(a, run_name("deploy", "other-uid", None, &p1));
    assert!(a.starts_with("deploy-") && a.len() == "deploy-".len() + 10);
    let long = run_name(&"x".repeat(80), "uid", None, &p1);
    assert!(long.len() <= 63, "{long}");
}

// Found by the template fuzz target: v1beta1 taskRunSpecs kept their v1beta1 field names,
// which Tekton v1 refuses, so the per-task service account was lost.
#[test]
fn v1beta1_task_run_spec_fields_are_renamed() {
    let t = template(json!({
        "pipelineRef": {"name": "p"},
        "taskRunSpecs": [{
            "pipelineTaskName": "build",
            "taskServiceAccountName": "builder",
            "taskPodTemplate": {"nodeSelector": {"pool": "gpu"}},
            "stepOverrides": [{"name": "s"}],
            "sidecarOverrides": [{"name": "c"}],
        }],
    }));
    let spec = v1_spec(&t).unwrap();
    assert_eq!(
        spec["taskRunSpecs"],
        json!([{
            "pipelineTaskName": "build",
            "serviceAccountName": "builder",
            "podTemplate": {"nodeSelector": {"pool": "gpu"}},
            "stepSpecs": [{"name": "s"}],
            "sidecarSpecs": [{"name": "c"}],
        }])
    );
    let both = template(json!({
        "pipelineRef": {"name": "p"},
        "taskRunSpecs": [{"pipelineTaskName": "b", "taskServiceAccountName": "x", "serviceAccountName": "y"}],
    }));
    let err = v1_spec(&both).unwrap_err();
    assert!(
        err.0.contains(
            "spec.pipelineRunTemplate.spec.taskRunSpecs[0] has both taskServiceAccountName"
        ),
        "{err}"
    );
}

// Found by the template fuzz target: a serviceAccountNames entry for a task that also had a
// taskRunSpecs entry made a second entry for the task; one without a taskName made
// `pipelineTaskName: null`.
#[test]
fn service_account_names_merge_into_task_run_specs() {
    let t = template(json!({
        "pipelineRef": {"name": "p"},
        "serviceAccountNames": [
            {"taskName": "build", "serviceAccountName": "from-names"},
            {"taskName": "push", "serviceAccountName": "pusher"},
            {"taskName": "test"},
        ],
        "taskRunSpecs": [{"pipelineTaskName": "build", "taskServiceAccountName": "own"}],
    }));
    let spec = v1_spec(&t).unwrap();
    assert_eq!(
        spec["taskRunSpecs"],
        json!([
            {"pipelineTaskName": "build", "serviceAccountName": "own"},
            {"pipelineTaskName": "push", "serviceAccountName": "pusher"},
            {"pipelineTaskName": "test"},
        ])
    );
    let nameless = template(json!({
        "pipelineRef": {"name": "p"},
        "serviceAccountNames": [{"serviceAccountName": "sa"}],
    }));
    let err = v1_spec(&nameless).unwrap_err();
    assert!(
        err.0
            .contains("spec.pipelineRunTemplate.spec.serviceAccountNames[0].taskName is missing"),
        "{err}"
    );
}

// Found by the template fuzz target: v1beta1 values of the wrong shape were dropped without a
// word; the template is now refused with the field named.
#[test]
fn v1beta1_values_that_cannot_move_are_refused_not_dropped() {
    let cases = [
        (
            json!({"serviceAccountNames": false}),
            "spec.pipelineRunTemplate.spec.serviceAccountNames must be a list",
        ),
        (
            json!({"serviceAccountNames": [], "taskRunSpecs": {}}),
            "spec.pipelineRunTemplate.spec.taskRunSpecs must be a list",
        ),
        (
            json!({"timeout": "1h", "timeouts": "2h"}),
            "spec.pipelineRunTemplate.spec.timeouts must be an object",
        ),
    ];
    for (mut spec, want) in cases {
        spec["pipelineRef"] = json!({"name": "p"});
        let err = v1_spec(&template(spec.clone())).unwrap_err();
        assert!(err.0.contains(want), "{spec}: {err}");
    }
    let spec = v1_spec(&template(
        json!({"pipelineRef": {"name": "p"}, "serviceAccountNames": null}),
    ))
    .unwrap();
    assert!(!spec.contains_key("serviceAccountNames") && !spec.contains_key("taskRunSpecs"));
}
