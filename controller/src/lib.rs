//! The ModelSync controller: polls each resource's needs-sync lambda and starts a Tekton
//! PipelineRun when it says so, one active run per resource, old runs garbage-collected.
//!
//! Pure decisions ([`plan`], [`template`], [`runs`], [`status`]) are kept apart from IO
//! ([`reconcile`], [`run_index`], and the lambda client in `modelsync_api::lambda_client`) so
//! both are easy to test.

pub mod actions;
pub mod admin;
pub mod context;
pub mod lease;
pub mod metrics;
pub mod plan;
pub mod reconcile;
pub mod run_index;
pub mod runs;
pub mod schedule;
pub mod status;
pub mod template;
pub mod watches;

mod controller;

pub use controller::{ControllerArgs, LogFormat, main, run};
