//! The real `modelsync controller` as testenv starts it, with a [`Killer`] that SIGKILLs it
//! from anywhere at once (a proxy hook, the lambda): its pid is learnt once per start rather
//! than searched for at the moment of the kill.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use modelsync_testenv::{ControllerCommand, spawn_controller};

pub struct Controller {
    process: modelsync_testenv::Controller,
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
    /// `modelsync controller --namespace=<ns> args...` against `kubeconfig`, with `env` set,
    /// logging into `log_dir`.
    pub fn start(
        kubeconfig: &Path,
        log_dir: &Path,
        ns: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let mut command =
            ControllerCommand::new(Path::new(env!("CARGO_BIN_EXE_modelsync")), kubeconfig)
                .namespace(ns)
                .args(args.iter().copied())
                .log_dir(log_dir);
        for (key, value) in env {
            command = command.env(key, value);
        }
        let mut c = Controller {
            process: spawn_controller(command).expect("starting modelsync controller"),
            pid: Arc::default(),
        };
        c.learn_pid();
        c
    }

    fn learn_pid(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(pid) = self.process.pid() {
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

    /// Starts it again (after a kill).
    pub fn restart(&mut self) {
        self.process
            .restart()
            .expect("starting modelsync controller again");
        self.learn_pid();
    }

    pub fn killer(&self) -> Killer {
        Killer(self.pid.clone())
    }

    /// SIGKILL: no clean-up, like a node dying.
    pub fn kill9(&mut self) {
        self.killer().kill();
        // Reaps what is left (a process already killed by a hook included).
        self.process.stop();
    }

    /// Whether the process has exited by itself.
    pub fn exited(&mut self) -> bool {
        self.process.exited().is_some()
    }

    pub fn log(&self) -> String {
        self.process.log()
    }

    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }
}
