//! Finding the control plane's binaries: `KUBEBUILDER_ASSETS` when set, otherwise a build from
//! the Go modules in `tests/controlplane/`, cached per version outside the repository.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cache;

/// The three programs a control plane is made of.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
    pub kube_controller_manager: PathBuf,
}

/// Versions pinned by the Go modules under `tests/controlplane/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versions {
    /// Like `v1.36.3`.
    pub kubernetes: String,
    /// Like `v3.5.35`.
    pub etcd: String,
}

impl Versions {
    /// Reads the pins from the Go modules' `go.mod` files.
    pub fn pinned() -> Result<Self> {
        let dir = sources_dir();
        Ok(Versions {
            kubernetes: required_version(&dir.join("go.mod"), "k8s.io/kubernetes")?,
            etcd: required_version(&dir.join("etcd/go.mod"), "go.etcd.io/etcd/server/v3")?,
        })
    }

    /// The cache key, `<k8s-version>-<etcd-version>` without the `v`s.
    pub fn cache_key(&self) -> String {
        format!(
            "controlplane/{}-{}",
            self.kubernetes.trim_start_matches('v'),
            self.etcd.trim_start_matches('v')
        )
    }
}

/// `tests/controlplane/` in this checkout.
pub fn sources_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../controlplane")
}

pub(crate) fn required_version(go_mod: &Path, module: &str) -> Result<String> {
    let text =
        std::fs::read_to_string(go_mod).with_context(|| format!("reading {}", go_mod.display()))?;
    text.lines()
        .map(|l| l.trim().trim_start_matches("require").trim())
        .find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some(module)).then(|| words.next().map(str::to_owned))?
        })
        .with_context(|| format!("{} does not require {module}", go_mod.display()))
}

impl Binaries {
    /// The binaries to run, building them first if needed (many minutes the first time; progress
    /// goes to the terminal, bypassing the test harness's output capture).
    pub fn ensure() -> Result<Self> {
        if let Some(assets) = std::env::var_os("KUBEBUILDER_ASSETS").filter(|v| !v.is_empty()) {
            return Self::from_assets(Path::new(&assets));
        }
        let dir = Self::build_cached()?;
        Ok(Self::in_dir(&dir))
    }

    fn in_dir(dir: &Path) -> Self {
        Binaries {
            etcd: dir.join("etcd"),
            kube_apiserver: dir.join("kube-apiserver"),
            kube_controller_manager: dir.join("kube-controller-manager"),
        }
    }

    /// envtest's asset folders hold kube-apiserver and etcd but no kube-controller-manager; the
    /// garbage collector needs one, so it comes from our own build when the folder lacks it.
    fn from_assets(assets: &Path) -> Result<Self> {
        let mut found = Self::in_dir(assets);
        for path in [&found.etcd, &found.kube_apiserver] {
            if !path.is_file() {
                bail!(
                    "KUBEBUILDER_ASSETS={} has no {}: point it at a folder holding kube-apiserver \
                     and etcd, or unset it to build them from tests/controlplane",
                    assets.display(),
                    path.file_name().unwrap_or_default().to_string_lossy()
                );
            }
        }
        if !found.kube_controller_manager.is_file() {
            found.kube_controller_manager =
                Self::in_dir(&Self::build_cached()?).kube_controller_manager;
        }
        Ok(found)
    }

    /// The cache folder holding all three binaries, built if missing.
    pub fn build_cached() -> Result<PathBuf> {
        let versions = Versions::pinned()?;
        cache::get_or_make(&versions.cache_key(), |out| build(&versions, out))
    }
}

/// Linker flags stamping the Kubernetes version into a binary built from the module.
fn k8s_ldflags(versions: &Versions) -> String {
    let k8s = versions.kubernetes.trim_start_matches('v');
    let mut parts = k8s.split('.');
    let (major, minor) = (parts.next().unwrap_or("1"), parts.next().unwrap_or("0"));
    let pkg = "k8s.io/component-base/version";
    // Without these the binaries report v0.0.0 and clients warn about version skew.
    format!(
        "-s -w -X {pkg}.gitVersion={} -X {pkg}.gitMajor={major} -X {pkg}.gitMinor={minor} \
         -X {pkg}.gitTreeState=clean -X {pkg}.buildDate=1970-01-01T00:00:00Z",
        versions.kubernetes
    )
}

fn build(versions: &Versions, out: &Path) -> Result<()> {
    which_go()?;
    let src = sources_dir();
    let k8s_ldflags = k8s_ldflags(versions);
    let started = Instant::now();
    progress(&format!(
        "building the local control plane (Kubernetes {}, etcd {}) into {}; the first build \
         takes 10-20 minutes on 2 cores, later runs reuse it",
        versions.kubernetes,
        versions.etcd,
        out.display()
    ));
    go_build(
        &src,
        &[
            "-ldflags",
            &k8s_ldflags,
            "-o",
            &dir_arg(out),
            "./kube-apiserver",
            "./kube-controller-manager",
        ],
        "kube-apiserver, kube-controller-manager",
        out,
    )?;
    go_build(
        &src.join("etcd"),
        &[
            "-ldflags",
            "-s -w",
            "-o",
            &out.join("etcd").to_string_lossy(),
            ".",
        ],
        "etcd",
        out,
    )?;
    progress(&format!(
        "control plane built in {}",
        fmt_elapsed(started.elapsed())
    ));
    Ok(())
}

fn dir_arg(out: &Path) -> String {
    // `go build -o DIR/` with a trailing slash writes each main package into DIR by its name.
    format!("{}/", out.display())
}

fn which_go() -> Result<()> {
    match Command::new("go").arg("version").output() {
        Ok(o) if o.status.success() => Ok(()),
        _ => bail!(
            "the local control plane is built from Go modules, but no working `go` is on PATH. \
             Either install Go 1.26 or newer and run again, or set KUBEBUILDER_ASSETS to a folder \
             holding prebuilt kube-apiserver and etcd (plus kube-controller-manager)"
        ),
    }
}

pub(crate) fn go_build(dir: &Path, args: &[&str], what: &str, out: &Path) -> Result<()> {
    go_build_env(dir, args, what, out, &[])
}

fn go_build_env(
    dir: &Path,
    args: &[&str],
    what: &str,
    out: &Path,
    env: &[(&str, &str)],
) -> Result<()> {
    let log_path = out.join(format!(
        "build-{}.log",
        what.split(',').next().unwrap_or(what)
    ));
    let log = std::fs::File::create(&log_path)?;
    let mut child = Command::new("go")
        .arg("build")
        .arg("-v")
        .arg("-trimpath")
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting go build in {}", dir.display()))?;
    let started = Instant::now();
    let mut last_report = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            if status.success() {
                progress(&format!(
                    "built {what} in {}",
                    fmt_elapsed(started.elapsed())
                ));
                return Ok(());
            }
            let tail = crate::process::log_tail(&log_path, 30);
            bail!(
                "go build of {what} in {} failed ({status}); last lines of {}:\n{tail}",
                dir.display(),
                log_path.display()
            );
        }
        if last_report.elapsed() >= Duration::from_secs(15) {
            last_report = Instant::now();
            let last = crate::process::log_tail(&log_path, 1);
            progress(&format!(
                "building {what}: {} elapsed, compiling {}",
                fmt_elapsed(started.elapsed()),
                last.trim()
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The programs a real node adds beside the control plane.
#[derive(Clone, Debug)]
pub struct NodeBinaries {
    pub kubelet: PathBuf,
    pub kube_scheduler: PathBuf,
    pub kube_proxy: PathBuf,
    /// A static sandbox program (also answers `echo` and `dial`, for tests' tiny images).
    pub pause: PathBuf,
}

impl NodeBinaries {
    /// The node's binaries, built from `tests/controlplane/` on first use (a few minutes when
    /// the control plane is already built, its packages being compiled already).
    pub fn ensure() -> Result<Self> {
        let versions = Versions::pinned()?;
        let dir = cache::get_or_make(&Self::cache_key(&versions), |out| {
            build_node(&versions, out)
        })?;
        Ok(NodeBinaries {
            kubelet: dir.join("kubelet"),
            kube_scheduler: dir.join("kube-scheduler"),
            kube_proxy: dir.join("kube-proxy"),
            pause: dir.join("pause"),
        })
    }

    /// `node/<k8s version>`, beside the control plane's own key.
    pub fn cache_key(versions: &Versions) -> String {
        format!("node/{}", versions.kubernetes.trim_start_matches('v'))
    }
}

fn build_node(versions: &Versions, out: &Path) -> Result<()> {
    which_go()?;
    let src = sources_dir();
    let started = Instant::now();
    progress(&format!(
        "building the local node (kubelet, kube-scheduler, kube-proxy {}) into {}; the first \
         build takes 2-6 minutes on 2 cores, later runs reuse it",
        versions.kubernetes,
        out.display()
    ));
    go_build(
        &src,
        &[
            "-ldflags",
            &k8s_ldflags(versions),
            "-o",
            &dir_arg(out),
            "./kubelet",
            "./kube-scheduler",
            "./kube-proxy",
        ],
        "kubelet, kube-scheduler, kube-proxy",
        out,
    )?;
    // Static, so the sandbox image is this one file.
    go_build_env(
        &src,
        &[
            "-ldflags",
            "-s -w",
            "-o",
            &out.join("pause").to_string_lossy(),
            "./pause",
        ],
        "pause",
        out,
        &[("CGO_ENABLED", "0")],
    )?;
    progress(&format!(
        "node binaries built in {}",
        fmt_elapsed(started.elapsed())
    ));
    Ok(())
}

/// Writes a progress line straight to the terminal: the test harness captures `eprintln!`, and
/// a many-minute build must never look hung.
pub fn progress(line: &str) {
    let _ = writeln!(std::io::stderr(), "[modelsync controlplane] {line}");
}

pub(crate) fn fmt_elapsed(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_come_from_go_mod() {
        let v = Versions::pinned().unwrap();
        assert!(v.kubernetes.starts_with("v1."), "{v:?}");
        assert!(v.etcd.starts_with("v3.5."), "{v:?}");
        assert!(v.cache_key().starts_with("controlplane/1."));
    }
}
