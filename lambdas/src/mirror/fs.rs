//! What the checkout, the prelinking and the worktree layout share, and nothing else: git's
//! file modes, the stat fields the index records, folder making, a few constants and the
//! error they all return. A leaf, so the three depend on it and not on each other.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Marks a worktree whose files are its commit's blobs byte for byte (checked out with no
/// filter), so the next worktree may hard-link them. Kept in the worktree's admin folder
/// (`.git/worktrees/<hash>/`), which git leaves alone.
pub const PLAIN_MARKER: &str = "modelsync-plain";

/// One thread per this many files at least: starting a thread and opening the repository
/// again cost more than writing a few hundred files.
pub(super) const FILES_PER_THREAD: usize = 512;

pub const MODE_TREE: i32 = 0o040000;
pub const MODE_FILE: i32 = 0o100644;
pub const MODE_EXECUTABLE: i32 = 0o100755;
pub const MODE_SYMLINK: i32 = 0o120000;
pub const MODE_GITLINK: i32 = 0o160000;
/// Folders as libgit2's checkout makes them; the process's umask applies to both.
const DIR_PERMISSIONS: u32 = 0o755;

pub fn make_dir(path: &Path) -> Result<(), LayoutError> {
    fs::DirBuilder::new()
        .mode(DIR_PERMISSIONS)
        .create(path)
        .map_err(io_err(path))
}

/// Makes the folder `path` unless it is one already. Not `create_dir_all`, which would follow
/// a symlink in the way.
pub fn ensure_dir(path: &Path) -> Result<(), LayoutError> {
    match make_dir(path) {
        Err(_) if fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) => Ok(()),
        result => result,
    }
}

pub fn stat_mtime(meta: &fs::Metadata) -> (i32, u32) {
    (meta.mtime() as i32, meta.mtime_nsec() as u32)
}

pub fn stat_ctime(meta: &fs::Metadata) -> (i32, u32) {
    (meta.ctime() as i32, meta.ctime_nsec() as u32)
}

pub fn stat_ino(meta: &fs::Metadata) -> u32 {
    meta.ino() as u32
}

pub fn stat_size(meta: &fs::Metadata) -> u32 {
    meta.size() as u32
}

pub fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LayoutError + '_ {
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
    /// The commit holds a path that cannot be written safely.
    #[error("checking out: {0}; fix the commit, or point --ref at another one")]
    BadTree(String),
}
