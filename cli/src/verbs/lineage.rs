//! `modelsync lineage NAME`: what the deployer ModelSync NAME last pinned and how that model
//! came to be, read from the cluster alone (see `modelsync_api::provenance`).

use modelsync_api::provenance;

use super::{VerbError, api_error, modelsyncs};
use crate::kube_args::{KubeArgs, Output};

/// `modelsync lineage`.
#[derive(clap::Args, Clone, Debug)]
pub struct LineageArgs {
    /// The deployer ModelSync whose last pin is traced.
    pub name: String,
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Namespace (default: the context's namespace, else `default`).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// `table` for people; `json` and `yaml` hold the same facts for scripts.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

pub async fn run(args: LineageArgs) -> Result<(), VerbError> {
    let client = args.kube.client().await?;
    let ns = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    // A name that is not there is a usage error (exit 2), as with the other verbs.
    modelsyncs(&client, Some(&ns))
        .get(&args.name)
        .await
        .map_err(|e| api_error(&format!("ModelSync {}", args.name), &ns, e))?;
    let chain = provenance::fetch(&client, &ns, &args.name)
        .await
        .map_err(VerbError::Failed)?;
    let text = match args.output {
        Output::Table => chain.table(),
        Output::Json => serde_json::to_string_pretty(&chain).expect("provenance serializes") + "\n",
        Output::Yaml => serde_yaml_ng::to_string(&chain).expect("provenance serializes"),
    };
    print!("{text}");
    Ok(())
}
