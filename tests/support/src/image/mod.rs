//! Container images built without a daemon or a registry: root filesystem folders written as
//! one-layer OCI image-layout tars and imported into the node's containerd.

pub mod oci;

pub use oci::{ImageConfig, import, write_oci_tar};
