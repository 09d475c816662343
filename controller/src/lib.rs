//! The ModelSync controller: polls each resource's needs-sync lambda and starts a Tekton
//! PipelineRun when it says so, one active run per resource, old runs garbage-collected.
//!
//! A pass is facts, then a plan, then actions: [`reconcile`] gathers the facts (the ModelSync,
//! its runs from [`run_index`], its [`schedule`] entry, the clocks, the lambda's answer),
//! [`plan`] decides with the pure helpers [`template`], [`runs`] and [`status`], and
//! [`actions`] carries the plan out. The wiring around it is [`admin`], [`lease`] and
//! [`watches`] (with [`watch_backoff`] and [`list_strategy`]), each selecting this controller's
//! [`shard`]; the lambda client is `modelsync_api::lambda_client`,
//! one per credentials Secret ([`lambda_clients`], [`credentials`]). [`notify`] tells
//! `spec.notify` receivers about runs and lambda trouble, off the pass.

pub mod actions;
pub mod admin;
pub mod context;
pub mod credentials;
pub mod lambda_clients;
pub mod lease;
pub mod lineage;
pub mod list_strategy;
pub mod metrics;
pub mod notify;
pub mod plan;
pub mod receiver;
pub mod reconcile;
pub mod run_index;
pub mod runs;
pub mod schedule;
pub mod shard;
pub mod status;
pub mod template;
pub mod watch_backoff;
pub mod watches;
pub mod written_status;

mod controller;

pub use controller::{ControllerArgs, EgressArgs, LogFormat, main, run};
