//! The training image for the `train-notebook` Task (its `python-image` param): Debian's
//! python3 with venv, git, bash and CA certificates, and papermill, nbconvert and ipykernel
//! (plus the example notebook's requirements) preinstalled, so no pod downloads at run time.
//!
//! The Task makes its venv with `--system-site-packages` and installs the tools only when they
//! do not import, so with this image it installs nothing. `PIP_NO_INDEX=1` in the image turns
//! any requirement that is still missing into an immediate error instead of a download.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use super::modelsync::{BuiltImage, copy_tree, human_size, prune_older};
use super::oci::{ImageConfig, write_oci_tar};
use super::recipe::{DEBIAN_PATH, hex};
use super::rootfs::{self, Chroot, RootfsSpec, progress};
use crate::binaries::fmt_elapsed;
use crate::cache;

/// The image's name; pods of the real-node tier pass it as the Task's `python-image`.
pub const PYTHON_IMAGE: &str = "modelsync.local/python-notebook:bookworm";

/// Debian packages: what the Task's steps call (bash, git, python3 with venv) and https.
pub const DEBIAN_PACKAGES: &[&str] = &["bash", "ca-certificates", "git", "python3", "python3-venv"];

/// What the Task's train step installs, pinned so the cache key names what the image holds.
pub const PYTHON_PACKAGES: &[&str] = &["papermill==2.7.0", "nbconvert==7.17.2", "ipykernel==7.4.0"];

/// The python image's tar, building it first if needed.
pub fn ensure_python_image() -> Result<PathBuf> {
    Ok(python_image()?.tar)
}

/// The example notebook's requirements file, whose packages are preinstalled too.
pub fn example_requirements() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/gitops-repo/notebooks/requirements.txt")
}

/// Every PyPI requirement the image holds: [`PYTHON_PACKAGES`] and the example's requirements.
pub fn requirements() -> Result<Vec<String>> {
    let path = example_requirements();
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut all: Vec<String> = PYTHON_PACKAGES.iter().map(|p| (*p).to_owned()).collect();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.starts_with('-') {
            bail!(
                "{}: pip options like `{line}` are not supported by the image builder; list \
                 plain requirements",
                path.display()
            );
        }
        if !line.is_empty() && !all.iter().any(|p| p == line) {
            all.push(line.to_owned());
        }
    }
    Ok(all)
}

/// Like [`ensure_python_image`], with everything known about the image.
pub fn python_image() -> Result<BuiltImage> {
    let spec = RootfsSpec {
        name: "python-notebook".to_owned(),
        suite: "bookworm".to_owned(),
        packages: DEBIAN_PACKAGES.iter().map(|p| (*p).to_owned()).collect(),
    };
    let base = rootfs::ensure(&spec)?;
    let python = python_version(&base)?;
    let requirements = requirements()?;
    let config = ImageConfig {
        name: PYTHON_IMAGE.to_owned(),
        entrypoint: Vec::new(),
        cmd: vec!["python3".to_owned()],
        env: vec![
            DEBIAN_PATH.to_owned(),
            "PIP_NO_INDEX=1".to_owned(),
            "PIP_DISABLE_PIP_VERSION_CHECK=1".to_owned(),
        ],
        user: None,
        working_dir: None,
    };
    let mut hasher = Sha256::new();
    hasher.update(format!("{requirements:?}\n{config:?}\n{}", base.display()));
    let key = format!("images/python-notebook-{}", &hex(&hasher.finalize())[..16]);
    let entry = cache::get_or_make(&key, |out| {
        assemble(&base, &python, &requirements, &config, out)
    })?;
    prune_older(&key, "python-notebook-");
    Ok(BuiltImage {
        name: config.name.clone(),
        tar: entry.join("image.tar"),
        rootfs: entry.join("rootfs"),
        config,
    })
}

/// Where pip puts packages for Debian's system python: `/usr/local/lib/python3.X/dist-packages`.
fn site_packages(python: &str) -> String {
    format!("/usr/local/lib/python{python}/dist-packages")
}

/// `3.11` from the root filesystem's `/usr/bin/python3` link.
fn python_version(rootfs: &Path) -> Result<String> {
    let link = rootfs.join("usr/bin/python3");
    let target = fs::read_link(&link)
        .with_context(|| format!("{} is not a link to python3.X", link.display()))?;
    target
        .to_string_lossy()
        .strip_prefix("python")
        .map(str::to_owned)
        .with_context(|| format!("{} points at {}", link.display(), target.display()))
}

fn assemble(
    base: &Path,
    python: &str,
    requirements: &[String],
    config: &ImageConfig,
    out: &Path,
) -> Result<()> {
    let started = Instant::now();
    progress(&format!(
        "assembling image {} in {}",
        config.name,
        out.display()
    ));
    let rootfs = out.join("rootfs");
    copy_tree(base, &rootfs)?;
    let wheels = out.join("wheels");
    download_wheels(python, requirements, &wheels)?;
    // Installed by the root filesystem's own python with pip run from Debian's bundled pip
    // wheel (python3-venv brings it), offline: the host only downloaded.
    let pip = find_pip_wheel(&rootfs)?;
    let mut argv = vec![
        "python3",
        pip.as_str(),
        "install",
        "--no-index",
        "--find-links",
        "/tmp/wheels",
        "--break-system-packages",
        "--no-cache-dir",
        "--root-user-action=ignore",
        "--disable-pip-version-check",
    ];
    argv.extend(requirements.iter().map(String::as_str));
    let chroot = Chroot {
        scratch: false,
        no_network: true,
        binds: vec![(wheels.clone(), "/tmp/wheels".to_owned())],
        env: vec![DEBIAN_PATH.to_owned(), "HOME=/root".to_owned()],
        ..Chroot::new(&rootfs)
    };
    progress(&format!(
        "installing {} into the image with pip (offline)",
        requirements.join(", ")
    ));
    chroot
        .run(&argv)
        .context("installing the notebook tools into the image")?;
    let freeze = chroot.run(&["python3", &pip, "freeze", "--path", &site_packages(python)])?;
    fs::write(out.join("packages.txt"), &freeze.stdout)?;
    fs::remove_dir(rootfs.join("tmp/wheels"))
        .context("removing the wheel mount point from the image")?;
    fs::remove_dir_all(&wheels)?;
    write_oci_tar(&rootfs, config, &out.join("image.tar"))?;
    progress(&format!(
        "image {} written in {} ({})",
        config.name,
        fmt_elapsed(started.elapsed()),
        human_size(fs::metadata(out.join("image.tar"))?.len())
    ));
    Ok(())
}

fn find_pip_wheel(rootfs: &Path) -> Result<String> {
    let dir = rootfs.join("usr/share/python-wheels");
    let found = fs::read_dir(&dir)
        .with_context(|| format!("reading {} (python3-venv brings it)", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("pip-") && n.ends_with(".whl"))
        .with_context(|| format!("no pip wheel in {}", dir.display()))?;
    Ok(format!("/usr/share/python-wheels/{found}/pip"))
}

/// Downloads wheels for the image's python with this machine's pip and its own settings
/// (index, certificates, proxy); only wheels, so nothing is compiled in the image.
fn download_wheels(python: &str, requirements: &[String], dest: &Path) -> Result<()> {
    let arch = std::env::consts::ARCH;
    let mut cmd = Command::new("nice");
    cmd.args(["-n", "10", "python3", "-m", "pip", "download", "--quiet"])
        .args(["--disable-pip-version-check", "--only-binary=:all:"])
        .args(["--python-version", python])
        .arg("--dest")
        .arg(dest);
    // pip takes platform tags literally, so every manylinux level the image's glibc (2.36 in
    // bookworm) runs is listed.
    for minor in (17..=36).rev() {
        cmd.arg("--platform")
            .arg(format!("manylinux_2_{minor}_{arch}"));
    }
    for legacy in ["manylinux2014", "manylinux2010", "manylinux1", "linux"] {
        cmd.arg("--platform").arg(format!("{legacy}_{arch}"));
    }
    cmd.args(requirements);
    fs::create_dir_all(dest)?;
    progress(&format!(
        "downloading wheels for python {python}: {}",
        requirements.join(", ")
    ));
    let log = dest.with_extension("log");
    match rootfs::run_logged(cmd, &log, "pip download") {
        Ok(()) => Ok(()),
        Err(e) if !pip_available() => Err(e.context(
            "this machine's python3 has no pip, which downloads the image's wheels: run \
             `apt-get install -y python3-pip` (or use a python with pip)",
        )),
        Err(e) => Err(e.context("downloading the notebook tools from the package index failed")),
    }
}

fn pip_available() -> bool {
    Command::new("python3")
        .args(["-m", "pip", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}
