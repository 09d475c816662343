//! Helm, built from its published Go module at a pinned version the way its own release build
//! does it (`go build ./cmd/helm` with the version stamped in), and cached outside the
//! repository like the control plane, keyed by that version.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::binaries::go_build;
use crate::cache;

/// Helm's Go module and the release of it the chart is tested with.
pub const MODULE: &str = "helm.sh/helm/v3";
pub const VERSION: &str = "v3.22.0";

/// `helm/<version>`.
pub fn cache_key() -> String {
    format!("helm/{}", VERSION.trim_start_matches('v'))
}

/// The `helm` binary's path, building it first if needed (a few minutes on 2 cores the first
/// time; progress goes to the terminal).
pub fn helm() -> Result<PathBuf> {
    Ok(cache::get_or_make(&cache_key(), build)?.join("helm"))
}

fn build(out: &Path) -> Result<()> {
    let source = module_dir(out)?;
    let client_go = go_output(
        &source,
        &["list", "-m", "-f", "{{.Version}}", "k8s.io/client-go"],
    )?;
    let ldflags = ldflags(VERSION, client_go.trim())?;
    let binary = out.join("helm");
    go_build(
        &source,
        &[
            "-ldflags",
            &ldflags,
            "-o",
            &binary.to_string_lossy(),
            "./cmd/helm",
        ],
        &format!("helm {VERSION}"),
        out,
    )
}

/// Downloads the module (as `go` is configured to, verified by its checksum database) and
/// returns its source folder in the module cache.
fn module_dir(cwd: &Path) -> Result<PathBuf> {
    #[derive(Deserialize)]
    struct Download {
        #[serde(rename = "Dir")]
        dir: Option<PathBuf>,
        #[serde(rename = "Error")]
        error: Option<String>,
    }
    let json = go_output(
        cwd,
        &["mod", "download", "-json", &format!("{MODULE}@{VERSION}")],
    )?;
    let download: Download = serde_json::from_str(&json)
        .with_context(|| format!("reading `go mod download -json` output: {json}"))?;
    match (download.dir, download.error) {
        (_, Some(e)) => bail!("downloading {MODULE}@{VERSION}: {e}"),
        (Some(dir), None) => Ok(dir),
        (None, None) => bail!("`go mod download` named no folder for {MODULE}@{VERSION}: {json}"),
    }
}

fn go_output(cwd: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("go")
        .args(args)
        .current_dir(cwd)
        .output()
        .context(
            "Helm is built from its Go module, but `go` could not be run: install Go 1.26 or \
             newer and run again",
        )?;
    if !out.status.success() {
        bail!(
            "go {} failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The linker flags Helm's Makefile sets: its version, and the Kubernetes version `helm
/// template` and `helm lint` assume without a cluster, which Helm derives from the client-go it
/// is built with (client-go v0.N is Kubernetes 1.N). Unstamped, Helm assumes Kubernetes 1.20 and
/// a chart's `kubeVersion` constraint fails for no real reason.
fn ldflags(helm_version: &str, client_go: &str) -> Result<String> {
    let mut parts = client_go.trim_start_matches('v').split('.');
    let (Some(major), Some(minor)) = (
        parts.next().and_then(|p| p.parse::<u32>().ok()),
        parts.next().and_then(|p| p.parse::<u32>().ok()),
    ) else {
        bail!("k8s.io/client-go has version {client_go:?}, not vMAJOR.MINOR.PATCH");
    };
    let mut flags = format!("-s -w -X helm.sh/helm/v3/internal/version.version={helm_version}");
    for pkg in ["pkg/lint/rules", "pkg/chartutil"] {
        flags.push_str(&format!(
            " -X helm.sh/helm/v3/{pkg}.k8sVersionMajor={} -X helm.sh/helm/v3/{pkg}.k8sVersionMinor={minor}",
            major + 1
        ));
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_go_minor_is_the_kubernetes_minor() {
        let flags = ldflags("v3.22.0", "v0.37.0").unwrap();
        assert!(
            flags.contains("internal/version.version=v3.22.0"),
            "{flags}"
        );
        assert!(
            flags.contains("pkg/chartutil.k8sVersionMajor=1 ")
                && flags.contains("pkg/chartutil.k8sVersionMinor=37"),
            "{flags}"
        );
        assert!(
            flags.contains("pkg/lint/rules.k8sVersionMinor=37"),
            "{flags}"
        );
    }

    #[test]
    fn a_version_that_is_not_semver_is_refused() {
        let err = ldflags("v3.22.0", "(devel)").unwrap_err().to_string();
        assert!(err.contains("(devel)"), "{err}");
    }

    #[test]
    fn the_key_names_the_pinned_version() {
        assert_eq!(cache_key(), "helm/3.22.0");
    }
}
