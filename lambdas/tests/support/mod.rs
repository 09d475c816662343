//! Helpers shared by the integration tests: scripted git histories and child processes tied to
//! the test's lifetime.
#![allow(dead_code)] // each test binary uses its own subset

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs git with a clean, fixed identity and no user or system config.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "advice.detachedHead=false",
        ])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@localhost")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@localhost")
        .output()
        .expect("git is installed");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
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
        let out = Command::new("git")
            .current_dir(&work)
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@localhost",
                "commit",
                "-q",
                "--allow-empty",
                "-m",
                "change",
            ])
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_DATE", date)
            .env("GIT_COMMITTER_DATE", date)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
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

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts connections on `port`.
pub fn wait_for_port(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on 127.0.0.1:{port} after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process that cannot outlive the test: it runs under `bash`, which kills the child's
/// whole process group as soon as its stdin (a pipe held here) closes, whether by drop or by the
/// test process dying. The group matters for servers that start helpers of their own.
pub struct Guarded {
    child: Child,
    stdin: Option<ChildStdin>,
    pub stdout: Option<BufReader<ChildStdout>>,
}

impl Guarded {
    pub fn spawn(program: &str, args: &[&str], dir: &Path) -> Self {
        Self::spawn_with(program, args, dir, &[], None)
    }

    /// Like `spawn`, with extra environment and the child's stderr sent to `log` if given.
    pub fn spawn_with(
        program: &str,
        args: &[&str],
        dir: &Path,
        env: &[(&str, &str)],
        log: Option<&Path>,
    ) -> Self {
        // `set -m` puts the child in its own process group, so `kill -- -$c` reaches its helpers.
        let script = r#"set -m; "$@" </dev/null & c=$!; trap 'kill -TERM -- -$c 2>/dev/null' EXIT; read -r _ || true; kill -TERM -- -$c 2>/dev/null; wait $c 2>/dev/null"#;
        let stderr = match log {
            Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
            None => Stdio::inherit(),
        };
        let mut child = Command::new("bash")
            .current_dir(dir)
            .envs(env.iter().copied())
            .arg("-c")
            .arg(script)
            .arg("bash")
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {program}: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().map(BufReader::new);
        Guarded {
            child,
            stdin,
            stdout,
        }
    }

    /// Reads stdout lines until one contains `needle`, returning it.
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        let out = self.stdout.as_mut().unwrap();
        let mut line = String::new();
        loop {
            line.clear();
            let n = out.read_line(&mut line).unwrap();
            assert!(n > 0, "process ended before printing {needle:?}");
            if line.contains(needle) {
                return line.trim().to_owned();
            }
        }
    }

    pub fn stop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `git daemon` serving every repository under `base` on 127.0.0.1.
pub fn git_daemon(base: &Path, port: u16) -> Guarded {
    let port_arg = format!("--port={port}");
    let base_arg = format!("--base-path={}", base.display());
    let daemon = Guarded::spawn(
        "git",
        &[
            "daemon",
            "--reuseaddr",
            "--export-all",
            "--listen=127.0.0.1",
            &port_arg,
            &base_arg,
            &base.display().to_string(),
        ],
        base,
    );
    wait_for_port(port, Duration::from_secs(10));
    daemon
}
