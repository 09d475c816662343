//! Real git for tests and the demo: the `git` command line, and `git daemon` serving bare
//! repositories over `git://` (with push enabled) on loopback or on the node's bridge address.

use std::net::{IpAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::process::{Guarded, log_tail};

/// Runs `git args...` in `dir` with a fixed identity and `main` as the default branch, and
/// returns its standard output.
pub fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .args(["-c", "user.name=modelsync test", "-c"])
        .arg("user.email=test@modelsync.invalid")
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "advice.detachedHead=false",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .context("running git: install it (apt-get install -y git)")?;
    if !out.status.success() {
        bail!(
            "git {} in {} failed: {}",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
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
        let port = free_port_on(ip)?;
        // `git daemon` would start git-daemon as a child and leave it behind when stopped, so
        // the daemon program is started directly.
        let exec_path = Command::new("git")
            .arg("--exec-path")
            .output()
            .context("running git: install it (apt-get install -y git)")?;
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
