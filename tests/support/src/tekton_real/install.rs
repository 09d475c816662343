//! Importing Tekton's images into the node and installing it in the cluster, then waiting until
//! its controller runs and its admission and conversion webhooks answer.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use serde_json::{Value, json};

use super::build::{Built, build_cached};
use super::{VERSION, manifests};
use crate::binaries::{fmt_elapsed, progress};
use crate::crds::tekton_module_dir;

/// Where the release installs Tekton.
pub const NAMESPACE: &str = "tekton-pipelines";

const DEPLOYMENTS: &[&str] = &["tekton-pipelines-controller", "tekton-pipelines-webhook"];

/// How long Tekton may take from apply to ready: a cold start takes about half a minute on 2
/// cores; the rest is room for a machine busy with other builds.
const READY_TIMEOUT: Duration = Duration::from_secs(240);

/// A Tekton installed and ready: both Deployments Available, an invalid Task rejected by the
/// admission webhook, and a v1beta1 Task converted by the conversion webhook.
#[derive(Clone, Debug)]
pub struct Installed {
    pub version: &'static str,
    pub namespace: &'static str,
    /// Every image imported into the node: Tekton's programs and the shell image.
    pub images: Vec<String>,
    /// How many of them this call imported (0 when the node had them all already).
    pub imported: usize,
    /// From the call to ready, the build included when it was not cached.
    pub took: Duration,
    /// From `kubectl apply` to ready.
    pub ready_after_apply: Duration,
}

/// Builds Tekton (cached), imports its images into the node's containerd, installs it in the
/// cluster of `kubeconfig` and waits until it is ready. Calling it again on a cluster that has
/// it re-applies the same objects and returns as soon as Tekton answers.
pub async fn install(kubeconfig: &Path, containerd_socket: &Path) -> Result<Installed> {
    let started = Instant::now();
    let built = tokio::task::spawn_blocking(build_cached)
        .await
        .context("the Tekton build panicked")??;
    let images: Vec<String> = built.images.iter().map(|i| i.name.clone()).collect();
    let socket = containerd_socket.to_path_buf();
    let imported = tokio::task::spawn_blocking(move || import_missing(&built, &socket))
        .await
        .context("importing Tekton's images panicked")??;

    let module = tokio::task::spawn_blocking(tekton_module_dir)
        .await
        .context("finding Tekton's module panicked")??;
    let stream = manifests::to_yaml_stream(&manifests::render(&module)?)?;
    let applied_at = Instant::now();
    let config = kubeconfig.to_path_buf();
    tokio::task::spawn_blocking(move || kubectl_apply(&config, &stream))
        .await
        .context("kubectl apply panicked")??;
    progress(&format!(
        "tekton: {VERSION} applied; waiting for its controller and webhooks"
    ));

    let client = client(kubeconfig).await?;
    wait_ready(&client, kubeconfig).await?;
    let installed = Installed {
        version: VERSION,
        namespace: NAMESPACE,
        images,
        imported,
        took: started.elapsed(),
        ready_after_apply: applied_at.elapsed(),
    };
    progress(&format!(
        "tekton: {VERSION} ready in {} ({} after apply, {} images imported)",
        fmt_elapsed(installed.took),
        fmt_elapsed(installed.ready_after_apply),
        installed.imported
    ));
    Ok(installed)
}

/// A client for the cluster of `kubeconfig`.
pub(crate) async fn client(kubeconfig: &Path) -> Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading kubeconfig {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("using kubeconfig {}", kubeconfig.display()))?;
    Ok(Client::try_from(config)?)
}

/// Imports the images containerd does not hold yet (by name and digest); returns how many.
fn import_missing(built: &Built, socket: &Path) -> Result<usize> {
    let present = images_in_containerd(socket)?;
    let started = Instant::now();
    let mut imported = 0;
    for image in &built.images {
        let digest = manifest_digest(&image.tar)?;
        if present.get(&image.name) == Some(&digest) {
            continue;
        }
        crate::image::import(socket, &image.tar)
            .with_context(|| format!("importing {} into the node", image.name))?;
        imported += 1;
    }
    if imported > 0 {
        progress(&format!(
            "tekton: imported {imported} images into containerd in {}",
            fmt_elapsed(started.elapsed())
        ));
    }
    Ok(imported)
}

/// Image name to the digest of its manifest, in containerd's `k8s.io` namespace.
fn images_in_containerd(socket: &Path) -> Result<HashMap<String, String>> {
    let out = Command::new("ctr")
        .arg("--address")
        .arg(socket)
        .args(["-n", "k8s.io", "images", "ls"])
        .output()
        .context(
            "running `ctr images ls`: install containerd with `apt-get install -y containerd \
             runc containernetworking-plugins iptables conntrack`",
        )?;
    if !out.status.success() {
        bail!(
            "`ctr --address {} -n k8s.io images ls` failed ({}): {}; is the node's containerd \
             running?",
            socket.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(parse_ctr_images(&String::from_utf8_lossy(&out.stdout)))
}

fn parse_ctr_images(listing: &str) -> HashMap<String, String> {
    listing
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut cols = line.split_whitespace();
            let name = cols.next()?;
            let _kind = cols.next()?;
            Some((name.to_owned(), cols.next()?.to_owned()))
        })
        .collect()
}

/// The digest of the one manifest in an image tar written by `image::oci`.
fn manifest_digest(tar: &Path) -> Result<String> {
    let file = File::open(tar).with_context(|| format!("opening {}", tar.display()))?;
    for entry in tar::Archive::new(file).entries()? {
        let mut entry = entry?;
        if entry.path()?.as_os_str() == "index.json" {
            let mut text = String::new();
            entry.read_to_string(&mut text)?;
            let index: Value = serde_json::from_str(&text)?;
            if let Some(digest) = index["manifests"][0]["digest"].as_str() {
                return Ok(digest.to_owned());
            }
            break;
        }
    }
    bail!("{} has no OCI index naming a manifest", tar.display())
}

fn kubectl_apply(kubeconfig: &Path, stream: &str) -> Result<()> {
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args([
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=modelsync-testenv",
            "-f",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context(
            "running kubectl to install Tekton: install kubectl (the Kubernetes command-line \
             client) and put it on PATH",
        )?;
    let mut stdin = child.stdin.take().context("kubectl's stdin")?;
    let input = stream.to_owned();
    // Written from a thread so a large stream cannot dead-lock against kubectl's output.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output()?;
    let _ = writer.join();
    if !out.status.success() {
        bail!(
            "`kubectl --kubeconfig {} apply --server-side -f -` of Tekton's config failed ({}):\n{}",
            kubeconfig.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Waits until both Deployments are Available and both webhooks answer as Tekton would.
async fn wait_ready(client: &Client, kubeconfig: &Path) -> Result<()> {
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut pending;
    loop {
        pending = match readiness(client).await {
            Ok(None) => return Ok(()),
            Ok(Some(why)) => why,
            Err(e) => format!("{e:#}"),
        };
        if started.elapsed() > READY_TIMEOUT {
            break;
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            progress(&format!(
                "tekton: {} elapsed, waiting: {pending}",
                fmt_elapsed(started.elapsed())
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let pods = describe_pods(client)
        .await
        .unwrap_or_else(|e| format!("{e:#}"));
    bail!(
        "Tekton {VERSION} was not ready {} after it was applied: {pending}\npods in {NAMESPACE}:\n\
         {pods}\nsee `kubectl --kubeconfig {} -n {NAMESPACE} logs deploy/tekton-pipelines-webhook` \
         (and deploy/tekton-pipelines-controller)",
        fmt_elapsed(started.elapsed()),
        kubeconfig.display()
    )
}

/// `None` when ready, otherwise what is still missing.
async fn readiness(client: &Client) -> Result<Option<String>> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    for name in DEPLOYMENTS {
        let available = deployments
            .get_opt(name)
            .await?
            .and_then(|d| d.status)
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Available" && c.status == "True");
        if !available {
            return Ok(Some(format!("Deployment {name} is not Available yet")));
        }
    }
    // Until the webhook has registered its rules, the API server accepts anything: only a
    // rejection proves the admission webhook is live.
    match dry_run_task(client, "v1", invalid_task()).await {
        Ok(()) => {
            return Ok(Some(
                "the admission webhook does not reject invalid Tasks yet".into(),
            ));
        }
        Err(kube::Error::Api(status)) if status.message.contains("denied the request") => {}
        Err(e) => return Ok(Some(format!("admission webhook: {e}"))),
    }
    if let Err(e) = dry_run_task(client, "v1", valid_task()).await {
        return Ok(Some(format!("a valid v1 Task is refused: {e}")));
    }
    // Tasks are stored as v1: a v1beta1 create goes through the conversion webhook both ways.
    if let Err(e) = dry_run_task(client, "v1beta1", valid_task()).await {
        return Ok(Some(format!("conversion webhook: {e}")));
    }
    Ok(None)
}

fn task_api(client: &Client, version: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("tekton.dev", version, "Task");
    Api::namespaced_with(client.clone(), NAMESPACE, &ApiResource::from_gvk(&gvk))
}

async fn dry_run_task(client: &Client, version: &str, spec: Value) -> Result<(), kube::Error> {
    let object = json!({
        "apiVersion": format!("tekton.dev/{version}"),
        "kind": "Task",
        "metadata": { "name": "modelsync-readiness-probe" },
        "spec": spec,
    });
    let object: DynamicObject = serde_json::from_value(object).map_err(kube::Error::SerdeError)?;
    let params = PostParams {
        dry_run: true,
        ..Default::default()
    };
    task_api(client, version).create(&params, &object).await?;
    Ok(())
}

fn valid_task() -> Value {
    json!({ "steps": [{ "name": "probe", "image": super::shell_image(), "command": ["true"] }] })
}

/// Invalid for Tekton's webhook only (a step with both `script` and `command`); the CRD schema
/// accepts it, so its rejection can only come from the webhook.
fn invalid_task() -> Value {
    json!({ "steps": [{
        "name": "probe", "image": super::shell_image(), "command": ["true"], "script": "true",
    }] })
}

async fn describe_pods(client: &Client) -> Result<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let mut out = String::new();
    for pod in pods.list(&ListParams::default()).await? {
        let name = pod.metadata.name.unwrap_or_default();
        let status = pod.status.unwrap_or_default();
        out.push_str(&format!(
            "  {name}: {}",
            status.phase.unwrap_or_else(|| "no phase".into())
        ));
        for c in status.container_statuses.unwrap_or_default() {
            let state = c.state.unwrap_or_default();
            let detail = if let Some(w) = state.waiting {
                format!(
                    "waiting {} {}",
                    w.reason.unwrap_or_default(),
                    w.message.unwrap_or_default()
                )
            } else if let Some(t) = state.terminated {
                format!(
                    "terminated {} {}",
                    t.reason.unwrap_or_default(),
                    t.message.unwrap_or_default()
                )
            } else {
                "running".into()
            };
            out.push_str(&format!(
                "; {}: {detail}, ready {}, restarts {}",
                c.name, c.ready, c.restart_count
            ));
        }
        out.push('\n');
    }
    if out.is_empty() {
        out.push_str("  (none: is a node Ready and the scheduler running?)\n");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ctr_listing() {
        let listing = "REF TYPE DIGEST SIZE PLATFORMS LABELS\n\
            modelsync.local/tekton-nop:v1.6.0 application/vnd.oci.image.manifest.v1+json \
            sha256:abc 1.2 MiB linux/amd64 -\n";
        let images = parse_ctr_images(listing);
        assert_eq!(images["modelsync.local/tekton-nop:v1.6.0"], "sha256:abc");
        assert_eq!(images.len(), 1);
    }
}
