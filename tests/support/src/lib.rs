//! A real local Kubernetes control plane for modelsync's tests and demo.
//!
//! etcd, kube-apiserver and kube-controller-manager are built from published Go modules (see
//! `tests/controlplane/`) and cached outside the repository; `KUBEBUILDER_ASSETS` points at
//! prebuilt ones instead. Tekton's real CRDs are installed, and [`tekton`] plays Tekton's
//! controller by patching run status.
//!
//! [`node`] adds a real node beside the control plane (containerd, kubelet, kube-scheduler,
//! kube-proxy; root and Debian packages needed) so pods run, with [`image`] writing the images
//! they run; `node::shared()` is the node-backed counterpart of [`shared`].
//!
//! Every test, benchmark and the demo share the rest: [`spawn_controller`] starts the real
//! controller, [`git`] runs git and `git daemon`, [`github`] stands in for GitHub's pull request
//! API, and [`process`] ties child processes to the life of the one that started them.
//!
//! [`argocd`] builds the runner that tests Argo CD health checks under gopher-lua; [`helm`]
//! builds Helm, which the chart's tests run.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let cp = modelsync_testenv::shared();
//! let client = cp.client().await?;
//! let ns = modelsync_testenv::namespace(&client, "my-test").await?;
//! # Ok(()) }
//! ```

pub mod argocd;
pub mod binaries;
pub mod cache;
pub mod cargo;
mod certs;
pub mod controller;
pub mod controlplane;
pub mod crds;
pub mod faults;
pub mod git;
pub mod github;
pub mod gitops_repo;
pub mod helm;
pub mod image;
pub mod kubectl;
pub mod labelbot;
pub mod node;
pub mod notify;
pub mod process;
pub mod promtool;
pub mod tekton;
pub mod tekton_real;
pub mod wait;

use std::sync::OnceLock;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};

pub use controller::{Controller, ControllerCommand, spawn_controller};
pub use controlplane::{Component, ControlPlane};

/// Starts a control plane with Tekton's CRDs installed, and `extra_crds` too.
pub async fn start_with_crds(
    extra_crds: &[k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition],
) -> Result<ControlPlane> {
    with_crds(ControlPlane::start().await?, extra_crds).await
}

/// [`start_with_crds`] with etcd's data kept in `etcd_data` between runs
/// ([`ControlPlane::start_keeping_etcd`]).
pub async fn start_with_crds_keeping_etcd(
    extra_crds: &[k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition],
    etcd_data: &std::path::Path,
) -> Result<ControlPlane> {
    with_crds(
        ControlPlane::start_keeping_etcd(etcd_data).await?,
        extra_crds,
    )
    .await
}

async fn with_crds(
    cp: ControlPlane,
    extra_crds: &[k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition],
) -> Result<ControlPlane> {
    let client = cp.client().await?;
    let mut crds = tokio::task::spawn_blocking(crds::tekton_crds).await??;
    crds.extend_from_slice(extra_crds);
    crds::install(&client, &crds).await?;
    Ok(cp)
}

static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();

/// The control plane shared by every test of this test binary, started on first use with
/// Tekton's CRDs installed. Its processes end when the test binary exits, however it exits.
///
/// Panics with the reason when it cannot start: every test needing it would fail anyway.
pub fn shared() -> &'static ControlPlane {
    shared_with_crds(Vec::new)
}

/// Like [`shared`], also installing the CRDs `extra` returns (called once, on first use).
pub fn shared_with_crds(
    extra: impl FnOnce() -> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
    + Send
    + 'static,
) -> &'static ControlPlane {
    let started = SHARED.get_or_init(|| {
        // Tests run on their own runtimes, which end with the test; the control plane (and
        // the client used to install CRDs) must not be tied to any one of them.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(start_with_crds(&extra()))
                .map_err(|e| format!("{e:#}"))
        })
        .join()
        .unwrap_or_else(|_| Err("starting the control plane panicked".to_owned()))
    });
    match started {
        Ok(cp) => cp,
        Err(e) => panic!("the local control plane could not start: {e}"),
    }
}

/// Creates a namespace named `<prefix>-<random suffix>` for one test, and returns its name.
pub async fn namespace(client: &kube::Client, prefix: &str) -> Result<String> {
    let name = format!("{prefix}-{:08x}", rand::random::<u32>());
    if !create_namespace(client, &name).await? {
        bail!("namespace {name} exists already: another test drew the same suffix; run again");
    }
    Ok(name)
}

/// Creates namespace `name`; `false` when it existed already.
pub async fn create_namespace(client: &kube::Client, name: &str) -> Result<bool> {
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        ..Default::default()
    };
    match Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(e) => Err(e).with_context(|| format!("creating namespace {name}")),
    }
}
