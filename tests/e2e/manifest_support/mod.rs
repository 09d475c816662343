//! Helpers for the install-manifest tests: find the repository's YAML, render kustomizations
//! with `kubectl kustomize`, and apply objects of any kind (server-side, optionally dry-run).

#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::{Scope, pinned_kind};
use serde_json::Value;

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent")
        .to_path_buf()
}

/// Fails (never skips) with the command that installs `tool` when it is not on PATH.
pub fn require_tool(tool: &str, version_args: &[&str], install: &str) {
    let version_arg = version_args.join(" ");
    match Command::new(tool).args(version_args).output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "`{tool} {version_arg}` failed ({}): {}; this test needs {tool}: {install}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("{tool} is not installed ({e}); this test needs it: {install}"),
    }
}

pub const KUBECTL_INSTALL: &str = "apt-get install -y kubectl (or put kubectl v1.27+ on PATH)";
pub const SHELLCHECK_INSTALL: &str = "apt-get install -y shellcheck";

/// Every `.yaml`/`.yml` file under `dir`, sorted.
pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The documents of a multi-document YAML text, as JSON values (empty documents dropped).
pub fn documents(text: &str) -> Result<Vec<Value>> {
    use serde::Deserialize;
    let mut docs = Vec::new();
    for de in serde_yaml_ng::Deserializer::from_str(text) {
        let value = Value::deserialize(de)?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// `kubectl kustomize DIR`, as documents.
pub fn kustomize(dir: &Path) -> Result<Vec<Value>> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .context("running kubectl kustomize")?;
    if !out.status.success() {
        bail!(
            "kubectl kustomize {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    documents(&String::from_utf8(out.stdout)?)
}

/// A Kubernetes object has apiVersion, kind and metadata.name.
pub fn is_object(doc: &Value) -> bool {
    doc["apiVersion"].is_string() && doc["kind"].is_string() && doc["metadata"]["name"].is_string()
}

pub fn describe(doc: &Value) -> String {
    format!(
        "{} {}{}",
        doc["kind"].as_str().unwrap_or("?"),
        doc["metadata"]["namespace"]
            .as_str()
            .map(|n| format!("{n}/"))
            .unwrap_or_default(),
        doc["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// Server-side applies one object; namespaced objects without a namespace go to
/// `default_ns`, and an object's own namespace is created first.
pub async fn apply(
    client: &kube::Client,
    doc: &Value,
    default_ns: &str,
    dry_run: bool,
) -> Result<DynamicObject> {
    let api_version = doc["apiVersion"].as_str().context("no apiVersion")?;
    let kind = doc["kind"].as_str().context("no kind")?;
    let name = doc["metadata"]["name"]
        .as_str()
        .context("no metadata.name")?;
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (ar, caps) = pinned_kind(client, &gvk)
        .await
        .with_context(|| format!("the API server does not serve {api_version} {kind}"))?;
    let api: Api<DynamicObject> = match caps.scope {
        Scope::Cluster => Api::all_with(client.clone(), &ar),
        Scope::Namespaced => {
            let ns = match doc["metadata"]["namespace"].as_str() {
                Some(ns) => {
                    modelsync_testenv::create_namespace(client, ns).await?;
                    ns
                }
                None => default_ns,
            };
            Api::namespaced_with(client.clone(), ns, &ar)
        }
    };
    let mut pp = PatchParams::apply("modelsync-manifests-test").force();
    if dry_run {
        pp = pp.dry_run();
    }
    api.patch(name, &pp, &Patch::Apply(doc))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}
