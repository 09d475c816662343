//! `modelsync sync NAME --dry-run`: asks the lambda once the way the controller would and shows
//! what it would do, creating nothing and setting no annotation. Nothing here decides on its
//! own: the controller's plan ([`modelsync_controller::plan`]) decides, its lambda client
//! ([`LambdaClients::ask`]) asks, and its template code builds the run, so a dry run cannot
//! drift from what a pass does.

use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use kube::ResourceExt;
use modelsync_api::ModelSync;
use modelsync_api::lambda_client::{CallError, FailureKind};
use modelsync_api::modelsync::{ANNOTATION_REQUESTED_AT, LambdaDecision};
use modelsync_api::run_history;
use modelsync_controller::lambda_clients::LambdaClients;
use modelsync_controller::plan::{self, Answer, AskError, AskLambda, Facts, Now, Plan};
use modelsync_controller::runs::{OwnedRuns, RunRecord};
use modelsync_controller::status::Phase;
use serde::Serialize;

use super::{VerbError, api_error, params_text};
use crate::kube_args::Output;
use crate::verbs::sync::SyncArgs;

/// What a dry run found, as `-o json|yaml` prints it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub namespace: String,
    pub name: String,
    pub lambda_url: String,
    pub decision: Option<LambdaDecision>,
    /// Why no run would start although the lambda said yes, when that is how it should be (a
    /// run is active).
    pub held_back: Option<String>,
    /// Why no run could start: the answer or the template is unusable (exit 1).
    pub problem: Option<String>,
    /// The active run a `Replace` would cancel.
    pub would_cancel: Option<String>,
    /// The PipelineRun the controller would create, exactly as it would send it.
    pub would_create: Option<serde_json::Value>,
}

pub async fn run(args: &SyncArgs) -> Result<(), VerbError> {
    let (ns, api) = args.kube.connect_in(args.namespace.as_deref()).await?;
    let name = &args.name;
    let what = format!("ModelSync {name}");
    let mut ms = api.get(name).await.map_err(|e| api_error(&what, &ns, e))?;
    if let Some(url) = &args.lambda_url {
        ms.spec.needs_sync_url = url.clone();
    }
    let client = api.into_client();
    let runs: Vec<Arc<RunRecord>> = run_history::runs_of(&client, &ms)
        .await
        .map_err(|e| api_error(&format!("listing the runs of {what}"), &ns, e))?
        .iter()
        .map(|r| Arc::new(RunRecord::from(r)))
        .collect();
    // A request as `sync` would make it: the controller's gate then asks the lambda unless
    // the ModelSync is suspended or a run holds it back. The copy is never written anywhere.
    ms.annotations_mut().insert(
        ANNOTATION_REQUESTED_AT.into(),
        format!(
            "dry-run-{}",
            Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
        ),
    );
    let uid = ms.uid().unwrap_or_default();
    let mut facts = Facts {
        modelsync: &ms,
        namespace: &ns,
        name,
        uid: &uid,
        runs,
        schedule: Default::default(),
        now: Now::read(),
        jitter: 0.5,
        answer: None,
    };
    let first = plan::plan(&facts);
    let ask = match (&first.ask, &first.observation.phase) {
        (Some(ask), _) => ask.clone(),
        (None, Phase::Suspended) => {
            return Err(VerbError::Failed(format!(
                "modelsync {ns}/{name} is suspended, so the controller would not ask its lambda; \
                 `modelsync resume {name} -n {ns}` first"
            )));
        }
        // Forbid with a run active: the controller would wait, but the lambda's present answer
        // is what a dry run is for, so it is asked anyway and nothing is shown as started.
        (None, Phase::RunActive(_)) => AskLambda {
            last_run: OwnedRuns::new(facts.runs.clone())
                .newest()
                .map(|r| r.name.clone()),
            timeout: ms.spec.lambda_timeout().map_err(VerbError::Failed)?,
        },
        (None, phase) => {
            return Err(VerbError::Failed(format!(
                "the controller would not ask the lambda of modelsync {ns}/{name}: {}: {}",
                phase.reason(),
                phase.message()
            )));
        }
    };
    let lambdas = LambdaClients::new(client, args.egress.rules());
    let result = lambdas
        .ask(&ms, &ask)
        .await
        .map_err(|e| VerbError::Failed(format!("{e}; is the cluster reachable?")))?;
    if let Err(e) = &result {
        return Err(VerbError::Failed(ask_failed(e, &ms)));
    }
    facts.answer = Some(Answer {
        result,
        at: Now::read(),
    });
    let second = plan::plan(&facts);
    let answer = facts.answer.as_ref().expect("set above");
    let report = report(&ns, &ms, &first, second, answer);
    print!("{}", render(&report, args.output));
    match report.problem {
        Some(why) => Err(VerbError::Failed(why)),
        None => Ok(()),
    }
}

/// What the second plan (the one with the answer) would do. `first` tells whether the lambda
/// was asked only because this is a dry run (a run active under `Forbid`).
fn report(ns: &str, ms: &ModelSync, first: &Plan, second: Plan, answer: &Answer) -> Report {
    let waiting = match (&first.ask, &first.observation.phase) {
        (None, Phase::RunActive(run)) => Some(run.clone()),
        _ => None,
    };
    // A plan that would not have asked records no decision; the answer is still worth showing.
    let decision = second.observation.decision.clone().or_else(|| {
        let a = answer.result.as_ref().ok()?;
        Some(LambdaDecision {
            needs_sync: a.needs_sync,
            parameters: a.parameters.clone(),
            reason: a.reason.clone(),
            revision: a.revision.clone(),
            time: answer.at.wall,
        })
    });
    let mut problem = None;
    let held_back = match (&waiting, &second.observation.phase) {
        (Some(run), _) => Some(format!(
            "run {run} is active and concurrencyPolicy is Forbid: the controller asks the lambda \
             only once it ends"
        )),
        (None, phase @ (Phase::InvalidLambdaResponse(_) | Phase::InvalidTemplate(_))) => {
            problem = Some(format!("{}: {}", phase.reason(), phase.message()));
            None
        }
        (None, Phase::RunActive(run)) if second.create.is_none() => Some(format!(
            "run {run} is active with the same parameters: the controller keeps it"
        )),
        _ => None,
    };
    Report {
        namespace: ns.to_owned(),
        name: ms.name_any(),
        lambda_url: ms.spec.needs_sync_url.clone(),
        decision,
        would_cancel: second.cancel.filter(|_| waiting.is_none()),
        would_create: second
            .create
            .filter(|_| waiting.is_none())
            .map(|run| run.body),
        held_back,
        problem,
    }
}

/// A failed call in the controller's words, plus what to try from outside the cluster.
fn ask_failed(e: &AskError, ms: &ModelSync) -> String {
    let phase = e.phase();
    let mut msg = format!("{}: {}", phase.reason(), phase.message());
    let outside = matches!(
        e,
        AskError::Call(CallError::Unreachable { .. } | CallError::Timeout { .. })
    );
    if outside {
        msg.push_str(&format!(
            "; the lambda is unreachable from here: `modelsync sync --dry-run` runs where you \
             run it, not in the cluster, so a cluster-internal needsSyncUrl (a Service name, a \
             ClusterIP) may answer the controller but not you: `kubectl port-forward` its \
             Service and pass --lambda-url http://127.0.0.1:PORT{}",
            path_of(&ms.spec.needs_sync_url)
        ));
    } else if matches!(e, AskError::Call(c) if c.kind() == FailureKind::Denied) {
        msg.push_str(
            "; --lambda-allow-cidrs / --lambda-deny-cidrs here take the controller's defaults: \
             give the controller's own values to see what it would do",
        );
    }
    msg
}

/// `/needsTrain` of `http://lambdas.ml.svc/needsTrain`, for the hint.
fn path_of(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    after_scheme
        .find('/')
        .map_or(String::new(), |slash| after_scheme[slash..].to_owned())
}

fn render(report: &Report, output: Output) -> String {
    match output {
        Output::Json => serde_json::to_string_pretty(report).expect("reports serialize") + "\n",
        Output::Yaml => serde_yaml_ng::to_string(report).expect("reports serialize"),
        Output::Table => text(report),
    }
}

/// For people: the decision in words, then the run as YAML, ready for `kubectl create -f`.
fn text(r: &Report) -> String {
    let mut out = format!(
        "dry run: nothing is created and no annotation is set\nlambda asked: GET {}\n",
        r.lambda_url
    );
    if let Some(d) = &r.decision {
        let why = d.reason.as_deref().unwrap_or("no reason given");
        let verdict = if d.needs_sync {
            "sync needed"
        } else {
            "no sync needed"
        };
        out.push_str(&format!("decision: {verdict} ({why})\n"));
        if !d.parameters.is_empty() {
            out.push_str(&format!("parameters: {}\n", params_text(&d.parameters)));
        }
        if let Some(rev) = &d.revision {
            out.push_str(&format!("revision: {rev}\n"));
        }
    }
    if let Some(why) = &r.held_back {
        out.push_str(&format!("no run would start: {why}\n"));
    }
    if let Some(run) = &r.would_cancel {
        out.push_str(&format!(
            "would cancel run {run} (concurrencyPolicy Replace, other parameters)\n"
        ));
    }
    if let Some(body) = &r.would_create {
        let name = body["metadata"]["name"].as_str().unwrap_or_default();
        out.push_str(&format!("would create PipelineRun {name}:\n---\n"));
        out.push_str(&serde_yaml_ng::to_string(body).expect("runs serialize"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use modelsync_api::modelsync::RunResult;
    use serde_json::json;

    fn modelsync(policy: &str) -> ModelSync {
        let spec = json!({
            "needsSyncUrl": "http://lambda/retrain",
            "concurrencyPolicy": policy,
            "parameters": [{"needsSyncName": "model", "pipelineName": "model-id"}],
            "pipelineRunTemplate": {"spec": {"pipelineRef": {"name": "train"}}},
        });
        let mut ms = ModelSync::new("m", serde_json::from_value(spec).unwrap());
        ms.metadata.namespace = Some("ns".into());
        ms.metadata.uid = Some("uid-1".into());
        ms.annotations_mut()
            .insert(ANNOTATION_REQUESTED_AT.into(), "dry-run".into());
        ms
    }

    fn active_run(model: &str) -> Arc<RunRecord> {
        Arc::new(RunRecord {
            name: "m-active".into(),
            uid: None,
            created: Some(Utc::now()),
            decided_at: Some(Utc::now()),
            controller_uid: Some("uid-1".into()),
            result: RunResult::Running,
            cancel_requested: false,
            start_time: None,
            completion_time: None,
            parameters: Some(format!(r#"{{"model-id":"{model}"}}"#)),
        })
    }

    /// The two plans a dry run makes, for an answer asking for `model`.
    fn dry_run(ms: &ModelSync, runs: Vec<Arc<RunRecord>>, model: &str) -> Report {
        let mut facts = Facts {
            modelsync: ms,
            namespace: "ns",
            name: "m",
            uid: "uid-1",
            runs,
            schedule: Default::default(),
            now: Now::read(),
            jitter: 0.5,
            answer: None,
        };
        let first = plan::plan(&facts);
        let answer = serde_json::from_value(
            json!({"needsSync": true, "parameters": {"model": model}, "reason": "newer"}),
        )
        .unwrap();
        facts.answer = Some(Answer {
            result: Ok(answer),
            at: Now::read(),
        });
        let second = plan::plan(&facts);
        report("ns", ms, &first, second, facts.answer.as_ref().unwrap())
    }

    #[test]
    fn replace_with_other_parameters_would_cancel_and_create() {
        let r = dry_run(&modelsync("Replace"), vec![active_run("m-1")], "m-2");
        assert_eq!(r.would_cancel.as_deref(), Some("m-active"));
        let run = r.would_create.expect("a run");
        assert_eq!(
            run["spec"]["params"][0],
            json!({"name": "model-id", "value": "m-2"})
        );
        assert_eq!((r.held_back, r.problem), (None, None));
    }

    #[test]
    fn an_active_run_holds_back_a_start_under_forbid_and_the_same_parameters_under_replace() {
        let r = dry_run(&modelsync("Forbid"), vec![active_run("m-1")], "m-2");
        assert!(r.would_create.is_none() && r.would_cancel.is_none());
        assert!(r.held_back.unwrap().contains("concurrencyPolicy is Forbid"));
        assert_eq!(r.decision.unwrap().reason.as_deref(), Some("newer"));

        let r = dry_run(&modelsync("Replace"), vec![active_run("m-1")], "m-1");
        assert!(r.would_create.is_none() && r.would_cancel.is_none());
        assert!(r.held_back.unwrap().contains("same parameters"));
    }

    #[test]
    fn a_yes_without_its_mapped_parameter_is_a_problem() {
        let r = dry_run(&modelsync("Forbid"), vec![], "");
        assert!(r.would_create.is_none());
        assert!(
            r.problem.unwrap().starts_with("InvalidLambdaResponse:"),
            "empty mapped parameter"
        );
    }

    #[test]
    fn the_hint_keeps_the_lambdas_path() {
        assert_eq!(path_of("http://lambdas.ml.svc/needsTrain"), "/needsTrain");
        assert_eq!(path_of("http://10.96.0.7:8080/a/b?x=1"), "/a/b?x=1");
        assert_eq!(path_of("http://lambdas.ml.svc"), "");
    }
}
