//! A ModelSync's runs read after the fact: the decision each run was started for (the
//! annotations the controller writes on it), how it ended, the pull request a deploy run
//! opened, and the runs the controller garbage-collected (an Event on the ModelSync each, since
//! the run itself is gone). `modelsync history` reads these; so can `modelsync lineage`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kube::api::{Api, ListParams};
use kube::{Resource, ResourceExt};

use crate::lambda::ParamValue;
use crate::modelsync::{
    ANNOTATION_DECIDED_AT, ANNOTATION_PARAMETERS, ANNOTATION_REASON, ANNOTATION_REVISION,
    LABEL_NAME, RunResult,
};
use crate::{ModelSync, PipelineRun};

/// The Pipeline result holding the URL of the pull request a deploy run opened or updated.
pub const RESULT_PR_URL: &str = "pr-url";
/// The Pipeline result holding that pull request's number.
pub const RESULT_PR_NUMBER: &str = "pr-number";
/// The reason of the Event the controller records on a ModelSync for each run it collects.
pub const REASON_RUN_COLLECTED: &str = "RunCollected";

/// Why a run exists, as the controller annotated it when it decided to start it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunDecision {
    pub decided_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    pub revision: Option<String>,
    /// The pipeline params the answer set (after `spec.parameters` mapped them).
    pub parameters: BTreeMap<String, ParamValue>,
}

impl RunDecision {
    /// Read from a run's annotations; a run made by hand has none, and gets an empty decision.
    pub fn of(run: &PipelineRun) -> RunDecision {
        let annotation = |key: &str| run.annotations().get(key).cloned();
        RunDecision {
            decided_at: annotation(ANNOTATION_DECIDED_AT)
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.to_utc()),
            reason: annotation(ANNOTATION_REASON),
            revision: annotation(ANNOTATION_REVISION),
            parameters: annotation(ANNOTATION_PARAMETERS)
                .and_then(|p| serde_json::from_str(&p).ok())
                .unwrap_or_default(),
        }
    }
}

/// The pull request a deploy run reported in its Pipeline results, if it reported one.
pub fn pull_request(run: &PipelineRun) -> Option<(String, Option<String>)> {
    let url = run.result_str(RESULT_PR_URL)?.to_owned();
    let number = run.result_str(RESULT_PR_NUMBER).map(str::to_owned);
    Some((url, number))
}

/// Whether `ms` is the run's controlling owner: a run someone else labelled with the
/// ModelSync's name is not one of its runs.
pub fn owned_by(run: &PipelineRun, ms: &ModelSync) -> bool {
    let Some(uid) = ms.meta().uid.as_deref() else {
        return false;
    };
    run.owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}

/// When a run was decided, else created: the order the controller itself keeps runs in.
pub fn decided_or_created(run: &PipelineRun) -> Option<DateTime<Utc>> {
    RunDecision::of(run).decided_at.or_else(|| {
        let t = run.metadata.creation_timestamp.as_ref()?;
        DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond() as u32)
    })
}

/// The runs `ms` owns that still exist, newest first.
pub async fn runs_of(
    client: &kube::Client,
    ms: &ModelSync,
) -> Result<Vec<PipelineRun>, kube::Error> {
    let ns = ms.namespace().unwrap_or_default();
    let api: Api<PipelineRun> = Api::namespaced(client.clone(), &ns);
    let selector = format!("{LABEL_NAME}={}", ms.name_any());
    let mut runs: Vec<PipelineRun> = api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .filter(|r| owned_by(r, ms))
        .collect();
    runs.sort_by_key(|r| std::cmp::Reverse((decided_or_created(r), r.name_any())));
    Ok(runs)
}

/// What the controller records about a run it garbage-collected: the Event's note, written by
/// [`Collected::note`] and read back by [`Collected::parse`], so the two cannot drift apart.
#[derive(Clone, Debug, PartialEq)]
pub struct Collected {
    pub run: String,
    pub result: RunResult,
    pub decided_at: Option<DateTime<Utc>>,
}

const NOTE_PREFIX: &str = "PipelineRun ";
const NOTE_COLLECTED: &str = " garbage-collected: result ";
const NOTE_DECIDED: &str = ", decided at ";
const UNKNOWN: &str = "unknown";

impl Collected {
    /// `PipelineRun NAME garbage-collected: result Succeeded, decided at TIME, beyond
    /// spec.successfulPipelineRunsHistoryLimit`.
    pub fn note(&self) -> String {
        let decided = self.decided_at.map_or(UNKNOWN.to_owned(), |t| {
            t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        });
        let limit = match self.result {
            RunResult::Succeeded => "successfulPipelineRunsHistoryLimit",
            _ => "failedPipelineRunsHistoryLimit",
        };
        format!(
            "{NOTE_PREFIX}{}{NOTE_COLLECTED}{:?}{NOTE_DECIDED}{decided}, beyond spec.{limit}",
            self.run, self.result
        )
    }

    /// The record in a note [`Collected::note`] wrote; `None` for any other text.
    pub fn parse(note: &str) -> Option<Collected> {
        let (run, rest) = note.strip_prefix(NOTE_PREFIX)?.split_once(NOTE_COLLECTED)?;
        let (result, rest) = rest.split_once(NOTE_DECIDED)?;
        let result = match result {
            "Succeeded" => RunResult::Succeeded,
            "Failed" => RunResult::Failed,
            "Cancelled" => RunResult::Cancelled,
            "Running" => RunResult::Running,
            _ => return None,
        };
        let decided = rest.split(',').next()?;
        let decided_at = match decided {
            UNKNOWN => None,
            t => Some(DateTime::parse_from_rfc3339(t).ok()?.to_utc()),
        };
        Some(Collected {
            run: run.to_owned(),
            result,
            decided_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipelinerun::{PipelineRunSpec, PipelineRunStatus, RunResultValue};
    use serde_json::json;

    #[test]
    fn a_collected_note_reads_back_as_what_was_written() {
        let decided = DateTime::parse_from_rfc3339("2026-11-27T12:06:19.289074Z")
            .unwrap()
            .to_utc();
        for (result, decided_at) in [
            (RunResult::Succeeded, Some(decided)),
            (RunResult::Failed, None),
            (RunResult::Cancelled, Some(decided)),
        ] {
            let c = Collected {
                run: "trainer-8ac2804420".into(),
                result,
                decided_at,
            };
            assert_eq!(Collected::parse(&c.note()), Some(c.clone()), "{}", c.note());
        }
        let ok = Collected {
            run: "trainer-8ac2804420".into(),
            result: RunResult::Succeeded,
            decided_at: Some(decided),
        };
        assert_eq!(
            ok.note(),
            "PipelineRun trainer-8ac2804420 garbage-collected: result Succeeded, decided at \
             2026-11-27T12:06:19.289074Z, beyond spec.successfulPipelineRunsHistoryLimit"
        );
    }

    #[test]
    fn other_notes_are_not_mistaken_for_a_collected_run() {
        for note in [
            "PipelineRun x is running",
            "PipelineRun x garbage-collected: result Maybe, decided at unknown, beyond",
            "PipelineRun x garbage-collected: result Failed, decided at yesterday, beyond",
            "",
        ] {
            assert_eq!(Collected::parse(note), None, "{note}");
        }
    }

    #[test]
    fn a_run_tells_its_decision_and_pull_request() {
        let mut run = PipelineRun::new("deployer-1", PipelineRunSpec::default());
        run.annotations_mut().extend([
            (
                ANNOTATION_DECIDED_AT.to_owned(),
                "2026-11-27T12:00:00.5Z".to_owned(),
            ),
            (ANNOTATION_REASON.to_owned(), "newer model".to_owned()),
            (
                ANNOTATION_PARAMETERS.to_owned(),
                r#"{"model-id":"m-2"}"#.to_owned(),
            ),
        ]);
        run.status = Some(PipelineRunStatus {
            results: vec![
                RunResultValue {
                    name: RESULT_PR_URL.into(),
                    value: json!("http://git.example/org/gitops/pull/7"),
                },
                RunResultValue {
                    name: RESULT_PR_NUMBER.into(),
                    value: json!("7"),
                },
            ],
            ..Default::default()
        });
        let d = RunDecision::of(&run);
        assert_eq!(d.reason.as_deref(), Some("newer model"));
        assert_eq!(d.revision, None);
        assert_eq!(
            serde_json::to_value(&d.parameters).unwrap(),
            json!({"model-id": "m-2"})
        );
        assert_eq!(decided_or_created(&run), d.decided_at);
        assert_eq!(
            pull_request(&run),
            Some((
                "http://git.example/org/gitops/pull/7".into(),
                Some("7".into())
            ))
        );
        let plain = PipelineRun::new("trainer-1", PipelineRunSpec::default());
        assert_eq!(pull_request(&plain), None);
        assert_eq!(RunDecision::of(&plain), RunDecision::default());
    }
}
