//! The lambda end of the push tests: a GitOps repository served by `git daemon` and pushed to
//! as a person would, real `modelsync lambdas` processes mirroring it, and the git host's
//! push webhook as GitHub sends it.

#![allow(dead_code)] // each test binary uses its own subset

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use modelsync_testenv::git::{GitDaemon, git};
use modelsync_testenv::process::{Guarded, free_port, log_tail};
use serde_json::{Value, json};

/// The webhook secret the git host and the lambda servers share.
pub const GIT_HOOK_SECRET: &str = "git-hook-s3cret";

/// A model record created "in the future": its age is zero for every replica whenever it
/// computes, so answers that quote an age are byte-equal across replicas.
pub fn model(id: &str, data_revision: &str) -> String {
    format!("id: {id}\ncreated: 2099-01-01T00:00:00Z\ndataRevision: {data_revision}\n")
}

pub fn pin(model: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: model}}\ndata:\n  model: {model}\n")
}

/// A bare repository served by `git daemon`, and a clone that commits and pushes to it.
pub struct Repo {
    _daemon: GitDaemon,
    pub url: String,
    work: PathBuf,
}

impl Repo {
    pub fn start(dir: &Path) -> Repo {
        let base = dir.join("served");
        std::fs::create_dir_all(&base).unwrap();
        git(&base, &["init", "-q", "--bare", "-b", "main", "gitops.git"]).unwrap();
        let daemon = GitDaemon::start(
            &base,
            Ipv4Addr::LOCALHOST.into(),
            &dir.join("git-daemon.log"),
        )
        .unwrap();
        let url = daemon.url("gitops.git");
        let work = dir.join("work");
        git(dir, &["clone", "-q", &url, "work"]).unwrap();
        git(&work, &["checkout", "-q", "-B", "main"]).unwrap();
        Repo {
            _daemon: daemon,
            url,
            work,
        }
    }

    /// Commits `files` and pushes them over `git://`; returns the commit.
    pub fn push(&self, files: &[(&str, &str)], message: &str) -> String {
        for (path, text) in files {
            let p = self.work.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        git(&self.work, &["add", "-A"]).unwrap();
        git(&self.work, &["commit", "-q", "-m", message]).unwrap();
        git(&self.work, &["push", "-q", "origin", "main"]).unwrap();
        git(&self.work, &["rev-parse", "HEAD"]).unwrap()
    }

    /// GitHub's push event for the newest commit: its JSON body.
    pub fn push_event(&self, after: &str) -> String {
        json!({
            "ref": "refs/heads/main",
            "after": after,
            "repository": {"full_name": "org/gitops", "default_branch": "main", "clone_url": self.url},
            "pusher": {"name": "dev"},
        })
        .to_string()
    }
}

/// A running `modelsync lambdas`.
pub struct Lambdas {
    pub process: Guarded,
    pub base: String,
    pub log: PathBuf,
    http: reqwest::Client,
}

/// Its lambdas.yaml, with `extra` (e.g. `notify:`, where `SELF` stands for the server's own
/// `http://127.0.0.1:<port>`) added; routes `/deploy`,
/// `/retrain-on-data` and `/retrain`; the default mirror period (10s).
pub fn config(dir: &Path, port: u16, repo: &Repo, extra: &str) -> PathBuf {
    std::fs::write(dir.join("git-hook-secret"), format!("{GIT_HOOK_SECRET}\n")).unwrap();
    let text = format!(
        "listen: 127.0.0.1:{port}\n\
         mirror: {{repo: \"{}\", ref: main, root: \"{}\"}}\n\
         models: {{records: models/}}\n\
         gitHook: {{secretFile: git-hook-secret}}\n\
         {}\n\
         routes:\n\
         \x20 /deploy: {{lambda: deploy-if-newer, file: manifests/model.yaml, yamlPath: data.model}}\n\
         \x20 /retrain-on-data: {{lambda: retrain-on-new-data, dataPath: data/}}\n\
         \x20 /retrain: {{lambda: retrain-if-stale, maxAge: 24h}}\n",
        repo.url,
        dir.join("mirror").display(),
        extra.replace("SELF", &format!("http://127.0.0.1:{port}")),
    );
    let file = dir.join("lambdas.yaml");
    std::fs::write(&file, text).unwrap();
    file
}

impl Lambdas {
    /// Starts `modelsync lambdas` in `dir` (made if missing) and waits until it is ready.
    pub async fn start(dir: &Path, repo: &Repo, extra: &str) -> Lambdas {
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port().unwrap();
        let config = config(dir, port, repo, extra);
        let log = dir.join("lambdas.log");
        let mut process = Guarded::spawn(
            "lambdas",
            Path::new(env!("CARGO_BIN_EXE_modelsync")),
            &[
                "lambdas".into(),
                "--config".into(),
                config.display().to_string(),
            ],
            &log,
        )
        .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = http
                .get(format!("{base}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ready {
                break;
            }
            assert!(
                process.exited().is_none() && Instant::now() < deadline,
                "modelsync lambdas never became ready:\n{}",
                log_tail(&log, 30)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Lambdas {
            process,
            base,
            log,
            http,
        }
    }

    pub fn url(&self, route: &str) -> String {
        format!("{}{route}", self.base)
    }

    /// The route's status and body, as the controller would read them.
    pub async fn answer(&self, route: &str) -> (u16, String) {
        let r = self.http.get(self.url(route)).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// The answer's `revision` (the mirrored commit, abbreviated).
    pub async fn revision(&self, route: &str) -> Option<String> {
        let (_, body) = self.answer(route).await;
        let v: Value = serde_json::from_str(&body).ok()?;
        v["revision"].as_str().map(str::to_owned)
    }

    /// `git_sync_count_total`, every status summed: it grows at each mirror sync.
    pub async fn syncs(&self) -> u64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| l.starts_with("git_sync_count_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// Calls `POST /hooks/git` as GitHub would: event `push`, body signed with `secret`.
    pub async fn git_hook(&self, body: &str, secret: &str) -> (u16, Value) {
        let signature = modelsync_api::hook::sign(secret.as_bytes(), body.as_bytes());
        let r = self
            .http
            .post(format!("{}/hooks/git", self.base))
            .header("X-GitHub-Event", "push")
            .header("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
            .header("X-Hub-Signature-256", signature)
            .header("Content-Type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}
