//! A real single-node Kubernetes beside the local control plane: containerd, kubelet,
//! kube-scheduler and kube-proxy, so pods really run.
//!
//! One node per machine: the bridge (`msync0`), the pod range (10.244.0.0/24), the service
//! range (10.96.0.0/24), kubelet's port and the `/kubepods` cgroups are machine-wide. A lock
//! (`/run/modelsync-node/lock`) held by a janitor process makes a second node wait for the first
//! to be gone. Every change to the machine is recorded in a ledger before it is made, and the
//! janitor undoes all of it when the node is dropped, on a panic, or when the process that
//! started it dies, even by SIGKILL. A node whose janitor was killed too is cleaned by the next
//! node's janitor before that node starts.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let node = modelsync_testenv::node::shared();
//! let client = node.client().await?;
//! node.import_image(std::path::Path::new("my-image.tar"))?;
//! # Ok(()) }
//! ```

mod config;
mod host;

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Node as NodeObject;
use kube::Api;

use crate::binaries::{NodeBinaries, fmt_elapsed, progress};
use crate::controlplane::ControlPlane;
use crate::image::{self, ImageConfig};
use crate::process::{Guarded, free_port, log_tail, pids_mentioning};

pub use host::APT_INSTALL;
/// Machine folders the node's programs create when missing; removed again (when empty) after.
pub use host::MAYBE_CREATED as MACHINE_FOLDERS;

/// Fails, naming what to do, unless this machine can run a node: Linux, root, and the packages
/// (containerd, runc, CNI plugins, iptables, ...) installed.
pub fn preflight() -> Result<()> {
    host::preflight()
}

/// The node's name in the cluster.
pub const NODE_NAME: &str = "modelsync-node";
/// The bridge pods are attached to.
pub const BRIDGE: &str = "msync0";
/// The host's address on the bridge: pods reach host services (the API server, stand-ins of
/// outside services) here, so such services bind to it.
pub const BRIDGE_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 1);
pub const POD_CIDR: &str = "10.244.0.0/24";
pub const SERVICE_CIDR: &str = "10.96.0.0/24";
/// The `kubernetes` Service's ClusterIP.
pub const KUBERNETES_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);
/// The sandbox image, built from the static `pause` program and imported at start. Its
/// `/pause` also answers `echo WORDS...` and `dial HOST:PORT`, which makes it a tiny workload
/// image for tests.
pub const PAUSE_IMAGE: &str = "modelsync.local/pause:3";

/// Machine-wide state: the lock, the ledger and the janitor's log.
pub const STATE_DIR: &str = "/run/modelsync-node";

/// How long the node may take to become Ready.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A running node and the control plane it belongs to. Dropping it stops both and undoes every
/// change made to the machine.
pub struct Node {
    root: PathBuf,
    containerd_socket: PathBuf,
    /// In start order; asked to stop in reverse.
    processes: Vec<Guarded>,
    janitor: Option<Janitor>,
    started_in: Duration,
    /// Declared last: dropped after the node is gone.
    cp: ControlPlane,
}

impl Node {
    /// Starts a control plane in node mode and a node beside it, and waits until the node is
    /// Ready. Builds the binaries first if needed, waits for a node already running on this
    /// machine to stop, and cleans a previous node's leftovers.
    pub async fn start() -> Result<Self> {
        let started = Instant::now();
        tokio::task::spawn_blocking(host::preflight).await??;
        let janitor = tokio::task::spawn_blocking(Janitor::start).await??;
        let binaries = tokio::task::spawn_blocking(NodeBinaries::ensure).await??;
        let cp = ControlPlane::start_for_node(NODE_NAME).await?;
        progress(&format!(
            "control plane for the node ready after {}",
            fmt_elapsed(started.elapsed())
        ));
        let root = tempfile::Builder::new()
            .prefix("modelsync-node-")
            .tempdir()
            .context("creating the node's folder")?
            // The janitor removes it, after unmounting what the node mounted inside.
            .keep();
        let mut node = Node {
            containerd_socket: root.join("containerd/containerd.sock"),
            root,
            processes: Vec::new(),
            janitor: Some(janitor),
            started_in: Duration::ZERO,
            cp,
        };
        node.boot(&binaries, started).await?;
        node.started_in = started.elapsed();
        progress(&format!(
            "node {NODE_NAME} Ready in {} (folder {})",
            fmt_elapsed(node.started_in),
            node.root.display()
        ));
        Ok(node)
    }

    async fn boot(&mut self, binaries: &NodeBinaries, started: Instant) -> Result<()> {
        let root = self.root.clone();
        let mut ledger = host::Ledger::create(&Path::new(STATE_DIR).join("ledger"))?;
        ledger.record("dir", &root.display().to_string())?;
        ledger.record_machine_state()?;
        host::create_network(&mut ledger)?;
        for sub in [
            "containerd",
            "cni/net.d",
            "kubelet",
            "pod-logs",
            "images",
            "runc",
        ] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        std::fs::write(
            root.join("cni/net.d/10-modelsync.conflist"),
            config::cni(&root),
        )?;
        let containerd_config = root.join("containerd/config.toml");
        std::fs::write(
            &containerd_config,
            config::containerd(&root, &self.containerd_socket),
        )?;

        self.spawn(
            "containerd",
            Path::new("containerd"),
            &[format!("--config={}", containerd_config.display())],
        )?;
        let socket = self.containerd_socket.clone();
        self.wait_for("containerd", || {
            let socket = socket.clone();
            async move {
                let ok = tokio::process::Command::new("ctr")
                    .arg("--address")
                    .arg(&socket)
                    .arg("version")
                    .env("PATH", host::program_path())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .await
                    .is_ok_and(|s| s.success());
                ok.then_some(())
            }
        })
        .await?;

        let pause_tar = root.join("images/pause.tar");
        let pause_bin = binaries.pause.clone();
        let images = root.join("images");
        let socket = self.containerd_socket.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let rootfs = images.join("pause-rootfs");
            std::fs::create_dir_all(&rootfs)?;
            std::fs::copy(&pause_bin, rootfs.join("pause"))
                .with_context(|| format!("copying {}", pause_bin.display()))?;
            let config = ImageConfig {
                name: PAUSE_IMAGE.into(),
                entrypoint: vec!["/pause".into()],
                ..Default::default()
            };
            image::write_oci_tar(&rootfs, &config, &pause_tar)?;
            image::import(&socket, &pause_tar)
        })
        .await??;

        let node_files = self
            .cp
            .node_files()
            .context("the control plane was not started for a node")?
            .clone();
        let kubelet_config = root.join("kubelet.yaml");
        std::fs::write(
            &kubelet_config,
            config::kubelet(&config::KubeletFiles {
                dir: &root,
                ca_cert: self.cp.ca_cert(),
                serving_cert: &node_files.kubelet_serving_cert,
                serving_key: &node_files.kubelet_serving_key,
                containerd_socket: &self.containerd_socket,
            }),
        )?;
        // A copy in the node's folder: every node program then names the folder on its command
        // line, which is how the janitor finds them.
        let kubeconfig = root.join("kubeconfig");
        std::fs::copy(self.cp.kubeconfig(), &kubeconfig)?;
        self.spawn(
            "kubelet",
            &binaries.kubelet,
            &[
                format!("--config={}", kubelet_config.display()),
                format!("--kubeconfig={}", kubeconfig.display()),
                format!("--root-dir={}", root.join("kubelet").display()),
                format!("--cert-dir={}", root.join("kubelet/pki").display()),
                format!("--hostname-override={NODE_NAME}"),
                format!("--node-ip={BRIDGE_IP}"),
                "--v=1".into(),
            ],
        )?;
        let scheduler_port = free_port()?;
        self.spawn(
            "kube-scheduler",
            &binaries.kube_scheduler,
            &[
                format!("--kubeconfig={}", kubeconfig.display()),
                format!("--authentication-kubeconfig={}", kubeconfig.display()),
                format!("--authorization-kubeconfig={}", kubeconfig.display()),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={scheduler_port}"),
                format!("--cert-dir={}", root.join("scheduler-certs").display()),
                "--leader-elect=false".into(),
                "--v=1".into(),
            ],
        )?;

        let client = self.cp.client().await?;
        let nodes: Api<NodeObject> = Api::all(client);
        // kube-proxy reads its node's addresses from the Node object: start it once registered.
        let mut proxy_started = false;
        let mut last_note = Instant::now();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let state = match nodes.get_opt(NODE_NAME).await {
                Ok(Some(n)) => Some(ready_state(&n)),
                _ => None,
            };
            if state.is_some() && !proxy_started {
                proxy_started = true;
                let args = config::kube_proxy_args(&kubeconfig);
                self.spawn("kube-proxy", &binaries.kube_proxy, &args)?;
            }
            if let Some((true, _)) = state
                && proxy_started
            {
                return Ok(());
            }
            for p in &mut self.processes {
                if let Some(status) = p.exited() {
                    bail!(
                        "{} exited ({status}) while the node was starting; last lines of {}:\n{}",
                        p.name(),
                        p.log().display(),
                        log_tail(p.log(), 30)
                    );
                }
            }
            let why = match &state {
                None => "kubelet has not registered the node yet".to_owned(),
                Some((_, why)) => why.clone(),
            };
            if Instant::now() > deadline {
                let kubelet_log = self.root.join("kubelet.log");
                bail!(
                    "node {NODE_NAME} was not Ready after {}s ({why}); last lines of {}:\n{}",
                    READY_TIMEOUT.as_secs(),
                    kubelet_log.display(),
                    log_tail(&kubelet_log, 30)
                );
            }
            if last_note.elapsed() > Duration::from_secs(5) {
                last_note = Instant::now();
                progress(&format!(
                    "waiting for node {NODE_NAME}: {why} ({} elapsed)",
                    fmt_elapsed(started.elapsed())
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn spawn(&mut self, name: &str, program: &Path, args: &[String]) -> Result<()> {
        let log = self.root.join(format!("{name}.log"));
        // Through `env`, so the program finds iptables, mount and runc in sbin folders, and
        // carries the node's folder on its command line for the janitor to find it by.
        let mut full = vec![format!("PATH={}", host::program_path())];
        full.push(program.display().to_string());
        full.extend(args.iter().cloned());
        let p = Guarded::spawn(name, Path::new("env"), &full, &log)?;
        self.processes.push(p);
        Ok(())
    }

    async fn wait_for<F, Fut>(&mut self, name: &str, probe: F) -> Result<()>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Option<()>>,
    {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if probe().await.is_some() {
                return Ok(());
            }
            let p = self
                .processes
                .iter_mut()
                .find(|p| p.name() == name)
                .expect("probed processes were spawned");
            if let Some(status) = p.exited() {
                bail!(
                    "{name} exited ({status}) before it was ready; last lines of {}:\n{}",
                    p.log().display(),
                    log_tail(p.log(), 30)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{name} was not ready after 60s; last lines of {}:\n{}",
                    p.log().display(),
                    log_tail(p.log(), 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The control plane the node belongs to.
    pub fn control_plane(&self) -> &ControlPlane {
        &self.cp
    }

    /// An admin kubeconfig (server on 127.0.0.1).
    pub fn kubeconfig(&self) -> &Path {
        self.cp.kubeconfig()
    }

    /// A cluster-admin client; make one per test (a client is tied to its runtime).
    pub async fn client(&self) -> Result<kube::Client> {
        self.cp.client().await
    }

    /// containerd's socket, for `ctr --address` and [`image::import`].
    pub fn containerd_socket(&self) -> &Path {
        &self.containerd_socket
    }

    /// Imports an image tar written by [`image::write_oci_tar`]; pods then use it with
    /// `imagePullPolicy: Never` or `IfNotPresent`.
    pub fn import_image(&self, tar: &Path) -> Result<()> {
        image::import(&self.containerd_socket, tar)
    }

    /// 10.244.0.1: the host as pods see it.
    pub fn bridge_ip(&self) -> Ipv4Addr {
        BRIDGE_IP
    }

    pub fn name(&self) -> &str {
        NODE_NAME
    }

    /// The node's folder: configuration, logs (`kubelet.log`, `containerd.log`, ...) and data.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How long [`Node::start`] took, control plane included.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// Live processes of the node (kubelet, containerd and its shims, kube-proxy,
    /// kube-scheduler), not counting pods or the control plane.
    pub fn pids(&self) -> Vec<u32> {
        pids_mentioning(&self.root.display().to_string())
    }

    /// Resident memory of the node's and the control plane's processes, pods included
    /// (everything in the `/kubepods` memory cgroup), in bytes.
    pub fn resident_bytes(&self) -> u64 {
        let mut pids = self.pids();
        pids.extend(self.cp.pids());
        let programs: u64 = pids.iter().map(|p| rss_bytes(*p)).sum();
        let pods = std::fs::read_to_string("/sys/fs/cgroup/memory/kubepods/memory.stat")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("total_rss "))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
            .unwrap_or(0);
        programs + pods
    }
}

fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Whether the node is Ready, and if not, why (its Ready condition's message).
fn ready_state(node: &NodeObject) -> (bool, String) {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    match ready {
        Some(c) if c.status == "True" => (true, "Ready".into()),
        Some(c) => (
            false,
            format!(
                "not Ready: {}",
                c.message
                    .as_deref()
                    .unwrap_or(c.reason.as_deref().unwrap_or("no reason"))
            ),
        ),
        None => (false, "no Ready condition yet".into()),
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // kubelet first, so nothing restarts pods while the janitor stops them.
        for p in self.processes.iter_mut().rev() {
            p.request_stop();
        }
        if let Some(janitor) = self.janitor.take() {
            janitor.finish();
        }
        self.processes.clear();
    }
}

/// The process holding the machine-wide node lock and undoing the node's changes.
struct Janitor {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Janitor {
    /// Starts the janitor and waits until it holds the lock and has cleaned any leftovers.
    fn start() -> Result<Self> {
        std::fs::create_dir_all(STATE_DIR).with_context(|| format!("creating {STATE_DIR}"))?;
        let log_path = Path::new(STATE_DIR).join("janitor.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let mut child = Command::new("flock")
            .arg("--exclusive")
            .arg(Path::new(STATE_DIR).join("lock"))
            .args([
                "sh",
                "-c",
                include_str!("janitor.sh"),
                "modelsync-node-janitor",
            ])
            .env("MODELSYNC_NODE_STATE", STATE_DIR)
            .env("PATH", host::program_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            // Its own process group: a Ctrl-C meant for the tests must not stop the clean-up.
            .process_group(0)
            .spawn()
            .with_context(|| {
                format!("starting the node's janitor: is flock installed? run `{APT_INSTALL}`")
            })?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout was piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut janitor = Janitor { child, stdin };
        let started = Instant::now();
        let mut locked = false;
        loop {
            match rx.recv_timeout(Duration::from_secs(15)) {
                Ok(line) if line == "locked" => locked = true,
                Ok(line) if line == "leftovers" => progress(
                    "a previous node on this machine was not cleaned up: removing its leftovers",
                ),
                Ok(line) if line == "ready" => return Ok(janitor),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if locked {
                        progress("still removing a previous node's leftovers");
                    } else if started.elapsed() > Duration::from_secs(900) {
                        let _ = janitor.child.kill();
                        bail!(
                            "another node has held {STATE_DIR}/lock for 15 minutes; stop it \
                             (`cargo xtask cluster down`, or end the tests using it) and retry"
                        );
                    } else {
                        progress(&format!(
                            "waiting for the node already running on this machine to stop \
                             (lock {STATE_DIR}/lock, {} so far)",
                            fmt_elapsed(started.elapsed())
                        ));
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = janitor.child.wait()?;
                    bail!(
                        "the node's janitor exited ({status}) before it was ready; last lines \
                         of {}:\n{}",
                        log_path.display(),
                        log_tail(&log_path, 20)
                    );
                }
            }
        }
    }

    /// Closes the janitor's pipe and waits for it to undo everything.
    fn finish(mut self) {
        self.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(180);
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(_) => return,
            }
        }
        progress(&format!(
            "the node's janitor is still cleaning after 180s; see {STATE_DIR}/janitor.log"
        ));
    }
}

/// Waits for any node running on this machine to stop, and removes what a node that was not
/// cleaned up left behind (restoring the machine's settings from its ledger).
pub fn clean_up_leftovers() -> Result<()> {
    host::preflight()?;
    Janitor::start()?.finish();
    Ok(())
}

/// Whether a node (of this or another process) holds the machine-wide lock right now.
pub fn running_on_this_machine() -> bool {
    Path::new(STATE_DIR).join("lock").exists()
        && Command::new("flock")
            .args(["--nonblock", "--conflict-exit-code", "99"])
            .arg(Path::new(STATE_DIR).join("lock"))
            .arg("true")
            .status()
            .is_ok_and(|s| s.code() == Some(99))
}

static SHARED: OnceLock<Result<Node, String>> = OnceLock::new();

/// The node (with its control plane) shared by every test of this test binary, started on first
/// use. It is stopped and the machine cleaned when the test binary exits, however it exits.
///
/// One node per machine: a test binary using this must not also call [`Node::start`] (that
/// would wait for this node to stop), and waits itself while another process's node runs.
///
/// Panics with the reason when it cannot start: every test needing it would fail anyway.
pub fn shared() -> &'static Node {
    let started = SHARED.get_or_init(|| {
        // Tests run on their own runtimes, which end with the test; the node must outlive them.
        std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(Node::start()).map_err(|e| format!("{e:#}"))
        })
        .join()
        .unwrap_or_else(|_| Err("starting the node panicked".to_owned()))
    });
    match started {
        Ok(node) => node,
        Err(e) => panic!("the local node could not start: {e}"),
    }
}

/// Current values of the machine-wide sysctls a node is known to change.
pub fn sysctl_snapshot() -> std::collections::BTreeMap<String, String> {
    host::SYSCTLS
        .iter()
        .filter_map(|k| Some(((*k).to_owned(), host::read_sysctl(k)?)))
        .collect()
}

/// What a node left on this machine, one line each; empty when clean. `root` is a node folder
/// to check for processes, mounts and files too.
pub fn leftovers(root: Option<&Path>) -> Vec<String> {
    let mut found = Vec::new();
    if host::run("ip", &["link", "show", BRIDGE]).is_ok() {
        found.push(format!("network bridge {BRIDGE}"));
    }
    for cmd in ["iptables", "ip6tables"] {
        for table in ["filter", "nat", "mangle", "raw"] {
            let rules = host::run_output(cmd, &["-w", "5", "-t", table, "-S"]).unwrap_or_default();
            for line in rules.lines() {
                if ["KUBE-", "CNI-", "MSYNC-"].iter().any(|p| line.contains(p)) {
                    found.push(format!("{cmd} -t {table}: {line}"));
                }
            }
        }
    }
    let tables = host::run_output("nft", &["list", "tables"]).unwrap_or_default();
    for line in tables.lines().filter(|l| l.contains("kube-proxy")) {
        found.push(format!("nftables {}", line.trim()));
    }
    if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in entries.flatten() {
            let d = e.path().join("kubepods");
            if d.is_dir() {
                found.push(format!("cgroup {}", d.display()));
            }
        }
    }
    if Path::new(STATE_DIR).join("ledger").exists() {
        found.push(format!(
            "ledger {STATE_DIR}/ledger (the node was not cleaned up)"
        ));
    }
    if let Some(root) = root {
        let needle = root.display().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for m in mounts.lines().filter_map(|l| l.split(' ').nth(4)) {
            if m == needle || m.starts_with(&format!("{needle}/")) {
                found.push(format!("mount {m}"));
            }
        }
        for pid in pids_mentioning(&needle) {
            found.push(format!("process {pid}"));
        }
        if root.exists() {
            found.push(format!("folder {}", root.display()));
        }
    }
    found
}
