//! Debian root filesystems made from Debian's own packages with `mmdebstrap`, close to Docker's
//! `debian:<suite>-slim` (the `minbase` package set, no manuals, docs or apt lists), cached by
//! what they contain; and [`Chroot`], which runs a program inside one without a container
//! daemon.
//!
//! Every mount either of them makes lives in a private mount namespace (`unshare --mount`) that
//! ends with its last process, so nothing stays mounted after a failure, a panic or a SIGKILL of
//! the test, and deleting a half-built root filesystem can never reach into a mounted host
//! folder.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::binaries::fmt_elapsed;
use crate::cache;

/// Bumped when the way root filesystems are made changes, so cached ones are made again.
const BUILDER_VERSION: &str = "1";

/// Paths dpkg leaves out, as the slim images do: manuals, docs (but their copyright), locales.
const SLIM_EXCLUDES: &[&str] = &[
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/groff/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/lintian/*",
    "path-exclude=/usr/share/linda/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
];

/// What goes into a root filesystem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootfsSpec {
    /// A short name for progress lines and the cache key, like `modelsync`.
    pub name: String,
    /// The Debian suite, like `bookworm`.
    pub suite: String,
    /// Packages installed on top of `minbase` (Recommends are never installed).
    pub packages: Vec<String>,
}

impl RootfsSpec {
    /// The cache key: the suite, the packages, the way it is made and the apt sources used.
    fn cache_key(&self, sources: &str) -> String {
        let mut hasher = Sha256::new();
        hasher.update(format!(
            "{BUILDER_VERSION}\n{:?}\n{SLIM_EXCLUDES:?}\n{sources}",
            self
        ));
        let digest = super::recipe::hex(&hasher.finalize());
        format!(
            "images/rootfs-{}-{}-{}",
            self.name,
            self.suite,
            &digest[..16]
        )
    }
}

/// The cached root filesystem folder for `spec`, made first if missing (about a minute, more on
/// a slow mirror). The folder is shared: copy it before changing anything in it.
pub fn ensure(spec: &RootfsSpec) -> Result<PathBuf> {
    let sources = host_sources(&spec.suite)?;
    let entry = cache::get_or_make(&spec.cache_key(&sources), |out| make(spec, &sources, out))?;
    Ok(entry.join("rootfs"))
}

fn make(spec: &RootfsSpec, sources: &str, out: &Path) -> Result<()> {
    for tool in ["mmdebstrap", "unshare", "setpriv", "chroot"] {
        if which(tool).is_none() {
            bail!(
                "`{tool}` is not installed; daemonless images need it: run `apt-get install -y \
                 mmdebstrap util-linux coreutils`"
            );
        }
    }
    if !is_root() {
        bail!(
            "building a Debian root filesystem needs root (mmdebstrap keeps file owners and \
             makes device mounts): run as root"
        );
    }
    let rootfs = out.join("rootfs");
    let sources_file = out.join("host.list");
    let log = out.join("mmdebstrap.log");
    let mut cmd = isolated();
    cmd.args([
        "nice",
        "-n",
        "10",
        "mmdebstrap",
        "--variant=minbase",
        "--mode=root",
    ]);
    // Bookworm's init-system-helpers would otherwise pull in usrmerge and with it all of perl.
    cmd.arg("--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr");
    cmd.arg("--aptopt=APT::Install-Recommends \"false\"");
    for opt in SLIM_EXCLUDES {
        cmd.arg(format!("--dpkgopt={opt}"));
    }
    if !spec.packages.is_empty() {
        cmd.arg(format!("--include={}", spec.packages.join(",")));
    }
    cmd.arg(&spec.suite).arg(&rootfs);
    if !sources.is_empty() {
        fs::write(&sources_file, sources)?;
        cmd.arg(&sources_file);
    }
    progress(&format!(
        "making the {} root filesystem (Debian {} minbase + {}) with mmdebstrap from this \
         machine's apt sources; about a minute, made once and cached in {}",
        spec.name,
        spec.suite,
        if spec.packages.is_empty() {
            "nothing".to_owned()
        } else {
            spec.packages.join(", ")
        },
        out.display()
    ));
    run_logged(cmd, &log, &format!("mmdebstrap ({})", spec.name))?;
    slim(&rootfs)?;
    Ok(())
}

/// What the runtime brings itself (device nodes, the host's name and resolver) leaves the image.
fn slim(rootfs: &Path) -> Result<()> {
    ensure_nothing_mounted_under(rootfs)?;
    let dev = rootfs.join("dev");
    for entry in fs::read_dir(&dev).with_context(|| format!("reading {}", dev.display()))? {
        let path = entry?.path();
        if path.is_dir() && !path.is_symlink() {
            fs::remove_dir_all(&path)?;
        } else {
            fs::remove_file(&path)?;
        }
    }
    for file in ["etc/hostname", "etc/resolv.conf"] {
        let path = rootfs.join(file);
        if path.symlink_metadata().is_ok() {
            fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

/// Refuses to go on when anything is mounted below `dir` in this mount namespace: deleting or
/// archiving it would then reach into the mounted folder.
fn ensure_nothing_mounted_under(dir: &Path) -> Result<()> {
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = dir.to_string_lossy().into_owned();
    if let Some(line) = mounts.lines().find(|l| {
        l.split_whitespace()
            .nth(4)
            .is_some_and(|m| m == prefix || m.starts_with(&format!("{prefix}/")))
    }) {
        bail!(
            "something is mounted inside {}: `{line}`; unmount it (umount -R) before building \
             the image again",
            dir.display()
        );
    }
    Ok(())
}

/// The host's own apt sources for `suite` (and its -updates and -security), as one-line
/// entries, so the root filesystem comes from the mirror this machine is set up for. Empty
/// when the host has none (not a Debian machine): mmdebstrap then uses its default mirror.
pub fn host_sources(suite: &str) -> Result<String> {
    let mut files = Vec::new();
    if Path::new("/etc/apt/sources.list").is_file() {
        files.push(PathBuf::from("/etc/apt/sources.list"));
    }
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "list" || x == "sources"))
            .collect();
        more.sort();
        files.extend(more);
    }
    let mut lines = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file)
            .with_context(|| format!("reading apt sources {}", file.display()))?;
        let entries = if file.extension().is_some_and(|x| x == "sources") {
            deb822_entries(&text)
        } else {
            one_line_entries(&text)
        };
        for e in entries {
            let wanted = [
                suite.to_owned(),
                format!("{suite}-updates"),
                format!("{suite}-security"),
            ];
            if wanted.contains(&e.suite) && e.uri.contains("://") {
                let options = match &e.signed_by {
                    Some(key) if Path::new(key).is_file() => format!("[signed-by={key}] "),
                    _ => String::new(),
                };
                let line = format!(
                    "deb {options}{} {} {}",
                    e.uri,
                    e.suite,
                    e.components.join(" ")
                );
                if !lines.contains(&line) {
                    lines.push(line);
                }
            }
        }
    }
    Ok(lines.iter().map(|l| format!("{l}\n")).collect())
}

struct SourceEntry {
    uri: String,
    suite: String,
    components: Vec<String>,
    signed_by: Option<String>,
}

fn one_line_entries(text: &str) -> Vec<SourceEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        let Some(rest) = line.strip_prefix("deb ") else {
            continue;
        };
        let mut rest = rest.trim();
        let mut signed_by = None;
        if let Some(opts) = rest.strip_prefix('[') {
            let Some((opts, after)) = opts.split_once(']') else {
                continue;
            };
            signed_by = opts
                .split_whitespace()
                .find_map(|o| o.strip_prefix("signed-by="))
                .map(str::to_owned);
            rest = after.trim();
        }
        let words: Vec<&str> = rest.split_whitespace().collect();
        if let [uri, suite, components @ ..] = words.as_slice() {
            out.push(SourceEntry {
                uri: (*uri).to_owned(),
                suite: (*suite).to_owned(),
                components: components.iter().map(|c| (*c).to_owned()).collect(),
                signed_by: signed_by.clone(),
            });
        }
    }
    out
}

fn deb822_entries(text: &str) -> Vec<SourceEntry> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| v.trim().to_owned())
                })
                .unwrap_or_default()
        };
        let types = field("Types");
        let enabled = field("Enabled");
        if !types.split_whitespace().any(|t| t == "deb") || enabled.eq_ignore_ascii_case("no") {
            continue;
        }
        let uris = field("URIs");
        let suites = field("Suites");
        let components: Vec<String> = field("Components")
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let signed_by = Some(field("Signed-By")).filter(|s| s.starts_with('/'));
        for uri in uris.split_whitespace() {
            for suite in suites.split_whitespace() {
                out.push(SourceEntry {
                    uri: uri.to_owned(),
                    suite: suite.to_owned(),
                    components: components.clone(),
                    signed_by: signed_by.clone(),
                });
            }
        }
    }
    out
}

/// Writes a progress line straight to the terminal, past the test harness's output capture:
/// image builds take minutes and must never look hung.
pub fn progress(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "[modelsync image] {line}");
}

/// `setpriv --pdeathsig KILL unshare --mount --fork --kill-child`: a private mount namespace
/// whose processes die with the caller, so their mounts go away with them.
fn isolated() -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--pdeathsig",
        "KILL",
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--fork",
        "--kill-child",
    ]);
    cmd
}

/// Runs `cmd` with its output in `log`, printing a progress line every 15 s; on failure the
/// error carries the log's last lines.
pub(crate) fn run_logged(mut cmd: Command, log: &Path, what: &str) -> Result<()> {
    let file = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let started = Instant::now();
    let mut last_report = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            if status.success() {
                progress(&format!(
                    "{what} done in {}",
                    fmt_elapsed(started.elapsed())
                ));
                return Ok(());
            }
            bail!(
                "{what} failed ({status}); last lines of {}:\n{}",
                log.display(),
                crate::process::log_tail(log, 30)
            );
        }
        if last_report.elapsed() >= Duration::from_secs(15) {
            last_report = Instant::now();
            progress(&format!(
                "{what}: {} elapsed, {}",
                fmt_elapsed(started.elapsed()),
                crate::process::log_tail(log, 1).trim()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A program run inside a root filesystem with `chroot`, without any container daemon.
///
/// `/proc` and the host's `/dev` are mounted inside for the run only, in a private mount
/// namespace. With `scratch`, the root filesystem is the lower layer of an overlay whose
/// upper layer is thrown away afterwards, so runs never change a cached image.
#[derive(Clone, Debug)]
pub struct Chroot {
    pub rootfs: PathBuf,
    /// `UID:GID` to run as (`chroot --userspec`); root when `None`.
    pub userspec: Option<String>,
    /// The only environment the program sees (`KEY=value`), nothing of the caller's.
    pub env: Vec<String>,
    /// Run in a new network namespace with only loopback up: proves a run needs no network.
    pub no_network: bool,
    /// Write into a throw-away overlay instead of the root filesystem.
    pub scratch: bool,
    /// Host folders bound (read-only) at paths inside the root filesystem.
    pub binds: Vec<(PathBuf, String)>,
    /// Working folder inside the root filesystem.
    pub cwd: Option<String>,
}

impl Chroot {
    pub fn new(rootfs: &Path) -> Self {
        Chroot {
            rootfs: rootfs.to_path_buf(),
            userspec: None,
            env: vec![super::recipe::DEBIAN_PATH.to_owned()],
            no_network: false,
            scratch: true,
            binds: Vec::new(),
            cwd: None,
        }
    }

    /// Runs `argv` inside and returns its output; fails when it cannot be started at all.
    pub fn output(&self, argv: &[&str]) -> Result<Output> {
        if !is_root() {
            bail!(
                "running {argv:?} inside an image's root filesystem needs root (chroot and a \
                 private mount namespace): run as root"
            );
        }
        let scratch = tempfile::Builder::new()
            .prefix("modelsync-chroot-")
            .tempdir()
            .context("creating a scratch folder for the chroot")?;
        let mut script = String::from("set -eu\nroot=\"$ROOTFS\"\n");
        if self.no_network {
            script.push_str("ip link set lo up\n");
        }
        if self.scratch {
            script.push_str(
                "mkdir -p \"$SCRATCH/upper\" \"$SCRATCH/work\" \"$SCRATCH/merged\"\n\
                 mount -t overlay overlay -o \"lowerdir=$root,upperdir=$SCRATCH/upper,\
                 workdir=$SCRATCH/work\" \"$SCRATCH/merged\"\n\
                 root=\"$SCRATCH/merged\"\n",
            );
        }
        script.push_str(
            "mount -t proc proc \"$root/proc\"\n\
             mount --rbind /dev \"$root/dev\"\n",
        );
        let mut cmd = isolated();
        if self.no_network {
            cmd.arg("--net");
        }
        for (n, (host, inside)) in self.binds.iter().enumerate() {
            script.push_str(&format!(
                "mkdir -p \"$root$BIND_AT_{n}\"\n\
                 mount --bind \"$BIND_FROM_{n}\" \"$root$BIND_AT_{n}\"\n\
                 mount -o remount,bind,ro \"$root$BIND_AT_{n}\"\n"
            ));
            cmd.env(format!("BIND_FROM_{n}"), host);
            cmd.env(format!("BIND_AT_{n}"), inside);
        }
        // The caller's environment (its pip or proxy settings, say) must not leak into the run:
        // `env -i` inside the root starts from nothing but `self.env`.
        script.push_str(
            "exec chroot ${CHROOT_USERSPEC:+--userspec=$CHROOT_USERSPEC} \"$root\" \
             /bin/sh -c 'cd \"$CHROOT_CWD\" && exec /usr/bin/env -i \"$@\"' sh \"$@\"\n",
        );
        cmd.env(
            "CHROOT_USERSPEC",
            self.userspec.as_deref().unwrap_or_default(),
        )
        .env("CHROOT_CWD", self.cwd.as_deref().unwrap_or("/"));
        cmd.args(["sh", "-c", &script, "sh"]);
        cmd.args(&self.env);
        cmd.args(argv);
        cmd.env("ROOTFS", &self.rootfs)
            .env("SCRATCH", scratch.path())
            .stdin(Stdio::null());
        let out = cmd
            .output()
            .with_context(|| format!("running {argv:?} in {}", self.rootfs.display()))?;
        Ok(out)
    }

    /// Like [`Chroot::output`], failing with the program's output when it exits non-zero.
    pub fn run(&self, argv: &[&str]) -> Result<Output> {
        let out = self.output(argv)?;
        if !out.status.success() {
            bail!(
                "{argv:?} in {} failed ({}):\n{}{}",
                self.rootfs.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out)
    }
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    // The effective uid from /proc avoids libc calls; 0 is root.
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(str::to_owned))
        })
        .is_some_and(|euid| euid == "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_source_formats() {
        let deb822 = "Types: deb\n# comment\nURIs: http://mirror.invalid/debian\n\
                      Suites: bookworm bookworm-updates\nComponents: main\n\
                      Signed-By: /usr/share/keyrings/x.gpg\n\n\
                      Types: deb\nURIs: https://other.invalid/x\nSuites: nodistro\nComponents: main\n";
        let e = deb822_entries(deb822);
        assert_eq!(e.len(), 3);
        assert_eq!(e[1].suite, "bookworm-updates");
        assert_eq!(e[0].signed_by.as_deref(), Some("/usr/share/keyrings/x.gpg"));
        let one = one_line_entries(
            "# x\ndeb [arch=amd64 signed-by=/k.gpg] http://m.invalid/debian bookworm main contrib\n\
             deb-src http://m.invalid/debian bookworm main\n",
        );
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].components, ["main", "contrib"]);
        assert_eq!(one[0].signed_by.as_deref(), Some("/k.gpg"));
    }

    #[test]
    fn cache_key_follows_packages() {
        let a = RootfsSpec {
            name: "x".into(),
            suite: "bookworm".into(),
            packages: vec!["ca-certificates".into()],
        };
        let mut b = a.clone();
        b.packages.push("git".into());
        assert_ne!(a.cache_key(""), b.cache_key(""));
        assert!(a.cache_key("").starts_with("images/rootfs-x-bookworm-"));
    }
}
