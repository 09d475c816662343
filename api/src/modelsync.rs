//! The `ModelSync` resource (`modelsync.dev/v1alpha1`). Spec field names match the original
//! Kubeflow controller's (`automl.cloudai.kubeflow.org/v1alpha1`), so its manifests apply after
//! changing only `apiVersion`.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::lambda::ParamValue;

/// The API group of ModelSync and of the labels and annotations modelsync writes.
pub const GROUP: &str = "modelsync.dev";
/// Label on every run: the name of the ModelSync that started it.
pub const LABEL_NAME: &str = "modelsync.dev/name";
/// Label on a ModelSync choosing the controller shard that reconciles it (`modelsync
/// controller --shard NAME`); without it, the controller started without `--shard` does. Its
/// runs carry the same label, so each shard's run watch selects only its own runs.
pub const LABEL_SHARD: &str = "modelsync.dev/shard";
/// Annotation asking for a check now; any new value counts (like Flux's `requestedAt`).
pub const ANNOTATION_REQUESTED_AT: &str = "modelsync.dev/requested-at";
/// Annotation holding the mapped parameters of the decision that started a run (JSON).
pub const ANNOTATION_PARAMETERS: &str = "modelsync.dev/parameters";
/// Annotation holding the lambda's reason for the run.
pub const ANNOTATION_REASON: &str = "modelsync.dev/reason";
/// Annotation holding the lambda's revision, when it gave one.
pub const ANNOTATION_REVISION: &str = "modelsync.dev/revision";
/// Annotation holding the time of the decision (RFC 3339).
pub const ANNOTATION_DECIDED_AT: &str = "modelsync.dev/decided-at";

/// Go-style durations the controller accepts: `30s`, `5m`, `1h30m`, `1.5h`, `250ms`.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";

/// Declares a reconciler: poll a needs-sync lambda and run a Tekton pipeline when it says so.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "modelsync.dev",
    version = "v1alpha1",
    kind = "ModelSync",
    plural = "modelsyncs",
    shortname = "msync",
    namespaced,
    status = "ModelSyncStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Active Run","type":"string","jsonPath":".status.active[0].name"}"#,
    printcolumn = r#"{"name":"Last Decision","type":"date","jsonPath":".status.lastDecision.time"}"#,
    printcolumn = r#"{"name":"Last Success","type":"date","jsonPath":".status.lastSuccessfulRun.completionTime"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ModelSyncSpec {
    /// The needs-sync lambda, asked with `GET` whether a run is needed.
    #[schemars(length(min = 1))]
    pub needs_sync_url: String,

    /// Which keys of the lambda's `parameters` become which PipelineRun params. Keys with no
    /// mapping are ignored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<ParameterMapping>,

    /// The PipelineRun to start, as `{metadata: {labels, annotations}, spec}`; `spec` is a
    /// Tekton PipelineRun spec (v1, or v1beta1 which is converted).
    pub pipeline_run_template: PipelineRunTemplate,

    /// How often to ask the lambda, like `30s` or `5m`; each poll is jittered.
    #[serde(default = "default_poll_interval")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub poll_interval: String,

    /// No lambda calls and no new runs while true; running runs continue.
    #[serde(default)]
    pub suspend: bool,

    /// What to do when the lambda may be asked while a run is active.
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,

    /// Successful runs kept; older ones are deleted. The newest successful run is always kept.
    #[serde(default = "default_successful_history")]
    #[schemars(range(min = 0))]
    pub successful_pipeline_runs_history_limit: i32,

    /// Failed (and cancelled) runs kept; older ones are deleted.
    #[serde(default = "default_failed_history")]
    #[schemars(range(min = 0))]
    pub failed_pipeline_runs_history_limit: i32,

    /// How long the lambda may take to answer, like `10s`.
    #[serde(default = "default_lambda_timeout")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub lambda_timeout: String,

    /// A Secret in this namespace with the lambda's credentials, each key optional: `token`
    /// (sent as `Authorization: Bearer`), `ca.crt` (trusted for an https lambda besides the
    /// system roots), `tls.crt` and `tls.key` (a client certificate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda_secret_ref: Option<SecretRef>,

    /// Receivers told about runs and lambda trouble. Each names a Secret in this namespace
    /// holding `address` (the receiver's URL), and optionally `token` (sent as
    /// `Authorization: Bearer`) and `hmacKey` (`generic` signs the body with it). A receiver
    /// that is down or misconfigured never delays polling or runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<NotifyTarget>,
}

/// One receiver of notifications.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotifyTarget {
    /// The Secret with `address`, and optionally `token` and `hmacKey`.
    pub secret_ref: SecretRef,
    /// How the notification is written.
    pub format: NotifyFormat,
    /// Which events are sent; by default all but `RunStarted`.
    #[serde(default = "default_notify_events")]
    pub events: Vec<NotifyEvent>,
}

/// The shape of a notification on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NotifyFormat {
    /// A Slack incoming-webhook message (`{"text": ..., "blocks": [...]}`).
    Slack,
    /// A CloudEvents 1.0 event in binary HTTP mode (`ce-*` headers, JSON data).
    Cloudevents,
    /// A JSON document like Flux's notification events; signed when the Secret has `hmacKey`.
    Generic,
}

impl NotifyFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyFormat::Slack => "slack",
            NotifyFormat::Cloudevents => "cloudevents",
            NotifyFormat::Generic => "generic",
        }
    }
}

/// What a notification tells about.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum NotifyEvent {
    /// The controller started (or adopted) a PipelineRun.
    RunStarted,
    RunSucceeded,
    RunFailed,
    RunCancelled,
    /// The lambda failed 3 times in a row (errors, unusable answers, credentials).
    LambdaFailing,
    /// The lambda answered usably again after failing.
    Recovered,
}

impl NotifyEvent {
    pub const ALL: [NotifyEvent; 6] = [
        NotifyEvent::RunStarted,
        NotifyEvent::RunSucceeded,
        NotifyEvent::RunFailed,
        NotifyEvent::RunCancelled,
        NotifyEvent::LambdaFailing,
        NotifyEvent::Recovered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::RunStarted => "RunStarted",
            NotifyEvent::RunSucceeded => "RunSucceeded",
            NotifyEvent::RunFailed => "RunFailed",
            NotifyEvent::RunCancelled => "RunCancelled",
            NotifyEvent::LambdaFailing => "LambdaFailing",
            NotifyEvent::Recovered => "Recovered",
        }
    }
}

/// Everything but `RunStarted`: a start is routine; its end says whether it worked.
pub fn default_notify_events() -> Vec<NotifyEvent> {
    NotifyEvent::ALL
        .into_iter()
        .filter(|e| *e != NotifyEvent::RunStarted)
        .collect()
}

fn default_poll_interval() -> String {
    "1m".to_owned()
}
fn default_successful_history() -> i32 {
    3
}
fn default_failed_history() -> i32 {
    1
}
fn default_lambda_timeout() -> String {
    "10s".to_owned()
}

/// Names a Secret in the ModelSync's own namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretRef {
    /// The Secret's name.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// Maps one key of the lambda's answer to one pipeline param.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParameterMapping {
    /// The key in the lambda's `parameters`.
    #[schemars(length(min = 1))]
    pub needs_sync_name: String,
    /// The PipelineRun param it sets.
    #[schemars(length(min = 1))]
    pub pipeline_name: String,
}

/// The run to start: metadata kept on every run, and a Tekton PipelineRun spec kept as-is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PipelineRunTemplate {
    #[serde(default, skip_serializing_if = "TemplateMetadata::is_empty")]
    pub metadata: TemplateMetadata,
    /// A Tekton PipelineRun spec. Not validated here: Tekton's own schema checks it when the
    /// run is created, and a rejected template is reported as `InvalidTemplate`.
    #[schemars(schema_with = "preserve_unknown_object")]
    pub spec: serde_json::Value,
}

/// Labels and annotations copied onto every run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TemplateMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl TemplateMetadata {
    fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.annotations.is_empty()
    }
}

/// Like CronJob's: whether the lambda is asked while a run is active.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConcurrencyPolicy {
    /// While a run is active, do not even ask the lambda.
    #[default]
    Forbid,
    /// Ask the lambda; when it wants a run with other parameters than the active one's,
    /// cancel the active run and start the new one.
    Replace,
}

/// What the controller observed and did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelSyncStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling` and `Stalled` (kstatus).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The active PipelineRun, if any (never more than one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active: Vec<ObjectReference>,
    /// When the lambda's decision last changed or a run last started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check_time: Option<DateTime<Utc>>,
    /// The lambda's most recent decision (updated when it changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_decision: Option<LambdaDecision>,
    /// The newest run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunSummary>,
    /// The newest run that succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_run: Option<RunSummary>,
    /// The value of the `modelsync.dev/requested-at` annotation handled last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_requested_at: Option<String>,
}

/// A lambda's decision as recorded in status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LambdaDecision {
    pub needs_sync: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub parameters: BTreeMap<String, ParamValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    pub time: DateTime<Utc>,
}

/// One run as recorded in status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<DateTime<Utc>>,
    pub result: RunResult,
}

/// Where a run stands, from its `Succeeded` condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RunResult {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl ModelSyncSpec {
    /// `pollInterval` parsed; the schema's pattern makes failure rare, but an unparsable value
    /// (say, an overflow) is reported, never replaced silently.
    pub fn poll_interval(&self) -> Result<Duration, String> {
        parse_duration(&self.poll_interval).map_err(|e| format!("spec.pollInterval: {e}"))
    }

    pub fn lambda_timeout(&self) -> Result<Duration, String> {
        parse_duration(&self.lambda_timeout).map_err(|e| format!("spec.lambdaTimeout: {e}"))
    }
}

/// The longest duration Go's `time.Duration` (nanoseconds in an `int64`), and so Kubernetes,
/// can hold: 2562047h47m16.854775807s.
pub const LONGEST_DURATION: Duration = Duration::new(9_223_372_036, 854_775_807);

/// Parses Go-style durations (`1h30m`, `1.5s`, `250ms`), the form Kubernetes users write, up
/// to [`LONGEST_DURATION`] as Go does. A longer one would overflow the controller's
/// arithmetic (jitter, due instants) and is no poll interval anyone means.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration like 30s, 5m or 1h30m");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (number, tail) = rest.split_at(digits);
        let value: f64 = number.parse().map_err(|_| bad())?;
        let (unit_secs, len) = if tail.starts_with("ms") {
            (0.001, 2)
        } else if tail.starts_with('s') {
            (1.0, 1)
        } else if tail.starts_with('m') {
            (60.0, 1)
        } else if tail.starts_with('h') {
            (3600.0, 1)
        } else {
            return Err(bad());
        };
        total += value * unit_secs;
        rest = &tail[len..];
    }
    let too_long = || {
        format!(
            "{text:?} is longer than 2562047h47m16s, the longest duration Go and Kubernetes allow"
        )
    };
    match Duration::try_from_secs_f64(total) {
        Ok(d) if d <= LONGEST_DURATION => Ok(d),
        _ => Err(too_long()),
    }
}

fn preserve_unknown_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_events_default_to_all_but_run_started() {
        let target: NotifyTarget = serde_json::from_value(serde_json::json!({
            "secretRef": {"name": "hook"}, "format": "cloudevents"
        }))
        .unwrap();
        assert_eq!(target.format, NotifyFormat::Cloudevents);
        assert_eq!(target.events.len(), 5);
        assert!(!target.events.contains(&NotifyEvent::RunStarted));
        let bad = serde_json::from_value::<NotifyTarget>(serde_json::json!({
            "secretRef": {"name": "hook"}, "format": "teams"
        }));
        assert!(bad.is_err());
    }

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["", "10", "5x", "m", "1h-3m", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad} accepted");
        }
    }

    // Found by the duration fuzz target: values up to u64::MAX seconds were accepted, and
    // the controller's jitter (`Duration::mul_f64`) panics on those near the top.
    #[test]
    fn durations_longer_than_go_allows_are_refused() {
        assert_eq!(
            parse_duration("2562047h"),
            Ok(Duration::from_secs(2_562_047 * 3600))
        );
        let nines = format!("{}s", "9".repeat(400));
        for text in ["2562048h", "10000000000s", "5000000000000000h", &nines] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains("longer than 2562047h47m16s"), "{text}: {err}");
            assert!(err.contains(&format!("{text:?}")), "{err}");
        }
    }
}
