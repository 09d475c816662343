//! The real `modelsync controller` as a child process, started the one way the end-to-end tests,
//! the benchmarks and the demo start it: its admin server (`/metrics`, `/healthz`, `/readyz`)
//! on a free loopback port, a kubeconfig, flags, environment and a log file.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::process::{Guarded, free_port, log_tail, pids_mentioning};

/// How to start `modelsync controller`: the binary, the cluster, flags and environment.
#[derive(Clone, Debug)]
pub struct ControllerCommand {
    bin: PathBuf,
    kubeconfig: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log_dir: Option<PathBuf>,
}

impl ControllerCommand {
    /// `bin controller` against the cluster of `kubeconfig`, logging at `info,kube=warn`.
    pub fn new(bin: &Path, kubeconfig: &Path) -> Self {
        ControllerCommand {
            bin: bin.to_owned(),
            kubeconfig: kubeconfig.to_owned(),
            args: Vec::new(),
            env: vec![("RUST_LOG".into(), "info,kube=warn".into())],
            log_dir: None,
        }
    }

    /// Watches only `namespace`.
    pub fn namespace(self, namespace: &str) -> Self {
        self.arg(format!("--namespace={namespace}"))
    }

    /// Adds a flag, e.g. `--leader-elect`. The admin address is the harness's to choose.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<S: Into<String>>(self, args: impl IntoIterator<Item = S>) -> Self {
        args.into_iter().fold(self, Self::arg)
    }

    /// Sets an environment variable of the controller; `RUST_LOG` replaces the default filter.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Logs to `dir/controller-<admin port>.log`; without it, to a temporary folder that goes
    /// away with the [`Controller`].
    pub fn log_dir(mut self, dir: &Path) -> Self {
        self.log_dir = Some(dir.to_owned());
        self
    }
}

/// Starts the controller `command` describes. It stops (SIGTERM, then SIGKILL after a grace
/// period) and is reaped when the returned handle is dropped, or when this process dies.
pub fn spawn_controller(command: ControllerCommand) -> Result<Controller> {
    let port = free_port()?;
    let (log_dir, temp_logs) = match &command.log_dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let temp = tempfile::Builder::new()
                .prefix("modelsync-controller-")
                .tempdir()
                .context("making a folder for the controller's log")?;
            (temp.path().to_owned(), Some(temp))
        }
    };
    let mut controller = Controller {
        process: None,
        log: log_dir.join(format!("controller-{port}.log")),
        _temp_logs: temp_logs,
        command,
        port,
    };
    controller.start()?;
    Ok(controller)
}

/// A running `modelsync controller`.
pub struct Controller {
    // Declared first so the process stops before its temporary log folder goes.
    process: Option<Guarded>,
    log: PathBuf,
    _temp_logs: Option<tempfile::TempDir>,
    command: ControllerCommand,
    port: u16,
}

impl Controller {
    fn start(&mut self) -> Result<()> {
        let c = &self.command;
        let mut cmd = Command::new(&c.bin);
        cmd.arg("controller")
            .arg(format!("--metrics-addr={}", self.admin_addr()))
            .args(&c.args)
            .env("KUBECONFIG", &c.kubeconfig)
            .envs(c.env.iter().map(|(k, v)| (k, v)));
        let process = Guarded::spawn_command("modelsync-controller", &cmd, &self.log)
            .with_context(|| format!("starting {} controller", c.bin.display()))?;
        self.process = Some(process);
        Ok(())
    }

    /// Where its admin server listens.
    pub fn admin_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// `http://127.0.0.1:<port>`: its `/metrics`, `/healthz` and `/readyz`.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin_addr())
    }

    pub fn metrics_url(&self) -> String {
        format!("{}/metrics", self.admin_url())
    }

    /// Its metrics, in Prometheus text format.
    pub async fn scrape(&self) -> Result<String> {
        let url = self.metrics_url();
        let response = reqwest::get(&url)
            .await
            .with_context(|| format!("scraping {url}"))?;
        Ok(response.text().await?)
    }

    /// Waits until `/healthz` answers 200; fails with the log's end if the controller exits or
    /// `timeout` passes first.
    pub async fn wait_healthy(&mut self, timeout: Duration) -> Result<()> {
        let http = reqwest::Client::new();
        let url = format!("{}/healthz", self.admin_url());
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(r) = http.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if self.exited().is_some() || Instant::now() > deadline {
                bail!("the controller did not come up:\n{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The controller's own pid (not its guard's), while it runs.
    pub fn pid(&self) -> Option<u32> {
        let bin = self.command.bin.canonicalize().ok()?;
        pids_mentioning(&format!("--metrics-addr={}", self.admin_addr()))
            .into_iter()
            .find(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == bin))
    }

    /// `Some(status)` once it has exited (or was stopped).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.process.as_mut()?.exited()
    }

    /// Waits for it to exit by itself, up to `timeout`; `None` if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.process.as_mut()?.wait_exit(timeout)
    }

    /// Stops it as Kubernetes would (SIGTERM) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop();
        }
    }

    /// Kills it with SIGKILL: no clean-up, like a node dying.
    pub fn kill9(&mut self) {
        for _ in 0..100 {
            if let Some(pid) = self.pid() {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.stop();
    }

    /// Starts it again with the same command, port and log (after [`Controller::kill9`] or
    /// [`Controller::stop`]; a running one is stopped first).
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.start()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The whole log, for finding out which replica did what.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log's last 40 lines, for failure messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log, 40)
    }
}
