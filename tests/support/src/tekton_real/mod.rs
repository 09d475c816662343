//! The real Tekton Pipelines in a cluster with a node: its programs built from the pinned Go
//! module (the same release whose CRDs [`crate::crds`] installs), packed into local images and
//! installed from the module's own `config/`, admission and conversion webhooks included.
//!
//! ```no_run
//! # async fn demo(kubeconfig: &std::path::Path, socket: &std::path::Path) -> anyhow::Result<()> {
//! let tekton = modelsync_testenv::tekton_real::install(kubeconfig, socket).await?;
//! println!("Tekton {} ready in {:?}", tekton.version, tekton.took);
//! # Ok(()) }
//! ```
//!
//! Steps run images by their `command`: Tekton would otherwise ask a registry for the image's
//! entrypoint. [`shell_image`] (busybox) is a small local image for steps and runs `script:`.

mod build;
mod install;
pub mod manifests;

pub use build::{Built, BuiltImage, SHELL, build_cached};
pub use install::{Installed, NAMESPACE, install};

/// The Tekton Pipelines release built and installed.
pub const VERSION: &str = crate::crds::TEKTON_VERSION;

/// The local image of one of Tekton's programs, like `modelsync.local/tekton-controller:v1.6.0`.
pub fn image_name(command: &str) -> String {
    format!("modelsync.local/tekton-{command}:{VERSION}")
}

/// The busybox image Tekton uses to write `script:` steps to files; steps may use it too.
pub fn shell_image() -> String {
    image_name(SHELL)
}
