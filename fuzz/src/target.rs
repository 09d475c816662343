//! What a fuzz target is: a generator of inputs and a check of one input.

use std::fmt::Debug;

use proptest::strategy::BoxedStrategy;

/// What one input did to the code under test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted, and every property of an accepted input held.
    Accepted,
    /// Refused with an error of this kind, and the error held every property (it names the
    /// field, path or position).
    Rejected(String),
    /// A property did not hold. The text starts with the property's short name and a colon,
    /// so repeats of one bug are told apart from a second bug.
    Broken(String),
}

impl Verdict {
    /// `Broken("name: detail")`.
    pub fn broken(property: &str, detail: impl std::fmt::Display) -> Self {
        Verdict::Broken(format!("{property}: {detail}"))
    }
}

/// One part of modelsync under fuzzing.
pub trait Target {
    /// The name `cargo xtask fuzz NAME` takes.
    const NAME: &'static str;
    /// What is fuzzed, for `--list` and the README.
    const ABOUT: &'static str;
    type Input: Clone + Debug;

    /// Inputs built from the grammar, valid and near-valid, shrinkable.
    fn inputs() -> BoxedStrategy<Self::Input>;

    /// Runs the code under test on `input` and checks what it did. A panic is caught by the
    /// runner.
    fn check(input: &Self::Input) -> Verdict;

    /// The input as written to a failure file: enough to reproduce it by hand.
    fn show(input: &Self::Input) -> String {
        format!("{input:#?}\n")
    }
}
