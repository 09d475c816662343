//! `cargo xtask bench [name...]`: builds `modelsync` and `modelsync-bench` in release mode and
//! runs the benchmarks (see BENCHMARKS.md).

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::release;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Arguments for modelsync-bench: benchmark names (decision, scale, memory, lambdas,
    /// mirror, push, writes, scale-100k, scale-100k-shards; default all but writes, which
    /// decision includes, and the two 100k ones) and options such as `--runs 3`,
    /// `--scale-sizes 1000` or `--initial-list paged`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

pub fn run(args: BenchArgs) -> Result<()> {
    let root = release::workspace();
    let target = release::build(&["modelsync", "modelsync-bench"])?;
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
