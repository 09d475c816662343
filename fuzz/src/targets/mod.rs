//! The fuzz targets, one module each, and the list `cargo xtask fuzz` runs.

pub mod answer;
pub mod config;
pub mod duration;
pub mod edit;
pub mod json;
pub mod path;
pub mod tekton;
pub mod template;

use crate::entry::Entry;

/// Every target, in the order runs go through them.
pub const TARGETS: &[Entry] = &[
    Entry::of::<answer::Answer>(),
    Entry::of::<duration::Durations>(),
    Entry::of::<template::Templates>(),
    Entry::of::<path::Paths>(),
    Entry::of::<edit::Edits>(),
    Entry::of::<config::Configs>(),
];

/// The target called `name`.
pub fn find(name: &str) -> Option<&'static Entry> {
    TARGETS.iter().find(|t| t.name == name)
}
