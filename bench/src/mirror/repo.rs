//! Git repositories for the mirror and lambda server benchmarks, generated with
//! `git fast-import` (the test environment's `git daemon` serves them on 127.0.0.1), and the
//! small HTTP and metrics helpers both benchmarks read their figures with.

use std::io::{BufWriter, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use modelsync_testenv::git::git;

/// Commits and files of the large generated repository (issue 7, benchmark 5).
pub const COMMITS: usize = 10_000;
pub const FILES: usize = 5_000;

/// Bump when the generated content changes, so a cached copy is not reused.
const GENERATION: &str = "bench-repo-v1";

/// The path of file `i` of `n` files spread over folders of 100: `src/d007/f00712.txt`.
pub fn file_path(prefix: &str, i: usize) -> String {
    format!("{prefix}/d{:03}/f{i:05}.txt", i / 100)
}

/// About 1.2 KB of text for file `i` at revision `rev`.
pub fn file_content(i: usize, rev: usize) -> String {
    let mut s = format!("file {i} revision {rev}\n");
    for line in 0..20 {
        s.push_str(&format!(
            "{line:02} the quick brown fox jumps over the lazy dog {i:05} {rev:06}\n"
        ));
    }
    s
}

/// A `git fast-import` stream written straight into the process.
pub struct FastImport {
    child: std::process::Child,
    out: BufWriter<std::process::ChildStdin>,
    time: u64,
}

impl FastImport {
    pub fn start(bare_repo: &Path) -> Result<Self> {
        let mut child = modelsync_testenv::git::command(bare_repo)
            .args(["fast-import", "--quiet", "--done"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .context("starting git fast-import")?;
        let stdin = child.stdin.take().context("fast-import stdin")?;
        Ok(FastImport {
            child,
            out: BufWriter::with_capacity(1 << 20, stdin),
            time: 1_700_000_000,
        })
    }

    /// Starts a commit on `refs/heads/main`; `from_existing` continues the branch already in
    /// the repository (otherwise the stream's own previous commit, or none for the first).
    pub fn commit(&mut self, message: &str, from_existing: bool) -> Result<()> {
        self.time += 60;
        write!(
            self.out,
            "commit refs/heads/main\ncommitter Bench <bench@modelsync.invalid> {} +0000\ndata {}\n{}\n",
            self.time,
            message.len(),
            message
        )?;
        if from_existing {
            self.out.write_all(b"from refs/heads/main^0\n")?;
        }
        Ok(())
    }

    /// Adds or replaces one file in the current commit.
    pub fn file(&mut self, path: &str, content: &str) -> Result<()> {
        write!(
            self.out,
            "M 100644 inline {path}\ndata {}\n{content}\n",
            content.len()
        )?;
        Ok(())
    }

    pub fn finish(mut self) -> Result<()> {
        self.out.write_all(b"done\n")?;
        self.out.flush()?;
        drop(self.out);
        let status = self.child.wait()?;
        if !status.success() {
            bail!("git fast-import failed: {status}");
        }
        Ok(())
    }
}

/// An empty bare repository with `main` as HEAD.
pub fn init_bare(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    git(dir, &["init", "-q", "--bare", "--initial-branch=main"])?;
    Ok(())
}

/// The large repository: [`COMMITS`] commits touching [`FILES`] files. The first commit adds
/// every file, each later one rewrites one file. Made once and cached outside the repository.
pub fn large_repo() -> Result<PathBuf> {
    let dir = modelsync_testenv::cache::get_or_make(GENERATION, |dir| {
        let started = Instant::now();
        eprintln!("   generating a repository of {COMMITS} commits and {FILES} files (cached)");
        let repo = dir.join("large.git");
        init_bare(&repo)?;
        let mut fi = FastImport::start(&repo)?;
        fi.commit("add every file", false)?;
        for i in 0..FILES {
            fi.file(&file_path("src", i), &file_content(i, 0))?;
        }
        for c in 1..COMMITS {
            fi.commit(&format!("change file {}", c % FILES), false)?;
            fi.file(&file_path("src", c % FILES), &file_content(c % FILES, c))?;
        }
        fi.finish()?;
        // Served repositories are packed; so is this one.
        git(&repo, &["repack", "-adq"])?;
        eprintln!("   generated in {:.1}s", started.elapsed().as_secs_f64());
        Ok(())
    })?;
    Ok(dir.join("large.git"))
}

/// Adds one commit on top of `main` rewriting `count` files under `src/` to revision `rev`;
/// returns the new head.
pub fn push_commit(bare_repo: &Path, count: usize, rev: usize) -> Result<String> {
    let mut fi = FastImport::start(bare_repo)?;
    fi.commit(&format!("rewrite {count} files to revision {rev}"), true)?;
    for i in 0..count {
        fi.file(&file_path("src", i), &file_content(i, rev))?;
    }
    fi.finish()?;
    git(bare_repo, &["rev-parse", "refs/heads/main"])
}

/// The absolute path of a program on PATH.
pub fn which(program: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .with_context(|| format!("{program} is not on PATH"))
}

/// A plain HTTP/1.0 GET on 127.0.0.1: status and body.
pub fn http_get(port: u16, path: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("not an HTTP response: {raw:.200}"))?;
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((status, body.to_owned()))
}

/// The value of a Prometheus sample like `git_sync_count_total{status="noop"}`, or 0 when the
/// series does not exist yet.
pub fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The count and summed seconds of the mirror's syncs with `status` so far.
pub fn syncs(port: u16, status: &str) -> Result<(f64, f64)> {
    let (code, text) = http_get(port, "/metrics")?;
    if code != 200 {
        bail!("/metrics answered {code}");
    }
    Ok((
        sample(
            &text,
            &format!("git_sync_duration_seconds_count{{status=\"{status}\"}}"),
        ),
        sample(
            &text,
            &format!("git_sync_duration_seconds_sum{{status=\"{status}\"}}"),
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_samples() {
        let text = "# HELP x\ngit_sync_count_total{status=\"noop\"} 3\ngit_sync_duration_seconds_sum{status=\"noop\"} 0.25\n";
        assert_eq!(sample(text, "git_sync_count_total{status=\"noop\"}"), 3.0);
        assert_eq!(
            sample(text, "git_sync_duration_seconds_sum{status=\"noop\"}"),
            0.25
        );
        assert_eq!(sample(text, "git_sync_count_total{status=\"error\"}"), 0.0);
    }

    #[test]
    fn paths_spread_over_folders() {
        assert_eq!(file_path("src", 712), "src/d007/f00712.txt");
        assert!(file_content(1, 2).len() > 1000);
    }
}
