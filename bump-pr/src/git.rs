//! The git side: fetch the base branch and the bump branch, commit one file, force-push.
//!
//! Nothing is checked out: the edit is read from and written to git objects directly. The token
//! reaches libgit2 only through the credentials callback, so it is never part of a URL and never
//! written under the clone.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

use git2::{
    Direction, ErrorClass, ErrorCode, FetchOptions, FileMode, Oid, PushOptions, Repository,
    Signature,
};
use modelsync_gitops::credentials::{Advice, Secrets};
use modelsync_gitops::remote::is_local;

use crate::message::Author;
use crate::secret::Token;

/// Why a git step failed, worded for the person running the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The base branch is not on the remote.
    #[error(
        "base branch {base:?} does not exist in {repo}; check --base (branches there: {known})"
    )]
    BaseMissing {
        repo: String,
        base: String,
        known: String,
    },
    /// The file to edit is not on the base branch.
    #[error(
        "{file} does not exist on branch {base:?} of {repo}; check --file (a path from the repository root)"
    )]
    FileMissing {
        repo: String,
        base: String,
        file: String,
    },
    /// The file is not UTF-8 text.
    #[error("{file} on branch {base:?} is not UTF-8 text; bump-pr edits YAML text files")]
    NotText { base: String, file: String },
    /// The server refused our credentials or asked for some we do not have.
    #[error(
        "git authentication to {repo} failed: {detail}. Check that --token-file holds a valid token with contents: write access"
    )]
    Auth { repo: String, detail: String },
    /// The server could not be reached.
    #[error("cannot reach git remote {repo}: {detail}")]
    Network { repo: String, detail: String },
    /// Branch protection refused the push.
    #[error(
        "the push to branch {branch:?} was refused by branch protection ({detail}); bump-pr needs an unprotected branch of its own: choose another --branch or relax the rule for it"
    )]
    BranchProtected { branch: String, detail: String },
    /// The server refused the push for another reason.
    #[error("the push to branch {branch:?} was refused: {detail}")]
    PushRejected { branch: String, detail: String },
    /// Anything else libgit2 reports.
    #[error("git {action} failed: {source}")]
    Other {
        action: &'static str,
        #[source]
        source: git2::Error,
    },
}

fn classify(repo: &str, action: &'static str, e: git2::Error) -> GitError {
    let message = e.message().to_string();
    let lower = message.to_ascii_lowercase();
    if e.code() == ErrorCode::Auth
        || lower.contains("authentication")
        || lower.contains("401")
        || lower.contains("credentials")
    {
        GitError::Auth {
            repo: repo.to_string(),
            detail: message,
        }
    } else if matches!(
        e.class(),
        ErrorClass::Net | ErrorClass::Http | ErrorClass::Ssl | ErrorClass::Os
    ) {
        GitError::Network {
            repo: repo.to_string(),
            detail: message,
        }
    } else {
        GitError::Other { action, source: e }
    }
}

/// What libgit2 answers when the server asks for credentials: the token as the password of
/// `x-access-token`, the user name GitHub expects with a token.
fn secrets(token: Option<&Token>) -> Secrets {
    Secrets {
        username: Some("x-access-token".into()),
        password: token.map(|t| t.expose().to_string()),
        ssh_key: None,
    }
}

/// What the errors say when the server wants other credentials, or refuses the token.
const ADVICE: Advice = Advice {
    missing: "the server asks for credentials bump-pr does not have: a token (--token-file or GITHUB_TOKEN) over an https URL",
    rejected: "the server rejected the token",
};

/// A local copy of the base branch and, if it exists, the bump branch.
pub struct Clone {
    pub repo: Repository,
    url: String,
    pub base: String,
    pub base_commit: Oid,
    /// The remote bump branch's head before this run, if the branch exists.
    pub branch_head: Option<Oid>,
}

/// The remote's branches, by name without `refs/heads/`.
fn remote_branches(url: &str, token: Option<&Token>) -> Result<HashMap<String, Oid>, GitError> {
    let secrets = secrets(token);
    let mut remote =
        git2::Remote::create_detached(url).map_err(|e| classify(url, "remote setup", e))?;
    let connection = remote
        .connect_auth(Direction::Fetch, Some(secrets.callbacks(ADVICE)), None)
        .map_err(|e| classify(url, "connect", e))?;
    let heads = connection
        .list()
        .map_err(|e| classify(url, "listing branches", e))?;
    Ok(heads
        .iter()
        .filter_map(|h| {
            h.name()
                .strip_prefix("refs/heads/")
                .map(|n| (n.to_string(), h.oid()))
        })
        .collect())
}

/// Fetches `base` and `branch` (depth 1 where the transport allows) into a new repository.
pub fn clone(
    dir: &Path,
    url: &str,
    base: &str,
    branch: &str,
    token: Option<&Token>,
) -> Result<Clone, GitError> {
    let heads = remote_branches(url, token)?;
    if !heads.contains_key(base) {
        let mut known: Vec<&str> = heads.keys().map(String::as_str).collect();
        known.sort_unstable();
        known.truncate(10);
        return Err(GitError::BaseMissing {
            repo: url.to_string(),
            base: base.to_string(),
            known: if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            },
        });
    }
    let branch_exists = heads.contains_key(branch);
    let repo = Repository::init_bare(dir).map_err(|e| classify(url, "init", e))?;
    repo.remote("origin", url)
        .map_err(|e| classify(url, "adding the remote", e))?;
    let mut refspecs = vec![format!("+refs/heads/{base}:refs/remotes/origin/{base}")];
    if branch_exists {
        refspecs.push(format!("+refs/heads/{branch}:refs/remotes/origin/{branch}"));
    }
    // libgit2's local transport (paths and file:// URLs) cannot fetch shallow; a full fetch is
    // still correct, just bigger.
    let depth = if is_local(url) { 0 } else { 1 };
    fetch(&repo, url, &refspecs, token, depth)?;
    let find = |name: &str| {
        repo.refname_to_id(&format!("refs/remotes/origin/{name}"))
            .map_err(|e| classify(url, "reading fetched branch", e))
    };
    let base_commit = find(base)?;
    let branch_head = if branch_exists {
        Some(find(branch)?)
    } else {
        None
    };
    Ok(Clone {
        repo,
        url: url.to_string(),
        base: base.to_string(),
        base_commit,
        branch_head,
    })
}

fn fetch(
    repo: &Repository,
    url: &str,
    refspecs: &[String],
    token: Option<&Token>,
    depth: i32,
) -> Result<(), GitError> {
    let secrets = secrets(token);
    let mut options = FetchOptions::new();
    options.remote_callbacks(secrets.callbacks(ADVICE));
    if depth > 0 {
        options.depth(depth);
    }
    let mut remote = repo
        .find_remote("origin")
        .map_err(|e| classify(url, "finding the remote", e))?;
    remote
        .fetch(refspecs, Some(&mut options), None)
        .map_err(|e| classify(url, "fetch", e))
}

/// Facts about one commit that bump-pr decides on.
pub struct CommitInfo {
    pub author: String,
    pub author_email: String,
    pub message: String,
    pub tree: Oid,
}

impl Clone {
    pub fn commit_info(&self, oid: Oid) -> Result<CommitInfo, GitError> {
        let commit = self
            .repo
            .find_commit(oid)
            .map_err(|e| classify(&self.url, "reading a commit", e))?;
        let author = commit.author();
        Ok(CommitInfo {
            author: author.to_string(),
            author_email: author.email().unwrap_or_default().to_string(),
            message: commit.message().unwrap_or_default().to_string(),
            tree: commit.tree_id(),
        })
    }

    /// The text of `file` on the base branch.
    pub fn read_base_file(&self, file: &str) -> Result<String, GitError> {
        let missing = || GitError::FileMissing {
            repo: self.url.clone(),
            base: self.base.clone(),
            file: file.to_string(),
        };
        let tree = self
            .repo
            .find_commit(self.base_commit)
            .and_then(|c| c.tree())
            .map_err(|e| classify(&self.url, "reading the base tree", e))?;
        let entry = tree.get_path(Path::new(file)).map_err(|_| missing())?;
        let blob = entry
            .to_object(&self.repo)
            .and_then(|o| o.peel_to_blob())
            .map_err(|_| missing())?;
        String::from_utf8(blob.content().to_vec()).map_err(|_| GitError::NotText {
            base: self.base.clone(),
            file: file.to_string(),
        })
    }

    /// Commits `content` as `file` on top of the base branch; returns the new commit.
    pub fn commit_file(
        &self,
        file: &str,
        content: &str,
        author: &Author,
        message: &str,
    ) -> Result<Oid, GitError> {
        let err = |action| move |e| classify(&self.url, action, e);
        let base = self
            .repo
            .find_commit(self.base_commit)
            .map_err(err("reading the base commit"))?;
        let base_tree = base.tree().map_err(err("reading the base tree"))?;
        let mode = match base_tree.get_path(Path::new(file)).map(|e| e.filemode()) {
            Ok(m) if m == i32::from(FileMode::BlobExecutable) => FileMode::BlobExecutable,
            _ => FileMode::Blob,
        };
        let blob = self
            .repo
            .blob(content.as_bytes())
            .map_err(err("writing the file"))?;
        let mut update = git2::build::TreeUpdateBuilder::new();
        update.upsert(file, blob, mode);
        let tree_id = update
            .create_updated(&self.repo, &base_tree)
            .map_err(err("building the tree"))?;
        let tree = self
            .repo
            .find_tree(tree_id)
            .map_err(err("building the tree"))?;
        let signature =
            Signature::now(&author.name, &author.email).map_err(err("making the signature"))?;
        self.repo
            .commit(None, &signature, &signature, message, &tree, &[&base])
            .map_err(err("commit"))
    }

    /// Force-pushes `commit` to `branch` on the remote.
    pub fn force_push(
        &self,
        commit: Oid,
        branch: &str,
        token: Option<&Token>,
    ) -> Result<(), GitError> {
        let local = format!("refs/heads/{branch}");
        self.repo
            .reference(&local, commit, true, "bump-pr")
            .map_err(|e| classify(&self.url, "creating the branch", e))?;
        let secrets = secrets(token);
        let refused: RefCell<Option<String>> = RefCell::new(None);
        let remote_said: RefCell<String> = RefCell::new(String::new());
        let mut cb = secrets.callbacks(ADVICE);
        // Servers explain refusals (GitHub: "GH006: Protected branch update failed") on the
        // side band; keep it for the error message.
        cb.sideband_progress(|text| {
            remote_said
                .borrow_mut()
                .push_str(&String::from_utf8_lossy(text));
            true
        });
        cb.push_update_reference(|_refname, status| {
            if let Some(status) = status {
                *refused.borrow_mut() = Some(status.to_string());
            }
            Ok(())
        });
        let mut options = PushOptions::new();
        options.remote_callbacks(cb);
        let mut remote = self
            .repo
            .find_remote("origin")
            .map_err(|e| classify(&self.url, "finding the remote", e))?;
        let pushed = remote.push(&[format!("+{local}:{local}")], Some(&mut options));
        drop(options);
        let refusal = refused.into_inner();
        let remote_said = remote_said.into_inner();
        let remote_said = remote_said.trim();
        let detail = match (pushed, refusal) {
            (Ok(()), None) => return Ok(()),
            (_, Some(status)) if remote_said.is_empty() => status,
            (_, Some(status)) => format!("{status}; the server said: {remote_said}"),
            (Err(e), None) => {
                let lower = e.message().to_ascii_lowercase();
                if !(lower.contains("protected") || lower.contains("denied")) {
                    return Err(classify(&self.url, "push", e));
                }
                e.message().to_string()
            }
        };
        let lower = detail.to_ascii_lowercase();
        Err(if lower.contains("protected") || lower.contains("gh006") {
            GitError::BranchProtected {
                branch: branch.to_string(),
                detail,
            }
        } else {
            GitError::PushRejected {
                branch: branch.to_string(),
                detail,
            }
        })
    }
}

/// A unified diff of one file, for `--dry-run`.
pub fn diff(file: &str, old: &str, new: &str) -> String {
    let patch = git2::Patch::from_buffers(
        old.as_bytes(),
        Some(Path::new(file)),
        new.as_bytes(),
        Some(Path::new(file)),
        None,
    );
    match patch.and_then(|mut p| p.to_buf()) {
        Ok(buf) => String::from_utf8_lossy(&buf).into_owned(),
        Err(e) => format!("(cannot show the diff: {e})\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_shows_the_changed_line() {
        let d = diff("pin.yaml", "a: 1\nb: 2\n", "a: 1\nb: 3\n");
        assert!(d.contains("-b: 2\n+b: 3\n"), "{d}");
        assert!(d.contains("+++ b/pin.yaml\n"), "{d}");
    }
}
