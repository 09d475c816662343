//! What the built-in lambdas and `bump-pr` must agree on about a GitOps repository: where a
//! model pin sits in a YAML file, and how to talk to the git remote holding it.
//!
//! The grammar and lookups are documented for users in this crate's README; the lambdas read a
//! pin with them and bump-pr writes one, so a path means the same thing to both.
//!
//! - [`path`]: the YAML path grammar (`spec.containers[name=main].image`).
//! - [`tree`]: following a path through any parsed YAML tree ([`Tree`]), with why it stops.
//! - [`value`]: [`Tree`] for `serde_yaml_ng::Value`.
//! - [`kpt`], [`kustomize`]: kpt setters and kustomize `images:` entries, as paths.
//! - [`remote`]: remote URLs (local or not, credentials in them); [`credentials`]: answering a
//!   remote's request for credentials; [`repo_path`]: paths inside a repository.

pub mod credentials;
pub mod kpt;
pub mod kustomize;
pub mod path;
pub mod remote;
pub mod repo_path;
pub mod tree;
pub mod value;

pub use path::{PathError, Segment, YamlPath};
pub use repo_path::{RepoPathError, repo_path};
pub use tree::{Missing, Tree, View, lookup};
