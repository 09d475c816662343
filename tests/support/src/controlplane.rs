//! Starting and stopping one local control plane: etcd, kube-apiserver, kube-controller-manager.
//! A control plane a test owns can also have one component stopped and started again with the
//! same flags and data ([`ControlPlane::stop`], [`ControlPlane::start_again`]), for fault tests.

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::binaries::{Binaries, fmt_elapsed};
use crate::certs;
use crate::process::{Guarded, free_port, log_tail, pids_mentioning};

/// The host's address on a real node's bridge; pods reach the API server there.
pub const NODE_BRIDGE_IP: &str = "10.244.0.1";

/// How long each component may take to become ready before start-up is declared failed.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// A running control plane. Dropping it stops every process it started and removes its files.
pub struct ControlPlane {
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    server: String,
    kubeconfig: PathBuf,
    token: String,
    ca_cert: PathBuf,
    /// Set when started for a real node ([`ControlPlane::start_for_node`]).
    node: Option<certs::NodeFiles>,
    /// In start order; stopped in reverse.
    processes: Vec<Process>,
    probes: Probes,
    /// Removes `root` once this process is gone, for control planes that are never dropped.
    janitor: Option<(Child, ChildStdin)>,
}

/// One of the processes a control plane runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    Etcd,
    ApiServer,
    ControllerManager,
}

impl Component {
    fn name(self) -> &'static str {
        match self {
            Component::Etcd => "etcd",
            Component::ApiServer => "kube-apiserver",
            Component::ControllerManager => "kube-controller-manager",
        }
    }
}

/// A component's command line, kept so that it can be started again exactly as it was.
struct Process {
    component: Component,
    program: PathBuf,
    args: Vec<String>,
    /// `None` while stopped.
    guard: Option<Guarded>,
}

/// How to tell that each component serves.
struct Probes {
    /// Trusts the control plane's CA.
    http: reqwest::Client,
    /// kube-controller-manager's serving certificate is self-signed at start-up; only its
    /// liveness is read.
    insecure: reqwest::Client,
    etcd_health: String,
    apiserver_readyz: String,
    controller_manager_healthz: String,
    token: String,
}

impl Probes {
    async fn ready(&self, component: Component) -> bool {
        match component {
            Component::Etcd => match self.http.get(&self.etcd_health).send().await {
                Ok(res) => res
                    .text()
                    .await
                    .is_ok_and(|body| body.contains("\"health\":\"true\"")),
                Err(_) => false,
            },
            Component::ApiServer => self
                .http
                .get(&self.apiserver_readyz)
                .bearer_auth(&self.token)
                .send()
                .await
                .is_ok_and(|res| res.status().is_success()),
            Component::ControllerManager => self
                .insecure
                .get(&self.controller_manager_healthz)
                .send()
                .await
                .is_ok_and(|res| res.status().is_success()),
        }
    }
}

/// Where each component listens.
struct Ports {
    etcd_client: u16,
    etcd_peer: u16,
    apiserver: u16,
    controller_manager: u16,
}

impl ControlPlane {
    /// Builds the binaries if needed, starts all three components and waits until they serve.
    pub async fn start() -> Result<Self> {
        Self::start_mode(None, None, &[]).await
    }

    /// Like [`ControlPlane::start`], with extra kube-apiserver flags, e.g. a feature gate
    /// switched off to test what the controller does on a server without the feature.
    pub async fn start_with_apiserver_flags(flags: &[&str]) -> Result<Self> {
        Self::start_mode(None, None, flags).await
    }

    /// Like [`ControlPlane::start`], with etcd's data in `etcd_data`, which outlives the control
    /// plane: a benchmark's fleet of 100,000 objects is created once and found again by the next
    /// run. The folder is made if missing; nothing else of the control plane is kept.
    pub async fn start_keeping_etcd(etcd_data: &Path) -> Result<Self> {
        std::fs::create_dir_all(etcd_data)
            .with_context(|| format!("creating {}", etcd_data.display()))?;
        Self::start_mode(None, Some(etcd_data), &[]).await
    }

    /// A control plane ready for a real node named `node_name` beside it: the API server listens
    /// on every address (so pods reach it through the node bridge at 10.244.0.1, the
    /// `kubernetes` Service's endpoint), service CIDR 10.96.0.0/24, certificates for talking to
    /// the kubelet, and every controller Deployments, Jobs and Tekton rely on.
    pub async fn start_for_node(node_name: &str) -> Result<Self> {
        Self::start_mode(Some(node_name), None, &[]).await
    }

    async fn start_mode(
        node: Option<&str>,
        etcd_data: Option<&Path>,
        apiserver_flags: &[&str],
    ) -> Result<Self> {
        let binaries = tokio::task::spawn_blocking(Binaries::ensure).await??;
        // A port found free can be taken by someone else before our process binds it; a fresh
        // set of ports on a second try is enough for that rare clash.
        let mut last_error = None;
        for _ in 0..3 {
            match Self::start_with(&binaries, node, etcd_data, apiserver_flags).await {
                Ok(cp) => return Ok(cp),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("three attempts were made"))
    }

    async fn start_with(
        binaries: &Binaries,
        node: Option<&str>,
        etcd_data: Option<&Path>,
        apiserver_flags: &[&str],
    ) -> Result<Self> {
        let started = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("modelsync-controlplane-")
            .tempdir()
            .context("creating a temporary folder for the control plane")?;
        let root = dir.path().to_path_buf();
        let keys = certs::write_with(&root, node)?;
        let ports = Ports {
            etcd_client: free_port()?,
            etcd_peer: free_port()?,
            apiserver: free_port()?,
            controller_manager: free_port()?,
        };
        let server = format!("https://127.0.0.1:{}", ports.apiserver);
        let kubeconfig = root.join("kubeconfig");
        write_kubeconfig(
            &kubeconfig,
            &server,
            &std::fs::read(&keys.ca_cert)
                .with_context(|| format!("reading {}", keys.ca_cert.display()))?,
            &keys.admin_token,
        )?;

        let etcd_url = format!("http://127.0.0.1:{}", ports.etcd_client);
        let probes = Probes {
            http: reqwest::Client::builder()
                .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(
                    &keys.ca_cert,
                )?)?)
                .timeout(Duration::from_secs(5))
                .build()?,
            insecure: reqwest::Client::builder()
                .danger_accept_invalid_certs(true)
                .timeout(Duration::from_secs(5))
                .build()?,
            etcd_health: format!("{etcd_url}/health"),
            apiserver_readyz: format!("{server}/readyz"),
            controller_manager_healthz: format!(
                "https://127.0.0.1:{}/healthz",
                ports.controller_manager
            ),
            token: keys.admin_token.clone(),
        };
        let mut cp = ControlPlane {
            janitor: Some(spawn_janitor(&root)?),
            dir: Some(dir),
            root: root.clone(),
            server,
            kubeconfig: kubeconfig.clone(),
            token: keys.admin_token.clone(),
            ca_cert: keys.ca_cert.clone(),
            node: keys.node.clone(),
            processes: Vec::new(),
            probes,
        };

        let peer_url = format!("http://127.0.0.1:{}", ports.etcd_peer);
        cp.spawn(
            Component::Etcd,
            &binaries.etcd,
            &[
                "--name=modelsync".into(),
                format!(
                    "--data-dir={}",
                    etcd_data
                        .map_or_else(|| root.join("etcd"), Path::to_path_buf)
                        .display()
                ),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=modelsync={peer_url}"),
                // Test data need not survive a power cut; fsync dominates etcd latency on disks.
                "--unsafe-no-fsync".into(),
                "--log-level=warn".into(),
            ],
        )?;
        cp.wait_ready(Component::Etcd).await?;

        let mut apiserver_args = vec![
            format!("--etcd-servers={etcd_url}"),
            format!("--secure-port={}", ports.apiserver),
            format!("--cert-dir={}", root.join("apiserver-certs").display()),
            format!("--tls-cert-file={}", keys.serving_cert.display()),
            format!("--tls-private-key-file={}", keys.serving_key.display()),
            format!("--client-ca-file={}", keys.ca_cert.display()),
            format!("--token-auth-file={}", keys.token_file.display()),
            "--authorization-mode=RBAC".into(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!(
                "--service-account-key-file={}",
                keys.service_account_public_key.display()
            ),
            format!(
                "--service-account-signing-key-file={}",
                keys.service_account_key.display()
            ),
            "--allow-privileged=true".into(),
            "--v=1".into(),
        ];
        match &keys.node {
            None => apiserver_args.extend([
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                "--service-cluster-ip-range=10.0.0.0/24".into(),
                // No nodes, no pods: nothing needs the kubernetes Service's endpoints.
                "--endpoint-reconciler-type=none".into(),
            ]),
            Some(node) => apiserver_args.extend([
                // One address only can be given, and both 127.0.0.1 (kubeconfig) and the
                // bridge (pods, through the kubernetes Service) must work; every request is
                // authenticated anyway.
                "--bind-address=0.0.0.0".into(),
                format!("--advertise-address={NODE_BRIDGE_IP}"),
                "--service-cluster-ip-range=10.96.0.0/24".into(),
                format!(
                    "--kubelet-client-certificate={}",
                    node.kubelet_client_cert.display()
                ),
                format!("--kubelet-client-key={}", node.kubelet_client_key.display()),
                format!("--kubelet-certificate-authority={}", keys.ca_cert.display()),
                "--kubelet-preferred-address-types=InternalIP".into(),
            ]),
        }
        apiserver_args.extend(apiserver_flags.iter().map(|f| f.to_string()));
        cp.spawn(
            Component::ApiServer,
            &binaries.kube_apiserver,
            &apiserver_args,
        )?;
        cp.wait_ready(Component::ApiServer).await?;

        let mut kcm_args = vec![
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--authentication-kubeconfig={}", kubeconfig.display()),
            format!("--authorization-kubeconfig={}", kubeconfig.display()),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={}", ports.controller_manager),
            format!(
                "--cert-dir={}",
                root.join("controller-manager-certs").display()
            ),
            "--leader-elect=false".into(),
            "--v=1".into(),
        ];
        if keys.node.is_none() {
            // Only what tests rely on: ownerReference garbage collection and namespace
            // deletion, plus default service accounts so namespaces look like a cluster's.
            kcm_args.push("--controllers=garbage-collector-controller,namespace-controller,serviceaccount-controller".into());
        } else {
            kcm_args.extend([
                // Pods run for real: Deployments, ReplicaSets, Jobs, endpoints, node
                // lifecycle, service-account tokens and the root CA config map all matter.
                "--controllers=*".into(),
                format!(
                    "--service-account-private-key-file={}",
                    keys.service_account_key.display()
                ),
                format!("--root-ca-file={}", keys.ca_cert.display()),
            ]);
        }
        cp.spawn(
            Component::ControllerManager,
            &binaries.kube_controller_manager,
            &kcm_args,
        )?;
        cp.wait_ready(Component::ControllerManager).await?;
        tracing::info!(
            server = %cp.server,
            elapsed = %fmt_elapsed(started.elapsed()),
            "local control plane ready"
        );
        Ok(cp)
    }

    fn spawn(&mut self, component: Component, program: &Path, args: &[String]) -> Result<()> {
        let mut process = Process {
            component,
            program: program.to_owned(),
            args: args.to_vec(),
            guard: None,
        };
        process.guard = Some(self.launch(&process)?);
        self.processes.push(process);
        Ok(())
    }

    fn launch(&self, process: &Process) -> Result<Guarded> {
        let name = process.component.name();
        let log = self.root.join(format!("{name}.log"));
        Guarded::spawn(name, &process.program, &process.args, &log)
    }

    fn process(&mut self, component: Component) -> &mut Process {
        self.processes
            .iter_mut()
            .find(|p| p.component == component)
            .expect("every component is spawned at start")
    }

    /// Polls the component until it serves, failing early with the log tail if it exits.
    async fn wait_ready(&mut self, component: Component) -> Result<()> {
        let name = component.name();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if self.probes.ready(component).await {
                return Ok(());
            }
            let Some(proc) = self.process(component).guard.as_mut() else {
                bail!("{name} is stopped; start it again before waiting for it");
            };
            if let Some(status) = proc.exited() {
                bail!(
                    "{name} exited ({status}) before it was ready; last lines of {}:\n{}",
                    proc.log().display(),
                    log_tail(proc.log(), 25)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{name} was not ready after {}s; last lines of {}:\n{}",
                    READY_TIMEOUT.as_secs(),
                    proc.log().display(),
                    log_tail(proc.log(), 25)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops one component (SIGTERM, SIGKILL after a grace period) and waits until it has
    /// exited. Its data folder stays, so [`ControlPlane::start_again`] resumes where it was.
    /// Meant for a control plane the test owns: the shared one serves other tests.
    pub async fn stop(&mut self, component: Component) -> Result<()> {
        let Some(mut guard) = self.process(component).guard.take() else {
            bail!("{} is already stopped", component.name());
        };
        tokio::task::spawn_blocking(move || guard.stop())
            .await
            .context("waiting for a component to stop")?;
        Ok(())
    }

    /// Starts a stopped component again with the same flags, ports and data folder, and waits
    /// until it serves; after etcd, also until the API server is ready again.
    pub async fn start_again(&mut self, component: Component) -> Result<()> {
        let process = self
            .processes
            .iter()
            .find(|p| p.component == component)
            .expect("every component is spawned at start");
        if process.guard.is_some() {
            bail!("{} is running; stop it first", component.name());
        }
        let guard = self.launch(process)?;
        self.process(component).guard = Some(guard);
        self.wait_ready(component).await?;
        let apiserver_runs = self
            .processes
            .iter()
            .any(|p| p.component == Component::ApiServer && p.guard.is_some());
        if component == Component::Etcd && apiserver_runs {
            self.wait_ready(Component::ApiServer).await?;
        }
        Ok(())
    }

    /// Writes a kubeconfig with this control plane's admin token for another address of it (a
    /// proxy in front of the API server) whose certificate `ca_pem` verifies.
    pub fn write_kubeconfig_for(&self, path: &Path, server: &str, ca_pem: &[u8]) -> Result<()> {
        write_kubeconfig(path, server, ca_pem, &self.token)
    }

    /// `https://127.0.0.1:<port>`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// An admin kubeconfig for kubectl and for controllers under test.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The CA every certificate of this control plane is signed by.
    pub fn ca_cert(&self) -> &Path {
        &self.ca_cert
    }

    /// The node certificates, when started with [`ControlPlane::start_for_node`].
    pub(crate) fn node_files(&self) -> Option<&certs::NodeFiles> {
        self.node.as_ref()
    }

    /// The folder holding this control plane's data, keys and logs.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A client with cluster-admin rights. Make one per test: a client is tied to the runtime
    /// it was first used on.
    pub async fn client(&self) -> Result<kube::Client> {
        let kc = Kubeconfig::read_from(&self.kubeconfig)?;
        let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .context("reading the control plane's kubeconfig")?;
        Ok(kube::Client::try_from(config)?)
    }

    /// Every live process started for this control plane (found by its unique folder).
    pub fn pids(&self) -> Vec<u32> {
        pids_mentioning(&self.root.display().to_string())
    }

    /// Keeps the files after drop (for debugging a failed test); returns their folder.
    pub fn keep_files(&mut self) -> PathBuf {
        if let Some(dir) = self.dir.take() {
            let _ = dir.keep();
        }
        if let Some((mut child, stdin)) = self.janitor.take() {
            let _ = child.kill();
            drop(stdin);
            let _ = child.wait();
        }
        self.root.clone()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // Closing every guard's pipe first lets the three shut down at the same time.
        let guards = self
            .processes
            .iter_mut()
            .rev()
            .filter_map(|p| p.guard.as_mut());
        for g in guards {
            g.request_stop();
        }
        let guards = self
            .processes
            .iter_mut()
            .rev()
            .filter_map(|p| p.guard.as_mut());
        for g in guards {
            g.stop();
        }
        self.processes.clear();
        // The temporary folder is removed right after this; the janitor has nothing to do.
        if let Some((mut child, _stdin)) = self.janitor.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The CA is embedded, not referenced, so a copy of the kubeconfig works from anywhere.
fn write_kubeconfig(path: &Path, server: &str, ca_pem: &[u8], token: &str) -> Result<()> {
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: modelsync-local
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: admin
  user:
    token: {token}
contexts:
- name: modelsync-local
  context:
    cluster: modelsync-local
    user: admin
current-context: modelsync-local
",
        ca = base64::engine::general_purpose::STANDARD.encode(ca_pem)
    );
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// A shell that removes `root` when its stdin closes: when the control plane is dropped, or when
/// this process exits without dropping it (a static shared by a test binary is never dropped).
/// The folder is passed in the environment so the janitor does not count as a control plane
/// process in [`ControlPlane::pids`].
fn spawn_janitor(root: &Path) -> Result<(Child, ChildStdin)> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"read _ignored; sleep 7; rm -rf "$MODELSYNC_JANITOR_DIR""#)
        .env("MODELSYNC_JANITOR_DIR", root)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the control plane's clean-up helper")?;
    let stdin = child.stdin.take().expect("stdin was piped");
    Ok((child, stdin))
}
