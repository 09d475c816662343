//! Harness for end-to-end tests: the shared control plane with the ModelSync CRD, a scripted
//! lambda process, and the real `modelsync controller` process per test namespace (started by
//! the test environment's `spawn_controller`).

#![allow(dead_code)] // each test binary uses its own subset

use std::path::Path;
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::{CustomResourceExt, ResourceExt};
use modelsync_api::{ModelSync, PipelineRun};
use modelsync_testenv::process::Guarded;
use modelsync_testenv::{Controller, ControllerCommand, spawn_controller};
use serde_json::{Value, json};

pub fn control_plane() -> &'static modelsync_testenv::ControlPlane {
    modelsync_testenv::shared_with_crds(|| vec![ModelSync::crd()])
}

/// A test's namespace and client.
pub struct Env {
    pub client: kube::Client,
    pub ns: String,
    pub logs: tempfile::TempDir,
}

impl Env {
    pub async fn new(prefix: &str) -> Env {
        let cp = control_plane();
        let client = cp.client().await.expect("client for the control plane");
        let ns = modelsync_testenv::namespace(&client, prefix).await.unwrap();
        Env {
            client,
            ns,
            logs: tempfile::tempdir().unwrap(),
        }
    }

    pub fn modelsyncs(&self) -> Api<ModelSync> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn runs(&self) -> Api<PipelineRun> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn dynamic_runs(&self) -> Api<DynamicObject> {
        modelsync_testenv::tekton::pipelineruns(&self.client, &self.ns)
    }

    /// Creates or updates a ModelSync from JSON (server-side apply, as kubectl would).
    pub async fn apply(&self, body: Value) -> ModelSync {
        let name = body["metadata"]["name"].as_str().unwrap().to_owned();
        self.modelsyncs()
            .patch(
                &name,
                &PatchParams::apply("e2e-test").force(),
                &Patch::Apply(body),
            )
            .await
            .unwrap_or_else(|e| panic!("applying ModelSync {name}: {e}"))
    }

    pub async fn get(&self, name: &str) -> ModelSync {
        self.modelsyncs().get(name).await.unwrap()
    }

    pub async fn runs_of(&self, name: &str) -> Vec<PipelineRun> {
        let mut runs = self
            .runs()
            .list(&ListParams::default().labels(&format!("modelsync.dev/name={name}")))
            .await
            .unwrap()
            .items;
        runs.sort_by_key(|r| r.metadata.creation_timestamp.clone().map(|t| t.0));
        runs
    }

    /// Polls `check` until it returns Some, failing with `what` after `timeout`.
    pub async fn eventually<T, F, Fut>(&self, timeout: Duration, what: &str, check: F) -> T
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        modelsync_testenv::wait::until(timeout, Duration::from_millis(100), check)
            .await
            .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
    }

    /// The real `modelsync controller` binary watching this test's namespace.
    pub fn controller(&self) -> Controller {
        self.controller_with(&[])
    }

    /// With extra flags, e.g. `--leader-elect`.
    pub fn controller_with(&self, flags: &[&str]) -> Controller {
        let command = ControllerCommand::new(
            Path::new(env!("CARGO_BIN_EXE_modelsync")),
            control_plane().kubeconfig(),
        )
        .namespace(&self.ns)
        .args(flags.iter().copied())
        .log_dir(self.logs.path());
        spawn_controller(command).expect("starting modelsync controller")
    }
}

/// A ModelSync manifest with a one-second poll, for tests.
pub fn modelsync(name: &str, url: &str, extra_spec: Value) -> Value {
    let mut spec = json!({
        "needsSyncUrl": url,
        "pollInterval": "1s",
        "lambdaTimeout": "2s",
        "parameters": [{"needsSyncName": "model", "pipelineName": "model-id"}],
        "pipelineRunTemplate": {
            "metadata": {"labels": {"team": "ml"}, "annotations": {"owner": "e2e"}},
            "spec": {
                "pipelineRef": {"name": "retrain"},
                "params": [{"name": "model-id", "value": "placeholder"}, {"name": "keep", "value": "me"}],
            },
        },
    });
    if let (Value::Object(s), Value::Object(extra)) = (&mut spec, extra_spec) {
        s.extend(extra);
    }
    json!({
        "apiVersion": "modelsync.dev/v1alpha1",
        "kind": "ModelSync",
        "metadata": {"name": name},
        "spec": spec,
    })
}

/// The scripted Python lambda (`tests/e2e/scripted_lambda.py`), as a real process.
pub struct Lambda {
    _proc: Guarded,
    pub base: String,
    http: reqwest::Client,
}

impl Lambda {
    pub async fn start(logs: &Path) -> Lambda {
        Self::start_on(logs, std::net::Ipv4Addr::LOCALHOST.into()).await
    }

    /// Listening on `ip`: the real-node tests give the bridge address, which pods reach.
    pub async fn start_on(logs: &Path, ip: std::net::IpAddr) -> Lambda {
        let port = modelsync_testenv::git::free_port_on(ip).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/e2e/scripted_lambda.py");
        let proc = Guarded::spawn(
            "scripted-lambda",
            Path::new("python3"),
            &[
                script.display().to_string(),
                port.to_string(),
                ip.to_string(),
            ],
            &logs.join(format!("lambda-{port}.log")),
        )
        .expect("python3 is needed for the scripted lambda");
        let base = format!("http://{ip}:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while http.get(format!("{base}/_calls")).send().await.is_err() {
            assert!(Instant::now() < deadline, "scripted lambda did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Lambda {
            _proc: proc,
            base,
            http,
        }
    }

    pub fn url(&self, route: &str) -> String {
        format!("{}/{route}", self.base)
    }

    /// Sets what `GET /<route>` answers.
    pub async fn script(&self, route: &str, script: Value) {
        self.http
            .put(format!("{}/_script/{route}", self.base))
            .json(&script)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
    }

    /// Answers `200` with this JSON.
    pub async fn answer(&self, route: &str, answer: Value) {
        self.script(route, json!({"json": answer})).await;
    }

    /// `GET /_calls`: per route, the number of calls and the last request's headers.
    async fn call_log(&self) -> Value {
        self.http
            .get(format!("{}/_calls", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn calls(&self, route: &str) -> u64 {
        self.call_log().await[format!("/{route}")]["count"]
            .as_u64()
            .unwrap_or(0)
    }

    pub async fn last_headers(&self, route: &str) -> Value {
        self.call_log().await[format!("/{route}")]["last_headers"].clone()
    }
}

/// The `Ready` condition's (status, reason, message).
pub fn ready(ms: &ModelSync) -> Option<(String, String, String)> {
    ms.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

pub fn active_runs(runs: &[PipelineRun]) -> Vec<String> {
    runs.iter()
        .filter(|r| {
            r.result() == modelsync_api::modelsync::RunResult::Running && !r.cancel_requested()
        })
        .map(|r| r.name_any())
        .collect()
}
