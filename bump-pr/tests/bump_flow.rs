//! `bump-pr` end to end against real git remotes (a bare repository on disk, and `git daemon`
//! on 127.0.0.1) and the stateful stand-in for GitHub's pull request API.

mod common;

use common::*;
use modelsync_bump_pr::{Status, run};
use modelsync_testenv::github::Pr;

async fn bump(
    args: &modelsync_bump_pr::BumpPrArgs,
) -> (anyhow::Result<modelsync_bump_pr::BumpOutcome>, String) {
    let mut out = Vec::new();
    let result = run(args, &mut out).await;
    (result, String::from_utf8(out).unwrap())
}

/// The scenario the issue names, over any git URL: first run opens, a newer model updates the
/// same branch and PR, the same model again does nothing.
async fn open_update_then_nothing(remote: &Remote, url: &str) {
    let github = start_github().await;
    let (_t, token) = token_file();
    let api = github.url();

    let (first, out) = bump(&args(url, api, &token, "m-2", &[])).await;
    let first = first.unwrap_or_else(|e| panic!("first run: {e:#}"));
    assert_eq!(first.status, Status::Opened, "{out}");
    let head1 = remote.head(BRANCH).expect("branch pushed");
    assert_eq!(first.commit.as_deref(), Some(head1.as_str()));
    assert!(
        remote
            .file(BRANCH, "prod/pin.yaml")
            .contains("model: \"m-2\"   # bumped by modelsync")
    );
    assert_eq!(remote.file("main", "prod/pin.yaml"), PIN.trim_end());
    let commit = remote.show(&head1);
    assert!(
        commit.contains("Author: modelsync-bot <bot@modelsync.test>"),
        "{commit}"
    );
    assert!(commit.contains("Bump model to m-2"), "{commit}");
    assert!(commit.contains("ModelSync: prod/label-bot"), "{commit}");
    assert!(
        commit.contains("PipelineRun: label-bot-deploy-x1"),
        "{commit}"
    );
    let prs = github.prs();
    assert_eq!(prs.len(), 1);
    assert_eq!(prs[0].title, "Bump model to m-2");
    assert!(prs[0].body.contains("`m-2`"), "{}", prs[0].body);
    assert_eq!(
        (prs[0].head.as_str(), prs[0].base.as_str()),
        (BRANCH, "main")
    );
    assert!(
        out.trim_end().ends_with(&first.pull_request.unwrap().url),
        "{out}"
    );

    let (second, out) = bump(&args(url, api, &token, "m-3", &[])).await;
    let second = second.unwrap_or_else(|e| panic!("second run: {e:#}"));
    assert_eq!(second.status, Status::Updated, "{out}");
    let head2 = remote.head(BRANCH).unwrap();
    assert_ne!(head1, head2);
    assert!(
        remote
            .file(BRANCH, "prod/pin.yaml")
            .contains("model: \"m-3\"")
    );
    let prs = github.prs();
    assert_eq!(prs.len(), 1, "the same PR is updated, no second one");
    assert_eq!(second.pull_request.unwrap().number, prs[0].number);
    assert_eq!(prs[0].title, "Bump model to m-3");
    assert!(prs[0].body.contains("`m-3`"), "{}", prs[0].body);
    assert!(
        !prs[0].title.contains("m-2") && !prs[0].body.contains("m-2"),
        "title and body must name only the new model: {prs:?}"
    );

    let writes_before = github.writes().len();
    let (third, out) = bump(&args(url, api, &token, "m-3", &[])).await;
    assert_eq!(third.unwrap().status, Status::Unchanged, "{out}");
    assert_eq!(remote.head(BRANCH).unwrap(), head2, "nothing pushed");
    assert_eq!(
        github.writes().len(),
        writes_before,
        "no PR created or edited"
    );

    // Once merged, the same model is already on the base: no push, no PR, no GitHub call.
    remote.merge(BRANCH);
    let seen_before = github.seen().len();
    let (fourth, out) = bump(&args(url, api, &token, "m-3", &[])).await;
    assert_eq!(fourth.unwrap().status, Status::UpToDate, "{out}");
    assert!(out.contains("already up to date"), "{out}");
    assert_eq!(remote.head(BRANCH).unwrap(), head2);
    assert_eq!(github.seen().len(), seen_before);
}

#[tokio::test]
async fn bare_repository_open_update_then_nothing() {
    let remote = Remote::new();
    open_update_then_nothing(&remote, &remote.url()).await;
}

#[tokio::test]
async fn git_daemon_open_update_then_nothing() {
    let remote = Remote::new();
    let (_daemon, url) = remote.serve();
    open_update_then_nothing(&remote, &url).await;
}

#[tokio::test]
async fn the_current_model_does_nothing() {
    let remote = Remote::new();
    let github = start_github().await;
    let (_t, token) = token_file();
    let results = tempfile::tempdir().unwrap();
    let results_dir = results.path().to_str().unwrap();
    let a = args(
        &remote.url(),
        github.url(),
        &token,
        "m-1",
        &["--results-dir", results_dir],
    );
    let (outcome, out) = bump(&a).await;
    assert_eq!(outcome.unwrap().status, Status::UpToDate);
    assert!(out.contains("already up to date"), "{out}");
    assert_eq!(remote.head(BRANCH), None, "no branch pushed");
    assert!(
        github.seen().is_empty(),
        "no GitHub call: {:?}",
        github.seen()
    );
    let status = std::fs::read_to_string(results.path().join("status")).unwrap();
    assert_eq!(status, "up-to-date");
}

#[tokio::test]
async fn a_human_commit_on_the_branch_stops_the_tool() {
    let remote = Remote::new();
    let github = start_github().await;
    let (_t, token) = token_file();
    let api = github.url();
    bump(&args(&remote.url(), api, &token, "m-2", &[]))
        .await
        .0
        .unwrap();
    remote.human_commit(BRANCH);
    let human_head = remote.head(BRANCH).unwrap();
    let writes_before = github.writes().len();

    let (result, _) = bump(&args(&remote.url(), api, &token, "m-3", &[])).await;
    let message = format!("{:#}", result.unwrap_err());
    assert!(message.contains("did not make"), "{message}");
    assert!(message.contains("Jane Human"), "{message}");
    assert!(message.contains("not overwriting"), "{message}");
    assert_eq!(
        remote.head(BRANCH).unwrap(),
        human_head,
        "the person's commit stays"
    );
    assert_eq!(github.writes().len(), writes_before);
}

#[tokio::test]
async fn a_closed_unmerged_pr_is_not_reopened_but_named() {
    let remote = Remote::new();
    let github = start_github().await;
    github.add_pr(Pr {
        number: 5,
        title: "Bump model to m-0".into(),
        body: "old".into(),
        head: BRANCH.into(),
        base: "main".into(),
        open: false,
        merged: false,
        draft: false,
        labels: vec![],
        reviewers: vec![],
    });
    let (_t, token) = token_file();
    let a = args(
        &remote.url(),
        github.url(),
        &token,
        "m-2",
        &[
            "--labels",
            "model-bump,automated",
            "--reviewers",
            "alice,acme/ml-team",
            "--draft",
        ],
    );
    let (outcome, out) = bump(&a).await;
    let outcome = outcome.unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(outcome.status, Status::Opened, "{out}");
    let prs = github.prs();
    assert_eq!(prs.len(), 2);
    assert!(!prs[0].open, "#5 stays closed");
    assert_eq!(prs[0].body, "old");
    assert_eq!(prs[1].number, 6);
    assert!(prs[1].body.contains("Supersedes #5"), "{}", prs[1].body);
    assert!(prs[1].draft);
    assert_eq!(prs[1].labels, ["model-bump", "automated"]);
    let reviewers = github
        .seen()
        .into_iter()
        .find(|s| s.path.ends_with("/requested_reviewers"))
        .expect("reviewers requested");
    assert_eq!(reviewers.body["reviewers"], serde_json::json!(["alice"]));
    assert_eq!(
        reviewers.body["team_reviewers"],
        serde_json::json!(["ml-team"])
    );
    assert!(!github.writes().iter().any(|s| s.path.ends_with("/pulls/5")));
}

#[tokio::test]
async fn dry_run_prints_the_diff_and_the_pr_and_changes_nothing() {
    let remote = Remote::new();
    let github = start_github().await;
    let (_t, token) = token_file();
    let a = args(&remote.url(), github.url(), &token, "m-2", &["--dry-run"]);
    let (outcome, out) = bump(&a).await;
    assert_eq!(outcome.unwrap().status, Status::DryRun);
    assert!(
        out.contains("-  model: \"m-1\"   # bumped by modelsync"),
        "{out}"
    );
    assert!(
        out.contains("+  model: \"m-2\"   # bumped by modelsync"),
        "{out}"
    );
    assert!(out.contains("title: Bump model to m-2"), "{out}");
    assert!(
        out.contains("--- a/prod/pin.yaml\n+++ b/prod/pin.yaml\n"),
        "{out}"
    );
    assert_eq!(remote.head(BRANCH), None);
    assert!(github.seen().is_empty());
}

#[tokio::test]
async fn a_missing_base_branch_or_path_is_a_clear_error() {
    let remote = Remote::new();
    let github = start_github().await;
    let (_t, token) = token_file();
    let mut a = args(&remote.url(), github.url(), &token, "m-2", &[]);
    a.base = "release".into();
    let message = format!("{:#}", bump(&a).await.0.unwrap_err());
    assert!(
        message.contains("base branch \"release\" does not exist"),
        "{message}"
    );
    assert!(
        message.contains("main"),
        "lists the branches there: {message}"
    );

    let a = args(
        &remote.url(),
        github.url(),
        &token,
        "m-2",
        &["--set", "data.modle=x"],
    );
    let message = format!("{:#}", bump(&a).await.0.unwrap_err());
    assert!(
        message.contains("prod/pin.yaml") && message.contains("data.modle"),
        "{message}"
    );
    assert_eq!(remote.head(BRANCH), None);
}

#[tokio::test]
async fn results_and_enterprise_api_root() {
    let remote = Remote::new();
    let github = start_github().await;
    let (_t, token) = token_file();
    let results = tempfile::tempdir().unwrap();
    let api = format!("{}/api/v3", github.url());
    let a = args(
        &remote.url(),
        &api,
        &token,
        "m-2",
        &["--results-dir", results.path().to_str().unwrap()],
    );
    let outcome = bump(&a).await.0.unwrap_or_else(|e| panic!("{e:#}"));
    let seen = github.seen();
    assert!(
        seen.iter()
            .all(|s| s.path.starts_with("/api/v3/repos/acme/gitops/")),
        "{seen:?}"
    );
    let read = |name: &str| std::fs::read_to_string(results.path().join(name)).unwrap();
    assert_eq!(read("status"), "opened");
    assert_eq!(read("pr-url"), outcome.pull_request.unwrap().url);
    assert_eq!(read("pr-number"), "1");
    assert_eq!(read("commit-sha"), remote.head(BRANCH).unwrap());
    let artifact: serde_json::Value = serde_json::from_str(&read("pr_ARTIFACT_OUTPUTS")).unwrap();
    assert_eq!(
        artifact["digest"],
        format!("sha1:{}", remote.head(BRANCH).unwrap())
    );
    assert_eq!(artifact["pr-url"], read("pr-url"));
    assert!(
        artifact["uri"].as_str().unwrap().starts_with(&remote.url()),
        "{artifact}"
    );
}

#[tokio::test]
async fn a_branch_protection_refusal_says_so() {
    let remote = Remote::new();
    let hook = remote.bare().join("hooks/pre-receive");
    std::fs::write(
        &hook,
        "#!/bin/sh\necho 'GH006: Protected branch update failed for refs/heads/modelsync/label-bot.' >&2\nexit 1\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Hooks run in receive-pack, which the local transport skips, so push over git daemon.
    let (_daemon, url) = remote.serve();
    let github = start_github().await;
    let (_t, token) = token_file();
    let (result, _) = bump(&args(&url, github.url(), &token, "m-2", &[])).await;
    let message = format!("{:#}", result.unwrap_err());
    assert!(message.contains("branch protection"), "{message}");
    assert!(github.seen().is_empty());
}
