//! Targets without their types, so the binary and the tests can list and pick them by name.

use crate::runner::{self, Options, Progress, Report};
use crate::target::Target;

/// Runs one target's cases, reporting progress on the way.
pub type RunFn = fn(&Options, &mut dyn FnMut(&Progress)) -> Report;

/// A target without its types, for lists of targets.
pub struct Entry {
    pub name: &'static str,
    pub about: &'static str,
    pub run: RunFn,
}

impl Entry {
    pub const fn of<T: Target>() -> Self {
        Entry {
            name: T::NAME,
            about: T::ABOUT,
            run: runner::run::<T>,
        }
    }
}
