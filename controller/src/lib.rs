//! The ModelSync controller: polls each resource's needs-sync lambda and starts a Tekton
//! PipelineRun when it says so, one active run per resource, old runs garbage-collected.
//!
//! Pure decisions ([`plan`], [`template`], [`runs`], [`status`]) are kept apart from IO
//! ([`lambda_client`], [`reconcile`], [`run_index`]) so both are easy to test.

pub mod lambda_client;
pub mod lease;
pub mod metrics;
pub mod plan;
pub mod reconcile;
pub mod run_index;
pub mod runs;
pub mod status;
pub mod template;

mod controller;

pub use controller::{ControllerArgs, LogFormat, main, run};
