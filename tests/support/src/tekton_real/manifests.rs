//! Tekton's install manifests, rendered from the module's own `config/` for local images.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::Value;

use super::{build::SHELL, image_name};

/// How the release's manifests name an image still to be built from the module.
const KO_PREFIX: &str = "ko://github.com/tektoncd/pipeline/cmd/";

/// Files of `config/` the install leaves out: the optional events controller, an autoscaler that
/// needs a metrics server, and the remote resolvers (which fetch Tasks from the network).
const LEFT_OUT: &[&str] = &["events.yaml", "webhook-hpa.yaml"];

/// The YAML files installed, namespace first, then in the release's own numeric order.
pub fn install_files(module: &Path) -> Result<Vec<PathBuf>> {
    let config = module.join("config");
    let mut files = Vec::new();
    for dir in [
        config.clone(),
        config.join("100-namespace"),
        config.join("300-crds"),
    ] {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let path = entry?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let yaml = name.ends_with(".yaml") || name.ends_with(".yml");
            if path.is_file() && yaml && !LEFT_OUT.contains(&name.as_ref()) {
                files.push(path);
            }
        }
    }
    // Names start with their order (`100-`, `200-`, `300-`, then letters); the namespace must
    // exist before anything in it.
    files.sort_by_key(|p| p.file_name().map(|n| n.to_owned()));
    if files.is_empty() {
        bail!("no YAML files in {}", config.display());
    }
    Ok(files)
}

/// The programs the installed manifests name as images (`ko://.../cmd/<name>`).
pub fn referenced_commands(module: &Path) -> Result<Vec<String>> {
    let mut found = BTreeSet::new();
    for file in install_files(module)? {
        let text = std::fs::read_to_string(&file)?;
        found.extend(ko_commands(&text));
    }
    if found.is_empty() {
        bail!(
            "no `{KO_PREFIX}...` image in {}/config: this Tekton release is laid out \
             differently than expected",
            module.display()
        );
    }
    Ok(found.into_iter().collect())
}

fn ko_commands(text: &str) -> Vec<String> {
    text.match_indices(KO_PREFIX)
        .map(|(at, _)| {
            text[at + KO_PREFIX.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect::<String>()
        })
        .filter(|c| !c.is_empty())
        .collect()
}

/// Every object to apply, in order, with local images that the node never pulls.
pub fn render(module: &Path) -> Result<Vec<Value>> {
    let mut objects = Vec::new();
    for file in install_files(module)? {
        let text = std::fs::read_to_string(&file)?;
        objects
            .extend(render_text(&text).with_context(|| format!("rendering {}", file.display()))?);
    }
    Ok(objects)
}

fn render_text(text: &str) -> Result<Vec<Value>> {
    let mut text = text.to_owned();
    for command in ko_commands(&text) {
        text = text.replace(&format!("{KO_PREFIX}{command}"), &image_name(&command));
    }
    let mut objects = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let mut object = Value::deserialize(doc)?;
        if object.is_null() {
            continue;
        }
        localize_pod_spec(&mut object);
        objects.push(object);
    }
    Ok(objects)
}

/// Containers keep the local images (never pulled) and script steps get the local shell image
/// instead of the release's, which lives in a registry.
fn localize_pod_spec(object: &mut Value) {
    let Some(spec) = object.pointer_mut("/spec/template/spec") else {
        return;
    };
    for list in ["containers", "initContainers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for container in containers {
            container["imagePullPolicy"] = "IfNotPresent".into();
            if let Some(args) = container.get_mut("args").and_then(Value::as_array_mut) {
                let at = args.iter().position(|a| a == "-shell-image");
                if let Some(value) = at.and_then(|i| args.get_mut(i + 1)) {
                    *value = image_name(SHELL).into();
                }
            }
        }
    }
}

/// `objects` as one multi-document YAML stream for `kubectl apply -f`.
pub fn to_yaml_stream(objects: &[Value]) -> Result<String> {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(object)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crds::tekton_module_dir;

    #[test]
    fn finds_commands_in_args_and_images() {
        let text = r#"image: ko://github.com/tektoncd/pipeline/cmd/controller
args: ["-nop-image", "ko://github.com/tektoncd/pipeline/cmd/nop",]"#;
        assert_eq!(ko_commands(text), ["controller", "nop"]);
    }

    #[test]
    fn renders_the_release_for_local_images() {
        let module = tekton_module_dir().unwrap();
        let commands = referenced_commands(&module).unwrap();
        for needed in [
            "controller",
            "webhook",
            "entrypoint",
            "nop",
            "workingdirinit",
            "sidecarlogresults",
        ] {
            assert!(commands.iter().any(|c| c == needed), "{commands:?}");
        }
        let files = install_files(&module).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names[0], "100-namespace.yaml", "{names:?}");
        assert!(
            !names
                .iter()
                .any(|n| n == "events.yaml" || n == "webhook-hpa.yaml")
        );
        assert!(
            !files
                .iter()
                .any(|f| f.to_string_lossy().contains("resolvers"))
        );

        let objects = render(&module).unwrap();
        let stream = to_yaml_stream(&objects).unwrap();
        assert!(!stream.contains("ko://"), "an image was left unbuilt");
        let kinds: BTreeSet<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
        for kind in [
            "Namespace",
            "CustomResourceDefinition",
            "Deployment",
            "Service",
            "ConfigMap",
            "ClusterRole",
            "ValidatingWebhookConfiguration",
            "MutatingWebhookConfiguration",
        ] {
            assert!(kinds.contains(kind), "no {kind} in {kinds:?}");
        }
        let task_crd = objects
            .iter()
            .find(|o| o["metadata"]["name"] == "tasks.tekton.dev")
            .unwrap();
        assert_eq!(task_crd["spec"]["conversion"]["strategy"], "Webhook");
        let controller = objects
            .iter()
            .find(|o| {
                o["kind"] == "Deployment" && o["metadata"]["name"] == "tekton-pipelines-controller"
            })
            .unwrap();
        let container = &controller["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["image"], image_name("controller"));
        assert_eq!(container["imagePullPolicy"], "IfNotPresent");
        let args: Vec<&str> = container["args"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let after = |flag: &str| args[args.iter().position(|a| *a == flag).unwrap() + 1];
        assert_eq!(after("-entrypoint-image"), image_name("entrypoint"));
        assert_eq!(after("-shell-image"), image_name(SHELL));
    }
}
