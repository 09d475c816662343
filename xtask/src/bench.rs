//! `cargo xtask bench [name...]`: builds `modelsync` and `modelsync-bench` in release mode and
//! runs the benchmarks (see BENCHMARKS.md).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Arguments for modelsync-bench: benchmark names (decision, scale, memory, lambdas,
    /// mirror; default all) and options such as `--runs 3`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

fn workspace() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

pub fn run(args: BenchArgs) -> Result<()> {
    let root = workspace();
    eprintln!("building modelsync and modelsync-bench (release)...");
    let status = modelsync_testenv::cargo::command()
        .args([
            "build",
            "--release",
            "-p",
            "modelsync",
            "-p",
            "modelsync-bench",
        ])
        .current_dir(&root)
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --release failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let status = Command::new(target.join("release/modelsync-bench"))
        .arg("--modelsync")
        .arg(target.join("release/modelsync"))
        .arg("--out")
        .arg(target.join("bench"))
        .args(&args.args)
        .current_dir(&root)
        .status()
        .context("running modelsync-bench")?;
    if !status.success() {
        bail!("a benchmark failed");
    }
    Ok(())
}
