//! Writing a commit's files into a new worktree folder, faster than libgit2's checkout.
//!
//! libgit2's checkout loads the attributes of every file it writes (for end-of-line conversion,
//! `ident` and `filter=` drivers), about 16 `readlink` calls per file, and writes one file at a
//! time. When no attribute can apply (the usual case), the files are the blobs byte for byte:
//! they are written here instead, several at a time, and those the published worktree holds
//! unchanged are hard-linked from it (see [`super::prelink`]). Trees with attributes still go
//! through libgit2, so conversions stay exactly git's.

use std::env;
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use git2::{ErrorCode, Index, IndexEntry, IndexTime, ObjectType, Oid, Repository, Tree};

use super::fs::{
    FILES_PER_THREAD, LayoutError, MODE_EXECUTABLE, MODE_FILE, MODE_GITLINK, MODE_SYMLINK,
    MODE_TREE, ensure_dir, io_err, make_dir, stat_ctime, stat_ino, stat_mtime, stat_size,
};
use super::parallel;
use super::prelink::{Prelinked, Previous};

/// What a tree must not hold for its files to be checked out unconverted.
const ATTRIBUTES_FILE: &[u8] = b".gitattributes";

/// Whether checking `tree` out with `repo`'s configuration could convert a file: a
/// `.gitattributes` anywhere in the tree, an attributes file of the repository, the user or the
/// system, or `core.autocrlf` (which converts even files without attributes). When unsure (a
/// configuration that cannot be read), it says yes: converting is never wrong, skipping is.
pub fn filters_may_apply(repo: &Repository, tree: &Tree<'_>) -> Result<bool, git2::Error> {
    if converts_without_attributes(repo) || attribute_files(repo).iter().any(|f| f.exists()) {
        return Ok(true);
    }
    tree_has_attributes(repo, tree)
}

/// `core.autocrlf` set to anything but false (`true`, `input` or a bad value).
fn converts_without_attributes(repo: &Repository) -> bool {
    let Ok(config) = repo.config() else {
        return true;
    };
    match config.get_bool("core.autocrlf") {
        Ok(on) => on,
        Err(e) => e.code() != ErrorCode::NotFound,
    }
}

/// The attributes files libgit2 reads besides the tree's own: the repository's
/// `info/attributes`, `core.attributesFile` (by default `$XDG_CONFIG_HOME/git/attributes`) and
/// the system's `/etc/gitattributes`.
fn attribute_files(repo: &Repository) -> Vec<PathBuf> {
    let mut files = vec![
        repo.commondir().join("info").join("attributes"),
        PathBuf::from("/etc/gitattributes"),
    ];
    let configured = repo
        .config()
        .and_then(|c| c.get_path("core.attributesFile"))
        .ok();
    files.extend(configured.or_else(default_user_attributes));
    files
}

fn default_user_attributes() -> Option<PathBuf> {
    let config_home = match env::var_os("XDG_CONFIG_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(env::var_os("HOME")?).join(".config"),
    };
    Some(config_home.join("git").join("attributes"))
}

/// Whether a `.gitattributes` entry is anywhere in `tree`: reads the tree objects only (about
/// one per folder), never the files.
fn tree_has_attributes(repo: &Repository, tree: &Tree<'_>) -> Result<bool, git2::Error> {
    let mut pending = vec![tree.clone()];
    while let Some(tree) = pending.pop() {
        for entry in tree.iter() {
            if entry.name_bytes() == ATTRIBUTES_FILE {
                return Ok(true);
            }
            if entry.kind() == Some(ObjectType::Tree) {
                pending.push(repo.find_tree(entry.id())?);
            }
        }
    }
    Ok(false)
}

/// Deeper trees are refused, as git refuses them (`core.maxTreeDepth`); it also bounds the
/// recursion of [`Plan::tree`].
const MAX_DEPTH: usize = 2048;

/// Whether `core.symlinks` allows real symbolic links (libgit2 writes them as plain files when
/// it is false, which [`write_tree`] does not do).
pub fn symlinks_enabled(repo: &Repository) -> bool {
    repo.config()
        .and_then(|c| c.get_bool("core.symlinks"))
        .unwrap_or(true)
}

/// What [`write_tree`] did.
#[derive(Default)]
pub struct Written {
    /// An index entry per file, symlink and submodule, with the stat data of what was written.
    pub entries: Vec<IndexEntry>,
    /// Which of `entries` were hard-linked from the previous worktree.
    pub linked: Vec<usize>,
}

/// Writes the files of `tree` into the folder `dest`, unconverted: empty, or holding only what
/// `prelinked` made. A file whose blob and mode are the same in `previous` is hard-linked from
/// it; every other file is created anew (never opened if it exists), so the previous
/// worktree's files are never written to while readers may be reading them.
///
/// The folders are made first, then the files are written by up to one thread per core.
pub fn write_tree(
    repo: &Repository,
    tree: &Tree<'_>,
    dest: &Path,
    previous: Option<&Previous>,
    prelinked: Option<Prelinked>,
) -> Result<Written, LayoutError> {
    let mut plan = Plan::default();
    plan.tree(repo, tree, dest, &[], 0)?;
    if let Some(mut prelinked) = prelinked {
        for job in &mut plan.jobs {
            job.ready = prelinked.take(&job.rel, job.id, job.mode);
        }
        let wanted = plan.dirs.iter().map(|(rel, _)| rel.clone()).collect();
        prelinked.remove_unwanted(dest, &wanted)?;
    }
    for (_, path) in &plan.dirs {
        ensure_dir(path)?;
    }
    let git_dir = repo.path();
    let parts = parallel::map_chunks(&plan.jobs, FILES_PER_THREAD, |jobs| {
        Worker::new(git_dir, previous).run(jobs)
    });
    let mut written = Written::default();
    for part in parts {
        let part = part?;
        let offset = written.entries.len();
        written
            .linked
            .extend(part.linked.iter().map(|i| i + offset));
        written.entries.extend(part.entries);
    }
    Ok(written)
}

/// Something other than a folder to make in the worktree.
struct Job {
    /// Where, on disk.
    path: PathBuf,
    /// Where, in the worktree, as git names it.
    rel: Vec<u8>,
    id: Oid,
    mode: i32,
    /// The metadata of the link [`prelink`](super::prelink) already made there.
    ready: Option<fs::Metadata>,
}

/// What a tree holds, in the index's order.
#[derive(Default)]
struct Plan {
    /// Its folders, as git names them and on disk, parents first.
    dirs: Vec<(Vec<u8>, PathBuf)>,
    jobs: Vec<Job>,
}

impl Plan {
    /// Lists what `tree` holds under `dir`, which is `prefix` in the worktree.
    fn tree(
        &mut self,
        repo: &Repository,
        tree: &Tree<'_>,
        dir: &Path,
        prefix: &[u8],
        depth: usize,
    ) -> Result<(), LayoutError> {
        if depth > MAX_DEPTH {
            return Err(LayoutError::BadTree(format!(
                "{} is more than {MAX_DEPTH} folders deep",
                String::from_utf8_lossy(prefix)
            )));
        }
        for entry in tree.iter() {
            let rel = join(prefix, entry.name_bytes())?;
            let path = dir.join(OsStr::from_bytes(entry.name_bytes()));
            let (id, mode) = (entry.id(), entry.filemode());
            match mode {
                MODE_TREE => {
                    self.dirs.push((rel.clone(), path.clone()));
                    let subtree = repo.find_tree(id).map_err(LayoutError::Git)?;
                    self.tree(repo, &subtree, &path, &rel, depth + 1)?;
                }
                MODE_FILE | MODE_EXECUTABLE | MODE_SYMLINK | MODE_GITLINK => {
                    self.jobs.push(Job {
                        path,
                        rel,
                        id,
                        mode,
                        ready: None,
                    });
                }
                other => {
                    return Err(LayoutError::BadTree(format!(
                        "{} has the unknown mode {other:o}",
                        String::from_utf8_lossy(&rel)
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Writes a share of the files, on one thread.
struct Worker<'a> {
    git_dir: &'a Path,
    previous: Option<&'a Previous>,
    /// Opened on the first blob to read: a repository cannot be shared between threads, and a
    /// new commit's files are mostly linked, not read.
    repo: Option<Repository>,
}

impl<'a> Worker<'a> {
    fn new(git_dir: &'a Path, previous: Option<&'a Previous>) -> Self {
        Worker {
            git_dir,
            previous,
            repo: None,
        }
    }

    fn run(mut self, jobs: &[Job]) -> Result<Written, LayoutError> {
        let mut written = Written::default();
        for job in jobs {
            let (meta, linked) = self.make(job)?;
            if linked {
                written.linked.push(written.entries.len());
            }
            let entry = index_entry(job.rel.clone(), job.id, job.mode, &meta);
            written.entries.push(entry);
        }
        Ok(written)
    }

    /// Makes `job`'s file, symlink or submodule folder; returns its metadata and whether it was
    /// hard-linked.
    fn make(&mut self, job: &Job) -> Result<(fs::Metadata, bool), LayoutError> {
        if let Some(meta) = &job.ready {
            return Ok((meta.clone(), true));
        }
        let path = &job.path;
        match job.mode {
            MODE_SYMLINK => {
                let blob = self.repo()?.find_blob(job.id).map_err(LayoutError::Git)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(blob.content()), path)
                    .map_err(io_err(path))?;
            }
            // A submodule is left as an empty folder, as git and libgit2 leave it.
            MODE_GITLINK => make_dir(path)?,
            _ => return self.file(job),
        }
        let meta = fs::symlink_metadata(path).map_err(io_err(path))?;
        Ok((meta, false))
    }

    fn file(&mut self, job: &Job) -> Result<(fs::Metadata, bool), LayoutError> {
        let (path, id, mode) = (&job.path, job.id, job.mode);
        if let Some(previous) = self.previous
            && let Some(meta) = previous.link(&job.rel, id, mode, path)?
        {
            return Ok((meta, true));
        }
        let blob = self.repo()?.find_blob(id).map_err(LayoutError::Git)?;
        let permissions = if mode == MODE_EXECUTABLE {
            0o755
        } else {
            0o644
        };
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(permissions)
            .open(path)
            .map_err(io_err(path))?;
        file.write_all(blob.content()).map_err(io_err(path))?;
        let meta = file.metadata().map_err(io_err(path))?;
        Ok((meta, false))
    }

    fn repo(&mut self) -> Result<&Repository, LayoutError> {
        let repo = match self.repo.take() {
            Some(repo) => repo,
            None => Repository::open(self.git_dir).map_err(LayoutError::Git)?,
        };
        Ok(self.repo.insert(repo))
    }
}

/// `prefix/name`, refusing a name that would write outside its folder or into `.git`, as
/// libgit2's checkout refuses it.
fn join(prefix: &[u8], name: &[u8]) -> Result<Vec<u8>, LayoutError> {
    let unsafe_name = matches!(name, b"" | b"." | b"..")
        || name.eq_ignore_ascii_case(b".git")
        || name.contains(&b'/')
        || name.contains(&0);
    if unsafe_name {
        return Err(LayoutError::BadTree(format!(
            "{:?} in folder {:?} is not a file name that can be checked out",
            String::from_utf8_lossy(name),
            String::from_utf8_lossy(prefix)
        )));
    }
    let mut path = Vec::with_capacity(prefix.len() + 1 + name.len());
    if !prefix.is_empty() {
        path.extend_from_slice(prefix);
        path.push(b'/');
    }
    path.extend_from_slice(name);
    Ok(path)
}

/// An index entry with `meta`'s stat data, as git fills it when it checks a file out; the
/// index keeps only the low 32 bits of inode numbers, sizes and times, as git does.
fn index_entry(path: Vec<u8>, id: Oid, mode: i32, meta: &fs::Metadata) -> IndexEntry {
    let (mtime_s, mtime_ns) = stat_mtime(meta);
    let (ctime_s, ctime_ns) = stat_ctime(meta);
    IndexEntry {
        ctime: IndexTime::new(ctime_s, ctime_ns),
        mtime: IndexTime::new(mtime_s, mtime_ns),
        dev: meta.dev() as u32,
        ino: stat_ino(meta),
        mode: mode as u32,
        uid: meta.uid(),
        gid: meta.gid(),
        file_size: stat_size(meta),
        id,
        flags: 0,
        flags_extended: 0,
        path,
    }
}

/// Writes `entries` as the index at `path`, replacing any index there.
pub fn write_index(path: &Path, entries: &[IndexEntry]) -> Result<(), git2::Error> {
    // Written beside and renamed over: libgit2 would first read (and checksum) an index that
    // is there, only to clear it.
    let fresh = path.with_extension("modelsync-new");
    let _ = fs::remove_file(&fresh);
    // Not owned by a repository, so libgit2 does not look each blob up again.
    let mut index = Index::open(&fresh)?;
    for entry in entries {
        index.add(entry)?;
    }
    index.write()?;
    fs::rename(&fresh, path).map_err(|e| {
        git2::Error::from_str(&format!(
            "renaming {} to {}: {e}",
            fresh.display(),
            path.display()
        ))
    })
}

/// The index of a worktree whose files were partly hard-linked from the previous worktree.
pub struct Relinked {
    index_path: PathBuf,
    worktree: PathBuf,
    entries: Vec<IndexEntry>,
    linked: Vec<usize>,
}

impl Relinked {
    pub fn new(index_path: PathBuf, worktree: PathBuf, written: Written) -> Self {
        Relinked {
            index_path,
            worktree,
            entries: written.entries,
            linked: written.linked,
        }
    }

    /// Records the change time of the hard-linked files anew: removing the previous worktree
    /// changes it, and git takes a changed change time for a possibly changed file, re-reading
    /// it at every `git status` until the index is refreshed. An entry is updated only if the
    /// file is otherwise as recorded, so a file changed meanwhile still shows as changed.
    /// Returns how many were updated.
    pub fn refresh(mut self) -> Result<usize, git2::Error> {
        let changed = parallel::map_chunks(&self.linked, FILES_PER_THREAD, |linked| {
            let ctimes = linked
                .iter()
                .map(|&i| (i, self.new_ctime(&self.entries[i])));
            ctimes
                .filter_map(|(i, ctime)| Some((i, ctime?)))
                .collect::<Vec<_>>()
        })
        .concat();
        for &(i, (seconds, nanoseconds)) in &changed {
            self.entries[i].ctime = IndexTime::new(seconds, nanoseconds);
        }
        if !changed.is_empty() {
            write_index(&self.index_path, &self.entries)?;
        }
        Ok(changed.len())
    }

    /// The change time of `entry`'s file if only that changed.
    fn new_ctime(&self, entry: &IndexEntry) -> Option<(i32, u32)> {
        let path = self.worktree.join(OsStr::from_bytes(&entry.path));
        let meta = fs::symlink_metadata(path).ok()?;
        let ctime = stat_ctime(&meta);
        let same_file = stat_ino(&meta) == entry.ino
            && stat_size(&meta) == entry.file_size
            && stat_mtime(&meta) == (entry.mtime.seconds(), entry.mtime.nanoseconds());
        let moved = ctime != (entry.ctime.seconds(), entry.ctime.nanoseconds());
        (same_file && moved).then_some(ctime)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repository in a temporary folder, holding `files` (path, content) as one tree.
    fn repo_with(files: &[(&str, &str)]) -> (tempfile::TempDir, Repository, Oid) {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let tree = tree_of(&repo, files);
        (dir, repo, tree)
    }

    /// Writes `files` (path, content) as a tree of `repo`.
    fn tree_of(repo: &Repository, files: &[(&str, &str)]) -> Oid {
        let mut index = Index::new().unwrap();
        for (path, content) in files {
            let entry = IndexEntry {
                ctime: IndexTime::new(0, 0),
                mtime: IndexTime::new(0, 0),
                dev: 0,
                ino: 0,
                mode: MODE_FILE as u32,
                uid: 0,
                gid: 0,
                file_size: content.len() as u32,
                id: repo.blob(content.as_bytes()).unwrap(),
                flags: 0,
                flags_extended: 0,
                path: path.as_bytes().to_vec(),
            };
            index.add(&entry).unwrap();
        }
        index.write_tree_to(repo).unwrap()
    }

    #[test]
    fn attributes_anywhere_turn_filters_on() {
        let (_dir, repo, plain) = repo_with(&[("a.txt", "a\n"), ("d/e/b.txt", "b\n")]);
        let tree = repo.find_tree(plain).unwrap();
        assert!(!filters_may_apply(&repo, &tree).unwrap());

        let (_dir, repo, nested) =
            repo_with(&[("a.txt", "a\n"), ("d/e/.gitattributes", "* text\n")]);
        let tree = repo.find_tree(nested).unwrap();
        assert!(filters_may_apply(&repo, &tree).unwrap());
    }

    #[test]
    fn repository_attributes_and_autocrlf_turn_filters_on() {
        let (_dir, repo, plain) = repo_with(&[("a.txt", "a\n")]);
        let tree = repo.find_tree(plain).unwrap();
        let info = repo.path().join("info");
        fs::create_dir_all(&info).unwrap();
        fs::write(info.join("attributes"), "*.txt eol=crlf\n").unwrap();
        assert!(filters_may_apply(&repo, &tree).unwrap());
        fs::remove_file(info.join("attributes")).unwrap();
        assert!(!filters_may_apply(&repo, &tree).unwrap());

        for value in ["true", "input"] {
            repo.config()
                .unwrap()
                .set_str("core.autocrlf", value)
                .unwrap();
            assert!(filters_may_apply(&repo, &tree).unwrap(), "autocrlf={value}");
        }
        repo.config()
            .unwrap()
            .set_bool("core.autocrlf", false)
            .unwrap();
        assert!(!filters_may_apply(&repo, &tree).unwrap());
    }

    /// Enough files for several threads: the entries come back in the index's order, and the
    /// ones said to be linked are the previous worktree's files, whether linked while writing
    /// or ahead of it.
    #[test]
    fn files_are_linked_and_listed_in_order_across_threads() {
        let names: Vec<String> = (0..3 * FILES_PER_THREAD)
            .map(|i| format!("d{:02}/f{i:04}.txt", i % 7))
            .collect();
        let mut files: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "same\n")).collect();
        let (dir, repo, first) = repo_with(&files);
        files[5].1 = "changed\n";
        let second = repo.find_tree(tree_of(&repo, &files)).unwrap();

        let old = dir.path().join("old");
        let admin = dir.path().join("old-admin");
        fs::create_dir_all(&admin).unwrap();
        fs::create_dir(&old).unwrap();
        let tree = repo.find_tree(first).unwrap();
        let written = write_tree(&repo, &tree, &old, None, None).unwrap();
        assert!(written.linked.is_empty());
        write_index(&admin.join("index"), &written.entries).unwrap();
        fs::write(admin.join(super::super::fs::PLAIN_MARKER), "").unwrap();
        let previous = Previous::load(old.clone(), &admin).unwrap();

        for ahead in [false, true] {
            let new = dir.path().join(format!("new-{ahead}"));
            fs::create_dir(&new).unwrap();
            let prelinked = ahead.then(|| super::super::prelink::prelink(&previous, &new).unwrap());
            let written = write_tree(&repo, &second, &new, Some(&previous), prelinked).unwrap();

            let paths: Vec<&[u8]> = written.entries.iter().map(|e| &e.path[..]).collect();
            assert!(paths.is_sorted(), "entries out of the index's order");
            assert_eq!(paths.len(), names.len());
            let changed = paths.iter().position(|p| *p == files[5].0.as_bytes());
            let all_but_changed: Vec<usize> =
                (0..paths.len()).filter(|i| Some(*i) != changed).collect();
            assert_eq!(written.linked, all_but_changed, "ahead: {ahead}");
            for &i in &written.linked {
                let path = OsStr::from_bytes(&written.entries[i].path);
                let old_ino = fs::metadata(old.join(path)).unwrap().ino();
                assert_eq!(written.entries[i].ino, old_ino as u32, "{path:?}");
            }
            let changed = new.join(files[5].0);
            assert_eq!(fs::read_to_string(&changed).unwrap(), "changed\n");
            assert_ne!(
                fs::metadata(&changed).unwrap().ino(),
                fs::metadata(old.join(files[5].0)).unwrap().ino()
            );
        }
    }

    #[test]
    fn names_that_escape_the_worktree_are_refused() {
        for name in [&b""[..], b".", b"..", b".git", b".GIT", b"a/b", b"a\0b"] {
            let err = join(b"dir", name).unwrap_err().to_string();
            assert!(
                err.contains("not a file name that can be checked out"),
                "{err}"
            );
        }
        assert_eq!(join(b"", b"a").unwrap(), b"a");
        assert_eq!(join(b"d/e", b".gitignore").unwrap(), b"d/e/.gitignore");
    }
}
