//! Shards end to end: three real `modelsync controller` processes (`--shard a`, `--shard b`, and
//! one without `--shard`) on the local control plane share 300 ModelSyncs by their
//! `modelsync.dev/shard` label, and a ModelSync with an active run moves from one shard to
//! another without a second run. A real lambda process (`shard_lambda.py`) records which
//! controller process asked about which ModelSync, from the connection's owner in /proc.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Env, modelsync};
use futures::{StreamExt, stream};
use k8s_openapi::api::coordination::v1::Lease;
use kube::CustomResourceExt;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use modelsync_api::ModelSync;
use modelsync_api::modelsync::{LABEL_SHARD, RunResult};
use modelsync_testenv::process::Guarded;
use modelsync_testenv::tekton::{self, RunEnd};
use modelsync_testenv::{ControlPlane, ControllerCommand, crds, spawn_controller};
use serde_json::{Value, json};

const PER_SHARD: usize = 100;
const WAIT: Duration = Duration::from_secs(60);

/// The lambda of this test, as a real process.
struct ShardLambda {
    _proc: Guarded,
    base: String,
    controllers_file: std::path::PathBuf,
    http: reqwest::Client,
}

impl ShardLambda {
    async fn start(logs: &Path) -> ShardLambda {
        let port =
            modelsync_testenv::git::free_port_on(std::net::Ipv4Addr::LOCALHOST.into()).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/e2e/shard_lambda.py");
        let controllers_file = logs.join("controllers");
        let proc = Guarded::spawn(
            "shard-lambda",
            Path::new("python3"),
            &[
                script.display().to_string(),
                port.to_string(),
                controllers_file.display().to_string(),
            ],
            &logs.join("shard-lambda.log"),
        )
        .expect("python3 is needed for the shard lambda");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        modelsync_testenv::wait::until(WAIT, Duration::from_millis(50), || async {
            http.get(format!("{base}/_calls")).send().await.ok()
        })
        .await
        .expect("the shard lambda did not start");
        ShardLambda {
            _proc: proc,
            base,
            controllers_file,
            http,
        }
    }

    /// Tells the lambda which process is which controller.
    fn name_controllers(&self, pids: &[(&str, u32)]) {
        let lines: String = pids.iter().map(|(n, p)| format!("{n} {p}\n")).collect();
        std::fs::write(&self.controllers_file, lines).unwrap();
    }

    async fn answer(&self, ns: &str, name: &str, answer: Value) {
        self.http
            .put(format!("{}/_answer/{ns}/{name}", self.base))
            .json(&answer)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
    }

    /// Per `ns/name`, per controller: count, first and last call (Unix seconds).
    async fn calls(&self) -> BTreeMap<String, BTreeMap<String, Calls>> {
        self.http
            .get(format!("{}/_calls", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

#[derive(Clone, Copy, Debug, serde::Deserialize)]
struct Calls {
    count: u64,
    last: f64,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Which controller must reconcile a ModelSync with this shard label.
fn controller_for(shard: Option<&str>) -> &'static str {
    match shard {
        Some("a") => "shard-a",
        Some("b") => "shard-b",
        _ => "unlabelled",
    }
}

fn labelled(mut body: Value, shard: Option<&str>) -> Value {
    if let Some(shard) = shard {
        body["metadata"]["labels"] = json!({LABEL_SHARD: shard});
    }
    body
}

async fn run_names(env: &Env, modelsync: &str) -> BTreeSet<String> {
    env.runs_of(modelsync)
        .await
        .iter()
        .map(|r| r.name_any())
        .collect()
}

#[tokio::test]
async fn each_modelsync_is_polled_by_its_shard_only_and_moves_without_a_second_run() {
    let env = Env::new("shards").await;
    let lambda = ShardLambda::start(env.logs.path()).await;
    let url = format!("{}/needs-sync", lambda.base);
    let elect = format!("--leader-election-namespace={}", env.ns);
    let mut controllers = [
        (
            "unlabelled",
            env.controller_with(&["--leader-elect", &elect]),
        ),
        (
            "shard-a",
            env.controller_with(&["--shard=a", "--leader-elect", &elect]),
        ),
        (
            "shard-b",
            env.controller_with(&["--shard=b", "--leader-elect", &elect]),
        ),
    ];
    let mut pids = Vec::new();
    for (name, c) in &mut controllers {
        c.wait_healthy(WAIT).await.unwrap();
        let pid =
            modelsync_testenv::wait::until(WAIT, Duration::from_millis(20), || async { c.pid() })
                .await
                .unwrap_or_else(|| panic!("no pid for controller {name}"));
        pids.push((*name, pid));
    }
    lambda.name_controllers(&pids);

    // Each shard's Lease is its own, so each shard has a leader.
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &env.ns);
    for lease in [
        "modelsync-controller",
        "modelsync-controller-a",
        "modelsync-controller-b",
    ] {
        env.eventually(WAIT, &format!("Lease {lease} held"), || async {
            let l = leases.get_opt(lease).await.ok()??;
            l.spec?.holder_identity.filter(|h| !h.is_empty())
        })
        .await;
    }

    // The one that will move: on shard a, with a run that stays active. `Replace` keeps the
    // lambda asked while the run is active, so who polls it stays visible throughout.
    let mover = "mover";
    lambda
        .answer(
            &env.ns,
            mover,
            json!({"needsSync": true, "parameters": {"model": "m-1"}}),
        )
        .await;
    env.apply(labelled(
        modelsync(mover, &url, json!({"concurrencyPolicy": "Replace"})),
        Some("a"),
    ))
    .await;

    let mut expected: BTreeMap<String, &str> = BTreeMap::new();
    expected.insert(format!("{}/{mover}", env.ns), "shard-a");
    let mut bodies = Vec::new();
    for shard in [Some("a"), Some("b"), None] {
        for i in 0..PER_SHARD {
            let name = format!("{}-{i:03}", shard.unwrap_or("none"));
            expected.insert(format!("{}/{name}", env.ns), controller_for(shard));
            bodies.push(labelled(
                modelsync(&name, &url, json!({"pollInterval": "5s"})),
                shard,
            ));
        }
    }
    let created = std::time::Instant::now();
    stream::iter(bodies)
        .for_each_concurrent(16, |body| {
            let env = &env;
            async move {
                env.apply(body).await;
            }
        })
        .await;
    eprintln!(
        "created {} ModelSyncs in {:?}",
        expected.len() - 1,
        created.elapsed()
    );

    // Every ModelSync is polled (twice, so a second controller would have had its chance),
    // each by exactly the controller of its shard.
    let calls = env
        .eventually(WAIT * 2, "every ModelSync polled twice", || async {
            let calls = lambda.calls().await;
            let polled = expected
                .keys()
                .filter(|k| {
                    calls
                        .get(*k)
                        .is_some_and(|by| by.values().map(|c| c.count).sum::<u64>() >= 2)
                })
                .count();
            (polled == expected.len()).then_some(calls)
        })
        .await;
    eprintln!(
        "all {} polled twice after {:?}",
        expected.len(),
        created.elapsed()
    );
    let mut wrong = Vec::new();
    for (key, want) in &expected {
        let by: BTreeSet<&str> = calls[key].keys().map(String::as_str).collect();
        if by != BTreeSet::from([*want]) {
            wrong.push(format!("{key}: polled by {by:?}, expected only {want}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let per_controller: BTreeMap<&str, usize> =
        expected.values().fold(BTreeMap::new(), |mut m, c| {
            *m.entry(*c).or_default() += 1;
            m
        });
    assert_eq!(per_controller["shard-b"], PER_SHARD);
    assert_eq!(per_controller["unlabelled"], PER_SHARD);

    // The mover's history on shard a: a first run that succeeded, then a second, with other
    // parameters, still active. A shard that did not see the first would name a new run for
    // the same decision differently (the name hashes the newest existing run), so missing
    // runs would show as a second active run.
    let first = env
        .eventually(WAIT, "the mover's first run, active in status", || async {
            env.get(mover).await.status?.active.first()?.name.clone()
        })
        .await;
    tekton::finish(&env.client, &env.ns, &first, RunEnd::Succeeded)
        .await
        .unwrap();
    lambda
        .answer(
            &env.ns,
            mover,
            json!({"needsSync": true, "parameters": {"model": "m-2"}}),
        )
        .await;
    let run = env
        .eventually(WAIT, "the mover's second run, active in status", || async {
            let active = env.get(mover).await.status?.active.first()?.name.clone()?;
            (active != first).then_some(active)
        })
        .await;
    let runs = env.runs_of(mover).await;
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(
        runs.iter().all(|r| r.labels()[LABEL_SHARD] == "a"),
        "{runs:?}"
    );
    tekton::start(&env.client, &env.ns, &run).await.unwrap();

    // Move it to shard b while its run is active. From now on every run of it ever seen is
    // recorded, so a second one cannot come and go unnoticed.
    let moved_at = unix_now();
    env.modelsyncs()
        .patch(
            mover,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {LABEL_SHARD: "b"}}})),
        )
        .await
        .unwrap();
    let key = format!("{}/{mover}", env.ns);
    let mut seen_runs = BTreeSet::new();
    // Shard b adopts the run: relabels it, and polls the ModelSync (Replace: same parameters
    // keep the run).
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        seen_runs.extend(run_names(&env, mover).await);
        let runs = env.runs_of(mover).await;
        let relabelled = runs
            .iter()
            .any(|r| r.labels().get(LABEL_SHARD).map(String::as_str) == Some("b"));
        let polled_by_b = lambda.calls().await[&key]
            .get("shard-b")
            .is_some_and(|c| c.count >= 2);
        if relabelled && polled_by_b {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "shard b did not adopt {run}: runs {runs:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Shard a stopped as soon as its watch showed the change: nothing from it after a pass that
    // was under way then (the lambda answers at once) could have asked; watch it a while more.
    let a_count_after_move = lambda.calls().await[&key]["shard-a"].count;
    for _ in 0..30 {
        seen_runs.extend(run_names(&env, mover).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let calls = lambda.calls().await;
    let a = calls[&key]["shard-a"];
    assert_eq!(
        a.count, a_count_after_move,
        "shard a still polls the moved ModelSync"
    );
    // Its watch shows the change within milliseconds on an idle machine; the margin is for a
    // busy one (2 cores shared by the control plane, three controllers and the lambda).
    assert!(
        a.last < moved_at + 3.0,
        "shard a polled {:.2}s after the move",
        a.last - moved_at
    );
    assert!(!calls[&key].contains_key("unlabelled"));
    let ms = env.get(mover).await;
    let status = ms.status.unwrap();
    assert_eq!(
        status.active.first().and_then(|r| r.name.clone()),
        Some(run.clone())
    );

    // The run ends; shard b, now its reconciler, reports it.
    lambda
        .answer(&env.ns, mover, json!({"needsSync": false}))
        .await;
    tekton::finish(&env.client, &env.ns, &run, RunEnd::Succeeded)
        .await
        .unwrap();
    env.eventually(WAIT, "shard b reports the run succeeded", || async {
        let status = env.get(mover).await.status?;
        let last = status.last_run?;
        (status.active.is_empty() && last.name == run && last.result == RunResult::Succeeded)
            .then_some(())
    })
    .await;
    seen_runs.extend(run_names(&env, mover).await);
    assert_eq!(
        seen_runs,
        BTreeSet::from([first.clone(), run.clone()]),
        "a run was created during the move"
    );
    // Both runs moved: the finished one is shard b's to garbage-collect now.
    for r in env.runs_of(mover).await {
        assert_eq!(r.labels()[LABEL_SHARD], "b", "{}", r.name_any());
    }
    let b_log = controllers[2].1.log();
    assert!(
        b_log.contains("adopted runs from another shard"),
        "shard b's log does not tell the adoption:\n{b_log}"
    );
    let a_log = controllers[1].1.log();
    assert!(!a_log.contains("adopted runs"), "{a_log}");
    for (name, c) in &controllers {
        let log = c.log();
        for line in log
            .lines()
            .filter(|l| l.contains("initial lists") || l.contains("adopted runs"))
        {
            eprintln!("{name}: {line}");
        }
        assert!(
            c.log().contains("initial lists: streaming"),
            "{name} did not use streaming lists on this recent API server:\n{}",
            c.log_tail()
        );
    }
}

/// On an API server with streaming lists switched off (its `WatchList` feature gate), the
/// controller finds out, says so, and lists in pages, still selecting its shard on the server.
#[tokio::test]
async fn without_streaming_lists_the_controller_lists_in_pages() {
    let cp = ControlPlane::start_with_apiserver_flags(&["--feature-gates=WatchList=false"])
        .await
        .unwrap();
    let client = cp.client().await.unwrap();
    let mut crds = tokio::task::spawn_blocking(crds::tekton_crds)
        .await
        .unwrap()
        .unwrap();
    crds.push(ModelSync::crd());
    crds::install(&client, &crds).await.unwrap();
    let ns = modelsync_testenv::namespace(&client, "paged")
        .await
        .unwrap();
    let logs = tempfile::tempdir().unwrap();
    let lambda = ShardLambda::start(logs.path()).await;
    let url = format!("{}/needs-sync", lambda.base);
    let mut controller = spawn_controller(
        ControllerCommand::new(Path::new(env!("CARGO_BIN_EXE_modelsync")), cp.kubeconfig())
            .namespace(&ns)
            .arg("--shard=a")
            .log_dir(logs.path()),
    )
    .unwrap();
    controller.wait_healthy(WAIT).await.unwrap();
    let pid = modelsync_testenv::wait::until(WAIT, Duration::from_millis(20), || async {
        controller.pid()
    })
    .await
    .expect("the controller's pid");
    lambda.name_controllers(&[("shard-a", pid)]);

    let modelsyncs: Api<ModelSync> = Api::namespaced(client.clone(), &ns);
    for (name, shard) in [("in-a", Some("a")), ("unlabelled", None)] {
        let body = labelled(modelsync(name, &url, json!({})), shard);
        modelsyncs
            .patch(name, &PatchParams::apply("e2e-test"), &Patch::Apply(body))
            .await
            .unwrap();
    }
    modelsync_testenv::wait::until(WAIT, Duration::from_millis(100), || async {
        let calls = lambda.calls().await;
        let n = calls.get(&format!("{ns}/in-a"))?.get("shard-a")?.count;
        (n >= 3).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("shard a did not poll in-a:\n{}", controller.log_tail()));
    let calls = lambda.calls().await;
    assert_eq!(
        calls.keys().collect::<Vec<_>>(),
        [&format!("{ns}/in-a")],
        "polled besides in-a: {calls:?}"
    );
    let log = controller.log();
    for line in log.lines().filter(|l| l.contains("initial lists")) {
        eprintln!("{line}");
    }
    assert!(
        log.contains("initial lists: paged (the API server does not serve streaming lists"),
        "{log}"
    );
    // Ready means the first full lists (in pages) came in.
    let ready = reqwest::get(format!("{}/readyz", controller.admin_url()))
        .await
        .unwrap();
    assert!(ready.status().is_success(), "{}", controller.log_tail());
}
