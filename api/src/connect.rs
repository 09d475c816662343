//! Which cluster to talk to, chosen like kubectl: `--kubeconfig` and `--context` when given,
//! else `KUBECONFIG` or `~/.kube/config`, else the in-cluster service account. The controller
//! and every `modelsync` verb connect through here, so they pick the same cluster.

use std::path::PathBuf;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// The cluster a command was pointed at.
#[derive(Clone, Debug, Default)]
pub struct KubeTarget {
    /// A kubeconfig file; `None` means `KUBECONFIG`, then `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// A context of that kubeconfig; `None` means its current context.
    pub context: Option<String>,
}

/// Why no client could be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The kubeconfig named with `--kubeconfig` (or found by default) could not be used.
    #[error("{0}; give a readable kubeconfig with --kubeconfig, or set KUBECONFIG")]
    Kubeconfig(#[source] kube::config::KubeconfigError),
    /// The context asked for is not in the kubeconfig, or is incomplete.
    #[error("context {context:?}: {source}; `kubectl config get-contexts` lists the contexts")]
    Context {
        context: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// Neither a kubeconfig nor an in-cluster service account was found.
    #[error("no cluster configured: {0}; give --kubeconfig, set KUBECONFIG, or run inside a pod")]
    Infer(#[source] kube::config::InferConfigError),
    /// The configuration was read but the HTTP client could not be built from it.
    #[error("building the Kubernetes client failed: {0}")]
    Client(#[source] kube::Error),
}

impl KubeTarget {
    /// A client for the chosen cluster.
    pub async fn client(&self) -> Result<Client, ConnectError> {
        let config = match (&self.kubeconfig, &self.context) {
            // Nothing chosen: behave exactly like kube's default, in-cluster fallback included.
            (None, None) => Config::infer().await.map_err(ConnectError::Infer)?,
            (path, context) => {
                let kubeconfig = match path {
                    Some(p) => Kubeconfig::read_from(p),
                    None => Kubeconfig::read(),
                }
                .map_err(ConnectError::Kubeconfig)?;
                let options = KubeConfigOptions {
                    context: context.clone(),
                    ..KubeConfigOptions::default()
                };
                Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .map_err(|source| match context {
                        Some(c) => ConnectError::Context {
                            context: c.clone(),
                            source,
                        },
                        None => ConnectError::Kubeconfig(source),
                    })?
            }
        };
        Client::try_from(config).map_err(ConnectError::Client)
    }
}
