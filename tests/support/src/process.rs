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

use anyhow::{Context, Result};

/// The guard script. `$1` is the grace period in seconds, the rest is the program and its args.
/// The program gets /dev/null as stdin; the watcher reads the pipe through fd 3 because
/// background jobs of a non-interactive shell have their stdin replaced by /dev/null.
const GUARD: &str = r#"
grace=$1; shift
exec 3<&0
"$@" </dev/null &
child=$!
{
  read _ignored <&3
  kill -TERM "$child" 2>/dev/null
  n=0
  while kill -0 "$child" 2>/dev/null && [ "$n" -lt $((grace * 10)) ]; do sleep 0.1; n=$((n + 1)); done
  kill -KILL "$child" 2>/dev/null
} &
watcher=$!
wait "$child"
status=$?
kill "$watcher" 2>/dev/null
exit "$status"
"#;

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
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening log {}", log.display()))?;
        let mut guard = Command::new("sh")
            .arg("-c")
            .arg(GUARD)
            .arg(format!("modelsync-guard-{name}"))
            .arg("5")
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {} ({})", name, program.display()))?;
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

    /// Asks the program to stop without waiting.
    pub fn request_stop(&mut self) {
        self.stdin.take();
    }

    /// Asks the program to stop and waits for it, up to the guard's grace period and a little.
    pub fn stop(&mut self) {
        self.request_stop();
        let deadline = Instant::now() + Duration::from_secs(8);
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
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
}
