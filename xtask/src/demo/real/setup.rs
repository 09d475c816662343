//! The real story's first acts: the images, a node beside the control plane, the real Tekton
//! Pipelines, and the Label Bot example installed on them.

use anyhow::Result;
use kube::api::{Api, Patch, PatchParams};
use modelsync_api::ModelSync;
use modelsync_testenv::image::BuiltImage;
use modelsync_testenv::image::{modelsync as ms_image, python};
use modelsync_testenv::labelbot::{DEPLOYER, Images, LabelBot, NAMESPACE, TRAINER};
use modelsync_testenv::node::Node;
use modelsync_testenv::tekton_real;
use serde_json::json;

use crate::demo::narrate::Narrator;

/// The modelsync image and the notebook image, built without a container engine (or found in
/// the cache).
pub async fn build_images(say: Narrator) -> Result<(BuiltImage, BuiltImage)> {
    say.say(
        "build",
        "images without a container engine: modelsync (release binary, Dockerfile recipe) and the\nnotebook image (the first run builds them; later runs reuse them)",
    );
    tokio::task::spawn_blocking(|| -> Result<_> {
        Ok((ms_image::modelsync_image()?, python::python_image()?))
    })
    .await?
}

/// The control plane and a node, with `images` imported into the node.
pub async fn start_node(say: Narrator, images: [&BuiltImage; 2]) -> Result<Node> {
    say.say(
        "cluster",
        "starting the control plane and a node: containerd, kubelet, kube-scheduler, kube-proxy",
    );
    let node = Node::start().await?;
    say.say(
        "cluster",
        format!(
            "node Ready in {:.1}s; kubeconfig: {}",
            node.started_in().as_secs_f64(),
            node.kubeconfig().display()
        ),
    );
    for image in images {
        node.import_image(&image.tar)?;
    }
    say.say(
        "cluster",
        format!(
            "imported {} and {} into the node",
            images[0].name, images[1].name
        ),
    );
    Ok(node)
}

/// Tekton Pipelines' controller and webhook, running on the node.
pub async fn install_tekton(say: Narrator, node: &Node) -> Result<()> {
    let tekton = tekton_real::install(node.kubeconfig(), node.containerd_socket()).await?;
    say.say(
        "tekton",
        format!(
            "Tekton Pipelines {} running in namespace {} ({:.1}s after apply): controller and webhook pods",
            tekton.version,
            tekton.namespace,
            tekton.ready_after_apply.as_secs_f64()
        ),
    );
    Ok(())
}

/// The Label Bot example (its repository, modelsync installed, `tekton/`, the trainer and the
/// deployer), keeping one finished run of each so the story shows the controller collecting one.
pub async fn label_bot(
    say: Narrator,
    client: &kube::Client,
    node: &Node,
    modelsync: &BuiltImage,
    python: &BuiltImage,
) -> Result<LabelBot> {
    let images = Images {
        modelsync: modelsync.name.clone(),
        python: python.name.clone(),
    };
    let lb = LabelBot::start(
        client,
        node.kubeconfig(),
        node.bridge_ip().into(),
        &images,
        &|line| say.say("setup", line),
    )
    .await?;
    let modelsyncs: Api<ModelSync> = Api::namespaced(client.clone(), NAMESPACE);
    for name in [TRAINER, DEPLOYER] {
        modelsyncs
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"successfulPipelineRunsHistoryLimit": 1}})),
            )
            .await?;
    }
    Ok(lb)
}
