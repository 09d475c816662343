//! A fleet under test: a control plane of its own (a fault test stops its parts), a namespace,
//! ModelSyncs with `Forbid` and `Replace` mixed and one-second polls, the in-test lambda, the
//! Tekton stand-in, the invariant checker, and a driver that keeps wanting newer models so
//! decisions keep coming while a fault lasts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kube::CustomResourceExt;
use kube::api::{Api, Patch, PatchParams};
use modelsync_api::ModelSync;
use modelsync_api::modelsync::{ConcurrencyPolicy, RunResult};
use modelsync_testenv::ControlPlane;
use serde_json::json;
use tokio::task::JoinHandle;

use crate::controller::Controller;
use crate::invariants::Checker;
use crate::lambda::Lambda;
use crate::report::Figures;
use crate::tekton_play::TektonPlay;

/// How long the fleet may take to settle after a fault; generous, never a speed target.
pub const SETTLE: Duration = Duration::from_secs(120);

/// A decision whose run appeared later than this after the lambda first gave it was delayed;
/// unhindered, a pass creates the run right after the answer.
pub const DELAYED: Duration = Duration::from_secs(2);

pub struct Fleet {
    pub cp: ControlPlane,
    /// Straight to the API server, never through a fault.
    pub client: kube::Client,
    pub ns: String,
    pub lambda: Lambda,
    pub checker: Checker,
    pub modelsyncs: Vec<(String, ConcurrencyPolicy)>,
    driving: Arc<AtomicBool>,
    driver: JoinHandle<()>,
    _tekton: TektonPlay,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.driver.abort();
        if std::thread::panicking() || std::env::var_os("MODELSYNC_FAULTS_KEEP").is_some() {
            let dir = self.cp.keep_files();
            eprintln!(
                "kept the control plane's files and the controllers' logs in {}",
                dir.display()
            );
        }
    }
}

impl Fleet {
    /// `forbid` + `replace` ModelSyncs on a fresh control plane, wanting models from the start;
    /// the controller is the test's to start.
    pub async fn start(prefix: &str, forbid: usize, replace: usize) -> Fleet {
        let cp = modelsync_testenv::start_with_crds(&[ModelSync::crd()])
            .await
            .expect("starting a control plane of the test's own");
        let client = cp.client().await.unwrap();
        let ns = modelsync_testenv::namespace(&client, prefix).await.unwrap();
        let lambda = Lambda::start().await;
        let modelsyncs: Vec<(String, ConcurrencyPolicy)> = (0..forbid)
            .map(|i| (format!("forbid-{i}"), ConcurrencyPolicy::Forbid))
            .chain((0..replace).map(|i| (format!("replace-{i}"), ConcurrencyPolicy::Replace)))
            .collect();
        let api: Api<ModelSync> = Api::namespaced(client.clone(), &ns);
        for (name, policy) in &modelsyncs {
            let body = json!({
                "apiVersion": "modelsync.dev/v1alpha1",
                "kind": "ModelSync",
                "metadata": {"name": name},
                "spec": {
                    "needsSyncUrl": lambda.url(name),
                    "pollInterval": "1s",
                    "lambdaTimeout": "2s",
                    "concurrencyPolicy": policy,
                    "parameters": [{"needsSyncName": "model", "pipelineName": "model-id"}],
                    "pipelineRunTemplate": {"spec": {
                        "pipelineRef": {"name": "retrain"},
                        "params": [{"name": "model-id", "value": "none"}],
                    }},
                },
            });
            api.patch(
                name,
                &PatchParams::apply("faults-test").force(),
                &Patch::Apply(body),
            )
            .await
            .unwrap_or_else(|e| panic!("applying ModelSync {name}: {e}"));
        }
        let checker = Checker::start(&client, &ns);
        let tekton = TektonPlay::start(client.clone(), ns.clone(), lambda.clone());
        let driving = Arc::new(AtomicBool::new(true));
        let driver = tokio::spawn(drive(
            lambda.clone(),
            checker.clone(),
            modelsyncs.clone(),
            driving.clone(),
        ));
        Fleet {
            cp,
            client,
            ns,
            lambda,
            checker,
            modelsyncs,
            driving,
            driver,
            _tekton: tekton,
        }
    }

    /// Logs of the controllers, beside the control plane's.
    pub fn logs(&self) -> &Path {
        self.cp.root()
    }

    /// The controller with `kubeconfig` (the API server's own, or a proxy's).
    pub fn controller(&self, kubeconfig: &Path, args: &[&str], env: &[(&str, &str)]) -> Controller {
        Controller::start(kubeconfig, self.logs(), &self.ns, args, env)
    }

    /// A kubeconfig for the API server at `server` (a TCP proxy in front of it: same
    /// certificate), written into the control plane's folder.
    pub fn kubeconfig_via(&self, server: &str, name: &str) -> PathBuf {
        let path = self.logs().join(format!("kubeconfig-{name}"));
        let ca = std::fs::read(self.cp.ca_cert()).unwrap();
        self.cp.write_kubeconfig_for(&path, server, &ca).unwrap();
        path
    }

    /// Stops or resumes wanting newer models. Stopped, the fleet settles on the last ones.
    pub fn drive(&self, on: bool) {
        self.driving.store(on, Ordering::Release);
    }

    /// Waits until every ModelSync has had two runs: the loop turns everywhere.
    pub async fn wait_steady(&self, ctl: &Controller) {
        self.eventually(
            Duration::from_secs(90),
            "every ModelSync running",
            ctl,
            || {
                self.modelsyncs.iter().all(|(ms, _)| {
                    self.checker
                        .runs()
                        .iter()
                        .filter(|r| &r.modelsync == ms)
                        .count()
                        >= 2
                })
            },
        )
        .await;
    }

    /// Waits until at least `n` runs are active and started by Tekton at once: mid-run.
    pub async fn wait_mid_run(&self, n: usize, ctl: &Controller) {
        self.eventually(Duration::from_secs(60), "runs going", ctl, || {
            self.checker
                .runs()
                .iter()
                .filter(|r| r.active() && r.started)
                .count()
                >= n
        })
        .await;
    }

    async fn eventually(
        &self,
        within: Duration,
        what: &str,
        ctl: &Controller,
        done: impl Fn() -> bool,
    ) {
        let deadline = Instant::now() + within;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "timed out after {within:?} waiting for {what}; controller log:\n{}",
                ctl.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the driver and waits until every ModelSync is back to its expected state;
    /// returns how long that took. Panics after [`SETTLE`] saying what is still off.
    pub async fn settle(&self, logs: &str) -> Duration {
        self.drive(false);
        let started = Instant::now();
        loop {
            let off = self.unsettled().await;
            let Some(off) = off else {
                return started.elapsed();
            };
            assert!(
                started.elapsed() < SETTLE,
                "not settled after {SETTLE:?}: {off}\n{logs}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// What is not yet as expected, if anything: the wanted model of each ModelSync in place
    /// through exactly its run, which succeeded; no active run; the ModelSync Ready, Idle, its
    /// spec observed, and its status naming that run.
    async fn unsettled(&self) -> Option<String> {
        let api: Api<ModelSync> = Api::namespaced(self.client.clone(), &self.ns);
        for (ms, _) in &self.modelsyncs {
            let wanted = self.lambda.wanted(ms);
            if self.lambda.pinned(ms).as_deref() != Some(wanted.as_str()) {
                return Some(format!("{ms}: {wanted} is not in place yet"));
            }
            let active = self.checker.active_of(ms);
            if !active.is_empty() {
                return Some(format!("{ms}: runs still active: {active:?}"));
            }
            let runs = self.checker.runs_for(&wanted);
            let Some(run) = runs.iter().find(|r| r.result == RunResult::Succeeded) else {
                return Some(format!("{ms}: no succeeded run for {wanted}: {runs:?}"));
            };
            let obj = match api.get(ms).await {
                Ok(o) => o,
                Err(e) => return Some(format!("{ms}: reading it failed: {e}")),
            };
            let status = obj.status.clone().unwrap_or_default();
            let cond = |t: &str| {
                status
                    .conditions
                    .iter()
                    .find(|c| c.type_ == t)
                    .map(|c| (c.status.clone(), c.reason.clone()))
            };
            let expected = [
                ("Ready", "True", Some("Idle")),
                ("Reconciling", "False", None),
                ("Stalled", "False", None),
            ];
            for (t, want_status, want_reason) in expected {
                match cond(t) {
                    Some((s, r)) if s == want_status && want_reason.is_none_or(|w| w == r) => {}
                    other => return Some(format!("{ms}: condition {t} is {other:?}")),
                }
            }
            if status.observed_generation != obj.metadata.generation {
                return Some(format!("{ms}: generation not observed"));
            }
            if !status.active.is_empty() {
                return Some(format!("{ms}: status.active is {:?}", status.active));
            }
            let last = status
                .last_run
                .as_ref()
                .map(|r| (r.name.as_str(), r.result));
            if last != Some((run.name.as_str(), RunResult::Succeeded)) {
                return Some(format!(
                    "{ms}: lastRun is {last:?}, expected {} Succeeded",
                    run.name
                ));
            }
            let good = status.last_successful_run.as_ref().map(|r| r.name.as_str());
            if good != Some(run.name.as_str()) {
                return Some(format!("{ms}: lastSuccessfulRun is {good:?}"));
            }
        }
        None
    }

    /// The figures of this test so far: decisions and the runs they led to, duplicates seen.
    pub fn figures(&self, fault: &str, recovery: Duration) -> Figures {
        self.figures_of(fault, recovery, None)
    }

    /// Like [`Fleet::figures`], counting only decisions first given at `since` or later.
    pub fn figures_since(&self, fault: &str, recovery: Duration, since: Instant) -> Figures {
        self.figures_of(fault, recovery, Some(since))
    }

    fn figures_of(&self, fault: &str, recovery: Duration, since: Option<Instant>) -> Figures {
        let mut f = Figures {
            fault: fault.to_owned(),
            recovery,
            duplicates: self.checker.duplicates(),
            ..Figures::default()
        };
        for (model, decision) in self.lambda.decisions() {
            if since.is_some_and(|t| decision.first_given < t) {
                continue;
            }
            f.decisions += 1;
            let runs = self.checker.runs_for(&model);
            match runs.len() {
                0 => f.lost.push(model.clone()),
                1 => {}
                _ => f.twice.push(format!(
                    "{model}: {:?}",
                    runs.iter().map(|r| &r.name).collect::<Vec<_>>()
                )),
            }
            if let Some(first) = runs.iter().map(|r| r.first_seen).min() {
                let delay = first.saturating_duration_since(decision.first_given);
                f.max_delay = f.max_delay.max(delay);
                if delay > DELAYED {
                    f.delayed += 1;
                }
            }
        }
        f.runs = self.checker.runs().len();
        f.events = self.checker.events();
        f
    }
}

/// Wants the next model of a ModelSync once a run for the current one exists: at once under
/// `Forbid` (the lambda is not asked while that run is active), after 0.5 to 3 s under
/// `Replace` (so some runs are replaced mid-way and some finish).
async fn drive(
    lambda: Lambda,
    checker: Checker,
    modelsyncs: Vec<(String, ConcurrencyPolicy)>,
    driving: Arc<AtomicBool>,
) {
    let mut hold: HashMap<String, Duration> = HashMap::new();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if !driving.load(Ordering::Acquire) {
            continue;
        }
        for (ms, policy) in &modelsyncs {
            let Some(seen) = checker.first_seen(&lambda.wanted(ms)) else {
                continue;
            };
            let wait = *hold.entry(ms.clone()).or_insert(Duration::ZERO);
            if *policy == ConcurrencyPolicy::Forbid || seen.elapsed() >= wait {
                lambda.want_next(ms);
                hold.insert(
                    ms.clone(),
                    Duration::from_millis(rand::random_range(500..3000)),
                );
            }
        }
    }
}
