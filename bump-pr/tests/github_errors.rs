//! GitHub failures after the push: each says what went wrong, what to do, and what was already
//! done, so a person reading the PipelineRun log knows the state of the repository.

mod common;

use common::*;
use modelsync_bump_pr::run;
use modelsync_testenv::github::{Endpoint, GitHub};
use modelsync_testenv::process::free_port;
use serde_json::json;

async fn failing_run(server_uri: &str, remote: &Remote) -> String {
    let (_t, token) = token_file();
    let a = args(&remote.url(), server_uri, &token, "m-2", &[]);
    let mut out = Vec::new();
    let err = run(&a, &mut out).await.expect_err("the run must fail");
    let message = format!("{err:#}");
    let pushed = remote
        .head(BRANCH)
        .expect("the branch was pushed before GitHub was asked");
    assert!(
        message.contains("already done: cloned main at") && message.contains(&pushed),
        "the error says what was already done: {message}"
    );
    message
}

/// How many times the run asked to open a pull request.
fn creations(github: &GitHub) -> usize {
    github
        .seen()
        .iter()
        .filter(|s| s.method == "POST" && s.path == "/repos/acme/gitops/pulls")
        .count()
}

#[tokio::test]
async fn bad_token_401() {
    let github = start_github().await;
    github.fail(
        Endpoint::ListPulls,
        401,
        json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}),
    );
    let message = failing_run(github.url(), &Remote::new()).await;
    assert!(
        message.contains("rejected the token (401 Bad credentials)"),
        "{message}"
    );
    assert!(message.contains("--token-file"), "{message}");
}

#[tokio::test]
async fn no_permission_403() {
    let github = start_github().await;
    github.fail(
        Endpoint::CreatePull,
        403,
        json!({"message": "Resource not accessible by personal access token"}),
    );
    let message = failing_run(github.url(), &Remote::new()).await;
    assert_eq!(creations(&github), 1);
    assert!(
        message.contains("may not open a pull request in acme/gitops"),
        "{message}"
    );
    assert!(message.contains("Resource not accessible"), "{message}");
    assert!(message.contains("pull-requests: write"), "{message}");
}

#[tokio::test]
async fn validation_failed_422() {
    let github = start_github().await;
    github.fail(
        Endpoint::CreatePull,
        422,
        json!({
            "message": "Validation Failed",
            "errors": [{"resource": "PullRequest", "code": "custom", "message": "No commits between main and modelsync/label-bot"}]
        }),
    );
    let message = failing_run(github.url(), &Remote::new()).await;
    assert_eq!(creations(&github), 1);
    assert!(
        message.contains("refused to open a pull request (422"),
        "{message}"
    );
    assert!(
        message.contains("No commits between main and modelsync/label-bot"),
        "{message}"
    );
}

#[tokio::test]
async fn unreachable_api() {
    let port = free_port().unwrap();
    let message = failing_run(&format!("http://127.0.0.1:{port}"), &Remote::new()).await;
    assert!(message.contains("cannot reach the GitHub API"), "{message}");
    assert!(message.contains("Re-running is safe"), "{message}");
}

#[tokio::test]
async fn a_rerun_after_a_failure_finishes_the_pr_without_pushing_again() {
    let remote = Remote::new();
    let down = free_port().unwrap();
    failing_run(&format!("http://127.0.0.1:{down}"), &remote).await;
    let pushed = remote.head(BRANCH).unwrap();
    let github = start_github().await;
    let (_t, token) = token_file();
    let mut out = Vec::new();
    let outcome = run(
        &args(&remote.url(), github.url(), &token, "m-2", &[]),
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!(outcome.status, modelsync_bump_pr::Status::Opened);
    assert_eq!(
        remote.head(BRANCH).unwrap(),
        pushed,
        "same commit, not pushed again"
    );
    assert!(String::from_utf8(out).unwrap().contains("not pushed"));
}
