//! The `modelsync` image, made without a daemon from the `Dockerfile`'s runtime stage: a slim
//! Debian root filesystem with the recipe's packages, its user accounts (made by running the
//! recipe's own `groupadd`/`useradd` inside it), the release binary, and the recipe's USER,
//! ENV, ENTRYPOINT and CMD.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use super::oci::{ImageConfig, write_oci_tar};
use super::recipe::{Recipe, hex};
use super::rootfs::{self, Chroot, RootfsSpec, progress};
use crate::binaries::fmt_elapsed;
use crate::cache;

/// The image's name without its tag; the tag is the `modelsync` crate's version, like the
/// kustomize base's `modelsync:<version>`.
pub const IMAGE_REPOSITORY: &str = "modelsync.local/modelsync";

/// An image written to the cache: its tar and the root filesystem it was made from.
#[derive(Clone, Debug)]
pub struct BuiltImage {
    /// Like `modelsync.local/modelsync:0.1.0`.
    pub name: String,
    /// The OCI image-layout tar, ready for `image::import`.
    pub tar: PathBuf,
    /// The image's root filesystem as a folder (for [`Chroot`]); do not change it.
    pub rootfs: PathBuf,
    pub config: ImageConfig,
}

/// The modelsync image's tar, building whatever is missing (the release binary, the root
/// filesystem, the image). Used by the tests and `cargo xtask image`.
pub fn ensure_modelsync_image() -> Result<PathBuf> {
    Ok(modelsync_image()?.tar)
}

/// Like [`ensure_modelsync_image`], with everything known about the image.
pub fn modelsync_image() -> Result<BuiltImage> {
    let recipe = Recipe::load()?;
    let base = rootfs::ensure(&rootfs_spec(&recipe))?;
    let built = release_binary(&recipe)?;
    let mut hasher = Sha256::new();
    hasher.update(
        fs::read(&built.path)
            .with_context(|| format!("reading the release binary {}", built.path.display()))?,
    );
    hasher.update(recipe.digest());
    hasher.update(base.to_string_lossy().as_bytes());
    let digest = hex(&hasher.finalize());
    let config = image_config(&recipe, &built.version);
    let key = format!("images/modelsync-{}-{}", built.version, &digest[..16]);
    let entry = cache::get_or_make(&key, |out| {
        assemble(&recipe, &base, &built.path, &config, out)
    })?;
    prune_older(&key, "modelsync-");
    Ok(BuiltImage {
        name: config.name.clone(),
        tar: entry.join("image.tar"),
        rootfs: entry.join("rootfs"),
        config,
    })
}

/// The root filesystem the recipe's `FROM` and `apt-get install` make.
pub fn rootfs_spec(recipe: &Recipe) -> RootfsSpec {
    RootfsSpec {
        name: "modelsync".to_owned(),
        suite: recipe.suite.clone(),
        packages: recipe.packages.clone(),
    }
}

/// The image configuration the recipe's USER, ENV, ENTRYPOINT, CMD and WORKDIR give.
pub fn image_config(recipe: &Recipe, version: &str) -> ImageConfig {
    ImageConfig {
        name: format!("{IMAGE_REPOSITORY}:{version}"),
        entrypoint: recipe.entrypoint.clone(),
        cmd: recipe.cmd.clone(),
        env: recipe.image_env(),
        user: recipe.user.clone(),
        working_dir: recipe.working_dir.clone(),
    }
}

fn assemble(
    recipe: &Recipe,
    base: &Path,
    binary: &Path,
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
    for account in &recipe.accounts {
        let argv: Vec<&str> = account.iter().map(String::as_str).collect();
        Chroot {
            scratch: false,
            ..Chroot::new(&rootfs)
        }
        .run(&argv)
        .context("creating the recipe's user accounts")?;
    }
    let target = rootfs.join(recipe.binary_path.trim_start_matches('/'));
    if let Some(dir) = target.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::copy(binary, &target)
        .with_context(|| format!("copying {} to {}", binary.display(), target.display()))?;
    // The Dockerfile installs the binary with `install -m 0755`.
    fs::set_permissions(&target, fs::Permissions::from_mode(0o755))?;
    write_oci_tar(&rootfs, config, &out.join("image.tar"))?;
    progress(&format!(
        "image {} written in {} ({})",
        config.name,
        fmt_elapsed(started.elapsed()),
        human_size(fs::metadata(out.join("image.tar"))?.len())
    ));
    Ok(())
}

/// `cp -a`: keeps owners, modes, links and times, which a plain copy in Rust would not.
pub(crate) fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let status = Command::new("cp")
        .arg("-a")
        .arg("--reflink=auto")
        .arg(from)
        .arg(to)
        .status()
        .context("running cp")?;
    if !status.success() {
        bail!(
            "copying {} to {} failed ({status}); is the disk full?",
            from.display(),
            to.display()
        );
    }
    Ok(())
}

/// The release binary and the version of the crate it belongs to.
pub struct ReleaseBinary {
    pub path: PathBuf,
    pub version: String,
}

/// Builds the binary the way the Dockerfile's build stage does (its `cargo build` arguments),
/// into the workspace's target folder. Cargo locks each profile's folder separately, so this
/// release build does not wait for the debug `cargo test` that may be running it.
pub fn release_binary(recipe: &Recipe) -> Result<ReleaseBinary> {
    let package = recipe
        .cargo_build_args
        .windows(2)
        .find(|w| w[0] == "-p" || w[0] == "--package")
        .map(|w| w[1].clone())
        .context("the Dockerfile's `cargo build` names no package (-p)")?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let metadata = Command::new(&cargo)
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(&workspace)
        .output()
        .context("running cargo metadata")?;
    if !metadata.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&metadata.stderr)
        );
    }
    let metadata: serde_json::Value = serde_json::from_slice(&metadata.stdout)?;
    let target_dir = metadata["target_directory"]
        .as_str()
        .context("cargo metadata gave no target_directory")?;
    let pkg = metadata["packages"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == package.as_str()))
        .with_context(|| format!("the workspace has no package {package}"))?;
    let version = pkg["version"].as_str().unwrap_or("0.0.0").to_owned();
    let bin = pkg["targets"]
        .as_array()
        .and_then(|t| {
            t.iter().find(|t| {
                t["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "bin"))
            })
        })
        .and_then(|t| t["name"].as_str())
        .with_context(|| format!("package {package} has no binary"))?
        .to_owned();
    progress(&format!(
        "building the release binary: cargo build {} (a few minutes the first time)",
        recipe.cargo_build_args.join(" ")
    ));
    let log = Path::new(target_dir).join("modelsync-image-build.log");
    // Through `nice`, with the variables of the program that runs this removed: a build that
    // saw another CARGO_PKG_NAME would rebuild ring's and aws-lc's build scripts, and so would
    // the next plain `cargo build` after it.
    let mut cmd = Command::new("nice");
    crate::cargo::without_own_vars(&mut cmd)
        .args(["-n", "10"])
        .arg(&cargo)
        .arg("build")
        .args(&recipe.cargo_build_args)
        .env("CARGO_TERM_PROGRESS_WHEN", "never")
        .env("CARGO_TERM_COLOR", "never")
        .current_dir(&workspace);
    rootfs::run_logged(cmd, &log, "cargo build --release")?;
    let path = Path::new(target_dir).join("release").join(&bin);
    if !path.is_file() {
        bail!(
            "cargo build succeeded but {} is missing; is CARGO_BUILD_TARGET set? unset it",
            path.display()
        );
    }
    Ok(ReleaseBinary { path, version })
}

/// Removes other cached images of the same kind, which differ only by an older binary or
/// recipe: each holds a root filesystem and a tar of 100 MB or more.
pub(crate) fn prune_older(current_key: &str, kind: &str) {
    let (Ok(root), Some((dir, name))) = (cache::root(), current_key.rsplit_once('/')) else {
        return;
    };
    let Ok(entries) = fs::read_dir(root.join(dir)) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let finished = !file.ends_with(".lock") && !file.ends_with(".partial");
        if finished && file.starts_with(kind) && file != name && entry.path().is_dir() {
            let _ = fs::remove_dir_all(entry.path());
            let _ = fs::remove_file(root.join(dir).join(format!("{file}.lock")));
        }
    }
}

pub(crate) fn human_size(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}
