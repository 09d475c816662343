//! `cargo xtask cluster`: a local control plane for people, the same one the tests use, and with
//! `--node` a real node beside it (containerd, kubelet, kube-scheduler, kube-proxy) so pods run.
//!
//! State lives in `target/cluster/`: `kubeconfig`, `state.json` (pid and server of the process
//! keeping the control plane alive) and, for `--detach`, `cluster.log`.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde::{Deserialize, Serialize};

#[derive(Subcommand)]
pub enum Command {
    /// Build if needed, start, print the kubeconfig; runs until Ctrl-C unless --detach.
    Up {
        /// Keep running in the background; stop it with `cargo xtask cluster down`.
        #[arg(long)]
        detach: bool,
        /// Also start a real node (needs root and Debian's containerd, runc, CNI plugins and
        /// iptables) with the real Tekton Pipelines installed; it changes machine-wide settings,
        /// all undone when it stops.
        #[arg(long)]
        node: bool,
        /// Internal: the background process started by --detach.
        #[arg(long, hide = true)]
        supervise: bool,
    },
    /// Stop a control plane started with `up` (and clean a node's leftovers if its process
    /// died without cleaning up).
    Down,
    /// Say whether a control plane is running, and where.
    Status,
    /// Build (or find in the cache) the control plane binaries, and print where they are.
    Build {
        /// Also the node's binaries (kubelet, kube-scheduler, kube-proxy, pause).
        #[arg(long)]
        node: bool,
    },
}

#[derive(Serialize, Deserialize)]
struct State {
    pid: u32,
    server: String,
    kubeconfig: PathBuf,
    /// The node's folder, when started with `--node`.
    #[serde(default)]
    node: Option<PathBuf>,
}

fn state_dir() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).join("target/cluster")
}

fn state_file() -> PathBuf {
    state_dir().join("state.json")
}

fn read_state() -> Option<State> {
    let text = std::fs::read_to_string(state_file()).ok()?;
    serde_json::from_str(&text).ok()
}

fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry but no command line.
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
}

pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Up {
            detach: true,
            supervise: false,
            node,
        } => detach(node),
        Command::Up { node, .. } => foreground(node),
        Command::Down => down(),
        Command::Status => status(),
        Command::Build { node } => {
            let dir = modelsync_testenv::binaries::Binaries::build_cached()?;
            println!("control plane binaries: {}", dir.display());
            if node {
                let bins = modelsync_testenv::binaries::NodeBinaries::ensure()?;
                let dir = bins.kubelet.parent().unwrap_or(&bins.kubelet);
                println!("node binaries: {}", dir.display());
            }
            Ok(())
        }
    }
}

fn refuse_if_running() -> Result<()> {
    if let Some(state) = read_state().filter(|s| alive(s.pid)) {
        bail!(
            "a local control plane is already running (pid {}, {}): use it with\n  export KUBECONFIG={}\nor stop it with `cargo xtask cluster down`",
            state.pid,
            state.server,
            state.kubeconfig.display()
        );
    }
    Ok(())
}

/// What `up` keeps alive: a control plane alone, or one with a node.
enum Running {
    ControlPlane(modelsync_testenv::ControlPlane),
    Node(modelsync_testenv::node::Node),
}

impl Running {
    fn control_plane(&self) -> &modelsync_testenv::ControlPlane {
        match self {
            Running::ControlPlane(cp) => cp,
            Running::Node(node) => node.control_plane(),
        }
    }
}

fn foreground(with_node: bool) -> Result<()> {
    refuse_if_running()?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let started = Instant::now();
        let running = if with_node {
            eprintln!(
                "starting the local control plane and a real node (the first run builds them: \
                 many minutes)..."
            );
            let node = modelsync_testenv::node::Node::start().await?;
            // A node is for running pipelines: the real Tekton comes with it.
            let tekton =
                modelsync_testenv::tekton_real::install(node.kubeconfig(), node.containerd_socket())
                    .await?;
            eprintln!(
                "Tekton Pipelines {} running in namespace {} ({:.1}s after apply)",
                tekton.version,
                tekton.namespace,
                tekton.ready_after_apply.as_secs_f64()
            );
            Running::Node(node)
        } else {
            eprintln!(
                "starting the local control plane (the first run builds it: many minutes)..."
            );
            Running::ControlPlane(modelsync_testenv::start_with_crds(&[]).await?)
        };
        let cp = running.control_plane();
        let dir = state_dir();
        std::fs::create_dir_all(&dir)?;
        let kubeconfig = dir.join("kubeconfig");
        std::fs::copy(cp.kubeconfig(), &kubeconfig)?;
        let kubeconfig = kubeconfig.canonicalize()?;
        let state = State {
            pid: std::process::id(),
            server: cp.server().to_owned(),
            kubeconfig: kubeconfig.clone(),
            node: match &running {
                Running::Node(node) => Some(node.root().to_owned()),
                Running::ControlPlane(_) => None,
            },
        };
        std::fs::write(state_file(), serde_json::to_string_pretty(&state)?)?;
        if let Running::Node(node) = &running {
            println!(
                "node {} Ready (bridge {}, pods 10.244.0.0/24, services 10.96.0.0/24); containerd: \
                 {}; node logs: {}; resident memory {} MB",
                node.name(),
                node.bridge_ip(),
                node.containerd_socket().display(),
                node.root().display(),
                node.resident_bytes() / 1_000_000
            );
        }
        println!(
            "local control plane ready in {:.1}s at {}\nkubeconfig: {}\n\n  export KUBECONFIG={}\n\nlogs: {}\nCtrl-C (or `cargo xtask cluster down`) stops it.",
            started.elapsed().as_secs_f64(),
            cp.server(),
            kubeconfig.display(),
            kubeconfig.display(),
            cp.root().display(),
        );
        wait_for_stop_signal().await?;
        eprintln!("stopping the local control plane...");
        drop(running);
        let _ = std::fs::remove_file(state_file());
        let _ = std::fs::remove_file(&kubeconfig);
        eprintln!("stopped");
        Ok(())
    })
}

async fn wait_for_stop_signal() -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

fn detach(with_node: bool) -> Result<()> {
    refuse_if_running()?;
    let dir = state_dir();
    std::fs::create_dir_all(&dir)?;
    let _ = std::fs::remove_file(state_file());
    let log_path = dir.join("cluster.log");
    let log = std::fs::File::create(&log_path)?;
    let mut args = vec!["cluster", "up", "--supervise"];
    if with_node {
        args.push("--node");
    }
    let mut child = Process::new(std::env::current_exe()?)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group, so Ctrl-C in this terminal does not reach it.
        .process_group(0)
        .spawn()
        .context("starting the background control plane")?;
    eprintln!(
        "starting the local control plane in the background (log: {}); the first run builds it",
        log_path.display()
    );
    let started = Instant::now();
    let mut last_note = Instant::now();
    loop {
        if let Some(state) = read_state().filter(|s| s.pid == child.id()) {
            std::fs::write(dir.join("pid"), format!("{}\n", state.pid))?;
            println!(
                "local control plane running in the background (pid {}) at {}\n\n  export KUBECONFIG={}\n\nstop it with `cargo xtask cluster down`",
                state.pid,
                state.server,
                state.kubeconfig.display()
            );
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "the background control plane exited ({status}) before it was ready:\n{}",
                tail.join("\n")
            );
        }
        if last_note.elapsed() > Duration::from_secs(15) {
            last_note = Instant::now();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            eprintln!(
                "  {}s: {}",
                started.elapsed().as_secs(),
                log.lines().last().unwrap_or("starting")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A node's processes can outlive a control plane process killed hard, until its janitor has
/// run; and a node whose janitor was killed too leaves its changes on the machine.
fn clean_node_leftovers() -> Result<()> {
    if modelsync_testenv::node::leftovers(None).is_empty() {
        return Ok(());
    }
    if modelsync_testenv::node::running_on_this_machine() {
        println!(
            "a node started by another process (tests, or another checkout's cluster) is running \
             on this machine; leaving it alone"
        );
        return Ok(());
    }
    println!("a node's leftovers are on this machine: removing them...");
    modelsync_testenv::node::clean_up_leftovers()?;
    println!("machine clean");
    Ok(())
}

fn down() -> Result<()> {
    let Some(state) = read_state() else {
        println!(
            "no local control plane is running (no {})",
            state_file().display()
        );
        return clean_node_leftovers();
    };
    if !alive(state.pid) {
        let _ = std::fs::remove_file(state_file());
        println!(
            "the control plane (pid {}) had already stopped; cleaned up its state",
            state.pid
        );
        if state.node.is_some() {
            clean_node_leftovers()?;
        }
        return Ok(());
    }
    let ok = Process::new("kill")
        .args(["-TERM", &state.pid.to_string()])
        .status()
        .context("running kill")?
        .success();
    if !ok {
        bail!("could not signal pid {}", state.pid);
    }
    // A node takes longer: pods, mounts, firewall rules and settings are undone first.
    let patience = Duration::from_secs(if state.node.is_some() { 240 } else { 30 });
    let deadline = Instant::now() + patience;
    while alive(state.pid) {
        if Instant::now() > deadline {
            bail!(
                "pid {} did not stop within {}s; kill it with `kill -9 {}` then run `cargo xtask \
                 cluster down` again to clean up",
                state.pid,
                patience.as_secs(),
                state.pid
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_file(state_dir().join("pid"));
    println!("stopped the local control plane (pid {})", state.pid);
    if state.node.is_some() {
        let mut left = modelsync_testenv::node::leftovers(state.node.as_deref());
        if modelsync_testenv::node::running_on_this_machine() {
            // The lock is free as soon as ours is clean, and another process's node (tests) may
            // have started already: the machine-wide bridge, rules and cgroups are its own.
            let own = state.node.as_ref().map(|d| d.display().to_string());
            left.retain(|l| {
                own.as_deref().is_some_and(|d| l.contains(d)) || l.starts_with("process")
            });
        }
        if !left.is_empty() {
            bail!(
                "the node left these behind: {}; run `cargo xtask cluster down` again to remove \
                 them",
                left.join("; ")
            );
        }
        println!("node stopped; machine clean");
    }
    Ok(())
}

fn status() -> Result<()> {
    let Some(state) = read_state().filter(|s| alive(s.pid)) else {
        println!("not running; start one with `cargo xtask cluster up`");
        if cfg!(target_os = "linux") {
            let left = modelsync_testenv::node::leftovers(None);
            if modelsync_testenv::node::running_on_this_machine() {
                println!("a node started by another process is running on this machine");
            } else if !left.is_empty() {
                println!(
                    "a node's leftovers are on this machine ({}): `cargo xtask cluster down` \
                     removes them",
                    left.join("; ")
                );
            }
        }
        return Ok(());
    };
    let rt = tokio::runtime::Runtime::new()?;
    let version = rt.block_on(async {
        let kc = kube::config::Kubeconfig::read_from(&state.kubeconfig)?;
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
        let client = kube::Client::try_from(config)?;
        let version = client.apiserver_version().await?;
        let node = match &state.node {
            Some(_) => Some(node_status(&client).await?),
            None => None,
        };
        anyhow::Ok((version, node))
    });
    match version {
        Ok((v, node)) => {
            println!(
                "running (pid {}) at {}, Kubernetes {}",
                state.pid, state.server, v.git_version,
            );
            if let (Some(line), Some(dir)) = (node, &state.node) {
                println!("{line}\nnode folder and logs: {}", dir.display());
            }
            println!("\n  export KUBECONFIG={}", state.kubeconfig.display());
        }
        Err(e) => println!(
            "process {} is alive but the API server at {} does not answer: {e:#}",
            state.pid, state.server
        ),
    }
    Ok(())
}

/// One line on the node: its readiness (with the reason when not Ready) and how many pods run.
async fn node_status(client: &kube::Client) -> Result<String> {
    use k8s_openapi::api::core::v1::{Node, Pod};
    let name = modelsync_testenv::node::NODE_NAME;
    let Some(node) = kube::Api::<Node>::all(client.clone()).get_opt(name).await? else {
        return Ok(format!("node {name}: not registered"));
    };
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    let state = match ready {
        Some(c) if c.status == "True" => "Ready".to_owned(),
        Some(c) => format!(
            "NotReady ({})",
            c.message
                .as_deref()
                .or(c.reason.as_deref())
                .unwrap_or("no reason given")
        ),
        None => "no Ready condition yet".to_owned(),
    };
    let pods = kube::Api::<Pod>::all(client.clone())
        .list(&kube::api::ListParams::default().fields(&format!("spec.nodeName={name}")))
        .await?;
    let running = pods
        .items
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .count();
    Ok(format!(
        "node {name}: {state}, {running} of {} pods running",
        pods.items.len()
    ))
}
