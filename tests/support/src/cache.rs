//! A per-user cache for slow-to-make test tools (control plane binaries, npm and PyPI tools),
//! outside the repository and keyed by version, so a second run reuses the first one's work.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// `${XDG_CACHE_HOME:-$HOME/.cache}/modelsync`.
pub fn root() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME").context(
                "neither XDG_CACHE_HOME nor HOME is set: set one so tools can be cached",
            )?;
            PathBuf::from(home).join(".cache")
        }
    };
    Ok(base.join("modelsync"))
}

/// Marker written last into a finished entry; an entry without it is an interrupted build.
const COMPLETE: &str = ".complete";

/// Returns `<root>/<key>`, making it first with `make` if no finished copy exists.
///
/// `make` fills an empty staging directory; only when it succeeds is the staging directory
/// renamed into place, so an interrupted build never looks finished. An exclusive file lock
/// makes parallel test binaries wait for one build instead of each doing it.
pub fn get_or_make(key: &str, make: impl FnOnce(&Path) -> Result<()>) -> Result<PathBuf> {
    get_or_make_in(&root()?, key, make)
}

fn get_or_make_in(
    root: &Path,
    key: &str,
    make: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let dir = root.join(key);
    if dir.join(COMPLETE).exists() {
        return Ok(dir);
    }
    let parent = dir.parent().unwrap_or(root).to_path_buf();
    fs::create_dir_all(&parent)
        .with_context(|| format!("creating cache folder {}", parent.display()))?;
    let lock_path = sibling(&dir, "lock");
    let lock = File::create(&lock_path)
        .with_context(|| format!("creating lock file {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    // Another process may have finished while this one waited for the lock.
    if dir.join(COMPLETE).exists() {
        return Ok(dir);
    }
    let staging = sibling(&dir, "partial");
    if staging.exists() {
        fs::remove_dir_all(&staging)
            .with_context(|| format!("removing interrupted build {}", staging.display()))?;
    }
    fs::create_dir_all(&staging)?;
    make(&staging)?;
    fs::write(staging.join(COMPLETE), b"")?;
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    fs::rename(&staging, &dir)
        .with_context(|| format!("moving {} to {}", staging.display(), dir.display()))?;
    Ok(dir)
}

/// `<dir>.<suffix>`; `with_extension` would cut version numbers like `3.5.35` short.
fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_once_then_reuses() {
        let tmp = tempfile::tempdir().unwrap();
        let first = get_or_make_in(tmp.path(), "a/b", |d| Ok(fs::write(d.join("tool"), b"1")?));
        let first = first.unwrap();
        let second = get_or_make_in(tmp.path(), "a/b", |_| anyhow::bail!("must not run"));
        assert_eq!(first, second.unwrap());
        assert_eq!(fs::read(first.join("tool")).unwrap(), b"1");
    }

    #[test]
    fn failed_make_leaves_nothing_finished() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(get_or_make_in(tmp.path(), "k", |_| anyhow::bail!("boom")).is_err());
        assert!(!tmp.path().join("k").exists());
        let again = get_or_make_in(tmp.path(), "k", |d| Ok(fs::write(d.join("tool"), b"2")?));
        assert_eq!(fs::read(again.unwrap().join("tool")).unwrap(), b"2");
    }

    #[test]
    fn parallel_callers_make_once() {
        let tmp = tempfile::tempdir().unwrap();
        let made = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    get_or_make_in(tmp.path(), "shared", |d| {
                        made.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        Ok(fs::write(d.join("tool"), b"x")?)
                    })
                    .unwrap();
                });
            }
        });
        assert_eq!(made.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
