//! The real Tekton Pipelines on the real node: built from its module, installed from its own
//! `config/`, running PipelineRuns of real containers to Succeeded, Failed and Cancelled.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams,
};
use kube::{Api, Client};
use modelsync_testenv::tekton::{pipelineruns, succeeded_condition};
use modelsync_testenv::tekton_real::{self, Installed};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

/// The shared node's kubeconfig and containerd socket.
fn cluster() -> (PathBuf, PathBuf) {
    let node = modelsync_testenv::node::shared();
    (
        node.kubeconfig().to_path_buf(),
        node.containerd_socket().to_path_buf(),
    )
}

static INSTALLED: OnceCell<Result<Installed, String>> = OnceCell::const_new();

/// Tekton installed once for every test of this binary.
async fn tekton() -> (Client, &'static Installed) {
    let (kubeconfig, socket) = cluster();
    let installed = INSTALLED
        .get_or_init(|| async {
            let installed = tekton_real::install(&kubeconfig, &socket)
                .await
                .map_err(|e| format!("{e:#}"))?;
            eprintln!(
                "Tekton {} ready {:.1}s after the call ({:.1}s after apply, {} images imported)",
                installed.version,
                installed.took.as_secs_f64(),
                installed.ready_after_apply.as_secs_f64(),
                installed.imported
            );
            Ok(installed)
        })
        .await;
    let installed = match installed {
        Ok(i) => i,
        Err(e) => panic!("installing the real Tekton failed: {e}"),
    };
    (
        modelsync_testenv::node::shared().client().await.unwrap(),
        installed,
    )
}

fn kubeconfig() -> PathBuf {
    cluster().0
}

/// A PipelineRun of one embedded Task with one step running `script` in the shell image.
fn one_step_run(name: &str, script: &str) -> DynamicObject {
    let mut run = DynamicObject::new(name, &modelsync_testenv::tekton::pipelinerun_resource());
    run.data = json!({ "spec": { "pipelineSpec": { "tasks": [{
        "name": "only",
        "taskSpec": { "steps": [{
            "name": "main",
            "image": tekton_real::shell_image(),
            // By command: without one Tekton would ask a registry for the image's entrypoint.
            "command": ["sh", "-c", script],
        }]},
    }]}}});
    run
}

/// Polls until the run's `Succeeded` condition is final; returns (status, reason, elapsed).
async fn wait_done(
    client: &Client,
    ns: &str,
    name: &str,
    limit: Duration,
) -> (String, String, Duration) {
    let started = Instant::now();
    let runs = pipelineruns(client, ns);
    loop {
        let run = runs.get(name).await.unwrap();
        if let Some((status, reason)) = succeeded_condition(&run)
            && status != "Unknown"
        {
            return (status, reason, started.elapsed());
        }
        assert!(
            started.elapsed() < limit,
            "PipelineRun {ns}/{name} not done after {limit:?}: {}",
            serde_json::to_string_pretty(&run.data["status"]).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn taskrun_api(client: &Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("tekton.dev", "v1", "TaskRun");
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk(&gvk))
}

fn kubectl(args: &[&str]) -> (bool, String) {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig())
        .args(args)
        .output()
        .expect("running kubectl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn images_are_built_for_every_program_the_install_names() {
    let built = tekton_real::build_cached().unwrap();
    let names: Vec<&str> = built.images.iter().map(|i| i.name.as_str()).collect();
    for command in [
        "controller",
        "webhook",
        "entrypoint",
        "nop",
        "workingdirinit",
        "sidecarlogresults",
        tekton_real::SHELL,
    ] {
        let name = tekton_real::image_name(command);
        assert!(
            names.contains(&name.as_str()),
            "{name} missing from {names:?}"
        );
    }
    for image in &built.images {
        let size = std::fs::metadata(&image.tar).unwrap().len();
        assert!(
            size > 100_000,
            "{} is only {size} bytes",
            image.tar.display()
        );
    }
}

#[tokio::test]
async fn one_step_run_succeeds_and_its_step_logs_are_readable() {
    let (client, _) = tekton().await;
    let ns = modelsync_testenv::namespace(&client, "tekton-ok")
        .await
        .unwrap();
    let runs = pipelineruns(&client, &ns);
    let mut took = Vec::new();
    for i in 0..5 {
        let name = format!("hello-{i}");
        runs.create(
            &PostParams::default(),
            &one_step_run(&name, "echo hello from modelsync"),
        )
        .await
        .unwrap();
        let (status, reason, elapsed) =
            wait_done(&client, &ns, &name, Duration::from_secs(120)).await;
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("True", "Succeeded"),
            "{name}"
        );
        took.push(elapsed);
    }
    took.sort();
    eprintln!(
        "one-step PipelineRun create -> Succeeded: median {:.2}s (of {:?})",
        took[took.len() / 2].as_secs_f64(),
        took.iter()
            .map(|d| format!("{:.2}s", d.as_secs_f64()))
            .collect::<Vec<_>>()
    );

    // `kubectl logs` of the step container, as a user debugging a run would.
    let taskruns = taskrun_api(&client, &ns);
    let listed = taskruns
        .list(&ListParams::default().labels("tekton.dev/pipelineRun=hello-0"))
        .await
        .unwrap();
    let pod = listed.items[0].data["status"]["podName"]
        .as_str()
        .unwrap()
        .to_owned();
    let (ok, logs) = kubectl(&["-n", &ns, "logs", &pod, "-c", "step-main"]);
    assert!(ok, "kubectl logs failed: {logs}");
    assert!(logs.contains("hello from modelsync"), "{logs}");
}

#[tokio::test]
async fn failing_step_fails_the_run() {
    let (client, _) = tekton().await;
    let ns = modelsync_testenv::namespace(&client, "tekton-fail")
        .await
        .unwrap();
    pipelineruns(&client, &ns)
        .create(
            &PostParams::default(),
            &one_step_run("broken", "echo about to fail; exit 3"),
        )
        .await
        .unwrap();
    let (status, reason, elapsed) =
        wait_done(&client, &ns, "broken", Duration::from_secs(120)).await;
    assert_eq!((status.as_str(), reason.as_str()), ("False", "Failed"));
    eprintln!(
        "failing one-step PipelineRun: Failed {:.2}s after create",
        elapsed.as_secs_f64()
    );
}

#[tokio::test]
async fn cancelling_a_running_run_gives_cancelled() {
    let (client, _) = tekton().await;
    let ns = modelsync_testenv::namespace(&client, "tekton-cancel")
        .await
        .unwrap();
    let runs = pipelineruns(&client, &ns);
    runs.create(&PostParams::default(), &one_step_run("long", "sleep 300"))
        .await
        .unwrap();
    // Cancel only once the step really runs, so Tekton must stop a live pod.
    let started = Instant::now();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    while !step_running(&pods, "long").await {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the step never ran"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    runs.patch(
        "long",
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "status": "Cancelled" } })),
    )
    .await
    .unwrap();
    let (status, reason, elapsed) = wait_done(&client, &ns, "long", Duration::from_secs(60)).await;
    assert_eq!((status.as_str(), reason.as_str()), ("False", "Cancelled"));
    // The run's status alone proves little: the step's container must really stop.
    let cancelled_at = Instant::now();
    while step_running(&pods, "long").await {
        assert!(
            cancelled_at.elapsed() < Duration::from_secs(60),
            "the step still runs a minute after its run was Cancelled"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "spec.status Cancelled -> run Cancelled in {:.2}s, step stopped {:.2}s later",
        elapsed.as_secs_f64(),
        cancelled_at.elapsed().as_secs_f64()
    );
}

/// Whether a pod of the run has its `main` step's container running.
async fn step_running(pods: &Api<Pod>, run: &str) -> bool {
    let selector = format!("tekton.dev/pipelineRun={run}");
    pods.list(&ListParams::default().labels(&selector))
        .await
        .unwrap()
        .items
        .iter()
        .any(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c.name == "step-main"
                            && c.state.as_ref().is_some_and(|s| s.running.is_some())
                    })
                })
        })
}

#[tokio::test]
async fn deleting_a_run_deletes_its_taskruns_and_pods() {
    let (client, _) = tekton().await;
    let ns = modelsync_testenv::namespace(&client, "tekton-gc")
        .await
        .unwrap();
    let runs = pipelineruns(&client, &ns);
    runs.create(&PostParams::default(), &one_step_run("done", "true"))
        .await
        .unwrap();
    let (status, _, _) = wait_done(&client, &ns, "done", Duration::from_secs(120)).await;
    assert_eq!(status, "True");
    let selector = ListParams::default().labels("tekton.dev/pipelineRun=done");
    let taskruns = taskrun_api(&client, &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    assert_eq!(taskruns.list(&selector).await.unwrap().items.len(), 1);
    assert_eq!(pods.list(&selector).await.unwrap().items.len(), 1);

    runs.delete("done", &DeleteParams::background())
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let left_taskruns = taskruns.list(&selector).await.unwrap().items.len();
        let left_pods = pods.list(&selector).await.unwrap().items.len();
        if left_taskruns == 0 && left_pods == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{left_taskruns} TaskRuns and {left_pods} pods outlived their PipelineRun"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn v1beta1_tasks_are_converted_to_v1() {
    let (client, _) = tekton().await;
    let ns = modelsync_testenv::namespace(&client, "tekton-conv")
        .await
        .unwrap();
    let beta = GroupVersionKind::gvk("tekton.dev", "v1beta1", "Task");
    let beta: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &ApiResource::from_gvk(&beta));
    let mut task = DynamicObject::new(
        "old-style",
        &ApiResource::from_gvk(&GroupVersionKind::gvk("tekton.dev", "v1beta1", "Task")),
    );
    task.data = json!({ "spec": {
        "params": [{ "name": "who", "type": "string", "default": "world" }],
        "steps": [{
            "name": "greet",
            "image": tekton_real::shell_image(),
            "command": ["echo"],
            "args": ["hello $(params.who)"],
        }],
    }});
    beta.create(&PostParams::default(), &task).await.unwrap();

    let v1 = GroupVersionKind::gvk("tekton.dev", "v1", "Task");
    let v1: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &ApiResource::from_gvk(&v1));
    let read = v1.get("old-style").await.unwrap();
    assert_eq!(read.types.unwrap().api_version, "tekton.dev/v1");
    assert_eq!(read.data["spec"]["steps"][0]["name"], "greet");
    assert_eq!(read.data["spec"]["params"][0]["default"], "world");
}

#[tokio::test]
async fn the_repository_tasks_and_pipelines_pass_the_admission_webhook() {
    let (client, _) = tekton().await;
    let ns = modelsync_testenv::namespace(&client, "tekton-repo")
        .await
        .unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tekton");
    let (ok, out) = kubectl(&["apply", "-n", &ns, "-k", &dir.to_string_lossy()]);
    assert!(ok, "kubectl apply -k tekton/ was refused: {out}");

    let (ok, out) = kubectl(&[
        "get",
        "-n",
        &ns,
        "tasks.tekton.dev,pipelines.tekton.dev",
        "-o",
        "name",
    ]);
    assert!(ok, "{out}");
    for expected in [
        "task.tekton.dev/train-notebook",
        "task.tekton.dev/bump-model-pr",
        "pipeline.tekton.dev/retrain",
        "pipeline.tekton.dev/update-model-pr",
    ] {
        assert!(out.contains(expected), "{expected} not applied: {out}");
    }
}

#[tokio::test]
async fn tekton_pods_memory() {
    let (client, _) = tekton().await;
    let node = Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items[0]
        .metadata
        .name
        .clone()
        .unwrap();
    // The kubelet's summary, through the API server, like `kubectl top` without metrics-server.
    let (ok, out) = kubectl(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{node}/proxy/stats/summary"),
    ]);
    assert!(ok, "reading the kubelet's summary failed: {out}");
    let summary: Value = serde_json::from_str(&out).unwrap();
    let mut total = 0;
    for pod in summary["pods"].as_array().unwrap() {
        if pod["podRef"]["namespace"] == tekton_real::NAMESPACE {
            let bytes = pod["memory"]["workingSetBytes"].as_u64().unwrap_or(0);
            total += bytes;
            eprintln!(
                "{}: {} MB working set",
                pod["podRef"]["name"].as_str().unwrap_or_default(),
                bytes / 1_000_000
            );
        }
    }
    eprintln!("Tekton's pods: {} MB working set in all", total / 1_000_000);
    assert!(total > 0, "no memory figures for Tekton's pods: {summary}");
}

#[tokio::test]
async fn installing_again_reuses_the_images_and_returns_at_once() {
    let (_, first) = tekton().await;
    let (kubeconfig, socket) = cluster();
    let again = tekton_real::install(&kubeconfig, &socket).await.unwrap();
    assert_eq!(
        again.imported, 0,
        "images already in the node were imported again"
    );
    assert_eq!(again.images, first.images);
    assert!(
        again.ready_after_apply < Duration::from_secs(30),
        "a ready Tekton took {:?} to answer again",
        again.ready_after_apply
    );
    eprintln!("installing again: {:.1}s", again.took.as_secs_f64());
}

#[tokio::test]
async fn script_steps_working_dirs_and_results_work() {
    let (client, _) = tekton().await;
    let ns = modelsync_testenv::namespace(&client, "tekton-script")
        .await
        .unwrap();
    let mut run = DynamicObject::new(
        "scripted",
        &modelsync_testenv::tekton::pipelinerun_resource(),
    );
    // `script:` goes through the shell image's place-scripts init container, `workingDir`
    // through workingdirinit, and the result through the entrypoint's termination message.
    run.data = json!({ "spec": {
        "pipelineSpec": {
            "tasks": [{
                "name": "only",
                "taskSpec": {
                    "results": [{ "name": "greeting" }],
                    "steps": [{
                        "name": "main",
                        "image": tekton_real::shell_image(),
                        "workingDir": "/workspace/deep/er",
                        "script": "#!/bin/sh\nset -e\npwd\nprintf hi > $(results.greeting.path)\n",
                    }],
                },
            }],
            "results": [{ "name": "greeting", "value": "$(tasks.only.results.greeting)" }],
        },
    }});
    pipelineruns(&client, &ns)
        .create(&PostParams::default(), &run)
        .await
        .unwrap();
    let (status, reason, _) = wait_done(&client, &ns, "scripted", Duration::from_secs(120)).await;
    let done = pipelineruns(&client, &ns).get("scripted").await.unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "Succeeded"),
        "{}",
        serde_json::to_string_pretty(&done.data["status"]).unwrap()
    );
    assert_eq!(done.data["status"]["results"][0]["value"], "hi");
    let taskrun = taskrun_api(&client, &ns)
        .list(&ListParams::default().labels("tekton.dev/pipelineRun=scripted"))
        .await
        .unwrap()
        .items
        .remove(0);
    let pod = taskrun.data["status"]["podName"]
        .as_str()
        .unwrap()
        .to_owned();
    let (ok, logs) = kubectl(&["-n", &ns, "logs", &pod, "-c", "step-main"]);
    assert!(ok, "kubectl logs failed: {logs}");
    assert!(logs.contains("/workspace/deep/er"), "{logs}");
}
