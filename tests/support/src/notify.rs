//! Notification receivers as real processes (on loopback, or on a node's bridge address where
//! pods must reach them), for the tests and the demo:
//! `cloudevents` parses with the official CloudEvents SDK for Python, `slack` checks a Slack
//! message's shape (both `tests/notify/receiver.py`), and `generic` is a Go program
//! (`tests/notify/hmac/`) that accepts only bodies whose `X-Signature` HMAC it verifies.
//!
//! The SDK is installed from PyPI on first use into the cache, keyed by its pinned version;
//! the Go receiver is built with the machine's `go` and cached by a hash of its source.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::binaries::go_build;
use crate::cache;
use crate::git::free_port_on;
use crate::process::Guarded;

/// The CloudEvents SDK for Python the receiver parses with.
pub const CLOUDEVENTS_SDK_VERSION: &str = "2.2.0";
const HMAC_PROGRAM: &str = "hmac-receiver";

fn sources() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../notify")
}

/// A folder to put on `PYTHONPATH` holding the `cloudevents` package, installing it first if
/// needed. `pip install --target` makes a folder that may be moved, unlike a venv, so it goes
/// through the cache's build-then-rename.
pub fn cloudevents_sdk() -> Result<PathBuf> {
    let key = format!("pypi/cloudevents-{CLOUDEVENTS_SDK_VERSION}");
    let dir = cache::get_or_make(&key, |out| {
        let site = out.join("site");
        let output = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-warn-conflicts",
                "--target",
            ])
            .arg(&site)
            .arg(format!("cloudevents=={CLOUDEVENTS_SDK_VERSION}"))
            .output()
            .context("running python3 -m pip: install python3 and python3-pip")?;
        if !output.status.success() {
            bail!(
                "pip install cloudevents=={CLOUDEVENTS_SDK_VERSION} failed (is PyPI reachable?):\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    })?;
    Ok(dir.join("site"))
}

/// The Go receiver, built first if needed.
pub fn hmac_receiver() -> Result<PathBuf> {
    let src = sources().join("hmac");
    let key = format!(
        "{HMAC_PROGRAM}/{}",
        &crate::argocd::source_hash(&src)?[..12]
    );
    let dir = cache::get_or_make(&key, |out| {
        let binary = out.join(HMAC_PROGRAM);
        go_build(
            &src,
            &["-o", &binary.to_string_lossy(), "."],
            HMAC_PROGRAM,
            out,
        )
    })?;
    Ok(dir.join(HMAC_PROGRAM))
}

/// Which receiver.
#[derive(Clone, Debug)]
pub enum Kind {
    CloudEvents,
    Slack,
    /// Verifies `X-Signature` with this key.
    Generic {
        hmac_key: String,
    },
}

/// A receiver's address, chosen before it runs, so a test can point a Secret at a receiver
/// that is not up yet.
pub struct Planned {
    pub kind: Kind,
    pub ip: IpAddr,
    pub port: u16,
}

impl Planned {
    /// A receiver on loopback, for a controller running on this machine.
    pub fn new(kind: Kind) -> Result<Self> {
        Self::on(kind, IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// A receiver on `ip`: a node's bridge address, for a controller running as a pod.
    pub fn on(kind: Kind, ip: IpAddr) -> Result<Self> {
        Ok(Planned {
            kind,
            ip,
            port: free_port_on(ip)?,
        })
    }

    fn base(&self) -> String {
        match self.ip {
            IpAddr::V4(ip) => format!("http://{ip}:{}", self.port),
            IpAddr::V6(ip) => format!("http://[{ip}]:{}", self.port),
        }
    }

    /// Where notifications go.
    pub fn url(&self) -> String {
        format!("{}/hook", self.base())
    }

    /// Starts it and waits until it answers; `logs` gets its log (what it received, a line
    /// each).
    pub async fn start(self, logs: &Path) -> Result<Receiver> {
        let name = match &self.kind {
            Kind::CloudEvents => "cloudevents",
            Kind::Slack => "slack",
            Kind::Generic { .. } => "generic",
        };
        let log = logs.join(format!("receiver-{name}-{}.log", self.port));
        let mut command;
        match &self.kind {
            Kind::CloudEvents | Kind::Slack => {
                let sdk = tokio::task::spawn_blocking(cloudevents_sdk).await??;
                command = Command::new("python3");
                command
                    .arg("-u")
                    .arg(sources().join("receiver.py"))
                    .args(["--format", name, "--port", &self.port.to_string()])
                    .args(["--host", &self.ip.to_string()])
                    .env("PYTHONPATH", sdk);
            }
            Kind::Generic { hmac_key } => {
                let bin = tokio::task::spawn_blocking(hmac_receiver).await??;
                let key_file = logs.join(format!("hmac-key-{}", self.port));
                std::fs::write(&key_file, hmac_key)?;
                command = Command::new(bin);
                command
                    .arg(format!(
                        "-listen={}",
                        self.base().trim_start_matches("http://")
                    ))
                    .arg(format!("-key-file={}", key_file.display()));
            }
        }
        let process = Guarded::spawn_command(&format!("receiver-{name}"), &command, &log)?;
        let receiver = Receiver {
            base: self.base(),
            url: self.url(),
            log,
            _process: process,
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while receiver.get("received").await.is_err() {
            if Instant::now() > deadline {
                bail!(
                    "the {name} receiver did not answer on {} within 30s; its log:\n{}",
                    receiver.base,
                    crate::process::log_tail(&receiver.log, 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(receiver)
    }
}

/// A running receiver; stopped when dropped.
pub struct Receiver {
    base: String,
    pub url: String,
    pub log: PathBuf,
    _process: Guarded,
    http: reqwest::Client,
}

impl Receiver {
    async fn get(&self, what: &str) -> Result<Vec<Value>> {
        let url = format!("{}/{what}", self.base);
        let list: Vec<Value> = self
            .http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("asking {url}"))?
            .error_for_status()?
            .json()
            .await?;
        Ok(list)
    }

    /// What it accepted, in order.
    pub async fn received(&self) -> Result<Vec<Value>> {
        self.get("received").await
    }

    /// Why it refused what it refused (a CloudEvents parse error, a bad signature).
    pub async fn refused(&self) -> Result<Vec<Value>> {
        self.get("refused").await
    }
}
