//! git-sync v4's on-disk contract: `<root>/.git` holds the objects, each commit is checked out in
//! `<root>/.worktrees/<hash>`, and `<link>` is a relative symlink to the current worktree that is
//! replaced by renaming a new link over it, so readers only ever see a complete tree.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use git2::Repository;

const WORKTREES: &str = ".worktrees";
/// The temporary link's name, in the link's own folder so the rename stays on one filesystem.
const TMP_LINK: &str = "tmp-link";

/// Where the worktree of `hash` lives.
pub fn worktree_path(root: &Path, hash: &str) -> PathBuf {
    root.join(WORKTREES).join(hash)
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

/// Checks out `commit` into a fresh worktree registered with the repository at `root`, so
/// `git` commands run inside it work as they do in git-sync's worktrees.
///
/// Any leftover folder of the same name (a sync that died half way) is removed first.
pub fn add_worktree(repo: &Repository, root: &Path, hash: &str) -> Result<PathBuf, LayoutError> {
    let path = worktree_path(root, hash);
    remove_worktree(root, hash)?;
    let admin = root.join(".git").join("worktrees").join(hash);
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
    )?;

    let oid = git2::Oid::from_str(hash).map_err(LayoutError::Git)?;
    repo.find_commit(oid).map_err(LayoutError::Git)?;
    let worktree = Repository::open(&path).map_err(LayoutError::Git)?;
    let mut checkout = git2::build::CheckoutBuilder::new();
    checkout.force();
    worktree
        .checkout_head(Some(&mut checkout))
        .map_err(LayoutError::Git)?;
    Ok(path)
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
                fs::remove_dir_all(&path)
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

fn remove_worktree(root: &Path, hash: &str) -> Result<(), LayoutError> {
    for path in [
        worktree_path(root, hash),
        root.join(".git").join("worktrees").join(hash),
    ] {
        match fs::remove_dir_all(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path)(e)),
        }
    }
    Ok(())
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

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LayoutError + '_ {
    move |source| LayoutError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A failure to lay out a worktree or the link.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// A file or folder could not be written, read or removed.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// libgit2 could not check the commit out.
    #[error("checking out: {0}")]
    Git(git2::Error),
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
