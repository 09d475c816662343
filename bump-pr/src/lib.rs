//! `modelsync bump-pr`: pin a new model in a GitOps repository and open or update the one pull
//! request for that pin.
//!
//! Pure parts (what to change, how to edit YAML, what to say) are apart from the IO (git,
//! GitHub), so the editor is tested on files and the IO against real servers.

pub mod args;
pub mod change;
pub mod git;
pub mod github;
pub mod message;
pub mod run;
pub mod scalar;
pub mod secret;
pub mod yaml_doc;
pub mod yaml_edit;

/// `--set` paths are the shared pin grammar.
pub use modelsync_gitops::path;

pub use args::BumpPrArgs;
pub use run::{BumpOutcome, Status, main, run};
