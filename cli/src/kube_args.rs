//! The flags every verb that talks to the cluster shares, spelled like kubectl's.

use std::path::PathBuf;

use kube::{Api, Client};
use modelsync_api::ModelSync;
use modelsync_api::connect::KubeTarget;

use crate::verbs::{VerbError, modelsyncs};

/// `--kubeconfig` and `--context`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct KubeArgs {
    /// Kubeconfig file (default: KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Context of the kubeconfig to use (default: its current context).
    #[arg(long)]
    pub context: Option<String>,
}

impl KubeArgs {
    pub fn target(&self) -> KubeTarget {
        KubeTarget {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
        }
    }

    pub async fn client(&self) -> Result<Client, VerbError> {
        self.target()
            .client()
            .await
            .map_err(|e| VerbError::Usage(e.to_string()))
    }

    /// The namespace `-n` names (or the context's) and that namespace's ModelSyncs: what a verb
    /// acting on named ModelSyncs starts from.
    pub async fn connect_in(
        &self,
        namespace: Option<&str>,
    ) -> Result<(String, Api<ModelSync>), VerbError> {
        let client = self.client().await?;
        let ns = namespace.map_or_else(|| client.default_namespace().to_owned(), str::to_owned);
        let api = modelsyncs(&client, Some(&ns));
        Ok((ns, api))
    }
}

/// `-n` / `-A`: which namespace a verb reads or changes.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Scope {
    /// Namespace (default: the context's namespace, else `default`).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub all_namespaces: bool,
}

impl Scope {
    /// The namespace to use; `None` with `-A`.
    pub fn namespace(&self, client: &Client) -> Option<String> {
        match (&self.namespace, self.all_namespaces) {
            (_, true) => None,
            (Some(ns), false) => Some(ns.clone()),
            (None, false) => Some(client.default_namespace().to_owned()),
        }
    }
}

/// `--output`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    #[default]
    Table,
    Json,
    Yaml,
}
