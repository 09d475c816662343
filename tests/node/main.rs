//! The real-node tier: a kubelet with containerd, the real Tekton, and modelsync installed from
//! `kustomize/` as pods of the image built from the `Dockerfile`'s recipe. Nothing here plays
//! Tekton: every run is a real PipelineRun whose steps run in real containers. Only GitHub's
//! pull request API is a local stand-in.
//!
//! Needs Linux, root, and containerd, runc, the CNI plugins, iptables and conntrack (`.ci/run`
//! installs them); the first run also builds the node's binaries, Tekton and the images.

#[path = "../e2e/common/mod.rs"]
mod common;
mod helm_install;
mod stage;
mod tree;

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use modelsync_api::ModelSync;
use modelsync_testenv::kubectl::kubectl;
use modelsync_testenv::labelbot::{BRANCH, DEPLOYER, NAMESPACE, TRAINER, ended_reason, runs_of};
use modelsync_testenv::tekton::param;
use serde_json::{Value, json};

use common::Lambda;
use stage::{Stage, stage};

/// Real pods share two cores: one test at a time keeps their timings meaningful.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn client(s: &Stage) -> Client {
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&s.kubeconfig).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    Client::try_from(config).unwrap()
}

/// Polls `check` until it returns `Some`, or fails naming `what` with `context()`'s account of
/// the cluster.
async fn eventually<T, F, Fut>(
    timeout: Duration,
    what: &str,
    context: impl Fn() -> String,
    check: F,
) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    modelsync_testenv::wait::until(timeout, Duration::from_millis(500), check)
        .await
        .unwrap_or_else(|| {
            panic!(
                "{what}: not seen within {}s\n{}",
                timeout.as_secs(),
                context()
            )
        })
}

/// What a person would look at when a run does not go as expected.
fn describe(kubeconfig: &Path, namespace: &str) -> String {
    let get = |args: &[&str]| kubectl(kubeconfig, args).unwrap_or_else(|e| format!("{e:#}"));
    // The steps say why in their logs, as they would to a user.
    let failed = get(&["get", "pods", "-n", namespace, "-o", "name"]);
    let step_logs: String = failed
        .lines()
        .filter(|l| l.starts_with("pod/"))
        .map(|pod| {
            format!(
                "$ kubectl logs -n {namespace} {pod} --all-containers --tail=20\n{}\n",
                get(&[
                    "logs",
                    "-n",
                    namespace,
                    pod,
                    "--all-containers",
                    "--tail=20"
                ])
            )
        })
        .collect();
    format!(
        "$ kubectl get msync,pipelineruns,taskruns,pods -n {namespace}\n{}\n$ kubectl get events -n {namespace}\n{}\n$ kubectl logs -n modelsync deploy/modelsync-controller --tail=30\n{}",
        get(&[
            "get",
            "msync,pipelineruns,taskruns,pods",
            "-n",
            namespace,
            "-o",
            "wide"
        ]),
        get(&["get", "events", "-n", namespace, "--sort-by=.lastTimestamp"]),
        get(&[
            "logs",
            "-n",
            "modelsync",
            "deploy/modelsync-controller",
            "--tail=30"
        ]),
    ) + &step_logs
}

fn run_named<'a>(runs: &'a [DynamicObject], name: &str) -> Option<&'a DynamicObject> {
    runs.iter().find(|r| r.name_any() == name)
}

#[tokio::test(flavor = "multi_thread")]
async fn install_runs_controller_and_lambdas_as_ready_non_root_pods() {
    let s = tokio::task::spawn_blocking(stage).await.unwrap();
    let _turn = ONE_AT_A_TIME.lock().await;
    let pods: Api<Pod> = Api::namespaced(client(s).await, "modelsync");
    let pods = pods.list(&ListParams::default()).await.unwrap().items;
    let names: Vec<String> = pods.iter().map(|p| p.name_any()).collect();
    for component in ["modelsync-controller", "modelsync-lambdas"] {
        let pod = pods
            .iter()
            .find(|p| p.name_any().starts_with(component))
            .unwrap_or_else(|| panic!("no {component} pod among {names:?}"));
        let spec = pod.spec.as_ref().unwrap();
        let status = pod.status.as_ref().unwrap();
        let ready = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        assert!(ready, "{component} is not Ready: {status:?}");
        let pod_security = spec.security_context.as_ref().unwrap();
        assert_eq!(pod_security.run_as_non_root, Some(true), "{component}");
        assert_eq!(pod_security.run_as_user, Some(65532), "{component}");
        for c in &spec.containers {
            assert_eq!(
                c.image.as_deref(),
                Some(s.images.modelsync.as_str()),
                "{component}"
            );
            let sc = c.security_context.as_ref().unwrap();
            assert_eq!(sc.read_only_root_filesystem, Some(true), "{component}");
            assert_eq!(sc.allow_privilege_escalation, Some(false), "{component}");
            assert!(
                c.readiness_probe.is_some() && c.liveness_probe.is_some(),
                "{component}"
            );
        }
        for cs in status.container_statuses.iter().flatten() {
            assert!(cs.ready, "{component}/{} not ready", cs.name);
            assert_eq!(cs.restart_count, 0, "{component}/{} restarted", cs.name);
        }
    }
    // `kubectl exec` reaches the container through the API server and the kubelet, as a user
    // debugging the install would.
    let id = kubectl(
        &s.kubeconfig,
        &[
            "exec",
            "-n",
            "modelsync",
            "deploy/modelsync-lambdas",
            "--",
            "/usr/local/bin/modelsync",
            "--version",
        ],
    );
    assert!(id.is_ok(), "exec into the lambda server: {id:?}");

    // Least privilege, asked of the API server as the controller's service account.
    let sa = "system:serviceaccount:modelsync:modelsync-controller";
    let can_sub = |verb: &str, resource: &str, subresource: Option<&str>| {
        let out = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&s.kubeconfig)
            .args(["auth", "can-i", verb, resource, "-A", "--as", sa])
            .args(subresource.map(|s| format!("--subresource={s}")))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    };
    let can = |verb: &str, resource: &str| can_sub(verb, resource, None);
    assert!(can("create", "pipelineruns.tekton.dev"));
    assert!(can_sub("patch", "modelsyncs.modelsync.dev", Some("status")));
    // A ModelSync's lambdaSecretRef is read by name, so `get` is granted; listing or watching
    // would hand the controller every Secret's contents.
    assert!(
        can("get", "secrets"),
        "the controller reads a lambda Secret by name"
    );
    for verb in ["list", "watch"] {
        assert!(
            !can(verb, "secrets"),
            "the controller must not {verb} Secrets"
        );
    }
    assert!(
        !can("create", "pods"),
        "the controller must not create pods"
    );
    assert!(!can("delete", "modelsyncs.modelsync.dev"));
}

#[tokio::test(flavor = "multi_thread")]
async fn label_bot_trains_a_model_opens_a_pr_and_goes_idle_after_the_merge() {
    let s = tokio::task::spawn_blocking(stage).await.unwrap();
    let _turn = ONE_AT_A_TIME.lock().await;
    let client = client(s).await;
    let lb = &s.labelbot;
    let context = || describe(&s.kubeconfig, NAMESPACE);
    // The trainer starts as soon as the stage is set, maybe before this test gets its turn.
    let models_before = lb.seeded_models.clone();

    // The trainer's lambda finds the newest model days old: a real training run.
    let trainer_run = eventually(
        Duration::from_secs(120),
        "the trainer's PipelineRun",
        context,
        || async {
            runs_of(&client, NAMESPACE, TRAINER)
                .await
                .ok()?
                .into_iter()
                .next()
        },
    )
    .await;
    let name = trainer_run.name_any();
    let reason = eventually(
        Duration::from_secs(900),
        &format!("{name} to end"),
        context,
        || async {
            let runs = runs_of(&client, NAMESPACE, TRAINER).await.ok()?;
            ended_reason(run_named(&runs, &name)?)
        },
    )
    .await;
    assert_eq!(reason, "Succeeded", "{name} ended {reason}\n{}", context());

    // papermill ran the notebook and the record was pushed from the pod.
    let models = lb.models().unwrap();
    let new: Vec<&String> = models
        .iter()
        .filter(|m| !models_before.contains(m))
        .collect();
    assert_eq!(
        new.len(),
        1,
        "one new model record expected: before {models_before:?}, after {models:?}"
    );
    let model = new[0].clone();
    let logs = kubectl(
        &s.kubeconfig,
        &[
            "logs",
            "-n",
            NAMESPACE,
            &format!("{name}-train-pod"),
            "-c",
            "step-train",
        ],
    )
    .unwrap_or_else(|e| panic!("kubectl logs of the train step: {e:#}\n{}", context()));
    assert!(
        logs.contains(&format!("trained {model}")),
        "train step log:\n{logs}"
    );

    // The deployer's lambda sees the new model and a real bump-pr run opens the pull request.
    let deploy_run = eventually(
        Duration::from_secs(120),
        &format!("a deploy run for {model}"),
        context,
        || async {
            let runs = runs_of(&client, NAMESPACE, DEPLOYER).await.ok()?;
            runs.into_iter()
                .find(|r| param(r, "model-id") == Some(model.as_str()))
        },
    )
    .await;
    let name = deploy_run.name_any();
    let reason = eventually(
        Duration::from_secs(300),
        &format!("{name} to end"),
        context,
        || async {
            let runs = runs_of(&client, NAMESPACE, DEPLOYER).await.ok()?;
            ended_reason(run_named(&runs, &name)?)
        },
    )
    .await;
    assert_eq!(reason, "Succeeded", "{name} ended {reason}\n{}", context());
    let prs = lb.github.prs();
    assert_eq!(prs.len(), 1, "one pull request expected: {prs:?}");
    assert_eq!(prs[0].head, BRANCH);
    assert_eq!(prs[0].labels, ["model-bump"], "the example's label");
    assert!(prs[0].open);
    let diff = lb.branch_diff().unwrap();
    assert!(
        diff.contains(&format!("+  model: {model}")),
        "branch diff:\n{diff}"
    );

    // A reviewer merges; the deployer's lambda then sees the pin and goes idle.
    let merged = lb.merge(prs[0].number).unwrap();
    assert_eq!(lb.pinned().unwrap(), model);
    let modelsyncs: Api<ModelSync> = Api::namespaced(client.clone(), NAMESPACE);
    eventually(
        Duration::from_secs(120),
        "the deployer to go idle on the merge commit",
        context,
        || async {
            let ms = modelsyncs.get(DEPLOYER).await.ok()?;
            let d = ms.status?.last_decision?;
            (!d.needs_sync && d.revision.as_deref().is_some_and(|r| merged.starts_with(r)))
                .then_some(())
        },
    )
    .await;
    let trainer = modelsyncs.get(TRAINER).await.unwrap();
    let decision = trainer.status.unwrap().last_decision.unwrap();
    assert!(
        !decision.needs_sync,
        "the trainer must be idle with a fresh model: {decision:?}"
    );
    assert_eq!(
        lb.github.prs().len(),
        1,
        "no second pull request after the merge"
    );
}

/// A namespace with a one-step Pipeline `work` in our image: it prints, sleeps `seconds` and
/// exits with `exit-code`.
async fn work_namespace(s: &Stage, prefix: &str) -> (Client, String) {
    let client = client(s).await;
    let ns = modelsync_testenv::namespace(&client, prefix).await.unwrap();
    let pipeline = json!({
        "apiVersion": "tekton.dev/v1", "kind": "Pipeline",
        "metadata": {"name": "work", "namespace": ns},
        "spec": {
            "params": [{"name": "seconds", "default": "0"}, {"name": "exit-code", "default": "0"}, {"name": "tag", "default": ""}],
            "tasks": [{
                "name": "work",
                "params": [
                    {"name": "seconds", "value": "$(params.seconds)"},
                    {"name": "exit-code", "value": "$(params.exit-code)"},
                    {"name": "tag", "value": "$(params.tag)"},
                ],
                "taskSpec": {
                    "params": [{"name": "seconds"}, {"name": "exit-code"}, {"name": "tag"}],
                    "steps": [{
                        "name": "work",
                        "image": s.images.modelsync,
                        "env": [
                            {"name": "SECONDS_TO_WORK", "value": "$(params.seconds)"},
                            {"name": "EXIT_CODE", "value": "$(params.exit-code)"},
                            {"name": "TAG", "value": "$(params.tag)"},
                        ],
                        "script": "#!/usr/bin/env bash\necho \"work ${TAG}: ${SECONDS_TO_WORK}s, then exit ${EXIT_CODE}\"\nsleep \"${SECONDS_TO_WORK}\"\nexit \"${EXIT_CODE}\"\n",
                    }],
                },
            }],
        },
    });
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_string(&pipeline).unwrap()).unwrap();
    kubectl(
        &s.kubeconfig,
        &["apply", "-f", &file.path().to_string_lossy()],
    )
    .unwrap();
    (client, ns)
}

fn work_modelsync(name: &str, url: &str, extra: Value) -> Value {
    let mut body = json!({
        "apiVersion": "modelsync.dev/v1alpha1", "kind": "ModelSync",
        "metadata": {"name": name},
        "spec": {
            "needsSyncUrl": url,
            "pollInterval": "1s",
            "parameters": [
                {"needsSyncName": "seconds", "pipelineName": "seconds"},
                {"needsSyncName": "exit-code", "pipelineName": "exit-code"},
                {"needsSyncName": "tag", "pipelineName": "tag"},
            ],
            "pipelineRunTemplate": {"spec": {"pipelineRef": {"name": "work"}}},
        },
    });
    if let (Some(spec), Value::Object(extra)) = (body["spec"].as_object_mut(), extra) {
        spec.extend(extra);
    }
    body
}

/// A "yes" for the `work` Pipeline: every mapped parameter must be in it (a missing one is an
/// invalid answer, never a run with the template's default).
fn work(seconds: &str, exit_code: &str, tag: &str) -> Value {
    json!({
        "needsSync": true,
        "parameters": {"seconds": seconds, "exit-code": exit_code, "tag": tag},
    })
}

async fn apply(client: &Client, ns: &str, body: Value) {
    let name = body["metadata"]["name"].as_str().unwrap().to_owned();
    Api::<ModelSync>::namespaced(client.clone(), ns)
        .patch(
            &name,
            &PatchParams::apply("node-tests").force(),
            &Patch::Apply(body),
        )
        .await
        .unwrap();
}

async fn runs(client: &Client, ns: &str, ms: &str) -> Vec<DynamicObject> {
    runs_of(client, ns, ms).await.unwrap_or_default()
}

async fn step_pod_running(client: &Client, ns: &str, run: &str) -> Option<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(&format!("tekton.dev/pipelineRun={run}")))
        .await
        .ok()?;
    list.items
        .iter()
        .any(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .then_some(())
}

#[tokio::test(flavor = "multi_thread")]
async fn replace_cancels_the_running_pipelinerun_and_tekton_reports_it_cancelled() {
    let s = tokio::task::spawn_blocking(stage).await.unwrap();
    let _turn = ONE_AT_A_TIME.lock().await;
    let (client, ns) = work_namespace(s, "node-replace").await;
    let logs = tempfile::tempdir().unwrap();
    let lambda = Lambda::start_on(logs.path(), s.bridge_ip).await;
    let context = || describe(&s.kubeconfig, &ns);
    lambda.answer("replace", work("300", "0", "a")).await;
    apply(
        &client,
        &ns,
        work_modelsync(
            "swap",
            &lambda.url("replace"),
            json!({"concurrencyPolicy": "Replace"}),
        ),
    )
    .await;
    let first = eventually(
        Duration::from_secs(120),
        "the first run",
        context,
        || async { runs(&client, &ns, "swap").await.into_iter().next() },
    )
    .await
    .name_any();
    eventually(
        Duration::from_secs(180),
        &format!("{first}'s step running in a pod"),
        context,
        || step_pod_running(&client, &ns, &first),
    )
    .await;

    // New parameters: the controller cancels the real run and starts the next one.
    lambda.answer("replace", work("0", "0", "b")).await;
    let reason = eventually(
        Duration::from_secs(120),
        &format!("{first} to end"),
        context,
        || async { ended_reason(run_named(&runs(&client, &ns, "swap").await, &first)?) },
    )
    .await;
    assert_eq!(
        reason,
        "Cancelled",
        "Tekton's reason for {first}\n{}",
        context()
    );
    let second = eventually(
        Duration::from_secs(120),
        "the replacing run to succeed",
        context,
        || async {
            let all = runs(&client, &ns, "swap").await;
            all.into_iter().find(|r| {
                param(r, "tag") == Some("b") && ended_reason(r).as_deref() == Some("Succeeded")
            })
        },
    )
    .await;
    let all = runs(&client, &ns, "swap").await;
    assert_eq!(
        all.len(),
        2,
        "one cancelled and one replacing run: {:?}",
        all.iter().map(|r| r.name_any()).collect::<Vec<_>>()
    );
    lambda.answer("replace", json!({"needsSync": false})).await;
    let ms = Api::<ModelSync>::namespaced(client.clone(), &ns)
        .get("swap")
        .await
        .unwrap();
    let last = ms.status.unwrap().last_run.unwrap();
    assert_eq!(last.name, second.name_any());
}

#[tokio::test(flavor = "multi_thread")]
async fn history_gc_deletes_real_runs_with_their_taskruns_and_pods() {
    let s = tokio::task::spawn_blocking(stage).await.unwrap();
    let _turn = ONE_AT_A_TIME.lock().await;
    let (client, ns) = work_namespace(s, "node-gc").await;
    let logs = tempfile::tempdir().unwrap();
    let lambda = Lambda::start_on(logs.path(), s.bridge_ip).await;
    let context = || describe(&s.kubeconfig, &ns);
    lambda.answer("gc", work("0", "0", "again")).await;
    let applied = Instant::now();
    apply(
        &client,
        &ns,
        work_modelsync(
            "often",
            &lambda.url("gc"),
            json!({"successfulPipelineRunsHistoryLimit": 1}),
        ),
    )
    .await;
    eventually(
        Duration::from_secs(180),
        "the first run to succeed",
        context,
        || async {
            let all = runs(&client, &ns, "often").await;
            all.iter()
                .any(|r| ended_reason(r).as_deref() == Some("Succeeded"))
                .then_some(())
        },
    )
    .await;
    eprintln!(
        "a ModelSync whose lambda says yes → its one-step PipelineRun Succeeded: {:.1}s (poll 1s)",
        applied.elapsed().as_secs_f64()
    );

    // `kubectl tree modelsync often` walks these owner references: the run is the ModelSync's,
    // Tekton's TaskRun the run's, the step's pod the TaskRun's.
    let tree = tree::owner_tree(&client, &ns, "often").await.unwrap();
    eprintln!("the ownership tree below ModelSync/often:\n{}", tree.draw());
    assert_eq!(
        tree.deepest_kinds(),
        ["ModelSync", "PipelineRun", "TaskRun", "Pod"],
        "every level must name its parent in ownerReferences:\n{}",
        tree.draw()
    );

    // Three runs succeed one after another; the first two are collected.
    let seen = std::sync::Mutex::new(std::collections::BTreeSet::<String>::new());
    eventually(
        Duration::from_secs(300),
        "three succeeded runs",
        context,
        || async {
            for r in runs(&client, &ns, "often").await {
                if ended_reason(&r).as_deref() == Some("Succeeded") {
                    seen.lock().unwrap().insert(r.name_any());
                }
            }
            (seen.lock().unwrap().len() >= 3).then_some(())
        },
    )
    .await;
    lambda.answer("gc", json!({"needsSync": false})).await;
    let seen: Vec<String> = seen.into_inner().unwrap().into_iter().collect();
    let taskruns: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("tekton.dev", "v1", "TaskRun"),
            "taskruns",
        ),
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    eventually(
        Duration::from_secs(120),
        "old runs, their TaskRuns and pods collected",
        context,
        || async {
            let left: Vec<String> = runs(&client, &ns, "often")
                .await
                .iter()
                .map(|r| r.name_any())
                .collect();
            let finished_left = seen.iter().filter(|n| left.contains(n)).count();
            let mut orphans = 0;
            for gone in seen.iter().filter(|n| !left.contains(n)) {
                let selector = format!("tekton.dev/pipelineRun={gone}");
                orphans += taskruns
                    .list(&ListParams::default().labels(&selector))
                    .await
                    .ok()?
                    .items
                    .len();
                orphans += pods
                    .list(&ListParams::default().labels(&selector))
                    .await
                    .ok()?
                    .items
                    .len();
            }
            (finished_left <= 1 && orphans == 0).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_step_fails_the_run_the_modelsync_reports_it_and_kubectl_logs_shows_why() {
    let s = tokio::task::spawn_blocking(stage).await.unwrap();
    let _turn = ONE_AT_A_TIME.lock().await;
    let (client, ns) = work_namespace(s, "node-fail").await;
    let logs = tempfile::tempdir().unwrap();
    let lambda = Lambda::start_on(logs.path(), s.bridge_ip).await;
    let context = || describe(&s.kubeconfig, &ns);
    lambda.answer("fail", work("0", "3", "broken")).await;
    apply(
        &client,
        &ns,
        work_modelsync("breaks", &lambda.url("fail"), json!({})),
    )
    .await;
    let modelsyncs: Api<ModelSync> = Api::namespaced(client.clone(), &ns);
    let last = eventually(
        Duration::from_secs(240),
        "the ModelSync to report a failed run",
        context,
        || async {
            let last = modelsyncs.get("breaks").await.ok()?.status?.last_run?;
            (last.result == modelsync_api::modelsync::RunResult::Failed).then_some(last)
        },
    )
    .await;
    lambda.answer("fail", json!({"needsSync": false})).await;
    let run = run_named(&runs(&client, &ns, "breaks").await, &last.name)
        .cloned()
        .unwrap();
    assert_eq!(ended_reason(&run).as_deref(), Some("Failed"));
    // A user debugs the run the way they would on any cluster.
    let out = kubectl(
        &s.kubeconfig,
        &[
            "logs",
            "-n",
            &ns,
            &format!("{}-work-pod", last.name),
            "-c",
            "step-work",
        ],
    )
    .unwrap_or_else(|e| panic!("kubectl logs: {e:#}\n{}", context()));
    assert!(
        out.contains("work broken: 0s, then exit 3"),
        "step log:\n{out}"
    );
}
