//! The Label Bot example on a real node: modelsync installed from `kustomize/` with the local
//! image, the repository's Tekton Tasks and Pipelines run by the real Tekton, a GitOps
//! repository served by `git daemon`, and a stand-in for GitHub's pull request API, both on the
//! node's bridge address so that pods reach them. Shared by the real-node tests and the demo.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::git::GitDaemon;
use crate::github::GitHub;
use crate::gitops_repo::{GitOpsRepo, model_ids};
use crate::kubectl::{kubectl, relative_path};
use crate::tekton::{pipelineruns, succeeded_condition};

/// Where the example's resources live.
pub const NAMESPACE: &str = "label-bot";
pub const TRAINER: &str = "label-bot-trainer";
pub const DEPLOYER: &str = "label-bot-deployer";
/// The deployer's one pull request branch.
pub const BRANCH: &str = "modelsync/label-bot-deployer";
const REPO_NAME: &str = "label-bot-gitops.git";
const PIN_FILE: &str = "manifests/model-config.yaml";

/// The images the example's pods run, already imported into the node.
pub struct Images {
    /// The `modelsync` image, as `kustomize/overlays/local-image` names it.
    pub modelsync: String,
    /// The notebook training image (papermill, nbconvert, ipykernel preinstalled).
    pub python: String,
}

/// The example, set up and running.
pub struct LabelBot {
    pub kubeconfig: PathBuf,
    pub github: GitHub,
    pub github_api: String,
    /// `git://…` of the GitOps repository, as pods reach it.
    pub repo_url: String,
    /// The GitOps repository on disk.
    pub repo: GitOpsRepo,
    /// The model records the repository was seeded with (from `examples/gitops-repo`).
    pub seeded_models: Vec<String>,
    _daemon: GitDaemon,
    _dir: tempfile::TempDir,
}

/// The repository root (for `kustomize/`, `tekton/` and `examples/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root exists")
}

impl LabelBot {
    /// Seeds and serves the GitOps repository, starts the GitHub stand-in, installs modelsync
    /// (controller and lambda server as pods), applies `tekton/` into the example's namespace and
    /// the two ModelSyncs. `lambda_host` is how pods reach the lambda Service (its ClusterIP:
    /// the node runs no cluster DNS).
    pub async fn start(
        client: &Client,
        kubeconfig: &Path,
        bridge_ip: IpAddr,
        images: &Images,
        say: &dyn Fn(&str),
    ) -> Result<LabelBot> {
        let dir = tempfile::Builder::new()
            .prefix("modelsync-labelbot-")
            .tempdir()?;
        let root = repo_root();
        let repos = dir.path().join("repos");
        std::fs::create_dir_all(&repos)?;
        let repo = seed(
            &root.join("examples/gitops-repo"),
            &repos.join(REPO_NAME),
            &dir.path().join("work"),
        )?;
        let daemon = GitDaemon::start(&repos, bridge_ip, &dir.path().join("git-daemon.log"))?;
        let repo_url = daemon.url(REPO_NAME);
        say(&format!(
            "GitOps repository (examples/gitops-repo) served at {repo_url}; production pins {}",
            pinned(repo.main()?)?
        ));
        let (github, github_api) = GitHub::start_on(bridge_ip).await?;
        say(&format!("GitHub pull request API stand-in at {github_api}"));

        install_modelsync(kubeconfig, dir.path(), &root, &repo_url).await?;
        wait_deployments(kubeconfig, "modelsync", Duration::from_secs(180)).await?;
        say(
            "modelsync installed from kustomize/overlays/local-image: controller and lambda server pods Ready",
        );

        kubectl(kubeconfig, &["create", "namespace", NAMESPACE])?;
        let tekton_dir = root.join("tekton");
        kubectl(
            kubeconfig,
            &[
                "apply",
                "-n",
                NAMESPACE,
                "-k",
                &tekton_dir.to_string_lossy(),
            ],
        )
        .context("applying tekton/ (Tasks and Pipelines) through Tekton's admission webhook")?;
        kubectl(
            kubeconfig,
            &[
                "apply",
                "-f",
                &root
                    .join("examples/label-bot/pipeline-serviceaccount.yaml")
                    .to_string_lossy(),
            ],
        )?;
        let token = dir.path().join("github-token");
        std::fs::write(&token, "local-stand-in-token\n")?;
        kubectl(
            kubeconfig,
            &[
                "create",
                "secret",
                "generic",
                "github-token",
                "-n",
                NAMESPACE,
                &format!("--from-file=token={}", token.display()),
            ],
        )?;
        say("tekton/ applied to namespace label-bot (accepted by Tekton's admission webhook)");

        let lambda_ip = service_ip(kubeconfig, "modelsync", "modelsync-lambdas")?;
        let lambdas = format!("http://{lambda_ip}");
        let api: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            NAMESPACE,
            &kube::api::ApiResource::from_gvk_with_plural(
                &kube::api::GroupVersionKind::gvk("modelsync.dev", "v1alpha1", "ModelSync"),
                "modelsyncs",
            ),
        );
        for body in [
            trainer(&root, &lambdas, &repo_url, &images.python)?,
            deployer(&root, &lambdas, &repo_url, &images.modelsync, &github_api)?,
        ] {
            let name = body["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            api.patch(
                &name,
                &PatchParams::apply("modelsync-labelbot").force(),
                &Patch::Apply(body),
            )
            .await
            .with_context(|| format!("applying ModelSync {name}"))?;
        }
        say(&format!(
            "applied examples/label-bot trainer and deployer (lambdas at {lambdas}, the Service's ClusterIP)"
        ));
        Ok(LabelBot {
            kubeconfig: kubeconfig.to_owned(),
            github,
            github_api,
            repo_url,
            seeded_models: repo.models()?,
            repo,
            _daemon: daemon,
            _dir: dir,
        })
    }

    /// The model ids recorded under `models/` on main, oldest first by name.
    pub fn models(&self) -> Result<Vec<String>> {
        self.repo.models()
    }

    /// The model production pins on main.
    pub fn pinned(&self) -> Result<String> {
        pinned(self.repo.main()?)
    }

    /// Merges the deployer's branch into main and marks PR `number` merged, as a reviewer would;
    /// returns the merge commit.
    pub fn merge(&self, number: u64) -> Result<String> {
        let merged = self.repo.merge(BRANCH)?;
        self.github.mark_merged(number);
        Ok(merged)
    }

    /// The one-line change the deployer's branch makes to the pin file.
    pub fn branch_diff(&self) -> Result<String> {
        self.repo.branch_diff(BRANCH, PIN_FILE)
    }
}

/// Copies the example repository, pins production to its newest model (so the deployer has
/// nothing to do until a new model is trained) and publishes it as a new bare repository.
fn seed(example: &Path, bare: &Path, work: &Path) -> Result<GitOpsRepo> {
    copy_tree(example, work)?;
    let models = model_ids(work)?;
    let newest = models
        .last()
        .context("examples/gitops-repo/models is empty")?;
    let pin = work.join(PIN_FILE);
    let text = std::fs::read_to_string(&pin)?;
    let current = pinned(work)?;
    std::fs::write(
        &pin,
        text.replace(&format!("model: {current}"), &format!("model: {newest}")),
    )?;
    GitOpsRepo::publish(
        work,
        bare,
        "Label Bot: data, notebook, models, production pin",
    )
}

fn pinned(work: &Path) -> Result<String> {
    let text = std::fs::read_to_string(work.join(PIN_FILE))?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("model: "))
        .map(|v| v.split('#').next().unwrap_or(v).trim().to_owned())
        .with_context(|| format!("{PIN_FILE} has no `model:` line"))
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// `kubectl apply -k` of an overlay of `kustomize/overlays/local-image` whose lambda server
/// mirrors our repository every second.
async fn install_modelsync(kubeconfig: &Path, dir: &Path, root: &Path, repo: &str) -> Result<()> {
    let install = dir.join("install");
    std::fs::create_dir_all(&install)?;
    let overlay = relative_path(&install, &root.join("kustomize/overlays/local-image"));
    std::fs::write(
        install.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- {overlay}
configMapGenerator:
- name: modelsync-lambdas-config
  namespace: modelsync
  behavior: replace
  files:
  - lambdas.yaml
"
        ),
    )?;
    let example =
        std::fs::read_to_string(root.join("examples/label-bot/modelsync-install/lambdas.yaml"))?;
    let config = example
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("repo:") {
                format!("  repo: {repo}")
            } else if l.trim_start().starts_with("period:") {
                "  period: 1s".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(install.join("lambdas.yaml"), config + "\n")?;
    kubectl(
        kubeconfig,
        &["apply", "--server-side", "-k", &install.to_string_lossy()],
    )
    .context("installing modelsync with kubectl apply -k")?;
    Ok(())
}

/// Waits until every Deployment of `namespace` is Available, naming the ones that are not.
pub async fn wait_deployments(kubeconfig: &Path, namespace: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let out = kubectl(
            kubeconfig,
            &[
                "get",
                "deployments",
                "-n",
                namespace,
                "-o",
                "jsonpath={range .items[*]}{.metadata.name}={.status.availableReplicas}/{.spec.replicas}{\"\\n\"}{end}",
            ],
        )?;
        let waiting: Vec<&str> = out
            .lines()
            .filter(|l| {
                let (_, counts) = l.split_once('=').unwrap_or((l, ""));
                let (have, want) = counts.split_once('/').unwrap_or(("", "1"));
                have != want
            })
            .collect();
        if !out.trim().is_empty() && waiting.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let pods = kubectl(kubeconfig, &["get", "pods", "-n", namespace, "-o", "wide"])
                .unwrap_or_default();
            let events = kubectl(
                kubeconfig,
                &["get", "events", "-n", namespace, "--sort-by=.lastTimestamp"],
            )
            .unwrap_or_default();
            let names = kubectl(kubeconfig, &["get", "pods", "-n", namespace, "-o", "name"])
                .unwrap_or_default();
            let logs: String = names
                .lines()
                .map(|pod| {
                    let tail = kubectl(
                        kubeconfig,
                        &[
                            "logs",
                            "-n",
                            namespace,
                            pod,
                            "--all-containers",
                            "--tail=15",
                        ],
                    )
                    .unwrap_or_else(|e| format!("{e:#}"));
                    format!("$ kubectl logs -n {namespace} {pod} --tail=15\n{tail}\n")
                })
                .collect();
            bail!(
                "Deployments in {namespace} not Available after {}s: {waiting:?}\n{pods}\n{events}\n{logs}",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn service_ip(kubeconfig: &Path, namespace: &str, name: &str) -> Result<String> {
    let ip = kubectl(
        kubeconfig,
        &[
            "get",
            "service",
            name,
            "-n",
            namespace,
            "-o",
            "jsonpath={.spec.clusterIP}",
        ],
    )?;
    Ok(ip.trim().to_owned())
}

/// The example's trainer, pointed at our repository, image and lambda, polling every 2s, with
/// its output kept in an emptyDir workspace instead of a bucket.
fn trainer(root: &Path, lambdas: &str, repo: &str, image: &str) -> Result<Value> {
    let mut ms = example(root, "trainer.yaml")?;
    ms["spec"]["needsSyncUrl"] = json!(format!("{lambdas}/needsTrain"));
    ms["spec"]["pollInterval"] = json!("2s");
    let spec = &mut ms["spec"]["pipelineRunTemplate"]["spec"];
    set_param(spec, "repo", repo);
    set_param(spec, "output", "runs");
    set_param(spec, "python-image", image);
    spec["workspaces"] = json!([
        {"name": "source", "emptyDir": {}},
        {"name": "output", "emptyDir": {}},
    ]);
    Ok(ms)
}

fn deployer(
    root: &Path,
    lambdas: &str,
    repo: &str,
    image: &str,
    github_api: &str,
) -> Result<Value> {
    let mut ms = example(root, "deployer.yaml")?;
    ms["spec"]["needsSyncUrl"] = json!(format!("{lambdas}/needsSync"));
    ms["spec"]["pollInterval"] = json!("2s");
    let spec = &mut ms["spec"]["pipelineRunTemplate"]["spec"];
    set_param(spec, "repo", repo);
    set_param(spec, "github-api", github_api);
    // The repository is served from this machine, so its GitHub name cannot be read from it.
    set_param(spec, "github-repo", "kubeflow/label-bot-gitops");
    set_param(spec, "modelsync-image", image);
    Ok(ms)
}

fn example(root: &Path, file: &str) -> Result<Value> {
    let path = root.join("examples/label-bot").join(file);
    let text = std::fs::read_to_string(&path)?;
    serde_yaml_ng::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Sets (or adds) a string param of a PipelineRun spec.
fn set_param(spec: &mut Value, name: &str, value: &str) {
    let params = spec["params"].as_array_mut();
    let Some(params) = params else {
        spec["params"] = json!([{"name": name, "value": value}]);
        return;
    };
    match params.iter_mut().find(|p| p["name"] == name) {
        Some(p) => p["value"] = json!(value),
        None => params.push(json!({"name": name, "value": value})),
    }
}

/// The runs of one ModelSync, oldest first.
pub async fn runs_of(
    client: &Client,
    namespace: &str,
    modelsync: &str,
) -> Result<Vec<DynamicObject>> {
    let mut runs = pipelineruns(client, namespace)
        .list(&ListParams::default().labels(&format!("modelsync.dev/name={modelsync}")))
        .await?
        .items;
    runs.sort_by_key(|r| r.creation_timestamp());
    Ok(runs)
}

/// `Succeeded`, `Failed`, `Cancelled`… once a run has ended; `None` while it runs.
pub fn ended_reason(run: &DynamicObject) -> Option<String> {
    let (status, reason) = succeeded_condition(run)?;
    (status != "Unknown").then_some(reason)
}
