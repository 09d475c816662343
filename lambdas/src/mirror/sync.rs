//! One sync: ask the remote what the ref points at, fetch it if it is new, check it out and
//! publish it. Blocking (libgit2); the caller runs it off the async runtime.

use std::fs;
use std::path::{Path, PathBuf};

use git2::{Direction, FetchOptions, Oid, Repository};
use modelsync_gitops::credentials::{Advice, Secrets};
use modelsync_gitops::remote::{is_local, redact};

use super::fs::LayoutError;
use super::layout;

/// Where the fetched commit is kept, so it survives until the next sync replaces it.
const SYNC_REF: &str = "refs/modelsync/sync";

/// What to mirror and where.
#[derive(Clone, Debug)]
pub struct SyncSpec {
    pub repo: String,
    pub git_ref: String,
    pub root: PathBuf,
    pub link: PathBuf,
    /// Commits of history to fetch; 0 for all of it.
    pub depth: u32,
    pub credentials: Credentials,
}

/// Credentials read from files at each sync, so a rotated secret is picked up.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    pub username: Option<String>,
    /// File holding an HTTPS password or token.
    pub password_file: Option<PathBuf>,
    /// File holding an SSH private key.
    pub ssh_key_file: Option<PathBuf>,
}

/// What a sync did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncOutcome {
    /// The link already pointed at the remote's commit.
    Noop { hash: String },
    /// The link now points at a new commit.
    Updated { hash: String },
}

impl SyncOutcome {
    pub fn hash(&self) -> &str {
        match self {
            SyncOutcome::Noop { hash } | SyncOutcome::Updated { hash } => hash,
        }
    }
}

/// Why a sync failed. Messages never contain the credentials in the URL.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{step} {repo}: {source}")]
    Git {
        step: &'static str,
        repo: String,
        source: git2::Error,
    },
    #[error("ref {git_ref:?} is not a branch, tag or commit of {repo} (it has: {known})")]
    RefNotFound {
        git_ref: String,
        repo: String,
        known: String,
    },
    #[error("reading {what} {}: {source}", path.display())]
    Secret {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("preparing {}: {source}", path.display())]
    Root {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("laying out the worktree: {0}")]
    Layout(#[from] LayoutError),
    /// The blocking sync task panicked or was cancelled.
    #[error("sync task failed: {0}")]
    Task(tokio::task::JoinError),
}

/// Runs one sync.
pub fn sync(spec: &SyncSpec) -> Result<SyncOutcome, SyncError> {
    let repo = open_root(&spec.root)?;
    let shown = redact(&spec.repo);
    let git = |step: &'static str| {
        let repo = shown.clone();
        move |source| SyncError::Git { step, repo, source }
    };
    let mut remote = match repo.find_remote("origin") {
        Ok(r) if r.url().ok() == Some(spec.repo.as_str()) => r,
        Ok(_) => {
            repo.remote_set_url("origin", &spec.repo)
                .map_err(git("setting the URL of"))?;
            repo.find_remote("origin").map_err(git("opening"))?
        }
        Err(_) => repo
            .remote("origin", &spec.repo)
            .map_err(git("adding remote"))?,
    };

    let secrets = read_secrets(&spec.credentials)?;
    // Left open for the fetch, which then reuses it rather than connecting again: one ref
    // advertisement (a server process start for git:// and SSH) less per new commit.
    let mut connection = remote
        .connect_auth(Direction::Fetch, Some(secrets.callbacks(ADVICE)), None)
        .map_err(git("connecting to"))?;
    let heads: Vec<(String, Oid)> = connection
        .list()
        .map_err(git("listing refs of"))?
        .iter()
        .map(|h| (h.name().to_owned(), h.oid()))
        .collect();
    let target = resolve(&heads, &spec.git_ref).ok_or_else(|| SyncError::RefNotFound {
        git_ref: spec.git_ref.clone(),
        repo: shown.clone(),
        known: known_refs(&heads),
    })?;

    let current = layout::current_hash(&spec.root, &spec.link);
    if let Target::Advertised { oid, .. } = &target
        && current.as_deref() == Some(oid.to_string().as_str())
    {
        return Ok(SyncOutcome::Noop {
            hash: oid.to_string(),
        });
    }

    let local = is_local(&spec.repo);
    let mut fetch = |refspec: &str, depth: u32| {
        let mut opts = FetchOptions::new();
        opts.remote_callbacks(secrets.callbacks(ADVICE));
        opts.download_tags(git2::AutotagOption::None);
        opts.update_fetchhead(false);
        // libgit2 reads 0 as "no limit", matching --depth 0. Its local transport cannot fetch
        // shallow; a local copy is cheap in full, so depth is dropped there.
        if !local {
            opts.depth(i32::try_from(depth).unwrap_or(i32::MAX));
        }
        connection.remote().fetch(&[refspec], Some(&mut opts), None)
    };
    // The remote names the next commit (unless --ref is a hash it does not advertise): the
    // published worktree's files are linked ahead into that commit's folder while the fetch
    // waits for the server.
    let next = match &target {
        Target::Advertised { oid, .. } => Some(oid.to_string()),
        Target::Commit(_) => None,
    };
    let (commit, prepared) = std::thread::scope(|scope| {
        let prepared =
            scope.spawn(|| layout::prepare(&spec.root, current.as_deref()?, next.as_deref()));
        let commit = find_or_fetch(&repo, &target, spec.depth, &shown, &mut fetch);
        let prepared = prepared
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (commit, prepared)
    });
    let commit = match commit {
        Ok(commit) => commit,
        Err(e) => {
            // The fetch's error is the one to report; a folder left behind is removed by the
            // next sync that publishes a commit.
            let _ = discard(&spec.root, prepared);
            return Err(e);
        }
    };
    let hash = commit.to_string();
    if current.as_deref() == Some(hash.as_str()) {
        discard(&spec.root, prepared)?;
        return Ok(SyncOutcome::Noop { hash });
    }
    repo.reference(SYNC_REF, commit, true, "modelsync mirror")
        .map_err(git("recording the commit of"))?;
    let worktree = layout::add_worktree(&repo, &spec.root, &hash, prepared)?;
    layout::publish(&spec.root, &spec.link, &worktree.path)?;
    layout::remove_stale(&spec.root, &hash)?;
    worktree.refresh_index()?;
    Ok(SyncOutcome::Updated { hash })
}

fn discard(root: &Path, prepared: Option<layout::Prepared>) -> Result<(), LayoutError> {
    prepared.map_or(Ok(()), |prepared| layout::discard(root, prepared))
}

/// The commit `target` names: found locally, or fetched with `fetch(refspec, depth)`.
fn find_or_fetch(
    repo: &Repository,
    target: &Target,
    depth: u32,
    shown: &str,
    fetch: &mut impl FnMut(&str, u32) -> Result<(), git2::Error>,
) -> Result<Oid, SyncError> {
    let git = |step: &'static str| {
        let repo = shown.to_owned();
        move |source| SyncError::Git { step, repo, source }
    };
    match target {
        Target::Advertised { name, oid } => {
            if repo.find_commit(*oid).is_err() {
                fetch(&format!("+{name}:{SYNC_REF}"), depth).map_err(git("fetching from"))?;
            }
            peel(repo, *oid).map_err(git("reading the fetched commit of"))
        }
        Target::Commit(hash) => {
            let local = |repo: &Repository| {
                repo.revparse_single(&format!("{hash}^{{commit}}"))
                    .map(|o| o.id())
            };
            if let Ok(oid) = local(repo) {
                return Ok(oid);
            }
            // Servers may refuse a want for an unadvertised object, so fall back to fetching
            // every branch and tag in full and looking the commit up. An abbreviated hash
            // cannot be wanted at all, and a full one may be ignored.
            let by_hash = fetch(&format!("+{hash}:{SYNC_REF}"), depth);
            match local(repo) {
                Ok(oid) if by_hash.is_ok() => Ok(oid),
                _ => {
                    fetch("+refs/heads/*:refs/modelsync/heads/*", 0)
                        .map_err(git("fetching branches of"))?;
                    fetch("+refs/tags/*:refs/modelsync/tags/*", 0)
                        .map_err(git("fetching tags of"))?;
                    local(repo).map_err(git("finding the commit in"))
                }
            }
        }
    }
}

/// What `--ref` names at the remote.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// A ref the remote advertises (for a tag, its peeled commit when advertised).
    Advertised { name: String, oid: Oid },
    /// A commit hash (full or abbreviated) the remote does not advertise by name.
    Commit(String),
}

/// Matches `wanted` against the advertised refs the way `git fetch` does for a short name.
fn resolve(heads: &[(String, Oid)], wanted: &str) -> Option<Target> {
    let candidates = [
        wanted.to_owned(),
        format!("refs/heads/{wanted}"),
        format!("refs/tags/{wanted}"),
    ];
    for name in &candidates {
        let peeled = format!("{name}^{{}}");
        let found = heads
            .iter()
            .find(|(n, _)| *n == peeled)
            .or_else(|| heads.iter().find(|(n, _)| n == name));
        if let Some((_, oid)) = found {
            return Some(Target::Advertised {
                name: name.clone(),
                oid: *oid,
            });
        }
    }
    let is_hash = (4..=40).contains(&wanted.len()) && wanted.chars().all(|c| c.is_ascii_hexdigit());
    is_hash.then(|| Target::Commit(wanted.to_ascii_lowercase()))
}

fn known_refs(heads: &[(String, Oid)]) -> String {
    let mut names: Vec<&str> = heads
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !n.ends_with("^{}"))
        .map(|n| {
            n.strip_prefix("refs/heads/")
                .or_else(|| n.strip_prefix("refs/tags/"))
                .unwrap_or(n)
        })
        .collect();
    names.truncate(10);
    if names.is_empty() {
        "no refs".into()
    } else {
        names.join(", ")
    }
}

fn peel(repo: &Repository, oid: Oid) -> Result<Oid, git2::Error> {
    Ok(repo.find_object(oid, None)?.peel_to_commit()?.id())
}

/// Opens the repository at `root`, making it if needed. A root that is not a usable repository
/// is emptied first (it may be a volume mount point, so the folder itself stays).
fn open_root(root: &Path) -> Result<Repository, SyncError> {
    let root_err = |source| SyncError::Root {
        path: root.to_path_buf(),
        source,
    };
    fs::create_dir_all(root).map_err(root_err)?;
    if let Ok(repo) =
        Repository::open_ext(root, git2::RepositoryOpenFlags::NO_SEARCH, [] as [&str; 0])
        && repo.workdir().and_then(|w| w.canonicalize().ok()) == root.canonicalize().ok()
    {
        return Ok(repo);
    }
    for entry in fs::read_dir(root).map_err(root_err)? {
        let path = entry.map_err(root_err)?.path();
        let removed = if path.is_dir() && !path.is_symlink() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        removed.map_err(root_err)?;
    }
    let mut opts = git2::RepositoryInitOptions::new();
    opts.initial_head("modelsync");
    Repository::init_opts(root, &opts).map_err(|source| SyncError::Git {
        step: "initialising a repository for",
        repo: root.display().to_string(),
        source,
    })
}

/// The secrets for one sync, read once so a failing callback cannot re-read files in a loop.
fn read_secrets(c: &Credentials) -> Result<Secrets, SyncError> {
    let password = match &c.password_file {
        Some(path) => Some(
            fs::read_to_string(path)
                .map_err(|source| SyncError::Secret {
                    what: "password file",
                    path: path.clone(),
                    source,
                })?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    if let Some(path) = &c.ssh_key_file {
        fs::metadata(path).map_err(|source| SyncError::Secret {
            what: "SSH key file",
            path: path.clone(),
            source,
        })?;
    }
    Ok(Secrets {
        username: c.username.clone(),
        password,
        ssh_key: c.ssh_key_file.clone(),
    })
}

/// The mirror's flags (and the same fields of `lambdas.yaml`), named when the remote asks for
/// more or refuses what was sent.
const ADVICE: Advice = Advice {
    missing: "the remote asks for credentials: give --password-file (HTTPS token) or --ssh-key-file",
    rejected: "the remote rejected the credentials (check --username, --password-file, --ssh-key-file)",
};

#[cfg(test)]
mod tests {
    use super::*;

    fn oid(n: u8) -> Oid {
        Oid::from_bytes(&[n; 20]).unwrap()
    }

    #[test]
    fn resolves_branches_tags_and_hashes() {
        let heads = vec![
            ("HEAD".to_owned(), oid(1)),
            ("refs/heads/main".to_owned(), oid(1)),
            ("refs/tags/v1".to_owned(), oid(2)),
            ("refs/tags/v1^{}".to_owned(), oid(3)),
        ];
        let adv = |name: &str, oid| {
            Some(Target::Advertised {
                name: name.into(),
                oid,
            })
        };
        assert_eq!(resolve(&heads, "HEAD"), adv("HEAD", oid(1)));
        assert_eq!(resolve(&heads, "main"), adv("refs/heads/main", oid(1)));
        assert_eq!(resolve(&heads, "v1"), adv("refs/tags/v1", oid(3)));
        assert_eq!(
            resolve(&heads, "ABCDEF12"),
            Some(Target::Commit("abcdef12".into()))
        );
        assert_eq!(resolve(&heads, "nope"), None);
        assert_eq!(known_refs(&heads), "HEAD, main, v1");
    }
}
