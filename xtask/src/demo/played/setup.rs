//! The played story's first acts: the `modelsync` binary, the control plane, the controller
//! and the two ModelSyncs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use kube::CustomResourceExt;
use kube::api::{Api, Patch, PatchParams};
use modelsync_api::ModelSync;
use modelsync_testenv::ControlPlane;
use modelsync_testenv::controller::{Controller, ControllerCommand, spawn_controller};
use serde_json::{Value, json};

use super::NS;
use crate::demo::narrate::Narrator;

/// The field manager of what the demo applies.
const MANAGER: &str = "modelsync-demo";

/// Builds the `modelsync` binary the demo runs, and returns its path.
pub fn build_modelsync(say: Narrator) -> Result<PathBuf> {
    say.say(
        "build",
        "cargo build -p modelsync (the one binary every component runs)",
    );
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = xtask.parent().unwrap_or(xtask);
    let status = modelsync_testenv::cargo::command()
        .args(["build", "--quiet", "-p", "modelsync"])
        .current_dir(workspace)
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build -p modelsync failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    Ok(target.join("debug/modelsync"))
}

/// etcd, kube-apiserver and kube-controller-manager, with Tekton's CRDs and modelsync's.
pub async fn start_cluster(say: Narrator) -> Result<ControlPlane> {
    say.say(
        "cluster",
        "starting etcd, kube-apiserver, kube-controller-manager (the first run builds them)",
    );
    let cp = modelsync_testenv::start_with_crds(&[ModelSync::crd()]).await?;
    say.say(
        "cluster",
        format!(
            "ready at {}; CRDs: modelsyncs.modelsync.dev and Tekton's tekton.dev/v1\nkubeconfig: {}",
            cp.server(),
            cp.kubeconfig().display()
        ),
    );
    Ok(cp)
}

/// The story's namespace, and the controller (the `modelsync` binary `bin`) watching it, its
/// log in `dir`.
pub async fn start_controller(
    say: Narrator,
    bin: &Path,
    cp: &ControlPlane,
    client: &kube::Client,
    dir: &Path,
) -> Result<Controller> {
    modelsync_testenv::create_namespace(client, NS).await?;
    let controller = spawn_controller(
        ControllerCommand::new(bin, cp.kubeconfig())
            .namespace(NS)
            .env("RUST_LOG", "warn")
            .log_dir(dir),
    )?;
    say.say(
        "controller",
        format!("modelsync controller watching namespace {NS}"),
    );
    Ok(controller)
}

/// The trainer (`/needsTrain` → pipeline `retrain`) and the deployer (`/needsSync` → pipeline
/// `update-model-pr`, passing the lambda's `model`), asking the lambda server at `lambdas`.
/// The trainer tells the receivers `trainer_notify` names.
pub async fn apply_modelsyncs(
    say: Narrator,
    client: &kube::Client,
    lambdas: &str,
    trainer_notify: Value,
) -> Result<()> {
    let mut trainer = modelsync(
        "trainer",
        format!("{lambdas}/needsTrain"),
        "retrain",
        json!([{"name": "notebook-path", "value": "notebooks/train.ipynb"}]),
    );
    trainer["spec"]["notify"] = trainer_notify;
    let mut deployer = modelsync(
        "deployer",
        format!("{lambdas}/needsSync"),
        "update-model-pr",
        json!([{"name": "model-id", "value": ""}]),
    );
    deployer["spec"]["parameters"] =
        json!([{"needsSyncName": "model", "pipelineName": "model-id"}]);
    let modelsyncs: Api<ModelSync> = Api::namespaced(client.clone(), NS);
    for (name, body) in [("trainer", trainer), ("deployer", deployer)] {
        modelsyncs
            .patch(name, &PatchParams::apply(MANAGER), &Patch::Apply(body))
            .await
            .with_context(|| format!("applying ModelSync {name}"))?;
    }
    say.say(
        "kubectl",
        "applied ModelSync trainer (→ pipeline retrain) and deployer (→ pipeline update-model-pr)",
    );
    Ok(())
}

/// A ModelSync asking `needs_sync_url` every 2s, starting `pipeline` with `params` and keeping
/// one finished run, so the story shows the controller collecting one.
fn modelsync(name: &str, needs_sync_url: String, pipeline: &str, params: Value) -> Value {
    json!({
        "apiVersion": "modelsync.dev/v1alpha1", "kind": "ModelSync",
        "metadata": {"name": name},
        "spec": {
            "needsSyncUrl": needs_sync_url,
            "pollInterval": "2s",
            "successfulPipelineRunsHistoryLimit": 1,
            "pipelineRunTemplate": {"spec": {"pipelineRef": {"name": pipeline}, "params": params}},
        },
    })
}
