//! `cargo xtask fuzz [TARGET...] [--cases N]`: builds `modelsync-fuzz` in release mode and runs
//! the long fuzz runs (a million cases per target unless told otherwise).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

#[derive(clap::Args)]
pub struct FuzzArgs {
    /// Arguments for modelsync-fuzz: target names (answer, duration, template, path, edit,
    /// config; default all) and options such as `--cases 10000`, `--seed S`, `--list`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

fn workspace() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

pub fn run(args: FuzzArgs) -> Result<()> {
    let root = workspace();
    eprintln!("building modelsync-fuzz (release)...");
    let status = modelsync_testenv::cargo::command()
        .args(["build", "--release", "-p", "modelsync-fuzz"])
        .current_dir(&root)
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --release -p modelsync-fuzz failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let status = Command::new(target.join("release/modelsync-fuzz"))
        .arg("--out")
        .arg(target.join("fuzz"))
        .args(&args.args)
        .current_dir(&root)
        .status()
        .context("running modelsync-fuzz")?;
    if !status.success() {
        bail!("a fuzz target panicked or broke a property; the minimised inputs are listed above");
    }
    Ok(())
}
