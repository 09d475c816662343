//! Container images built without a daemon or a registry: root filesystem folders written as
//! one-layer OCI image-layout tars and imported into the node's containerd.

pub mod modelsync;
pub mod oci;
pub mod python;
pub mod recipe;
pub mod rootfs;

pub use modelsync::{BuiltImage, ensure_modelsync_image};
pub use oci::{ImageConfig, import, write_oci_tar};
pub use python::ensure_python_image;
