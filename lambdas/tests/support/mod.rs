//! Helpers shared by the integration tests: scripted git histories over the test environment's
//! git, which panics where a test should fail.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};

use modelsync_testenv::git::Git;

/// Runs git in `dir` (no user or system config, a fixed identity) and returns its output
/// without the final newline.
pub fn git(dir: &Path, args: &[&str]) -> String {
    modelsync_testenv::git::git(dir, args).unwrap_or_else(|e| panic!("{e:#}"))
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    modelsync_testenv::process::free_port().unwrap()
}

/// A bare repository and a clone to make commits in.
pub struct Upstream {
    pub dir: tempfile::TempDir,
}

impl Upstream {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "--bare", "-q", "remote.git"]);
        git(dir.path(), &["init", "-q", "work"]);
        git(
            &dir.path().join("work"),
            &["remote", "add", "origin", "../remote.git"],
        );
        Upstream { dir }
    }

    pub fn bare(&self) -> PathBuf {
        self.dir.path().join("remote.git")
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.bare().display())
    }

    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// Writes `files` (a `None` content deletes), commits on main with the given date, pushes.
    pub fn commit_at(&self, files: &[(&str, Option<&str>)], date: &str) -> String {
        let work = self.work();
        for (path, content) in files {
            let p = work.join(path);
            match content {
                Some(text) => {
                    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                    std::fs::write(&p, text).unwrap();
                }
                None => std::fs::remove_file(&p).unwrap(),
            }
        }
        git(&work, &["add", "-A"]);
        Git::new(&work)
            .date(date)
            .run(&["commit", "-q", "--allow-empty", "-m", "change"])
            .unwrap_or_else(|e| panic!("{e:#}"));
        git(
            &work,
            &["push", "-q", "-f", "origin", "HEAD:refs/heads/main"],
        );
        self.head()
    }

    pub fn commit(&self, files: &[(&str, &str)]) -> String {
        let files: Vec<(&str, Option<&str>)> = files.iter().map(|(p, c)| (*p, Some(*c))).collect();
        self.commit_at(&files, "2026-01-01T00:00:00Z")
    }

    pub fn head(&self) -> String {
        git(&self.work(), &["rev-parse", "HEAD"])
    }
}

/// `git daemon` serving every repository under `base` on 127.0.0.1:`port`, until dropped.
pub fn git_daemon(base: &Path, port: u16) -> modelsync_testenv::git::GitDaemon {
    let log = base.join(format!("git-daemon-{port}.log"));
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    modelsync_testenv::git::GitDaemon::start_at(base, addr, &log)
        .unwrap_or_else(|e| panic!("{e:#}"))
}
