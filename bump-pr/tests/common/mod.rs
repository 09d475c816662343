//! Shared pieces of the bump-pr integration tests: real git remotes made with the git CLI, the
//! test environment's stand-in for GitHub's pull request API, and argument building.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use clap::Parser;
use modelsync_bump_pr::BumpPrArgs;
use modelsync_testenv::git::{Git, GitDaemon};
use modelsync_testenv::github::GitHub;
use tempfile::TempDir;

pub const OWNER: &str = "acme";
pub const REPO: &str = "gitops";
pub const BRANCH: &str = "modelsync/label-bot";
pub const AUTHOR: &str = "modelsync-bot <bot@modelsync.test>";
pub const TOKEN: &str = "ghp_TESTTOKEN0123456789abcdefSENTINEL";

pub const PIN: &str = "# the deployed model\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: label-bot-model\ndata:\n  model: \"m-1\"   # bumped by modelsync\n  threshold: '0.7'\n";

/// Runs the git CLI with no user or system config, as a person: Jane Human.
pub fn git(dir: &Path, args: &[&str]) -> String {
    Git::new(dir)
        .author("Jane Human", "jane@example.com")
        .run(args)
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// The GitHub stand-in on 127.0.0.1; its API root is `url()`.
pub async fn start_github() -> GitHub {
    GitHub::start().await.unwrap().0
}

/// A bare repository on disk with `pin.yaml` committed on `main`.
pub struct Remote {
    pub dir: TempDir,
}

impl Remote {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bare = dir.path().join("gitops.git");
        git(
            dir.path(),
            &["init", "--bare", "-b", "main", bare.to_str().unwrap()],
        );
        let seed = dir.path().join("seed");
        git(dir.path(), &["init", "-b", "main", seed.to_str().unwrap()]);
        std::fs::create_dir_all(seed.join("prod")).unwrap();
        std::fs::write(seed.join("prod/pin.yaml"), PIN).unwrap();
        std::fs::write(seed.join("README.md"), "gitops\n").unwrap();
        git(&seed, &["add", "."]);
        git(&seed, &["commit", "-m", "seed"]);
        git(&seed, &["push", bare.to_str().unwrap(), "main"]);
        Self { dir }
    }

    pub fn bare(&self) -> PathBuf {
        self.dir.path().join("gitops.git")
    }

    pub fn url(&self) -> String {
        self.bare().to_str().unwrap().to_string()
    }

    pub fn head(&self, branch: &str) -> Option<String> {
        let branch = format!("refs/heads/{branch}");
        Git::new(&self.bare())
            .run(&["rev-parse", "--verify", "--quiet", &branch])
            .ok()
    }

    /// Serves the remote over `git daemon` on 127.0.0.1 until the daemon is dropped; returns it
    /// with the remote's `git://` URL.
    pub fn serve(&self) -> (GitDaemon, String) {
        let log = self.dir.path().join("git-daemon.log");
        let daemon = GitDaemon::start(self.dir.path(), Ipv4Addr::LOCALHOST.into(), &log)
            .unwrap_or_else(|e| panic!("{e:#}"));
        let url = daemon.url("gitops.git");
        (daemon, url)
    }

    pub fn show(&self, rev: &str) -> String {
        git(&self.bare(), &["show", rev])
    }

    pub fn file(&self, branch: &str, path: &str) -> String {
        git(&self.bare(), &["show", &format!("{branch}:{path}")])
    }

    /// A fresh clone of the remote in `name`, on `branch` if given.
    fn clone_into(&self, name: &str, branch: Option<&str>) -> PathBuf {
        let work = self.dir.path().join(name);
        let _ = std::fs::remove_dir_all(&work);
        let bare = self.bare();
        let mut args = vec!["clone", bare.to_str().unwrap(), work.to_str().unwrap()];
        if let Some(branch) = branch {
            args.splice(1..1, ["-b", branch]);
        }
        git(self.dir.path(), &args);
        work
    }

    /// Commits to `branch` as a person, the way someone fixing up a bump PR would.
    pub fn human_commit(&self, branch: &str) {
        let work = self.clone_into("human", Some(branch));
        std::fs::write(work.join("README.md"), "gitops, edited by a person\n").unwrap();
        git(&work, &["commit", "-am", "docs: explain the pin"]);
        git(&work, &["push", "origin", branch]);
    }

    /// Merges `branch` into main, as the human reviewer would.
    pub fn merge(&self, branch: &str) {
        let work = self.clone_into("merger", None);
        let theirs = format!("origin/{branch}");
        git(&work, &["merge", "--no-ff", "-m", "merge", &theirs]);
        git(&work, &["push", "origin", "main"]);
    }
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: BumpPrArgs,
}

/// A token file in its own folder, outside any clone.
pub fn token_file() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
    (dir, path)
}

/// Arguments for a run that pins `model` in `prod/pin.yaml`, plus `extra` flags.
pub fn args(repo: &str, api: &str, token: &Path, model: &str, extra: &[&str]) -> BumpPrArgs {
    let mut argv: Vec<String> = [
        "bump-pr",
        "--repo",
        repo,
        "--base",
        "main",
        "--branch",
        BRANCH,
        "--file",
        "prod/pin.yaml",
        "--author",
        AUTHOR,
        "--github-api",
        api,
        "--github-repo",
        &format!("{OWNER}/{REPO}"),
        "--token-file",
        token.to_str().unwrap(),
        "--modelsync",
        "prod/label-bot",
        "--run",
        "label-bot-deploy-x1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.push("--set".into());
    argv.push(format!("data.model={model}"));
    argv.extend(extra.iter().map(|s| s.to_string()));
    Cli::try_parse_from(argv).unwrap().args
}
