//! The real `modelsync controller` as a process: started with a kubeconfig (the API server's
//! own, or a proxy's), SIGKILLed from anywhere (a proxy hook, the lambda) through a
//! [`Killer`], restarted. Kept small so it can move onto testenv's shared controller spawning.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use modelsync_testenv::process::{Guarded, free_port, log_tail, pids_mentioning};

pub struct Controller {
    proc: Option<Guarded>,
    kubeconfig: PathBuf,
    log: PathBuf,
    /// `--metrics-addr=127.0.0.1:<port>`, unique per controller: finds its pid.
    marker: String,
    args: Vec<String>,
    env: Vec<String>,
    pid: Arc<AtomicU32>,
}

/// SIGKILLs the controller's current process; cheap to clone into hooks.
#[derive(Clone)]
pub struct Killer(Arc<AtomicU32>);

impl Killer {
    /// Kills the process if one runs; true if this call killed it.
    pub fn kill(&self) -> bool {
        let pid = self.0.swap(0, Ordering::AcqRel);
        pid != 0
            && std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status()
                .is_ok_and(|s| s.success())
    }
}

impl Controller {
    /// `modelsync controller --namespace=<ns> args...` against `kubeconfig`, with `env`
    /// (`KEY=value`) set, logging into `log_dir`.
    pub fn start(kubeconfig: &Path, log_dir: &Path, ns: &str, args: &[&str], env: &[&str]) -> Self {
        let port = free_port().unwrap();
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        args.push(format!("--namespace={ns}"));
        let mut c = Controller {
            proc: None,
            kubeconfig: kubeconfig.to_owned(),
            log: log_dir.join(format!("controller-{port}.log")),
            marker: format!("--metrics-addr=127.0.0.1:{port}"),
            args,
            env: env.iter().map(|s| s.to_string()).collect(),
            pid: Arc::default(),
        };
        c.restart();
        c
    }

    /// Starts the process (again), and learns its pid.
    pub fn restart(&mut self) {
        self.reap();
        let mut full = vec![
            format!("KUBECONFIG={}", self.kubeconfig.display()),
            "RUST_LOG=info,kube=warn".to_owned(),
        ];
        full.extend(self.env.iter().cloned());
        full.push(env!("CARGO_BIN_EXE_modelsync").to_owned());
        full.push("controller".to_owned());
        full.push(self.marker.clone());
        full.extend(self.args.iter().cloned());
        // `env` sets the variables and execs the controller: same pid, found by its marker.
        self.proc = Some(
            Guarded::spawn("modelsync-controller", Path::new("env"), &full, &self.log)
                .expect("starting modelsync controller"),
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(pid) = self.find_pid() {
                self.pid.store(pid, Ordering::Release);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the controller did not start:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn find_pid(&self) -> Option<u32> {
        pids_mentioning(&self.marker).into_iter().find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "modelsync")
        })
    }

    pub fn killer(&self) -> Killer {
        Killer(self.pid.clone())
    }

    /// SIGKILL: no clean-up, like a node dying.
    pub fn kill9(&mut self) {
        self.killer().kill();
        self.reap();
    }

    /// Waits for the guard of a process that is gone (or stops it).
    fn reap(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop();
        }
    }

    /// Whether the process has exited by itself.
    pub fn exited(&mut self) -> bool {
        self.proc.as_mut().is_none_or(|p| p.exited().is_some())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        log_tail(&self.log, 40)
    }
}
