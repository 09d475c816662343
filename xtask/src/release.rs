//! Release builds of the workspace's own programs, for the commands that run them (bench, fuzz).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The workspace root, where commands run.
pub fn workspace() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

/// Builds `packages` in release mode and returns the target folder (honouring
/// `CARGO_TARGET_DIR`), under which `release/<binary>` now exists.
pub fn build(packages: &[&str]) -> Result<PathBuf> {
    let root = workspace();
    eprintln!("building {} (release)...", packages.join(" and "));
    let mut command = modelsync_testenv::cargo::command();
    command.args(["build", "--release"]);
    for package in packages {
        command.args(["-p", package]);
    }
    let status = command
        .current_dir(&root)
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --release -p {} failed", packages.join(" -p "));
    }
    Ok(std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target")))
}
