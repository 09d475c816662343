//! The Argo CD health-check runner: `tests/argocd/`, a Go program that runs `health.lua`
//! scripts under gopher-lua (the Lua interpreter Argo CD embeds) against their
//! `health_test.yaml` cases. Built on first use and cached outside the repository like the
//! control plane, keyed by the gopher-lua version its `go.mod` pins and a hash of its source,
//! so an edited runner is rebuilt and an unchanged one never is.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::binaries::{go_build, required_version};
use crate::cache;

/// The Lua interpreter Argo CD embeds, as its Go module is named.
const GOPHER_LUA: &str = "github.com/yuin/gopher-lua";
const PROGRAM: &str = "argocd-health";

/// `tests/argocd/` in this checkout.
pub fn sources_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../argocd")
}

/// The runner's path, building it first if needed (a few seconds once the modules are
/// downloaded). Run it as `argocd-health RESOURCE_CUSTOMIZATIONS_DIR`.
pub fn runner() -> Result<PathBuf> {
    let dir = cache::get_or_make(&cache_key()?, build)?;
    Ok(dir.join(PROGRAM))
}

/// `argocd-health/gopher-lua-<version>-<12 hex digits of the source hash>`.
pub fn cache_key() -> Result<String> {
    let src = sources_dir();
    let version = required_version(&src.join("go.mod"), GOPHER_LUA)?;
    Ok(format!(
        "{PROGRAM}/gopher-lua-{}-{}",
        version.trim_start_matches('v'),
        &source_hash(&src)?[..12]
    ))
}

/// A hash of `go.mod`, `go.sum` and the `.go` files, by name and content.
pub(crate) fn source_hash(src: &Path) -> Result<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(src)
        .with_context(|| format!("reading {}", src.display()))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    files.retain(|p| {
        let name = p.file_name().unwrap_or_default().to_string_lossy();
        name == "go.mod" || name == "go.sum" || name.ends_with(".go")
    });
    files.sort();
    let mut hash = Sha256::new();
    for file in &files {
        hash.update(file.file_name().unwrap_or_default().as_encoded_bytes());
        hash.update([0]);
        hash.update(std::fs::read(file).with_context(|| format!("reading {}", file.display()))?);
        hash.update([0]);
    }
    Ok(format!("{:x}", hash.finalize()))
}

fn build(out: &Path) -> Result<()> {
    match Command::new("go").arg("version").output() {
        Ok(o) if o.status.success() => {}
        _ => bail!(
            "the Argo CD health checks are tested under gopher-lua, built from the Go module in \
             tests/argocd/, but no working `go` is on PATH: install Go 1.26 or newer and run again"
        ),
    }
    let binary = out.join(PROGRAM);
    go_build(
        &sources_dir(),
        &["-o", &binary.to_string_lossy(), "."],
        PROGRAM,
        out,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_names_the_pinned_gopher_lua() {
        let key = cache_key().unwrap();
        assert!(key.starts_with("argocd-health/gopher-lua-1."), "{key}");
        assert_eq!(key, cache_key().unwrap(), "the key is stable");
    }

    #[test]
    fn the_hash_follows_the_source() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("go.mod"), "module x\n").unwrap();
        std::fs::write(tmp.path().join("main.go"), "package main\n").unwrap();
        std::fs::write(tmp.path().join("README.md"), "not source").unwrap();
        let before = source_hash(tmp.path()).unwrap();
        std::fs::write(tmp.path().join("README.md"), "still not source").unwrap();
        assert_eq!(source_hash(tmp.path()).unwrap(), before);
        std::fs::write(
            tmp.path().join("main.go"),
            "package main\n\nfunc main() {}\n",
        )
        .unwrap();
        assert_ne!(source_hash(tmp.path()).unwrap(), before);
    }
}
