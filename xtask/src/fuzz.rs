//! `cargo xtask fuzz [TARGET...] [--cases N]`: builds `modelsync-fuzz` in release mode and runs
//! the long fuzz runs (a million cases per target unless told otherwise).

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::release;

#[derive(clap::Args)]
pub struct FuzzArgs {
    /// Arguments for modelsync-fuzz: target names (answer, duration, template, path, edit,
    /// config; default all) and options such as `--cases 10000`, `--seed S`, `--list`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

pub fn run(args: FuzzArgs) -> Result<()> {
    let root = release::workspace();
    let target = release::build(&["modelsync-fuzz"])?;
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
