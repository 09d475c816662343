//! The real `kubectl`, as a user would type it, against one of our clusters.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Runs `kubectl --kubeconfig KUBECONFIG args...` and returns its standard output; a failure
/// carries kubectl's own error text.
pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .context("running kubectl: install kubectl and put it on PATH")?;
    if !out.status.success() {
        bail!(
            "kubectl {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A path to `to` relative to the folder `from` (both absolute): kustomize refuses absolute
/// paths in `resources`, and a generated kustomization may live outside the repository.
pub fn relative_path(from: &Path, to: &Path) -> String {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".to_owned(); from.len() - common];
    parts.extend(
        to[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_climb_then_descend() {
        assert_eq!(
            relative_path(
                Path::new("/tmp/x/install"),
                Path::new("/src/modelsync/kustomize")
            ),
            "../../../src/modelsync/kustomize"
        );
        assert_eq!(
            relative_path(
                Path::new("/src/modelsync/target/a"),
                Path::new("/src/modelsync/kustomize")
            ),
            "../../kustomize"
        );
    }
}
