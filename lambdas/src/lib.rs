//! The lambda server, the git-sync compatible mirror and the built-in needs-sync lambdas.
//!
//! `modelsync lambdas`, `modelsync mirror` and `modelsync lambda-check` are defined here; the
//! `modelsync` binary only wires them in.

pub mod builtins;
pub mod check;
pub mod config;
pub mod engine;
pub mod mirror;
pub mod server;
pub mod sources;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`); JSON when `LOG_FORMAT=json`.
/// Does nothing if the binary already set a subscriber.
pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = if std::env::var("LOG_FORMAT").is_ok_and(|v| v == "json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

pub use check::LambdaCheckArgs;
pub use mirror::MirrorArgs;
pub use server::LambdasArgs;
