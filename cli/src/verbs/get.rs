//! `modelsync get [NAME]`: one line per ModelSync saying whether it is healthy, why, what it
//! runs and when it last succeeded.

use chrono::{DateTime, Utc};
use kube::ResourceExt;
use kube::api::ListParams;
use modelsync_api::ModelSync;
use modelsync_api::modelsync::ConcurrencyPolicy;
use serde::Serialize;

use super::{VerbError, align, api_error, modelsyncs};
use crate::kube_args::{KubeArgs, Output, Scope};

/// `modelsync get`.
#[derive(clap::Args, Clone, Debug)]
pub struct GetArgs {
    /// One ModelSync; without it, all of the namespace.
    pub name: Option<String>,
    #[command(flatten)]
    pub kube: KubeArgs,
    #[command(flatten)]
    pub scope: Scope,
    /// `table` for people; `json` and `yaml` hold the same fields for scripts.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// What one line says.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub namespace: String,
    pub name: String,
    /// The `Ready` condition's status, `Unknown` before the controller wrote any.
    pub ready: String,
    /// The `Ready` condition's reason.
    pub status: String,
    /// The reason the lambda gave for its last decision.
    pub why: Option<String>,
    pub active_run: Option<String>,
    pub last_success: Option<DateTime<Utc>>,
    /// When the lambda is asked next, in words: status records no poll times (it is written
    /// only on change), so this says what the spec and the state imply.
    pub next_poll: String,
}

impl Row {
    pub fn of(ms: &ModelSync) -> Row {
        let status = ms.status.clone().unwrap_or_default();
        let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
        let active_run = status.active.first().and_then(|r| r.name.clone());
        let next_poll = if ms.spec.suspend {
            "never (suspended)".to_owned()
        } else if active_run.is_some() && ms.spec.concurrency_policy == ConcurrencyPolicy::Forbid {
            "after the active run".to_owned()
        } else {
            format!("within {}", ms.spec.poll_interval)
        };
        Row {
            namespace: ms.namespace().unwrap_or_default(),
            name: ms.name_any(),
            ready: ready.map_or("Unknown".into(), |c| c.status.clone()),
            status: ready.map_or("-".into(), |c| c.reason.clone()),
            why: status.last_decision.and_then(|d| d.reason),
            active_run,
            last_success: status.last_successful_run.and_then(|r| r.completion_time),
            next_poll,
        }
    }
}

pub async fn run(args: GetArgs) -> Result<(), VerbError> {
    let client = args.kube.client().await?;
    let ns = args.scope.namespace(&client);
    let api = modelsyncs(&client, ns.as_deref());
    let shown_ns = ns.clone().unwrap_or_else(|| "(all namespaces)".into());
    let items = match &args.name {
        Some(name) => {
            if ns.is_none() {
                return Err(VerbError::Usage(
                    "a NAME needs one namespace: give -n NAMESPACE instead of -A".into(),
                ));
            }
            vec![
                api.get(name)
                    .await
                    .map_err(|e| api_error(&format!("ModelSync {name}"), &shown_ns, e))?,
            ]
        }
        None => {
            api.list(&ListParams::default())
                .await
                .map_err(|e| api_error("listing ModelSyncs", &shown_ns, e))?
                .items
        }
    };
    let rows: Vec<Row> = items.iter().map(Row::of).collect();
    let one = args.name.is_some();
    let text = match args.output {
        Output::Table => table(&rows, ns.is_none(), Utc::now()),
        Output::Json if one => json(&rows[0]),
        Output::Json => json(&rows),
        Output::Yaml if one => yaml(&rows[0]),
        Output::Yaml => yaml(&rows),
    };
    if rows.is_empty() && args.output == Output::Table {
        eprintln!("No ModelSyncs in {shown_ns}.");
    } else {
        print!("{text}");
    }
    Ok(())
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).expect("rows serialize") + "\n"
}

fn yaml<T: Serialize>(v: &T) -> String {
    serde_yaml_ng::to_string(v).expect("rows serialize")
}

/// Aligned columns like kubectl's, with ages instead of timestamps.
pub fn table(rows: &[Row], with_namespace: bool, now: DateTime<Utc>) -> String {
    let mut lines: Vec<Vec<String>> = vec![];
    let mut header = vec![];
    if with_namespace {
        header.push("NAMESPACE");
    }
    header.extend([
        "NAME",
        "READY",
        "STATUS",
        "WHY",
        "ACTIVE RUN",
        "LAST SUCCESS",
        "NEXT POLL",
    ]);
    lines.push(header.into_iter().map(String::from).collect());
    for r in rows {
        let mut line = vec![];
        if with_namespace {
            line.push(r.namespace.clone());
        }
        line.extend([
            r.name.clone(),
            r.ready.clone(),
            r.status.clone(),
            r.why.clone().unwrap_or_else(|| "-".into()),
            r.active_run.clone().unwrap_or_else(|| "-".into()),
            r.last_success
                .map_or("-".into(), |t| format!("{} ago", age(now - t))),
            r.next_poll.clone(),
        ]);
        lines.push(line);
    }
    align(&lines)
}

/// `45s`, `12m`, `3h`, `2d`: the largest unit, as kubectl's AGE column.
pub fn age(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        7200..172800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}
