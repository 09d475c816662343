//! Property-based fuzzing of the parts of modelsync that read what people and programs write:
//! lambda answers, durations, PipelineRun templates, the pin grammar, the YAML pin editor and
//! `lambdas.yaml`.
//!
//! Each [`Target`] builds inputs from the grammar of what it reads (so most get past the first
//! check), then mutates some of them into near-valid ones, and checks more than "no panic":
//! every error names the field, path or position that was wrong; accepted inputs mean what
//! was written; printers and parsers round-trip; the editor changes only the pinned value.
//!
//! `cargo test -p modelsync-fuzz` runs a short seeded run of every target;
//! `cargo xtask fuzz` runs the long ones (a million cases each) in release mode.

pub mod entry;
pub mod mutate;
pub mod runner;
pub mod table;
pub mod target;
pub mod targets;
pub mod yaml;

pub use entry::Entry;
pub use runner::{Options, Report};
pub use target::{Target, Verdict};
pub use targets::TARGETS;
