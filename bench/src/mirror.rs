//! Benchmark 5, the mirror: first, no-op and one-new-commit syncs of a repository of 10,000
//! commits and 5,000 files served by `git daemon` on 127.0.0.1, for `modelsync mirror` and for
//! the `git` command line doing the same steps (see BENCHMARKS.md for exactly which).

pub mod repo;

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use modelsync_testenv::process::{Guarded, free_port, log_tail};

use crate::Opts;
use crate::report::Figure;
use modelsync_testenv::git::{GitDaemon, git};

const BENCH: &str = "mirror";
/// Depth used by both sides (the mirror's default).
const DEPTH: u32 = 1;
/// The link name both sides publish.
const LINK: &str = "repo";

/// Times of one run, in milliseconds.
#[derive(Default)]
struct Run {
    first: f64,
    noop: f64,
    new: f64,
    first_full: f64,
}

pub async fn run(opts: &Opts) -> Result<Vec<Figure>> {
    let runs = opts.runs.max(1);
    let modelsync = opts.modelsync.clone();
    tokio::task::spawn_blocking(move || measure(&modelsync, runs)).await?
}

fn measure(modelsync: &Path, runs: usize) -> Result<Vec<Figure>> {
    let cached = repo::large_repo()?;
    let tmp = tempfile::Builder::new()
        .prefix("modelsync-bench-mirror-")
        .tempdir()?;
    let base = tmp.path().join("srv");
    std::fs::create_dir_all(&base)?;
    let served = base.join("large.git");
    // A copy per invocation (hardlinked objects on the same filesystem), since the benchmark
    // adds commits to it.
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            "--bare",
            &cached.display().to_string(),
            &served.display().to_string(),
        ],
    )?;
    let log = tmp.path().join("git-daemon.log");
    let daemon = GitDaemon::start(&base, Ipv4Addr::LOCALHOST.into(), &log)?;
    let url = daemon.url("large.git");

    let mut ms = Vec::new();
    let mut git_cli = Vec::new();
    let mut steady_noop = Vec::new();
    let mut steady_new = Vec::new();
    let mut rev = 100_000;
    for r in 0..runs {
        let m_root = tmp.path().join(format!("mirror-{r}"));
        let g_root = tmp.path().join(format!("git-{r}"));
        let mut m = Run::default();
        let mut g = Run::default();
        let head = git(&served, &["rev-parse", "refs/heads/main"])?;

        m.first = one_time(modelsync, &url, &m_root, DEPTH)?;
        expect_link(&m_root, &head)?;
        g.first = git_sync(&url, &g_root, DEPTH)?;
        expect_link(&g_root, &head)?;

        m.noop = one_time(modelsync, &url, &m_root, DEPTH)?;
        g.noop = git_sync(&url, &g_root, DEPTH)?;

        rev += 1;
        let head = repo::push_commit(&served, 1, rev)?;
        m.new = one_time(modelsync, &url, &m_root, DEPTH)?;
        expect_link(&m_root, &head)?;
        g.new = git_sync(&url, &g_root, DEPTH)?;
        expect_link(&g_root, &head)?;

        // Full history (depth 0): first sync only, the one that differs most from depth 1.
        let m_full = tmp.path().join(format!("mirror-full-{r}"));
        let g_full = tmp.path().join(format!("git-full-{r}"));
        m.first_full = one_time(modelsync, &url, &m_full, 0)?;
        g.first_full = git_sync(&url, &g_full, 0)?;
        for dir in [&m_full, &g_full] {
            std::fs::remove_dir_all(dir)?;
        }

        // Steady state: a long-running mirror's own sync times from its metrics.
        let (noop, new) = steady(modelsync, &url, &m_root, &served, &mut rev, tmp.path())?;
        steady_noop.push(noop);
        steady_new.push(new);
        eprintln!(
            "   run {}: modelsync first {:.0} ms, no-op {:.1} ms, new {:.0} ms, full first {:.0} ms; \
             git first {:.0} ms, no-op {:.1} ms, new {:.0} ms, full first {:.0} ms; \
             in-process no-op {:.2} ms, new {:.0} ms",
            r + 1,
            m.first,
            m.noop,
            m.new,
            m.first_full,
            g.first,
            g.noop,
            g.new,
            g.first_full,
            noop,
            new
        );
        for dir in [&m_root, &g_root] {
            std::fs::remove_dir_all(dir)?;
        }
        ms.push(m);
        git_cli.push(g);
    }
    drop(daemon);

    let col = |runs: &[Run], f: fn(&Run) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
    let not_slower = |v: f64, floor: Option<f64>| floor.is_some_and(|f| v <= f);
    let figure = |metric: &str, f: fn(&Run) -> f64| {
        Figure::new(BENCH, metric, "ms", col(&ms, f)).with_floor(col(&git_cli, f))
    };
    Ok(vec![
        figure("first sync, depth 1 (floor: git CLI)", |r| r.first)
            .with_target("<= git CLI", not_slower),
        figure("no-op sync, process (floor: git CLI)", |r| r.noop)
            .with_target("< 50, <= git", move |v, f| v < 50.0 && not_slower(v, f)),
        figure("one-new-commit sync, process (floor: git)", |r| r.new)
            .with_target("< 200, <= git", move |v, f| v < 200.0 && not_slower(v, f)),
        figure("first sync, depth 0 (floor: git CLI)", |r| r.first_full)
            .with_target("<= git CLI", not_slower),
        Figure::new(BENCH, "no-op sync, in a running mirror", "ms", steady_noop)
            .with_target("< 50 ms", |v, _| v < 50.0),
        Figure::new(
            BENCH,
            "one-new-commit sync, in a running mirror",
            "ms",
            steady_new,
        )
        .with_target("< 200 ms", |v, _| v < 200.0),
    ])
}

/// `modelsync mirror --one-time`: wall time of the whole process, in milliseconds.
fn one_time(modelsync: &Path, url: &str, root: &Path, depth: u32) -> Result<f64> {
    let mut cmd = Command::new(modelsync);
    cmd.args(["mirror", "--repo", url, "--link", LINK, "--one-time"])
        .arg("--root")
        .arg(root)
        .arg(format!("--depth={depth}"));
    timed(&mut cmd)
}

/// What a git-sync style mirror does with the `git` command line, each step one process, all
/// timed together: `ls-remote` the ref; stop if the link already names that commit; otherwise
/// `fetch --depth` it, `rev-parse FETCH_HEAD`, `worktree add --detach` the commit under
/// `.worktrees/<hash>`, swap the link (a new link renamed over the old) and
/// `worktree remove --force` the previous tree. The first sync also runs `git init`.
fn git_sync(url: &str, root: &Path, depth: u32) -> Result<f64> {
    let started = Instant::now();
    if !root.join(".git").exists() {
        std::fs::create_dir_all(root)?;
        git(root, &["init", "-q"])?;
    }
    let remote = git(root, &["ls-remote", url, "HEAD"])?;
    let want = remote
        .split_whitespace()
        .next()
        .context("ls-remote printed no HEAD")?
        .to_owned();
    let current = current_hash(root);
    if current.as_deref() == Some(want.as_str()) {
        return Ok(ms_since(started));
    }
    let depth_arg = format!("--depth={depth}");
    let mut fetch = vec!["fetch", "-q", "--no-tags", "--no-auto-gc"];
    if depth > 0 {
        fetch.push(&depth_arg);
    }
    fetch.extend([url, "HEAD"]);
    git(root, &fetch)?;
    let hash = git(root, &["rev-parse", "FETCH_HEAD"])?;
    let worktree = root.join(".worktrees").join(&hash);
    let worktree_arg = worktree.display().to_string();
    git(
        root,
        &["worktree", "add", "-q", "--detach", &worktree_arg, &hash],
    )?;
    let tmp_link = root.join("tmp-link");
    let _ = std::fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(Path::new(".worktrees").join(&hash), &tmp_link)?;
    std::fs::rename(&tmp_link, root.join(LINK))?;
    if let Some(old) = current {
        let old = root.join(".worktrees").join(old).display().to_string();
        git(root, &["worktree", "remove", "--force", &old])?;
    }
    Ok(ms_since(started))
}

/// The commit the link points at (the last element of its target).
fn current_hash(root: &Path) -> Option<String> {
    let target = std::fs::read_link(root.join(LINK)).ok()?;
    Some(target.file_name()?.to_string_lossy().into_owned())
}

fn expect_link(root: &Path, hash: &str) -> Result<()> {
    let current = current_hash(root);
    if current.as_deref() != Some(hash) {
        bail!(
            "{} links {current:?}, expected {hash}",
            root.join(LINK).display()
        );
    }
    let probe = root.join(LINK).join(repo::file_path("src", 0));
    if !probe.is_file() {
        bail!("{} is not checked out", probe.display());
    }
    Ok(())
}

fn timed(cmd: &mut Command) -> Result<f64> {
    let started = Instant::now();
    let out = cmd.output().context("starting a timed command")?;
    let elapsed = ms_since(started);
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(elapsed)
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// A long-running `modelsync mirror --period 100ms` on an already synced root: the mean of its
/// no-op syncs over two seconds, then the time of the one sync after a new commit, both from
/// `git_sync_duration_seconds` (milliseconds).
fn steady(
    modelsync: &Path,
    url: &str,
    root: &Path,
    served: &Path,
    rev: &mut usize,
    tmp: &Path,
) -> Result<(f64, f64)> {
    let port = free_port()?;
    let log = tmp.join("mirror.log");
    let args: Vec<String> = [
        "mirror",
        "--repo",
        url,
        "--link",
        LINK,
        "--period=100ms",
        &format!("--depth={DEPTH}"),
        &format!("--http-bind=127.0.0.1:{port}"),
        "--root",
        &root.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut mirror = Guarded::spawn("mirror", modelsync, &args, &log)?;
    let wait_for = |status: &str, above: f64| -> Result<(f64, f64)> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(s) = repo::syncs(port, status)
                && s.0 > above
            {
                return Ok(s);
            }
            if Instant::now() > deadline {
                bail!("the mirror made no {status} sync: {}", log_tail(&log, 20));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let start = wait_for("noop", 0.0)?;
    std::thread::sleep(Duration::from_secs(2));
    let end = repo::syncs(port, "noop")?;
    let noop = (end.1 - start.1) / (end.0 - start.0) * 1000.0;
    let before = repo::syncs(port, "success")?;
    *rev += 1;
    let head = repo::push_commit(served, 1, *rev)?;
    let after = wait_for("success", before.0)?;
    let new = (after.1 - before.1) * 1000.0;
    mirror.stop();
    expect_link(root, &head)?;
    Ok((noop, new))
}
