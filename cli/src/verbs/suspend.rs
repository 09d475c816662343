//! `modelsync suspend` / `resume`: set `spec.suspend`, one ModelSync or all of a namespace.
//! Suspending stops lambda calls and new runs; a running run continues.

use kube::ResourceExt;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;

use super::{VerbError, api_error};
use crate::kube_args::KubeArgs;

/// `modelsync suspend` and `modelsync resume`.
#[derive(clap::Args, Clone, Debug)]
pub struct SuspendArgs {
    /// The ModelSync; or `--all`.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub name: Option<String>,
    /// Every ModelSync of the namespace.
    #[arg(long)]
    pub all: bool,
    /// Namespace (default: the context's namespace, else `default`).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// Sets `spec.suspend` to `suspend`, printing one line per ModelSync.
pub async fn run(args: SuspendArgs, suspend: bool) -> Result<(), VerbError> {
    let (ns, api) = args.kube.connect_in(args.namespace.as_deref()).await?;
    let names = match &args.name {
        Some(name) => vec![name.clone()],
        None => api
            .list(&ListParams::default())
            .await
            .map_err(|e| api_error("listing ModelSyncs", &ns, e))?
            .items
            .iter()
            .map(|m| m.name_any())
            .collect(),
    };
    if names.is_empty() {
        println!("No ModelSyncs in {ns}.");
    }
    let word = if suspend { "suspended" } else { "resumed" };
    for name in names {
        let what = format!("ModelSync {name}");
        let before = api.get(&name).await.map_err(|e| api_error(&what, &ns, e))?;
        if before.spec.suspend == suspend {
            println!("modelsync {ns}/{name} already {word}");
            continue;
        }
        // A merge patch of the one field: other writers' changes to the spec stay.
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": suspend}})),
        )
        .await
        .map_err(|e| api_error(&what, &ns, e))?;
        println!("modelsync {ns}/{name} {word}");
    }
    Ok(())
}
