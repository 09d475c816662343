//! `modelsync sync NAME [--wait]`: sets the `requested-at` annotation so the controller asks
//! the lambda now, and with `--wait` follows what happens until the run ends.

use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use kube::api::{Patch, PatchParams};
use modelsync_api::modelsync::{ANNOTATION_REQUESTED_AT, ConcurrencyPolicy, RunResult};
use modelsync_api::{ModelSync, PipelineRun};
use serde_json::json;

use super::{VerbError, api_error};
use crate::kube_args::{KubeArgs, Output};
use modelsync_controller::EgressArgs;

/// How often `--wait` reads the ModelSync.
const POLL: Duration = Duration::from_millis(250);

/// Ready reasons that mean the lambda was not asked successfully or its answer is unusable.
const FAILED_REASONS: &[&str] = &[
    "LambdaError",
    "InvalidLambdaResponse",
    "LambdaSecretError",
    "LambdaURLDenied",
    "InvalidTemplate",
    "TooManyActiveRuns",
];

/// `modelsync sync`.
#[derive(clap::Args, Clone, Debug)]
pub struct SyncArgs {
    /// The ModelSync.
    pub name: String,
    /// Follow the request: lambda asked, decision, run started, run result. Exits 1 when the
    /// lambda errs or the run fails.
    #[arg(long, conflicts_with = "dry_run")]
    pub wait: bool,
    /// Ask the lambda from here, as the controller would, and print its decision and the
    /// PipelineRun the controller would create; create nothing, set no annotation.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: ask this URL instead of spec.needsSyncUrl, e.g. a `kubectl
    /// port-forward` to a lambda Service that is reachable only inside the cluster.
    #[arg(long, requires = "dry_run")]
    pub lambda_url: Option<String>,
    /// With --dry-run: `table` prints the decision and the run as YAML; `json` and `yaml` one
    /// object with both.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table, requires = "dry_run")]
    pub output: Output,
    /// How long `--wait` follows before giving up (exit 1).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Namespace (default: the context's namespace, else `default`).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub kube: KubeArgs,
    /// With --dry-run, the controller's egress rules (same flags, same defaults).
    #[command(flatten, next_help_heading = "Lambda egress, with --dry-run")]
    pub egress: EgressArgs,
}

pub async fn run(args: SyncArgs) -> Result<(), VerbError> {
    if args.dry_run {
        return super::dry_run::run(&args).await;
    }
    let (ns, api) = args.kube.connect_in(args.namespace.as_deref()).await?;
    let name = &args.name;
    let what = format!("ModelSync {name}");
    let before = api.get(name).await.map_err(|e| api_error(&what, &ns, e))?;
    if before.spec.suspend {
        return Err(VerbError::Failed(format!(
            "modelsync {ns}/{name} is suspended, so its lambda is not asked; \
             `modelsync resume {name} -n {ns}` first"
        )));
    }
    // Microseconds make two requests in the same second different values.
    let requested_at = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"annotations": {ANNOTATION_REQUESTED_AT: requested_at}}}),
        ),
    )
    .await
    .map_err(|e| api_error(&what, &ns, e))?;
    println!("sync requested for modelsync {ns}/{name} ({ANNOTATION_REQUESTED_AT}={requested_at})");
    if !args.wait {
        return Ok(());
    }
    let prev_run = before
        .status
        .as_ref()
        .and_then(|s| s.last_run.as_ref())
        .map(|r| r.name.clone());
    follow(&api, &ns, name, &requested_at, prev_run, args.timeout).await
}

/// Reads the ModelSync until the request is handled and any run it started has ended.
async fn follow(
    api: &kube::Api<ModelSync>,
    ns: &str,
    name: &str,
    requested_at: &str,
    prev_run: Option<String>,
    timeout: Duration,
) -> Result<(), VerbError> {
    let deadline = Instant::now() + timeout;
    let what = format!("ModelSync {name}");
    let mut said_waiting = false;
    let mut asked = false;
    let mut followed: Option<String> = None;
    loop {
        let ms = api.get(name).await.map_err(|e| api_error(&what, ns, e))?;
        let status = ms.status.clone().unwrap_or_default();
        let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
        let active = status.active.first().and_then(|r| r.name.clone());
        if !asked {
            if status.last_handled_requested_at.as_deref() == Some(requested_at) {
                asked = true;
                println!("lambda asked: {}", ms.spec.needs_sync_url);
                if let Some(c) = ready.filter(|c| FAILED_REASONS.contains(&c.reason.as_str())) {
                    return Err(VerbError::Failed(format!(
                        "{}: {}; fix it, then run `modelsync sync {name} -n {ns}` again",
                        c.reason, c.message
                    )));
                }
                let why = status
                    .last_decision
                    .as_ref()
                    .and_then(|d| d.reason.clone())
                    .unwrap_or_else(|| "no reason given".into());
                let new_run = status
                    .last_run
                    .as_ref()
                    .map(|r| r.name.clone())
                    .filter(|r| Some(r) != prev_run.as_ref());
                match new_run.or(active.clone()) {
                    Some(run) => {
                        println!("decision: sync needed ({why})");
                        println!("run started: {run}");
                        followed = Some(run);
                    }
                    None => {
                        println!("decision: no sync needed ({why})");
                        return Ok(());
                    }
                }
            } else if let (Some(run), false, ConcurrencyPolicy::Forbid) =
                (&active, said_waiting, ms.spec.concurrency_policy)
            {
                println!("waiting: run {run} is active, the lambda is asked once it ends");
                said_waiting = true;
            }
        }
        if let Some(run) = &followed {
            let result = status
                .last_run
                .as_ref()
                .filter(|r| &r.name == run)
                .map(|r| r.result);
            match result {
                Some(RunResult::Succeeded) => {
                    println!("run {run} succeeded");
                    return Ok(());
                }
                Some(r @ (RunResult::Failed | RunResult::Cancelled)) => {
                    let verb = if r == RunResult::Failed {
                        "failed"
                    } else {
                        "was cancelled"
                    };
                    return Err(VerbError::Failed(format!(
                        "run {run} {verb}{}; `kubectl describe pipelinerun {run} -n {ns}` shows \
                         its steps",
                        run_message(api, ns, run).await
                    )));
                }
                _ => {}
            }
        }
        if Instant::now() >= deadline {
            let stage = match (&followed, asked) {
                (Some(run), _) => format!("run {run} is still running"),
                (None, true) => "the decision was not recorded".into(),
                (None, false) => {
                    "the controller has not handled the request (is it running?)".into()
                }
            };
            return Err(VerbError::Failed(format!(
                "gave up after {}: {stage}; wait longer with --timeout",
                humantime::format_duration(timeout)
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Tekton's own words for how the run ended (its `Succeeded` condition), as `: <reason>:
/// <message>`; empty when the run is already gone.
async fn run_message(api: &kube::Api<ModelSync>, ns: &str, run: &str) -> String {
    let runs: kube::Api<PipelineRun> = kube::Api::namespaced(api.clone().into_client(), ns);
    let Ok(run) = runs.get(run).await else {
        return String::new();
    };
    run.status
        .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Succeeded"))
        .map(|c| format!(": {}: {}", c.reason, c.message))
        .unwrap_or_default()
}
