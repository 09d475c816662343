//! Real git for tests, benchmarks and the demo: the `git` command line without the machine's
//! configuration, and `git daemon` serving bare repositories over `git://` (with push enabled)
//! on loopback or on the node's bridge address.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::process::{Guarded, log_tail};

const INSTALL: &str = "running git: install it (apt-get install -y git)";

/// A `git` command in `dir` that reads no system or user configuration (so the machine's
/// settings change neither results nor timings), never prompts, makes commits as a fixed test
/// identity and starts repositories on `main`. Add the subcommand and its arguments; a caller's
/// own `-c` options come later and win.
pub fn command(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .args(["-c", "user.name=modelsync test", "-c"])
        .arg("user.email=test@modelsync.invalid")
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "advice.detachedHead=false",
        ]);
    cmd
}

/// Runs `git args...` in `dir` (see [`command`]) and returns its standard output without the
/// final newline.
pub fn git(dir: &Path, args: &[&str]) -> Result<String> {
    Git::new(dir).run(args)
}

/// A git run with more set than [`command`] sets: another author, fixed commit dates.
#[derive(Clone, Debug)]
pub struct Git {
    dir: PathBuf,
    env: Vec<(&'static str, String)>,
}

impl Git {
    pub fn new(dir: &Path) -> Self {
        Git {
            dir: dir.to_owned(),
            env: Vec::new(),
        }
    }

    /// Commits as `name <email>`, author and committer, like a person rather than a tool.
    pub fn author(mut self, name: &str, email: &str) -> Self {
        for key in ["GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"] {
            self.env.push((key, name.to_owned()));
        }
        for key in ["GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"] {
            self.env.push((key, email.to_owned()));
        }
        self
    }

    /// Dates commits, authored and committed, at `date` (e.g. `2026-01-01T00:00:00Z`).
    pub fn date(mut self, date: &str) -> Self {
        for key in ["GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE"] {
            self.env.push((key, date.to_owned()));
        }
        self
    }

    /// Runs `git args...` and returns its standard output without the final newline.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let out = self.run_bytes(args)?;
        Ok(String::from_utf8_lossy(&out).trim_end().to_owned())
    }

    /// Runs `git args...` and returns its standard output as it is.
    pub fn run_bytes(&self, args: &[&str]) -> Result<Vec<u8>> {
        let out = command(&self.dir)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(args)
            .output()
            .context(INSTALL)?;
        if !out.status.success() {
            bail!(
                "git {} in {} failed: {}",
                args.join(" "),
                self.dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(out.stdout)
    }
}

/// The `+` and `-` lines of a unified diff, without its file headers: the change as a reviewer
/// reads it.
pub fn changed_lines(diff: &str) -> String {
    diff.lines()
        .filter(|l| {
            (l.starts_with('+') || l.starts_with('-'))
                && !l.starts_with("+++")
                && !l.starts_with("---")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `git daemon` serving every repository under a folder. It runs under the process guard, so
/// it stops when this is dropped or when the test process dies.
pub struct GitDaemon {
    _process: Guarded,
    ip: IpAddr,
    port: u16,
}

impl GitDaemon {
    /// Serves `base` on a free port of `ip`, with `git push` enabled.
    pub fn start(base: &Path, ip: IpAddr, log: &Path) -> Result<Self> {
        Self::start_at(base, SocketAddr::new(ip, free_port_on(ip)?), log)
    }

    /// Serves `base` on `addr`, e.g. the address of a daemon stopped a moment ago.
    pub fn start_at(base: &Path, addr: SocketAddr, log: &Path) -> Result<Self> {
        let (ip, port) = (addr.ip(), addr.port());
        // `git daemon` would start git-daemon as a child and leave it behind when stopped, so
        // the daemon program is started directly.
        let exec_path = Command::new("git")
            .arg("--exec-path")
            .output()
            .context(INSTALL)?;
        let exec_path = PathBuf::from(String::from_utf8_lossy(&exec_path.stdout).trim());
        let mut process = Guarded::spawn(
            "git-daemon",
            &exec_path.join("git-daemon"),
            &[
                "--reuseaddr".into(),
                format!("--listen={ip}"),
                format!("--port={port}"),
                format!("--base-path={}", base.display()),
                "--export-all".into(),
                "--enable=receive-pack".into(),
                base.display().to_string(),
            ],
            log,
        )?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect((ip, port)).is_err() {
            if let Some(status) = process.exited() {
                bail!("git daemon exited ({status}):\n{}", log_tail(log, 20));
            }
            if Instant::now() > deadline {
                bail!(
                    "git daemon did not listen on {ip}:{port} within 20s:\n{}",
                    log_tail(log, 20)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(GitDaemon {
            _process: process,
            ip,
            port,
        })
    }

    /// `git://<ip>:<port>/<name>` for the repository `base/<name>`.
    pub fn url(&self, name: &str) -> String {
        format!("git://{}:{}/{name}", self.ip, self.port)
    }
}

/// A port free on `ip` right now.
pub fn free_port_on(ip: IpAddr) -> Result<u16> {
    let listener = std::net::TcpListener::bind((ip, 0))
        .with_context(|| format!("finding a free port on {ip}"))?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_carry_the_identity_and_dates_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path();
        git(repo, &["init", "-q"]).unwrap();
        assert_eq!(git(repo, &["branch", "--show-current"]).unwrap(), "main");
        git(
            repo,
            &["commit", "-q", "--allow-empty", "-m", "by the tool"],
        )
        .unwrap();
        Git::new(repo)
            .author("Jane Human", "jane@example.com")
            .date("2026-01-02T03:04:05Z")
            .run(&["commit", "-q", "--allow-empty", "-m", "by a person"])
            .unwrap();
        let log = git(repo, &["log", "--format=%an <%ae>|%cn|%cI|%s"]).unwrap();
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(
            lines[0],
            "Jane Human <jane@example.com>|Jane Human|2026-01-02T03:04:05+00:00|by a person"
        );
        assert!(
            lines[1].starts_with("modelsync test <test@modelsync.invalid>|modelsync test|"),
            "{log}"
        );
        let err = git(repo, &["rev-parse", "--verify", "nope"])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("git rev-parse --verify nope in "), "{err}");
    }
}
