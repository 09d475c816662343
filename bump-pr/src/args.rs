//! The flags of `modelsync bump-pr`; each can also come from an environment variable, which is
//! how a Tekton step passes params without echoing them in its command line.

use std::path::Path;

use clap::Args;

use crate::change::{Change, DocSelector};
use crate::message::Author;

#[derive(Args, Debug, Clone)]
#[command(
    about = "Pin a new model in a GitOps repository and open or update its pull request",
    long_about = "Clones the base branch, sets the given YAML values in one file (comments and \
formatting kept), commits, force-pushes one branch per ModelSync, and opens the pull request for \
that branch or updates the open one. A value already in place does nothing. The token is read \
from --token-file or MODELSYNC_GITHUB_TOKEN / GITHUB_TOKEN and never printed."
)]
pub struct BumpPrArgs {
    /// Git URL of the GitOps repository (https, git://, file://, or a local path). Must not
    /// contain credentials.
    #[arg(long, env = "MODELSYNC_REPO")]
    pub repo: String,

    /// Branch the pull request merges into.
    #[arg(long, env = "MODELSYNC_BASE", default_value = "main")]
    pub base: String,

    /// The one branch this resource's bumps live on, e.g. modelsync/<name>.
    #[arg(long, env = "MODELSYNC_BRANCH")]
    pub branch: String,

    /// File to edit, relative to the repository root.
    #[arg(long, env = "MODELSYNC_FILE")]
    pub file: String,

    /// TARGET=VALUE, repeatable: a YAML path (data.model, spec.containers[name=main].image),
    /// kpt-setter:NAME, image:NAME (newTag), image-digest:NAME or image-name:NAME (newName).
    /// From the environment, one per line.
    #[arg(
        long = "set",
        env = "MODELSYNC_SET",
        value_delimiter = '\n',
        required = true
    )]
    pub set: Vec<String>,

    /// Which document of a multi-document file to edit: kind=K,name=N,namespace=NS,
    /// apiVersion=V or index=I (from 0).
    #[arg(long, env = "MODELSYNC_DOCUMENT")]
    pub document: Option<String>,

    /// The model being pinned, named in the commit and the pull request. Defaults to the
    /// first --set value.
    #[arg(long, env = "MODELSYNC_MODEL")]
    pub model: Option<String>,

    /// The ModelSync (namespace/name) asking for the bump, named in the commit.
    #[arg(long, env = "MODELSYNC_MODELSYNC")]
    pub modelsync: Option<String>,

    /// The PipelineRun doing the bump, named in the commit.
    #[arg(long, env = "MODELSYNC_RUN")]
    pub run: Option<String>,

    /// Pull request and commit title; {model}, {modelsync}, {run}, {file}, {branch} are filled in.
    #[arg(long, env = "MODELSYNC_TITLE", default_value = DEFAULT_TITLE)]
    pub title: String,

    /// Text opening the pull request body (same placeholders); bump-pr appends what changed.
    #[arg(long, env = "MODELSYNC_BODY", default_value = "")]
    pub body: String,

    /// Commit author, "Name <email>". Also how bump-pr recognises its own commits.
    #[arg(long, env = "MODELSYNC_AUTHOR")]
    pub author: Author,

    /// GitHub API root: https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise.
    #[arg(
        long,
        env = "MODELSYNC_GITHUB_API",
        default_value = "https://api.github.com"
    )]
    pub github_api: String,

    /// owner/name of the repository on GitHub; defaults to the one in --repo.
    #[arg(long, env = "MODELSYNC_GITHUB_REPO")]
    pub github_repo: Option<String>,

    /// File holding the GitHub token (a mounted Secret). Without it MODELSYNC_GITHUB_TOKEN or
    /// GITHUB_TOKEN is read.
    #[arg(long, env = "MODELSYNC_TOKEN_FILE")]
    pub token_file: Option<String>,

    /// Open the pull request as a draft.
    #[arg(long, env = "MODELSYNC_DRAFT")]
    pub draft: bool,

    /// Labels for a new pull request, comma-separated.
    #[arg(long, env = "MODELSYNC_LABELS", value_delimiter = ',')]
    pub labels: Vec<String>,

    /// Reviewers for a new pull request, comma-separated (org/team for a team).
    #[arg(long, env = "MODELSYNC_REVIEWERS", value_delimiter = ',')]
    pub reviewers: Vec<String>,

    /// Print the diff and the pull request that would be opened; push nothing, call no GitHub API.
    #[arg(long, env = "MODELSYNC_DRY_RUN")]
    pub dry_run: bool,

    /// Tekton results folder: pr-url, pr-number, commit-sha and status are written there.
    #[arg(long, env = "MODELSYNC_RESULTS_DIR")]
    pub results_dir: Option<String>,

    /// Where to put the clone (must not exist or be empty); default a temporary folder that is
    /// removed afterwards.
    #[arg(long, env = "MODELSYNC_WORK_DIR")]
    pub work_dir: Option<String>,
}

/// Tekton passes an unset optional param as an empty string; treat it as absent.
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn given_list(values: &[String]) -> Vec<String> {
    values
        .iter()
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect()
}

fn given_path(value: &Option<String>) -> Option<&Path> {
    given(value).map(Path::new)
}

impl BumpPrArgs {
    /// The `--set` values, parsed; blank lines (a trailing newline in the env var) are skipped.
    pub fn changes(&self) -> Result<Vec<Change>, crate::change::ChangeSyntaxError> {
        let changes = self
            .set
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim_end_matches('\r').parse())
            .collect::<Result<Vec<Change>, _>>()?;
        if changes.is_empty() {
            return Err(crate::change::ChangeSyntaxError {
                spec: String::new(),
                reason: "no --set given; say which value to pin, e.g. data.model=m-2".into(),
            });
        }
        Ok(changes)
    }

    pub fn selector(&self) -> Result<Option<DocSelector>, crate::change::SelectorSyntaxError> {
        given(&self.document).map(str::parse).transpose()
    }

    pub fn model(&self) -> Option<&str> {
        given(&self.model)
    }

    pub fn modelsync(&self) -> Option<&str> {
        given(&self.modelsync)
    }

    pub fn run(&self) -> Option<&str> {
        given(&self.run)
    }

    pub fn github_repo(&self) -> Option<&str> {
        given(&self.github_repo)
    }

    pub fn title(&self) -> &str {
        if self.title.trim().is_empty() {
            DEFAULT_TITLE
        } else {
            &self.title
        }
    }

    pub fn labels(&self) -> Vec<String> {
        given_list(&self.labels)
    }

    pub fn reviewers(&self) -> Vec<String> {
        given_list(&self.reviewers)
    }

    pub fn token_file(&self) -> Option<&Path> {
        given_path(&self.token_file)
    }

    pub fn results_dir(&self) -> Option<&Path> {
        given_path(&self.results_dir)
    }

    pub fn work_dir(&self) -> Option<&Path> {
        given_path(&self.work_dir)
    }
}

pub const DEFAULT_TITLE: &str = "Bump model to {model}";

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BumpPrArgs,
    }

    #[test]
    fn parses_a_full_command_line() {
        let cli = Cli::try_parse_from([
            "bump-pr",
            "--repo",
            "https://github.com/acme/gitops.git",
            "--branch",
            "modelsync/label-bot",
            "--file",
            "prod/pin.yaml",
            "--set",
            "data.model=m-2",
            "--set",
            "image:model=m-2",
            "--author",
            "Bot <bot@example.com>",
            "--labels",
            "model,automated",
            "--draft",
        ])
        .unwrap();
        assert_eq!(cli.args.base, "main");
        assert_eq!(cli.args.changes().unwrap().len(), 2);
        assert_eq!(cli.args.labels, ["model", "automated"]);
        assert!(cli.args.draft);
        assert_eq!(cli.args.title, "Bump model to {model}");
    }

    #[test]
    fn refuses_bad_values_with_the_reason() {
        let cli = Cli::try_parse_from([
            "bump-pr",
            "--repo",
            "r",
            "--branch",
            "b",
            "--file",
            "f",
            "--set",
            "nope",
            "--author",
            "Bot <b@x>",
        ])
        .unwrap();
        let err = cli.args.changes().unwrap_err().to_string();
        assert!(err.contains("TARGET=VALUE"), "{err}");
        let bad_author = Cli::try_parse_from([
            "bump-pr", "--repo", "r", "--branch", "b", "--file", "f", "--set", "a=b", "--author",
            "nobody",
        ]);
        assert!(bad_author.is_err());
    }

    #[test]
    fn blank_values_from_tekton_params_count_as_absent() {
        let cli = Cli::try_parse_from([
            "bump-pr",
            "--repo",
            "r",
            "--branch",
            "b",
            "--file",
            "f",
            "--set",
            "a=b\n\nc=d\n",
            "--author",
            "Bot <b@x>",
            "--document",
            " ",
            "--model",
            "",
            "--labels",
            "",
            "--title",
            "",
            "--token-file",
            "",
        ])
        .unwrap();
        let args = cli.args;
        assert_eq!(args.changes().unwrap().len(), 2);
        assert_eq!(args.selector().unwrap(), None);
        assert_eq!(args.model(), None);
        assert!(args.labels().is_empty());
        assert_eq!(args.title(), DEFAULT_TITLE);
        assert_eq!(args.token_file(), None);
    }
}
