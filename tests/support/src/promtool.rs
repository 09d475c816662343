//! Prometheus's `promtool`, built from the `github.com/prometheus/prometheus` Go module that
//! `tests/promtool/go.mod` pins (as a Go `tool` dependency) and cached outside the repository,
//! keyed by that version and a hash of `go.mod` and `go.sum`. The monitoring tests run
//! `promtool check rules` and `promtool test rules` with it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result, bail};

use crate::argocd::source_hash;
use crate::binaries::{go_build, required_version};
use crate::cache;

const PROMETHEUS: &str = "github.com/prometheus/prometheus";
const PROGRAM: &str = "promtool";

/// `tests/promtool/` in this checkout.
pub fn sources_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../promtool")
}

/// The path of `promtool`, building it first if needed (minutes on 2 cores the first time; a
/// minute when Go's build cache has its packages).
pub fn promtool() -> Result<PathBuf> {
    let dir = cache::get_or_make(&cache_key()?, build)?;
    Ok(dir.join(PROGRAM))
}

/// `promtool/prometheus-<version>-<12 hex digits of the go.mod and go.sum hash>`.
pub fn cache_key() -> Result<String> {
    let src = sources_dir();
    let version = required_version(&src.join("go.mod"), PROMETHEUS)?;
    Ok(format!(
        "{PROGRAM}/prometheus-{}-{}",
        version.trim_start_matches('v'),
        &source_hash(&src)?[..12]
    ))
}

/// Runs `promtool ARGS` and fails with its output unless it exits 0.
pub fn run(args: &[&str]) -> Result<Output> {
    let promtool = promtool()?;
    let output = Command::new(&promtool)
        .args(args)
        .output()
        .with_context(|| format!("starting {}", promtool.display()))?;
    if !output.status.success() {
        bail!(
            "promtool {} failed ({}):\n{}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output)
}

fn build(out: &Path) -> Result<()> {
    match Command::new("go").arg("version").output() {
        Ok(o) if o.status.success() => {}
        _ => bail!(
            "the alert rules are checked with promtool, built from the Go module pinned in \
             tests/promtool/, but no working `go` is on PATH: install Go 1.26 or newer and run \
             again"
        ),
    }
    let binary = out.join(PROGRAM);
    go_build(
        &sources_dir(),
        &[
            // Without the service-discovery plugins (cloud SDKs, client-go), which rule checks
            // never use: they are most of the build.
            "-tags",
            "remove_all_sd",
            "-ldflags",
            "-s -w",
            "-o",
            &binary.to_string_lossy(),
            &format!("{PROMETHEUS}/cmd/promtool"),
        ],
        PROGRAM,
        out,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_names_the_pinned_prometheus() {
        let key = cache_key().unwrap();
        assert!(key.starts_with("promtool/prometheus-0.316.0-"), "{key}");
    }
}
