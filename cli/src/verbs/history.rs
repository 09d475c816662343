//! `modelsync history NAME`: a ModelSync's decisions and runs, newest first. Runs that still
//! exist tell their own story (the decision annotations the controller wrote on them, their
//! result, their Pipeline results); collected runs are read from the Events the controller
//! recorded when it deleted them; a decision that started no run only from `lastDecision`.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, SubsecRound, Utc};
use k8s_openapi::api::core::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use modelsync_api::lambda::ParamValue;
use modelsync_api::modelsync::{LambdaDecision, RunResult};
use modelsync_api::run_history::{self, Collected, REASON_RUN_COLLECTED, RunDecision};
use modelsync_api::{ModelSync, PipelineRun};
use serde::Serialize;

use super::{VerbError, align, api_error, params_text};
use crate::kube_args::{KubeArgs, Output};
use crate::verbs::get::age;

/// What history cannot show, said with every table so nobody reads an absence as "never".
pub const NOT_KEPT: &str = "not kept: decisions that started no run, except the last one \
    (status.lastDecision); runs collected longer ago than the API server keeps Events (its \
    --event-ttl, 1h by default); runs deleted by hand";

/// `modelsync history`.
#[derive(clap::Args, Clone, Debug)]
pub struct HistoryArgs {
    /// The ModelSync.
    pub name: String,
    /// Namespace (default: the context's namespace, else `default`).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub kube: KubeArgs,
    /// At most this many entries, the newest.
    #[arg(long)]
    pub limit: Option<usize>,
    /// `table` for people; `json` and `yaml` hold the same fields, with exact times.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Where an entry comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Kind {
    /// A run that still exists.
    Run,
    /// A run the controller garbage-collected (from its Event).
    Collected,
    /// The last decision, which started no run.
    Decision,
}

/// One decision, and the run it started if it started one.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub kind: Kind,
    pub run: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    pub revision: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, ParamValue>,
    /// `Running`, `Succeeded`, `Failed` or `Cancelled`; `NoRun` for a decision alone.
    pub result: String,
    /// Tekton's message when a run failed or was cancelled.
    pub message: Option<String>,
    pub start_time: Option<DateTime<Utc>>,
    pub completion_time: Option<DateTime<Utc>>,
    pub duration_seconds: Option<i64>,
    pub pr_url: Option<String>,
    pub pr_number: Option<String>,
    pub collected_at: Option<DateTime<Utc>>,
}

impl Entry {
    fn of_run(run: &PipelineRun) -> Entry {
        let d = RunDecision::of(run);
        let status = run.status.as_ref();
        let result = run.result();
        let pr = run_history::pull_request(run);
        let start = status.and_then(|s| s.start_time);
        let end = status.and_then(|s| s.completion_time);
        Entry {
            kind: Kind::Run,
            run: Some(run.name_any()),
            decided_at: run_history::decided_or_created(run),
            reason: d.reason,
            revision: d.revision,
            parameters: d.parameters,
            result: format!("{result:?}"),
            message: status
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Succeeded"))
                .filter(|_| matches!(result, RunResult::Failed | RunResult::Cancelled))
                .map(|c| c.message.clone()),
            start_time: start,
            completion_time: end,
            duration_seconds: start.zip(end).map(|(s, e)| (e - s).num_seconds()),
            pr_url: pr.as_ref().map(|p| p.0.clone()),
            pr_number: pr.and_then(|p| p.1),
            collected_at: None,
        }
    }
}

/// Newest first: the runs that exist, the collected ones (once each, and not when the run is
/// in fact still there) and the last decision when no run carries it.
pub fn entries(
    runs: &[PipelineRun],
    collected: &[(Collected, Option<DateTime<Utc>>)],
    last_decision: Option<&LambdaDecision>,
) -> Vec<Entry> {
    let mut out: Vec<Entry> = runs.iter().map(Entry::of_run).collect();
    let mut seen: HashSet<String> = out.iter().filter_map(|e| e.run.clone()).collect();
    for (c, at) in collected {
        if !seen.insert(c.run.clone()) {
            continue;
        }
        out.push(Entry {
            kind: Kind::Collected,
            run: Some(c.run.clone()),
            decided_at: c.decided_at,
            reason: None,
            revision: None,
            parameters: BTreeMap::new(),
            result: format!("{:?}", c.result),
            message: None,
            start_time: None,
            completion_time: None,
            duration_seconds: None,
            pr_url: None,
            pr_number: None,
            collected_at: *at,
        });
    }
    out.sort_by(|a, b| (b.decided_at, &b.run).cmp(&(a.decided_at, &a.run)));
    if let Some(d) = last_decision {
        // Status keeps the decision's time in whole seconds; a run's annotation keeps
        // microseconds of the same instant.
        let started_a_run = d.needs_sync
            && out.iter().any(|e| {
                e.decided_at
                    .is_some_and(|t| t.trunc_subsecs(0) == d.time.trunc_subsecs(0))
            });
        if !started_a_run {
            // The last decision is the newest: any decision after it would have replaced it.
            // Sorting by its time could put it below a run of the same second.
            out.insert(
                0,
                Entry {
                    kind: Kind::Decision,
                    run: None,
                    decided_at: Some(d.time),
                    reason: d.reason.clone(),
                    revision: d.revision.clone(),
                    parameters: d.parameters.clone(),
                    result: "NoRun".into(),
                    message: None,
                    start_time: None,
                    completion_time: None,
                    duration_seconds: None,
                    pr_url: None,
                    pr_number: None,
                    collected_at: None,
                },
            );
        }
    }
    out
}

pub async fn run(args: HistoryArgs) -> Result<(), VerbError> {
    let (ns, api) = args.kube.connect_in(args.namespace.as_deref()).await?;
    let name = &args.name;
    let what = format!("ModelSync {name}");
    let ms = api.get(name).await.map_err(|e| api_error(&what, &ns, e))?;
    let client = api.into_client();
    let runs = run_history::runs_of(&client, &ms)
        .await
        .map_err(|e| api_error(&format!("listing the runs of {what}"), &ns, e))?;
    let collected = match collected_runs(&client, &ns, &ms).await {
        Ok(c) => c,
        Err(e) => {
            // The runs still tell most of the story; say what is missing and go on.
            eprintln!(
                "warning: reading the Events of {what} failed ({e}); collected runs are not shown"
            );
            vec![]
        }
    };
    let last = ms.status.as_ref().and_then(|s| s.last_decision.as_ref());
    let mut list = entries(&runs, &collected, last);
    if let Some(limit) = args.limit {
        list.truncate(limit);
    }
    let text = match args.output {
        Output::Json => serde_json::to_string_pretty(&list).expect("entries serialize") + "\n",
        Output::Yaml => serde_yaml_ng::to_string(&list).expect("entries serialize"),
        Output::Table => table(&list, Utc::now()),
    };
    print!("{text}");
    if args.output == Output::Table {
        if list.is_empty() {
            eprintln!("No decisions or runs recorded for {what} in {ns}.");
        }
        eprintln!("{NOT_KEPT}");
    }
    Ok(())
}

/// The runs the controller recorded as collected, with when it collected them.
async fn collected_runs(
    client: &kube::Client,
    ns: &str,
    ms: &ModelSync,
) -> Result<Vec<(Collected, Option<DateTime<Utc>>)>, kube::Error> {
    let uid = ms.uid().unwrap_or_default();
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let selector = format!("involvedObject.uid={uid},reason={REASON_RUN_COLLECTED}");
    let list = events
        .list(&ListParams::default().fields(&selector))
        .await?;
    Ok(list
        .items
        .iter()
        .filter_map(|e| {
            let c = Collected::parse(e.message.as_deref()?)?;
            let at = e
                .event_time
                .as_ref()
                .map(|t| t.0)
                .or(e.last_timestamp.as_ref().map(|t| t.0))
                .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0))
                .and_then(|t| {
                    DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond() as u32)
                });
            Some((c, at))
        })
        .collect())
}

/// RUN, DECIDED, REASON, PARAMETERS, RESULT, STARTED, DURATION, PR: ages instead of times.
pub fn table(entries: &[Entry], now: DateTime<Utc>) -> String {
    let dash = || "-".to_owned();
    let ago = |t: Option<DateTime<Utc>>| t.map_or_else(dash, |t| format!("{} ago", age(now - t)));
    let mut lines = vec![
        [
            "RUN",
            "DECIDED",
            "REASON",
            "PARAMETERS",
            "RESULT",
            "STARTED",
            "DURATION",
            "PR",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for e in entries {
        let result = match e.kind {
            Kind::Run => e.result.clone(),
            Kind::Collected => format!("{} (collected {})", e.result, ago(e.collected_at)),
            Kind::Decision => "no run".into(),
        };
        let pr = match (&e.pr_url, &e.pr_number) {
            (Some(url), _) => url.clone(),
            (None, Some(n)) => format!("#{n}"),
            (None, None) => dash(),
        };
        lines.push(vec![
            e.run.clone().unwrap_or_else(dash),
            ago(e.decided_at),
            e.reason.clone().unwrap_or_else(dash),
            if e.parameters.is_empty() {
                dash()
            } else {
                params_text(&e.parameters)
            },
            result,
            ago(e.start_time),
            e.duration_seconds.map_or_else(dash, |s| format!("{s}s")),
            pr,
        ]);
    }
    align(&lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use modelsync_api::modelsync::{ANNOTATION_DECIDED_AT, ANNOTATION_REASON};
    use modelsync_api::pipelinerun::PipelineRunSpec;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn run(name: &str, decided: &str) -> PipelineRun {
        let mut r = PipelineRun::new(name, PipelineRunSpec::default());
        r.annotations_mut().extend([
            (ANNOTATION_DECIDED_AT.to_owned(), decided.to_owned()),
            (ANNOTATION_REASON.to_owned(), format!("why {name}")),
        ]);
        r
    }

    fn decision(needs_sync: bool, time: &str) -> LambdaDecision {
        LambdaDecision {
            needs_sync,
            parameters: BTreeMap::new(),
            reason: Some("up to date".into()),
            revision: None,
            time: t(time),
        }
    }

    #[test]
    fn runs_collected_runs_and_a_lone_decision_come_newest_first() {
        let runs = [
            run("r-2", "2026-11-27T12:00:02.000001Z"),
            run("r-3", "2026-11-27T12:00:03Z"),
        ];
        let collected = [
            (
                Collected {
                    run: "r-1".into(),
                    result: RunResult::Succeeded,
                    decided_at: Some(t("2026-11-27T12:00:01Z")),
                },
                Some(t("2026-11-27T12:00:05Z")),
            ),
            // A second Event for a run still there (deletion seen late) adds nothing.
            (
                Collected {
                    run: "r-2".into(),
                    result: RunResult::Failed,
                    decided_at: None,
                },
                None,
            ),
        ];
        let lone = decision(false, "2026-11-27T12:00:04Z");
        let list = entries(&runs, &collected, Some(&lone));
        let order: Vec<_> = list.iter().map(|e| (e.kind, e.run.clone())).collect();
        assert_eq!(
            order,
            [
                (Kind::Decision, None),
                (Kind::Run, Some("r-3".into())),
                (Kind::Run, Some("r-2".into())),
                (Kind::Collected, Some("r-1".into())),
            ]
        );
        assert_eq!(list[2].reason.as_deref(), Some("why r-2"));
        let text = table(&list, t("2026-11-27T12:01:05Z"));
        assert!(text.contains("Succeeded (collected 60s ago)"), "{text}");
        assert!(text.contains("no run"), "{text}");
    }

    #[test]
    fn the_last_decision_is_not_repeated_when_a_run_carries_it() {
        let runs = [run("r-1", "2026-11-27T12:00:01.123456Z")];
        // Status keeps whole seconds; the annotation microseconds.
        let carried = decision(true, "2026-11-27T12:00:01Z");
        assert_eq!(entries(&runs, &[], Some(&carried)).len(), 1);
        let later = decision(true, "2026-11-27T12:00:09Z");
        assert_eq!(entries(&runs, &[], Some(&later)).len(), 2);
        // A "no" in the same second as a run came after it, and is shown first.
        let no = decision(false, "2026-11-27T12:00:01Z");
        let list = entries(&runs, &[], Some(&no));
        assert_eq!(list[0].kind, Kind::Decision);
        assert_eq!(list[1].kind, Kind::Run);
    }
}
