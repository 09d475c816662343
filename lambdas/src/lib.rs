//! The lambda server, the git-sync compatible mirror and the built-in needs-sync lambdas.
//!
//! `modelsync lambdas`, `modelsync mirror` and `modelsync lambda-check` are defined here; the
//! `modelsync` binary only wires them in.

pub mod builtins;
pub mod check;
pub mod config;
pub mod engine;
pub mod git_hook;
mod logging;
pub mod mirror;
pub mod notify;
pub mod server;
pub mod sources;

pub use check::LambdaCheckArgs;
pub use mirror::MirrorArgs;
pub use server::LambdasArgs;
