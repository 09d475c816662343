//! The bump, start to end: clone, edit, commit, push, open or update the pull request, record.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, anyhow, bail};
use modelsync_gitops::remote::has_credentials;
use modelsync_gitops::repo_path;

use crate::args::BumpPrArgs;
use crate::git::{self, Clone};
use crate::github::{GitHub, PullRequest, slug_from_url};
use crate::message::{Facts, commit_message, is_own_commit, pr_body};
use crate::secret::Token;
use crate::yaml_edit;

/// What a run did, also written as Tekton results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The base branch already pins these values: nothing pushed, no pull request touched.
    UpToDate,
    /// A new pull request was opened.
    Opened,
    /// The open pull request's title and body were changed to match the new commit.
    Updated,
    /// The branch and the open pull request already matched.
    Unchanged,
    /// `--dry-run`: nothing was pushed or opened.
    DryRun,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::UpToDate => "up-to-date",
            Status::Opened => "opened",
            Status::Updated => "updated",
            Status::Unchanged => "unchanged",
            Status::DryRun => "dry-run",
        }
    }
}

#[derive(Clone, Debug)]
pub struct BumpOutcome {
    pub status: Status,
    /// The commit the branch points at after the run.
    pub commit: Option<String>,
    pub pull_request: Option<PullRequest>,
    /// The file and the commit that holds it as this run leaves it (pushed, or the base when
    /// it already pinned the model), reported as the `pr_ARTIFACT_OUTPUTS` result for lineage.
    pub artifact: Option<Artifact>,
}

/// A file of the GitOps repository at a commit, as Tekton Chains' type-hinted result reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Artifact {
    /// `<repository URL>#<file>`: nothing in a git URL says where the path would begin.
    pub uri: String,
    pub commit: String,
}

/// The result Tekton Chains (and modelsync's lineage) read as this step's output.
pub const ARTIFACT_RESULT: &str = "pr_ARTIFACT_OUTPUTS";

impl Artifact {
    fn new(repo: &str, file: &str, commit: impl ToString) -> Self {
        Artifact {
            uri: format!("{repo}#{file}"),
            commit: commit.to_string(),
        }
    }

    /// The result's JSON: `{uri, digest, pr-url}`, the pull request empty when there is none.
    pub fn result_json(&self, pr: Option<&PullRequest>) -> String {
        serde_json::json!({
            "uri": self.uri,
            "digest": format!("sha1:{}", self.commit),
            "pr-url": pr.map(|p| p.url.as_str()).unwrap_or(""),
        })
        .to_string()
    }
}

/// Runs the bump and prints what happened to `out`.
pub async fn run(args: &BumpPrArgs, out: &mut dyn Write) -> anyhow::Result<BumpOutcome> {
    refuse_credentials_in_url(&args.repo)?;
    let file = repo_path(&args.file).map_err(|e| anyhow!("--file {e}"))?;
    let changes = args.changes()?;
    let selector = args.selector()?;
    let token = match args.token_file() {
        Some(path) => Some(Token::from_file(path)?),
        None => Token::from_env(),
    };
    let slug = match args.github_repo() {
        Some(s) => Some(
            s.split_once('/')
                .map(|(o, n)| (o.to_string(), n.to_string()))
                .filter(|(o, n)| !o.is_empty() && !n.is_empty())
                .ok_or_else(|| anyhow!("--github-repo {s:?} must be OWNER/NAME"))?,
        ),
        None => slug_from_url(&args.repo),
    };
    if !args.dry_run {
        if token.is_none() {
            bail!(
                "no GitHub token: give --token-file FILE or set MODELSYNC_GITHUB_TOKEN or GITHUB_TOKEN"
            );
        }
        if slug.is_none() {
            bail!(
                "cannot tell the GitHub repository from --repo {}; give --github-repo OWNER/NAME",
                args.repo
            );
        }
    }

    let temp;
    let dir = match args.work_dir() {
        Some(dir) => {
            prepare_work_dir(dir)?;
            dir.to_path_buf()
        }
        None => {
            temp = tempfile::Builder::new().prefix("bump-pr-").tempdir()?;
            temp.path().to_path_buf()
        }
    };
    tracing::info!(repo = %args.repo, base = %args.base, branch = %args.branch, "cloning");
    let clone = git::clone(&dir, &args.repo, &args.base, &args.branch, token.as_ref())?;
    let before = clone.read_base_file(&file)?;
    let edit = yaml_edit::edit(&file, &before, &changes, selector.as_ref())?;

    let model = args.model().unwrap_or(&changes[0].value).to_string();
    let facts = Facts {
        model: &model,
        modelsync: args.modelsync(),
        run: args.run(),
        file: &file,
        branch: &args.branch,
        applied: &edit.applied,
    };
    let title = facts.fill(args.title());
    let user_body = facts.fill(&args.body);

    if !edit.changed() {
        writeln!(
            out,
            "already up to date: {file} on {} already pins {model}; nothing to commit, push or open",
            args.base
        )?;
        let outcome = BumpOutcome {
            status: Status::UpToDate,
            commit: None,
            pull_request: None,
            artifact: Some(Artifact::new(&args.repo, &file, clone.base_commit)),
        };
        write_results(args.results_dir(), &outcome)?;
        return Ok(outcome);
    }

    let commit = clone.commit_file(
        &file,
        &edit.text,
        &args.author,
        &commit_message(&title, &facts),
    )?;
    let new_tree = clone.commit_info(commit)?.tree;
    let already_pushed = match clone.branch_head {
        Some(head) => {
            check_no_human_commits(&clone, head, args)?;
            (clone.commit_info(head)?.tree == new_tree).then_some(head)
        }
        None => None,
    };

    if args.dry_run {
        write!(out, "{}", git::diff(&file, &before, &edit.text))?;
        let repo = slug.map_or_else(
            || "(unknown: give --github-repo)".to_string(),
            |(o, n)| format!("{o}/{n}"),
        );
        writeln!(
            out,
            "\ndry run: would force-push {} to branch {} and open (or update) the pull request in {repo}: {} -> {}\ntitle: {title}\n\n{}",
            &commit.to_string()[..12],
            args.branch,
            args.branch,
            args.base,
            pr_body(&user_body, &facts, &[])
        )?;
        return Ok(BumpOutcome {
            status: Status::DryRun,
            commit: Some(commit.to_string()),
            pull_request: None,
            artifact: None,
        });
    }

    let mut done = format!("cloned {} at {}", args.base, clone.base_commit);
    let pushed = match already_pushed {
        Some(head) => {
            writeln!(
                out,
                "branch {} already holds this change; not pushed",
                args.branch
            )?;
            head
        }
        None => {
            clone.force_push(commit, &args.branch, token.as_ref())?;
            tracing::info!(%commit, branch = %args.branch, "pushed");
            writeln!(out, "pushed {commit} to branch {}", args.branch)?;
            let _ = write!(done, ", pushed {commit} to branch {}", args.branch);
            commit
        }
    };

    let (owner, name) = slug.expect("checked above");
    let token = token.expect("checked above");
    let after_push = |e: anyhow::Error| {
        e.context(format!(
            "already done: {done}; no pull request was changed. Re-running is safe: it finds the pushed branch and finishes the pull request"
        ))
    };
    let github = GitHub::new(&args.github_api, &token, &owner, &name)?;
    tracing::debug!(api = %args.github_api, repo = %github.slug(), ?token, "syncing the pull request");
    let (status, pr) = sync_pull_request(&github, args, &title, &user_body, &facts)
        .await
        .map_err(after_push)?;
    match status {
        Status::Opened => writeln!(out, "opened pull request #{}", pr.number)?,
        Status::Updated => writeln!(out, "updated pull request #{}", pr.number)?,
        _ => writeln!(out, "pull request #{} already matches", pr.number)?,
    }
    writeln!(out, "{}", pr.url)?;
    let outcome = BumpOutcome {
        status,
        commit: Some(pushed.to_string()),
        artifact: Some(Artifact::new(&args.repo, &file, pushed)),
        pull_request: Some(pr),
    };
    write_results(args.results_dir(), &outcome)?;
    Ok(outcome)
}

/// Opens the pull request for the branch, or brings the open one's title and body in line.
async fn sync_pull_request(
    github: &GitHub,
    args: &BumpPrArgs,
    title: &str,
    user_body: &str,
    facts: &Facts<'_>,
) -> anyhow::Result<(Status, PullRequest)> {
    let prs = github.pulls_for_branch(&args.branch).await?;
    let open = prs.iter().filter(|p| p.open).max_by_key(|p| p.number);
    let superseded = |below: u64| -> Vec<u64> {
        let mut n: Vec<u64> = prs
            .iter()
            .filter(|p| !p.open && !p.merged && p.number < below)
            .map(|p| p.number)
            .collect();
        n.sort_unstable();
        n
    };
    match open {
        Some(pr) => {
            let body = pr_body(user_body, facts, &superseded(pr.number));
            if pr.title == title && pr.body == body {
                return Ok((Status::Unchanged, pr.clone()));
            }
            let updated = github.update(pr.number, title, &body).await?;
            Ok((Status::Updated, updated))
        }
        None => {
            let body = pr_body(user_body, facts, &superseded(u64::MAX));
            let pr = github
                .create(title, &body, &args.branch, &args.base, args.draft)
                .await?;
            let labels = args.labels();
            if !labels.is_empty() {
                github
                    .add_labels(pr.number, &labels)
                    .await
                    .with_context(|| format!("pull request {} was opened", pr.url))?;
            }
            let reviewers = args.reviewers();
            if !reviewers.is_empty() {
                github
                    .request_reviewers(pr.number, &reviewers)
                    .await
                    .with_context(|| format!("pull request {} was opened", pr.url))?;
            }
            Ok((Status::Opened, pr))
        }
    }
}

/// Stops when the branch head is not bump-pr's own commit: force-pushing would destroy a
/// person's work.
fn check_no_human_commits(clone: &Clone, head: git2::Oid, args: &BumpPrArgs) -> anyhow::Result<()> {
    let info = clone.commit_info(head)?;
    if is_own_commit(
        &info.author_email,
        &info.message,
        &args.author,
        &args.branch,
    ) {
        return Ok(());
    }
    let summary = info.message.lines().next().unwrap_or_default();
    bail!(
        "branch {branch} has a commit bump-pr did not make (head {head} by {author}: {summary:?}); \
         not overwriting it. Merge or close its pull request and delete the branch, or move those \
         commits to another branch, then run again",
        branch = args.branch,
        author = info.author,
    )
}

fn refuse_credentials_in_url(url: &str) -> anyhow::Result<()> {
    if has_credentials(url) {
        bail!(
            "--repo must not contain credentials (user@ or token@ in the URL); give the token with --token-file"
        );
    }
    Ok(())
}

fn prepare_work_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create --work-dir {}", dir.display()))?;
    if std::fs::read_dir(dir)?.next().is_some() {
        bail!(
            "--work-dir {} is not empty; give an empty or new folder",
            dir.display()
        );
    }
    Ok(())
}

/// Writes Tekton result files, so the run records what it did.
fn write_results(dir: Option<&Path>, outcome: &BumpOutcome) -> anyhow::Result<()> {
    let Some(dir) = dir else { return Ok(()) };
    let write = |name: &str, value: &str| {
        std::fs::write(dir.join(name), value)
            .with_context(|| format!("cannot write result {}", dir.join(name).display()))
    };
    write("status", outcome.status.as_str())?;
    write("commit-sha", outcome.commit.as_deref().unwrap_or(""))?;
    let pr = outcome.pull_request.as_ref();
    write("pr-url", pr.map(|p| p.url.as_str()).unwrap_or(""))?;
    write(
        "pr-number",
        &pr.map(|p| p.number.to_string()).unwrap_or_default(),
    )?;
    if let Some(artifact) = &outcome.artifact {
        write(ARTIFACT_RESULT, &artifact.result_json(pr))?;
    }
    Ok(())
}

/// Entry point for the `modelsync bump-pr` subcommand.
pub fn main(args: BumpPrArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut stdout = std::io::stdout();
    runtime.block_on(run(&args, &mut stdout)).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_artifact_result_names_file_commit_and_pull_request() {
        let a = Artifact::new(
            "https://github.com/o/gitops",
            "deploy/model.yaml",
            "0123abc",
        );
        let v: serde_json::Value = serde_json::from_str(&a.result_json(None)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"uri": "https://github.com/o/gitops#deploy/model.yaml", "digest": "sha1:0123abc", "pr-url": ""})
        );
        let parsed = modelsync_api::lineage::ArtifactOutput::parse(ARTIFACT_RESULT, &v).unwrap();
        assert_eq!(parsed.dataset().unwrap().name, "deploy/model.yaml");
    }

    #[test]
    fn urls_with_credentials_are_refused() {
        assert!(refuse_credentials_in_url("https://x:ghp_1@github.com/a/b").is_err());
        assert!(refuse_credentials_in_url("https://token@github.com/a/b").is_err());
        assert!(refuse_credentials_in_url("https://github.com/a/b@c").is_ok());
        assert!(refuse_credentials_in_url("/srv/git/repo.git").is_ok());
    }
}
