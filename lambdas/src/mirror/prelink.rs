//! Reusing the published worktree's files in the next one. A new commit usually changes a few
//! files of thousands: the others are hard-linked from the published worktree rather than
//! written again. Most of the linking is done while the new commit is still being fetched (a
//! fetch mostly waits for the server): every file of the published worktree is linked ahead
//! into the new worktree's folder, and the links the new tree does not want are removed once
//! it is known.
//!
//! Only new directory entries are ever made: a file shared with the published worktree is never
//! opened for writing, so its readers never see its bytes change.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use git2::{Index, Oid};

use super::fs::{
    FILES_PER_THREAD, LayoutError, MODE_EXECUTABLE, MODE_FILE, PLAIN_MARKER, ensure_dir, io_err,
    stat_ino, stat_mtime, stat_size,
};
use super::parallel;

/// The files of the published worktree, as its index records them.
pub struct Previous {
    dir: PathBuf,
    /// In the index's order (by path), so a path is found by binary search.
    files: Vec<(Vec<u8>, Recorded)>,
}

/// What a worktree's index records of one of its files.
struct Recorded {
    id: Oid,
    mode: u32,
    mtime: (i32, u32),
    size: u32,
    ino: u32,
}

impl Previous {
    /// The worktree in `dir`, whose admin folder is `admin`. None when its files may not be
    /// the blobs as they are (no [`PLAIN_MARKER`]: they may have been converted) or its index
    /// cannot be read: every file is then written anew, which is slower but never wrong.
    pub fn load(dir: PathBuf, admin: &Path) -> Option<Self> {
        if !admin.join(PLAIN_MARKER).is_file() {
            return None;
        }
        let index = Index::open(&admin.join("index")).ok()?;
        let files = index
            .iter()
            .map(|e| {
                let recorded = Recorded {
                    id: e.id,
                    mode: e.mode,
                    mtime: (e.mtime.seconds(), e.mtime.nanoseconds()),
                    size: e.file_size,
                    ino: e.ino,
                };
                (e.path, recorded)
            })
            .collect();
        Some(Previous { dir, files })
    }

    /// Hard-links `rel` from the previous worktree at `path` if it holds blob `id` with `mode`
    /// and is still as its index records it; returns the link's metadata.
    pub(super) fn link(
        &self,
        rel: &[u8],
        id: Oid,
        mode: i32,
        path: &Path,
    ) -> Result<Option<fs::Metadata>, LayoutError> {
        let Ok(i) = self.files.binary_search_by(|(p, _)| p[..].cmp(rel)) else {
            return Ok(None);
        };
        let recorded = &self.files[i].1;
        if recorded.id != id || recorded.mode != mode as u32 {
            return Ok(None);
        }
        link(&self.dir.join(OsStr::from_bytes(rel)), path, recorded)
    }
}

impl Recorded {
    /// Whether `meta` is the file this records, untouched since it was written: same inode,
    /// size and modification time. Not the change time: linking changes it.
    fn is(&self, meta: &fs::Metadata) -> bool {
        meta.file_type().is_file()
            && stat_ino(meta) == self.ino
            && stat_size(meta) == self.size
            && stat_mtime(meta) == self.mtime
    }

    fn is_regular_file(&self) -> bool {
        matches!(self.mode as i32, MODE_FILE | MODE_EXECUTABLE)
    }
}

/// Hard-links `source` at `path` and returns the link's metadata, if `source` is still the
/// file `recorded` describes. None when it is not, or cannot be linked (another filesystem, a
/// link-count limit): the caller then writes the file anew. Checked after linking, on the new
/// link, so one `stat` serves both as the check and as the index's stat data.
fn link(
    source: &Path,
    path: &Path,
    recorded: &Recorded,
) -> Result<Option<fs::Metadata>, LayoutError> {
    if fs::hard_link(source, path).is_err() {
        return Ok(None);
    }
    let meta = fs::symlink_metadata(path).map_err(io_err(path))?;
    if recorded.is(&meta) {
        return Ok(Some(meta));
    }
    // A reader wrote into the previous worktree: drop the link (the shared file itself is
    // left as it is) and write the blob instead.
    fs::remove_file(path).map_err(io_err(path))?;
    Ok(None)
}

/// The previous worktree's files, linked ahead into the new worktree's folder.
pub struct Prelinked {
    files: HashMap<Vec<u8>, Linked>,
    /// The folders made for them.
    dirs: HashSet<Vec<u8>>,
}

struct Linked {
    id: Oid,
    mode: u32,
    meta: fs::Metadata,
}

/// Hard-links every regular file of `previous` into the empty folder `dest` at the same path,
/// making the folders they need. Symlinks and submodules are left for [`checkout::write_tree`].
pub fn prelink(previous: &Previous, dest: &Path) -> Result<Prelinked, LayoutError> {
    let parts = parallel::map_chunks(&previous.files, FILES_PER_THREAD, |files| {
        let mut part = Prelinked {
            files: HashMap::new(),
            dirs: HashSet::new(),
        };
        for (rel, recorded) in files.iter().filter(|(_, r)| r.is_regular_file()) {
            make_parents(dest, rel, &mut part.dirs)?;
            let path = dest.join(OsStr::from_bytes(rel));
            let source = previous.dir.join(OsStr::from_bytes(rel));
            if let Some(meta) = link(&source, &path, recorded)? {
                let linked = Linked {
                    id: recorded.id,
                    mode: recorded.mode,
                    meta,
                };
                part.files.insert(rel.clone(), linked);
            }
        }
        Ok::<_, LayoutError>(part)
    });
    let mut all = Prelinked {
        files: HashMap::new(),
        dirs: HashSet::new(),
    };
    for part in parts {
        let part = part?;
        all.files.extend(part.files);
        all.dirs.extend(part.dirs);
    }
    Ok(all)
}

/// Makes the folders above `rel` in `dest` that `made` does not list yet.
fn make_parents(dest: &Path, rel: &[u8], made: &mut HashSet<Vec<u8>>) -> Result<(), LayoutError> {
    let slashes = rel.iter().enumerate().filter(|(_, b)| **b == b'/');
    for (end, _) in slashes {
        let dir = &rel[..end];
        if !made.contains(dir) {
            ensure_dir(&dest.join(OsStr::from_bytes(dir)))?;
            made.insert(dir.to_vec());
        }
    }
    Ok(())
}

impl Prelinked {
    /// The metadata of the link at `rel` if it holds blob `id` with `mode`, taking it out of
    /// what [`Prelinked::remove_unwanted`] removes.
    pub(super) fn take(&mut self, rel: &[u8], id: Oid, mode: i32) -> Option<fs::Metadata> {
        let linked = self.files.get(rel)?;
        if linked.id != id || linked.mode != mode as u32 {
            return None;
        }
        self.files.remove(rel).map(|l| l.meta)
    }

    /// Removes from `dest` the links not taken and the folders not in `wanted`: what the new
    /// tree does not hold, or holds with other contents. Deepest folders first, so each is
    /// empty when removed.
    pub(super) fn remove_unwanted(
        self,
        dest: &Path,
        wanted: &HashSet<Vec<u8>>,
    ) -> Result<(), LayoutError> {
        for rel in self.files.keys() {
            let path = dest.join(OsStr::from_bytes(rel));
            fs::remove_file(&path).map_err(io_err(&path))?;
        }
        let mut dirs: Vec<Vec<u8>> = self
            .dirs
            .into_iter()
            .filter(|d| !wanted.contains(d))
            .collect();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.len()));
        for rel in dirs {
            let path = dest.join(OsStr::from_bytes(&rel));
            fs::remove_dir(&path).map_err(io_err(&path))?;
        }
        Ok(())
    }
}
