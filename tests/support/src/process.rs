//! Child processes whose lifetime is tied to this one.
//!
//! Each program runs under a small `sh` guard whose standard input is a pipe held by this
//! process. When the pipe closes — on drop, on a panic, or because this process died even by
//! SIGKILL — the guard stops the program (TERM, then KILL after a grace period). A static shared
//! control plane is never dropped, so this is what cleans up after a test binary exits.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The guard script. `$1` is the grace period in seconds, `$2` what to stop (`program`, or
/// `session` for the program and every process it starts), the rest is the program and its
/// args. The program gets /dev/null as stdin; the watcher reads the pipe through fd 3 because
/// background jobs of a non-interactive shell have their stdin replaced by /dev/null. A
/// background job is not a process group leader, so `setsid` makes the program one without
/// forking: its pid is also its session's, which `kill -SIG -pid` reaches whole.
const GUARD: &str = r#"
grace=$1; what=$2; shift 2
exec 3<&0
if [ "$what" = session ]; then setsid "$@" </dev/null & else "$@" </dev/null & fi
child=$!
target=$child
if [ "$what" = session ]; then target=-$child; fi
{
  read _ignored <&3
  kill -TERM $target 2>/dev/null
  n=0
  while kill -0 $target 2>/dev/null && [ "$n" -lt $((grace * 10)) ]; do sleep 0.1; n=$((n + 1)); done
  kill -KILL $target 2>/dev/null
} &
watcher=$!
wait "$child"
status=$?
kill "$watcher" 2>/dev/null
exit "$status"
"#;

/// What stopping a guarded program stops.
#[derive(Clone, Copy)]
enum Reach {
    /// The program alone; stopping what it started is left to it.
    Program,
    /// The program and every process it started, for servers with helper processes.
    Session,
}

/// A program running under the guard.
pub struct Guarded {
    name: String,
    guard: Child,
    stdin: Option<ChildStdin>,
    log: PathBuf,
}

impl Guarded {
    /// Starts `program args...` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, program: &Path, args: &[String], log: &Path) -> Result<Self> {
        let mut command = Command::new(program);
        command.args(args);
        Self::start(name, &command, log, Reach::Program)
    }

    /// Starts `command` (its program, arguments, environment changes and working folder; not an
    /// `env_clear`) with stdout and stderr appended to `log`.
    pub fn spawn_command(name: &str, command: &Command, log: &Path) -> Result<Self> {
        Self::start(name, command, log, Reach::Program)
    }

    /// Like [`Guarded::spawn_command`], with the program in a session of its own that is
    /// stopped whole: for servers that start helper processes, which would otherwise outlive it.
    pub fn spawn_session(name: &str, command: &Command, log: &Path) -> Result<Self> {
        Self::start(name, command, log, Reach::Session)
    }

    fn start(name: &str, command: &Command, log: &Path, reach: Reach) -> Result<Self> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening log {}", log.display()))?;
        let program = command.get_program();
        let mut guard = Command::new("sh");
        guard
            .arg("-c")
            .arg(GUARD)
            .arg(format!("modelsync-guard-{name}"))
            .arg("5")
            .arg(match reach {
                Reach::Program => "program",
                Reach::Session => "session",
            })
            .arg(program)
            .args(command.get_args());
        for (key, value) in command.get_envs() {
            match value {
                Some(value) => guard.env(key, value),
                None => guard.env_remove(key),
            };
        }
        if let Some(dir) = command.get_current_dir() {
            guard.current_dir(dir);
        }
        let mut guard = guard
            .stdin(Stdio::piped())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {} ({})", name, Path::new(program).display()))?;
        let stdin = guard.stdin.take();
        Ok(Guarded {
            name: name.to_owned(),
            guard,
            stdin,
            log: log.to_owned(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// `Some(status)` once the program has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.guard.try_wait().ok().flatten()
    }

    /// Waits for the program to exit by itself, up to `timeout`; `None` if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until a line of the log contains `needle` and returns that line, trimmed. Fails
    /// when the program exits first or `timeout` passes, with the log's last lines.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.contains(needle)) {
                return Ok(line.trim().to_owned());
            }
            if let Some(status) = self.exited() {
                bail!(
                    "{} ended ({status}) before printing {needle:?}:\n{}",
                    self.name,
                    log_tail(&self.log, 20)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not print {needle:?} within {timeout:?}:\n{}",
                    self.name,
                    log_tail(&self.log, 20)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asks the program to stop without waiting.
    pub fn request_stop(&mut self) {
        self.stdin.take();
    }

    /// Asks the program to stop and waits for it, up to the guard's grace period and a little.
    pub fn stop(&mut self) {
        self.request_stop();
        if self.wait_exit(Duration::from_secs(8)).is_some() {
            return;
        }
        // The guard itself is stuck: take it down; its watcher still holds the program's fate.
        let _ = self.guard.kill();
        let _ = self.guard.wait();
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `lines` lines of a log file, for error messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(16 * 1024);
    let _ = f.seek(SeekFrom::Start(start));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A loopback port that was free a moment ago. Callers retry on the rare clash.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// Processes whose command line mentions `needle` (a folder unique to one control plane).
pub fn pids_mentioning(needle: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        // A zombie has an empty command line and holds nothing, so it does not count.
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(needle) && pid != std::process::id() {
            pids.push(pid);
        }
    }
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_stops_when_guard_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("marker-sleep");
        let script = dir.path().join("prog.sh");
        std::fs::write(&script, "#!/bin/sh\nexec sleep 300\n").unwrap();
        let args = [marker.display().to_string()];
        let log = dir.path().join("log");
        // `sh prog.sh <marker>` carries the marker on its command line for pids_mentioning.
        let mut g = Guarded::spawn(
            "t",
            Path::new("sh"),
            &[script.display().to_string(), args[0].clone()],
            &log,
        )
        .unwrap();
        let needle = marker.display().to_string();
        let deadline = Instant::now() + Duration::from_secs(5);
        while pids_mentioning(&needle).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            !pids_mentioning(&needle).is_empty(),
            "program did not start"
        );
        assert!(g.exited().is_none());
        drop(g);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pids_mentioning(&needle).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(pids_mentioning(&needle), Vec::<u32>::new());
    }

    #[test]
    fn exit_status_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let mut g = Guarded::spawn(
            "t",
            Path::new("sh"),
            &["-c".into(), "echo hello; exit 3".into()],
            &log,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(s) = g.exited() {
                break s;
            }
            assert!(Instant::now() < deadline, "did not exit");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(status.code(), Some(3));
        assert_eq!(log_tail(&log, 5), "hello");
    }

    /// Waits up to `timeout` for `pids_mentioning(needle)` to satisfy `done`.
    fn wait_for_pids(needle: &str, timeout: Duration, done: impl Fn(&[u32]) -> bool) -> Vec<u32> {
        let deadline = Instant::now() + timeout;
        loop {
            let pids = pids_mentioning(needle);
            if done(&pids) || Instant::now() > deadline {
                return pids;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_session_stops_with_every_helper_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let helper = dir.path().join("helper.sh");
        std::fs::write(&helper, "while :; do sleep 1; done\n").unwrap();
        let main = dir.path().join("main.sh");
        let helper_arg = helper.display().to_string();
        std::fs::write(
            &main,
            format!("sh {helper_arg} &\nsh {helper_arg} &\nwait\n"),
        )
        .unwrap();
        let mut command = Command::new("sh");
        command.arg(&main);
        let g = Guarded::spawn_session("t", &command, &dir.path().join("log")).unwrap();
        let helpers = wait_for_pids(&helper_arg, Duration::from_secs(5), |p| p.len() >= 2);
        assert_eq!(helpers.len(), 2, "helpers did not start");
        drop(g);
        let left = wait_for_pids(
            &dir.path().display().to_string(),
            Duration::from_secs(10),
            |p| p.is_empty(),
        );
        assert_eq!(
            left,
            Vec::<u32>::new(),
            "processes of the session left behind"
        );
    }

    #[test]
    fn a_command_keeps_its_environment_and_folder() {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new("sh");
        command
            .args(["-c", "echo \"$GREETING from $(pwd)\"; exec sleep 300"])
            .env("GREETING", "hello")
            .current_dir(dir.path());
        let mut g = Guarded::spawn_command("t", &command, &dir.path().join("log")).unwrap();
        let line = g.wait_for_line("hello", Duration::from_secs(5)).unwrap();
        let here = dir.path().canonicalize().unwrap();
        assert_eq!(line, format!("hello from {}", here.display()));
        assert!(g.exited().is_none());
    }

    #[test]
    fn waiting_for_a_line_fails_when_the_program_ends_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = Guarded::spawn(
            "quitter",
            Path::new("sh"),
            &["-c".into(), "echo bye; exit 2".into()],
            &dir.path().join("log"),
        )
        .unwrap();
        let err = g
            .wait_for_line("listening", Duration::from_secs(10))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("quitter ended (exit status: 2)"), "{err}");
        assert!(err.ends_with("bye"), "{err}");
        assert_eq!(g.wait_exit(Duration::ZERO).and_then(|s| s.code()), Some(2));
    }
}
