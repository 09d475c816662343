//! `cargo xtask cluster`: a local control plane for people, the same one the tests use.
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
        /// Internal: the background process started by --detach.
        #[arg(long, hide = true)]
        supervise: bool,
    },
    /// Stop a control plane started with `up`.
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
        } => detach(),
        Command::Up { .. } => foreground(),
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

fn foreground() -> Result<()> {
    refuse_if_running()?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let started = Instant::now();
        eprintln!("starting the local control plane (the first run builds it: many minutes)...");
        let cp = modelsync_testenv::start_with_crds(&[]).await?;
        let dir = state_dir();
        std::fs::create_dir_all(&dir)?;
        let kubeconfig = dir.join("kubeconfig");
        std::fs::copy(cp.kubeconfig(), &kubeconfig)?;
        let kubeconfig = kubeconfig.canonicalize()?;
        let state = State {
            pid: std::process::id(),
            server: cp.server().to_owned(),
            kubeconfig: kubeconfig.clone(),
        };
        std::fs::write(state_file(), serde_json::to_string_pretty(&state)?)?;
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
        drop(cp);
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

fn detach() -> Result<()> {
    refuse_if_running()?;
    let dir = state_dir();
    std::fs::create_dir_all(&dir)?;
    let _ = std::fs::remove_file(state_file());
    let log_path = dir.join("cluster.log");
    let log = std::fs::File::create(&log_path)?;
    let mut child = Process::new(std::env::current_exe()?)
        .args(["cluster", "up", "--supervise"])
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

fn down() -> Result<()> {
    let Some(state) = read_state() else {
        println!(
            "no local control plane is running (no {})",
            state_file().display()
        );
        return Ok(());
    };
    if !alive(state.pid) {
        let _ = std::fs::remove_file(state_file());
        println!(
            "the control plane (pid {}) had already stopped; cleaned up its state",
            state.pid
        );
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
    let deadline = Instant::now() + Duration::from_secs(30);
    while alive(state.pid) {
        if Instant::now() > deadline {
            bail!(
                "pid {} did not stop within 30s; kill it with `kill -9 {}`",
                state.pid,
                state.pid
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_file(state_dir().join("pid"));
    println!("stopped the local control plane (pid {})", state.pid);
    Ok(())
}

fn status() -> Result<()> {
    let Some(state) = read_state().filter(|s| alive(s.pid)) else {
        println!("not running; start one with `cargo xtask cluster up`");
        return Ok(());
    };
    let rt = tokio::runtime::Runtime::new()?;
    let version = rt.block_on(async {
        let kc = kube::config::Kubeconfig::read_from(&state.kubeconfig)?;
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
        let client = kube::Client::try_from(config)?;
        anyhow::Ok(client.apiserver_version().await?)
    });
    match version {
        Ok(v) => println!(
            "running (pid {}) at {}, Kubernetes {}\n\n  export KUBECONFIG={}",
            state.pid,
            state.server,
            v.git_version,
            state.kubeconfig.display()
        ),
        Err(e) => println!(
            "process {} is alive but the API server at {} does not answer: {e:#}",
            state.pid, state.server
        ),
    }
    Ok(())
}
