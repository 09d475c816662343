//! The ownership tree `kubectl tree modelsync NAME` draws: every object below the ModelSync is
//! found by the `ownerReferences` uid of its parent, not by labels, because that is the link
//! `kubectl tree` (and the garbage collector) follow.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::{Client, Resource, ResourceExt};
use modelsync_api::ModelSync;

/// One object in the tree: its kind/name and the objects that name it as their owner.
pub struct Node {
    pub kind: &'static str,
    pub name: String,
    pub children: Vec<Node>,
}

impl Node {
    /// The tree as `kubectl tree` prints it, one object a line, children indented.
    pub fn draw(&self) -> String {
        let mut out = String::new();
        self.draw_into(&mut out, 0);
        out
    }

    fn draw_into(&self, out: &mut String, depth: usize) {
        let branch = if depth == 0 { "" } else { "└─" };
        out.push_str(&format!(
            "{}{branch}{}/{}\n",
            "  ".repeat(depth.saturating_sub(1)),
            self.kind,
            self.name
        ));
        for child in &self.children {
            child.draw_into(out, depth + 1);
        }
    }

    /// The longest chain of kinds from this node down, e.g. ModelSync → PipelineRun → TaskRun → Pod.
    pub fn deepest_kinds(&self) -> Vec<&'static str> {
        let below = self
            .children
            .iter()
            .map(Node::deepest_kinds)
            .max_by_key(Vec::len)
            .unwrap_or_default();
        std::iter::once(self.kind).chain(below).collect()
    }
}

fn tekton(client: &Client, ns: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("tekton.dev", "v1", kind);
    Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

/// Whether `child` names the object with `uid` among its owners.
fn owned_by<K: Resource>(child: &K, uid: &str) -> bool {
    child
        .owner_references()
        .iter()
        .any(|owner| owner.uid == uid)
}

/// Builds the tree below ModelSync `name` in `ns` from every PipelineRun, TaskRun and Pod in
/// the namespace, linking each to its owner by uid.
pub async fn owner_tree(client: &Client, ns: &str, name: &str) -> kube::Result<Node> {
    let modelsync = Api::<ModelSync>::namespaced(client.clone(), ns)
        .get(name)
        .await?;
    let all = ListParams::default();
    let runs = tekton(client, ns, "PipelineRun", "pipelineruns")
        .list(&all)
        .await?;
    let taskruns = tekton(client, ns, "TaskRun", "taskruns").list(&all).await?;
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&all)
        .await?;
    let children_of = |uid: &str| -> Vec<Node> {
        runs.items
            .iter()
            .filter(|run| owned_by(*run, uid))
            .map(|run| Node {
                kind: "PipelineRun",
                name: run.name_any(),
                children: taskruns
                    .items
                    .iter()
                    .filter(|tr| owned_by(*tr, &run.uid().unwrap_or_default()))
                    .map(|tr| Node {
                        kind: "TaskRun",
                        name: tr.name_any(),
                        children: pods
                            .items
                            .iter()
                            .filter(|pod| owned_by(*pod, &tr.uid().unwrap_or_default()))
                            .map(|pod| Node {
                                kind: "Pod",
                                name: pod.name_any(),
                                children: vec![],
                            })
                            .collect(),
                    })
                    .collect(),
            })
            .collect()
    };
    Ok(Node {
        kind: "ModelSync",
        name: name.to_owned(),
        children: children_of(&modelsync.uid().unwrap_or_default()),
    })
}
