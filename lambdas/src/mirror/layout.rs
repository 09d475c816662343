//! git-sync v4's on-disk contract: `<root>/.git` holds the objects, each commit is checked out in
//! `<root>/.worktrees/<hash>`, and `<link>` is a relative symlink to the current worktree that is
//! replaced by renaming a new link over it, so readers only ever see a complete tree.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use git2::Repository;

pub use super::fs::LayoutError;
use super::fs::{PLAIN_MARKER, io_err};
use super::prelink::{self, Prelinked, Previous};
use super::{checkout, parallel};

const WORKTREES: &str = ".worktrees";
/// The temporary link's name, in the link's own folder so the rename stays on one filesystem.
const TMP_LINK: &str = "tmp-link";

/// Where the worktree of `hash` lives.
pub fn worktree_path(root: &Path, hash: &str) -> PathBuf {
    root.join(WORKTREES).join(hash)
}

/// Where git keeps what it knows of the worktree of `hash`: HEAD, index and the way back.
fn admin_path(root: &Path, hash: &str) -> PathBuf {
    root.join(".git").join("worktrees").join(hash)
}

/// The link's absolute path: a relative `--link` is relative to the root, as in git-sync.
pub fn link_path(root: &Path, link: &Path) -> PathBuf {
    if link.is_absolute() {
        link.to_path_buf()
    } else {
        root.join(link)
    }
}

/// The hash the link points at, if it points at a worktree that still exists.
pub fn current_hash(root: &Path, link: &Path) -> Option<String> {
    let link = link_path(root, link);
    let target = fs::read_link(&link).ok()?;
    let target = if target.is_absolute() {
        target
    } else {
        link.parent()?.join(target)
    };
    let hash = target.file_name()?.to_str()?.to_owned();
    target.join(".git").is_file().then_some(hash)
}

/// A worktree [`add_worktree`] made.
pub struct NewWorktree {
    pub path: PathBuf,
    /// Set when files were hard-linked from the previous worktree.
    relinked: Option<checkout::Relinked>,
}

impl NewWorktree {
    /// Call after [`remove_stale`]: removing the previous worktree changed the change time of
    /// the files hard-linked from it, which the index records (see [`checkout::Relinked`]).
    /// Returns how many index entries were updated.
    pub fn refresh_index(self) -> Result<usize, LayoutError> {
        match self.relinked {
            Some(relinked) => relinked.refresh().map_err(LayoutError::Git),
            None => Ok(0),
        }
    }
}

/// What [`prepare`] can make of the next worktree before its commit is fetched.
pub struct Prepared {
    /// The published worktree's files.
    previous: Previous,
    /// The commit hash expected next, and its folder with the published files linked ahead.
    ahead: Option<(String, Prelinked)>,
}

/// Reads the index of the published worktree `current` and, if the hash of the next commit is
/// known (`next`), hard-links its files ahead into that commit's worktree folder: called while
/// the commit is fetched, so this runs while the fetch waits for the server. None when the
/// published worktree's files cannot be reused.
pub fn prepare(root: &Path, current: &str, next: Option<&str>) -> Option<Prepared> {
    let previous = Previous::load(worktree_path(root, current), &admin_path(root, current))?;
    let ahead = next.filter(|n| *n != current).and_then(|next| {
        let path = worktree_path(root, next);
        let linked = remove_worktree(root, next)
            .and_then(|()| fs::create_dir_all(&path).map_err(io_err(&path)))
            .and_then(|()| prelink::prelink(&previous, &path));
        match linked {
            Ok(prelinked) => Some((next.to_owned(), prelinked)),
            // Only the head start is lost: add_worktree makes the folder again, and reports
            // what fails then.
            Err(_) => {
                let _ = remove_worktree(root, next);
                None
            }
        }
    });
    Some(Prepared { previous, ahead })
}

/// Removes what [`prepare`] linked ahead, for a sync that stops before [`add_worktree`].
pub fn discard(root: &Path, prepared: Prepared) -> Result<(), LayoutError> {
    match prepared.ahead {
        Some((hash, _)) => remove_worktree(root, &hash),
        None => Ok(()),
    }
}

/// Checks out `hash` into a worktree registered with the repository at `root`, so `git`
/// commands run inside it work as they do in git-sync's worktrees. Files that the published
/// worktree (see [`prepare`]) holds unchanged are hard-linked from it: call
/// [`NewWorktree::refresh_index`] once that worktree is removed.
///
/// Any leftover folder of the same name (a sync that died half way) is removed first.
pub fn add_worktree(
    repo: &Repository,
    root: &Path,
    hash: &str,
    prepared: Option<Prepared>,
) -> Result<NewWorktree, LayoutError> {
    let oid = git2::Oid::from_str(hash).map_err(LayoutError::Git)?;
    let tree = repo
        .find_commit(oid)
        .and_then(|c| c.tree())
        .map_err(LayoutError::Git)?;
    let plain = !checkout::filters_may_apply(repo, &tree).map_err(LayoutError::Git)?
        && checkout::symlinks_enabled(repo);
    let (previous, ahead) = match prepared {
        Some(p) => (Some(p.previous), p.ahead),
        None => (None, None),
    };
    let prelinked = match ahead {
        Some((next, prelinked)) if next == hash && plain => Some(prelinked),
        // Linked for another commit (an annotated tag peels to its commit), or for a tree
        // that needs converting: start afresh.
        Some((next, _)) => remove_worktree(root, &next).map(|()| None)?,
        None => None,
    };
    let path = worktree_path(root, hash);
    let admin = admin_path(root, hash);
    match prelinked {
        Some(_) => remove_dir(&admin)?,
        None => remove_worktree(root, hash)?,
    }
    register(root, hash)?;
    if !plain {
        checkout_with_filters(&path)?;
        return Ok(NewWorktree {
            path,
            relinked: None,
        });
    }
    let written = checkout::write_tree(repo, &tree, &path, previous.as_ref(), prelinked)?;
    let index = admin.join("index");
    checkout::write_index(&index, &written.entries).map_err(LayoutError::Git)?;
    write(
        &admin.join(PLAIN_MARKER),
        "the files are the blobs unconverted: modelsync mirror may hard-link them\n",
    )?;
    let relinked =
        (!written.linked.is_empty()).then(|| checkout::Relinked::new(index, path.clone(), written));
    Ok(NewWorktree { path, relinked })
}

/// Makes the worktree folder of `hash` (if needed) a git worktree of the repository at `root`.
fn register(root: &Path, hash: &str) -> Result<(), LayoutError> {
    let path = worktree_path(root, hash);
    let admin = admin_path(root, hash);
    fs::create_dir_all(&admin).map_err(io_err(&admin))?;
    fs::create_dir_all(&path).map_err(io_err(&path))?;
    write(&admin.join("HEAD"), &format!("{hash}\n"))?;
    write(&admin.join("commondir"), "../..\n")?;
    write(
        &admin.join("gitdir"),
        &format!("{}\n", path.join(".git").display()),
    )?;
    // Relative, like git-sync, so the volume can be mounted at another path in a reader.
    write(
        &path.join(".git"),
        &format!("gitdir: ../../.git/worktrees/{hash}\n"),
    )
}

/// libgit2's checkout, which converts files as attributes and `core.autocrlf` say.
fn checkout_with_filters(path: &Path) -> Result<(), LayoutError> {
    let worktree = Repository::open(path).map_err(LayoutError::Git)?;
    let mut checkout = git2::build::CheckoutBuilder::new();
    checkout.force();
    worktree
        .checkout_head(Some(&mut checkout))
        .map_err(LayoutError::Git)
}

/// Points the link at `worktree`: a new relative link is made beside it and renamed over it,
/// which replaces it atomically.
pub fn publish(root: &Path, link: &Path, worktree: &Path) -> Result<(), LayoutError> {
    let link = link_path(root, link);
    let dir = link.parent().unwrap_or(root);
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let target = relative_to(dir, worktree);
    let tmp = dir.join(TMP_LINK);
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&tmp)(e)),
    }
    std::os::unix::fs::symlink(&target, &tmp).map_err(io_err(&tmp))?;
    fs::rename(&tmp, &link).map_err(io_err(&link))
}

/// Removes every worktree but `keep`, with its registration in `.git/worktrees`.
/// Returns how many were removed.
pub fn remove_stale(root: &Path, keep: &str) -> Result<usize, LayoutError> {
    let mut removed = 0;
    for dir in [root.join(WORKTREES), root.join(".git").join("worktrees")] {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(&dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_err(&dir))?;
            if entry.file_name() == keep {
                continue;
            }
            let path = entry.path();
            let result = if entry.file_type().map_err(io_err(&path))?.is_dir() {
                remove_tree(&path)
            } else {
                fs::remove_file(&path)
            };
            result.map_err(io_err(&path))?;
            if dir.ends_with(WORKTREES) {
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// Removes the folder `dir` with everything in it, its subfolders spread over the cores: a
/// worktree is thousands of files, each unlinked by its own system call.
fn remove_tree(dir: &Path) -> io::Result<()> {
    let subtrees = subtrees(dir)?;
    parallel::map_chunks(&subtrees, SUBTREES_PER_THREAD, |dirs| {
        dirs.iter().try_for_each(fs::remove_dir_all)
    })
    .into_iter()
    .collect::<io::Result<()>>()?;
    // What is left: the files and folders above the subtrees.
    fs::remove_dir_all(dir)
}

/// Enough subtrees to be worth a thread.
const SUBTREES_PER_THREAD: usize = 8;

/// Disjoint folders under `dir` that together hold most of it: the folders one level down,
/// then two, until there are enough to spread over the cores.
fn subtrees(dir: &Path) -> io::Result<Vec<PathBuf>> {
    const MAX_LEVELS: usize = 3;
    let mut level = vec![dir.to_path_buf()];
    for _ in 0..MAX_LEVELS {
        if level.len() >= 2 * SUBTREES_PER_THREAD {
            break;
        }
        let mut below = Vec::new();
        for parent in &level {
            for entry in fs::read_dir(parent)? {
                let entry = entry?;
                if entry.file_type()?.is_dir() {
                    below.push(entry.path());
                }
            }
        }
        if below.is_empty() {
            break;
        }
        level = below;
    }
    level.retain(|d| d != dir);
    Ok(level)
}

fn remove_worktree(root: &Path, hash: &str) -> Result<(), LayoutError> {
    remove_dir(&worktree_path(root, hash))?;
    remove_dir(&admin_path(root, hash))
}

/// Removes the folder `path` and what it holds, if it is there.
fn remove_dir(path: &Path) -> Result<(), LayoutError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// `to` as seen from the folder `from`; both absolute.
fn relative_to(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for part in &to[common..] {
        out.push(part);
    }
    out
}

fn write(path: &Path, text: &str) -> Result<(), LayoutError> {
    fs::write(path, text).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        let rel = relative_to(Path::new("/r"), Path::new("/r/.worktrees/abc"));
        assert_eq!(rel, Path::new(".worktrees/abc"));
        let rel = relative_to(Path::new("/r/links/x"), Path::new("/r/.worktrees/abc"));
        assert_eq!(rel, Path::new("../../.worktrees/abc"));
    }

    #[test]
    fn publish_replaces_the_link() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        for hash in ["aaa", "bbb"] {
            let wt = worktree_path(root, hash);
            fs::create_dir_all(&wt).unwrap();
            fs::write(wt.join(".git"), "gitdir: x").unwrap();
            publish(root, Path::new("repo"), &wt).unwrap();
            assert_eq!(current_hash(root, Path::new("repo")).as_deref(), Some(hash));
            let target = fs::read_link(root.join("repo")).unwrap();
            assert_eq!(target, Path::new(".worktrees").join(hash));
        }
        assert_eq!(remove_stale(root, "bbb").unwrap(), 1);
        assert!(!worktree_path(root, "aaa").exists());
        assert!(!root.join(TMP_LINK).exists());
    }
}
