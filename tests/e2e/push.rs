//! Change to run without a poll, end to end: a commit pushed over `git://` to a repository
//! `git daemon` serves, the git host's push webhook (as GitHub sends it) on a real
//! `modelsync lambdas`, whose answer flips and which tells the real `modelsync controller`'s
//! hook receiver, which asks the lambda at once; a PipelineRun starts within seconds with a
//! 1m pollInterval and the default 10s mirror period. Also: replicas of the lambda server
//! over one repository give the same answers.

mod common;
mod push_support;

use std::time::{Duration, Instant};

use common::{Env, modelsync};
use modelsync_testenv::process::free_port;
use push_support::{GIT_HOOK_SECRET, Lambdas, Repo, model, pin};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);
const RECEIVER_TOKEN: &str = "receiver-t0ken";
/// What "at once" means here: well under the 10s mirror period and the 1m poll.
const AT_ONCE: Duration = Duration::from_secs(5);

async fn post(url: &str, auth: Option<&str>, body: Value) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(url).json(&body);
    if let Some(token) = auth {
        request = request.bearer_auth(token);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_commit_starts_a_run_without_waiting_for_a_poll() {
    let env = Env::new("push").await;
    let dir = env.logs.path();
    let repo = Repo::start(dir);
    let c1 = repo.push(
        &[("data/a.csv", "1\n"), ("manifests/model.yaml", &pin("m1"))],
        "data and the pin",
    );
    repo.push(&[("models/m1.yaml", &model("m1", &c1))], "model m1");

    std::fs::write(dir.join("receiver-token"), format!("{RECEIVER_TOKEN}\n")).unwrap();
    let receiver_port = free_port().unwrap();
    let receiver = format!("http://127.0.0.1:{receiver_port}/hook/lambda-changed");
    let mut controller = env.controller_with(&[
        &format!(
            "--receiver-token-file={}",
            dir.join("receiver-token").display()
        ),
        &format!("--receiver-addr=127.0.0.1:{receiver_port}"),
    ]);
    controller.wait_healthy(WAIT).await.unwrap();

    // The lambda server names its routes with its own address, as the ModelSync spells them.
    let lambdas_dir = dir.join("lambdas");
    std::fs::create_dir_all(&lambdas_dir).unwrap();
    std::fs::write(lambdas_dir.join("receiver-token"), RECEIVER_TOKEN).unwrap();
    let lambdas = Lambdas::start(
        &lambdas_dir,
        &repo,
        &format!(
            "notify: {{url: \"{receiver}\", tokenFile: receiver-token, publicBaseUrl: \"SELF\"}}"
        ),
    )
    .await;

    env.apply(modelsync(
        "deployer",
        &lambdas.url("/deploy"),
        json!({"pollInterval": "1m", "lambdaTimeout": "5s"}),
    ))
    .await;
    let created_at = Instant::now();
    env.eventually(WAIT, "the first answer: no (m1 is pinned)", || async {
        let ms = env.get("deployer").await;
        let d = ms.status?.last_decision?;
        (!d.needs_sync).then_some(())
    })
    .await;
    assert!(env.runs_of("deployer").await.is_empty());

    // Push right after a mirror sync, so the mirror's own next sync is ~10s away: a run
    // sooner than that came from the webhook.
    let syncs = lambdas.syncs().await;
    env.eventually(
        Duration::from_secs(15),
        "a mirror sync by its period",
        || async { (lambdas.syncs().await > syncs).then_some(()) },
    )
    .await;
    let c3 = repo.push(&[("models/m2.yaml", &model("m2", &c1))], "model m2");
    let pushed = Instant::now();
    let (status, reply) = lambdas
        .git_hook(&repo.push_event(&c3), GIT_HOOK_SECRET)
        .await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["sync"], "started");
    let run = env
        .eventually(AT_ONCE, "a run within 5s of the push", || async {
            env.runs_of("deployer").await.pop()
        })
        .await;
    let latency = pushed.elapsed();
    println!(
        "commit pushed -> PipelineRun {} created: {latency:?}",
        kube::ResourceExt::name_any(&run)
    );
    assert!(
        created_at.elapsed() < Duration::from_secs(50),
        "the test ran so long that the 1m poll (jittered to 54s at the earliest) could explain the run"
    );
    let raw = env
        .dynamic_runs()
        .get(&kube::ResourceExt::name_any(&run))
        .await
        .unwrap();
    let params = serde_json::to_value(&raw).unwrap()["spec"]["params"].clone();
    assert!(
        params
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "model-id" && p["value"] == "m2"),
        "{params}"
    );
    let ms = env.get("deployer").await;
    assert!(
        ms.status.unwrap().last_handled_requested_at.is_some(),
        "the run came through the requested-at annotation"
    );
    let metrics = controller.scrape().await.unwrap();
    assert!(
        metrics.contains(r#"modelsync_receiver_hooks_total{outcome="accepted"}"#),
        "{metrics}"
    );
    let log = std::fs::read_to_string(&lambdas.log).unwrap();
    assert!(log.contains("syncing now: a push webhook asked"), "{log}");
    assert!(
        log.contains("told the controller which answers changed"),
        "{log}"
    );

    // Wrong credentials, both ends: refused with what to send.
    let (status, reply) = lambdas
        .git_hook(&repo.push_event(&c3), "not the secret")
        .await;
    assert_eq!(status, 401);
    let message = reply["error"].as_str().unwrap();
    assert!(message.contains("X-Hub-Signature-256"), "{message}");
    println!("POST /hooks/git, wrong secret: {status} {reply}");
    let (status, reply) = post(
        &receiver,
        Some("wrong"),
        json!({"urls": [lambdas.url("/deploy")]}),
    )
    .await;
    assert_eq!(status, 401);
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer <token>")
    );
    println!("POST /hook/lambda-changed, wrong token: {status} {reply}");
    let (status, reply) = post(&receiver, None, json!({"urls": []})).await;
    assert_eq!(status, 401, "{reply}");

    // A URL no ModelSync names is ignored and reported; a known one, spelled otherwise, matches.
    let spelled = lambdas
        .url("/deploy")
        .replace("http://", "HTTP://")
        .replace("/deploy", "/deploy#x");
    let unknown = lambdas.url("/nothing-here");
    let (status, reply) = post(
        &receiver,
        Some(RECEIVER_TOKEN),
        json!({"urls": [spelled, unknown]}),
    )
    .await;
    println!("POST /hook/lambda-changed: {status} {reply}");
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["unknown"], json!([unknown]));
    assert_eq!(
        reply["matched"][&spelled],
        json!([format!("{}/deployer", env.ns)])
    );
}

/// Each route's status and body from every replica.
async fn answers(replicas: &[&Lambdas]) -> Vec<Vec<(u16, String)>> {
    let mut all = Vec::new();
    for r in replicas {
        let mut one = Vec::new();
        for route in ["/deploy", "/retrain-on-data", "/retrain"] {
            one.push(r.answer(route).await);
        }
        all.push(one);
    }
    all
}

async fn all_at(env: &Env, replicas: &[&Lambdas], commit: &str) {
    let short = &commit[..12];
    env.eventually(WAIT, &format!("every replica at {short}"), || async {
        for r in replicas {
            if r.revision("/deploy").await.as_deref() != Some(short) {
                return None;
            }
        }
        Some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_replicas_over_one_repository_give_the_same_answers() {
    let env = Env::new("replicas").await;
    let dir = env.logs.path();
    let repo = Repo::start(dir);
    let c1 = repo.push(
        &[("data/a.csv", "1\n"), ("manifests/model.yaml", &pin("m1"))],
        "data and the pin",
    );
    let c2 = repo.push(&[("models/m1.yaml", &model("m1", &c1))], "model m1");
    // Two replicas, each with its own mirror of the repository, as two pods would have.
    let a = Lambdas::start(&dir.join("a"), &repo, "").await;
    let b = Lambdas::start(&dir.join("b"), &repo, "").await;
    all_at(&env, &[&a, &b], &c2).await;
    let before = answers(&[&a, &b]).await;
    assert_eq!(before[0], before[1], "replicas differ at {c2}");
    assert!(
        before[0].iter().all(|(status, _)| *status == 200),
        "{before:?}"
    );
    println!("at {}: {:?}", &c2[..12], before[0]);

    // New data and a new model: the answers change, the same way on both once both synced.
    let c3 = repo.push(
        &[("data/b.csv", "2\n"), ("models/m2.yaml", &model("m2", &c1))],
        "data b, model m2",
    );
    for r in [&a, &b] {
        let (status, reply) = r.git_hook(&repo.push_event(&c3), GIT_HOOK_SECRET).await;
        assert_eq!(status, 202, "{reply}");
    }
    all_at(&env, &[&a, &b], &c3).await;
    let after = answers(&[&a, &b]).await;
    assert_eq!(after[0], after[1], "replicas differ at {c3}");
    assert_ne!(before[0], after[0], "the new commit changed no answer");
    let deploy: Value = serde_json::from_str(&after[0][0].1).unwrap();
    assert_eq!(deploy["needsSync"], true, "{deploy}");
    assert_eq!(deploy["parameters"]["model"], "m2", "{deploy}");
    println!("at {}: {:?}", &c3[..12], after[0]);
}
