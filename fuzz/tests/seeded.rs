//! A short seeded run of every fuzz target: the same few thousand cases each time, in
//! seconds. The long runs are `cargo xtask fuzz`.

use modelsync_fuzz::runner::{self, Options, Report};
use modelsync_fuzz::table;
use modelsync_fuzz::targets::{answer, config, duration, edit, path, template};

const SEED: u64 = 13;
const CASES: u64 = 3000;

fn clean(report: Report) -> Report {
    assert!(
        report.clean(),
        "{}{}",
        table::summary(std::slice::from_ref(&report)),
        table::details(std::slice::from_ref(&report))
    );
    // A generator that only makes valid inputs, or only broken ones, tests half a parser.
    assert!(
        report.accepted * 20 > report.cases && report.rejected * 20 > report.cases,
        "{} accepted and {} rejected of {}",
        report.accepted,
        report.rejected,
        report.cases
    );
    report
}

fn run<T: modelsync_fuzz::Target>() -> Report {
    clean(runner::run::<T>(&Options::seeded(CASES, SEED), &mut |_| {}))
}

#[test]
fn answer() {
    let r = run::<answer::Answer>();
    assert!(r.kinds.len() >= 5, "{:?}", r.kinds);
}

#[test]
fn duration() {
    run::<duration::Durations>();
}

#[test]
fn template() {
    let r = run::<template::Templates>();
    assert!(r.kinds.len() >= 2, "{:?}", r.kinds);
}

#[test]
fn path() {
    let r = run::<path::Paths>();
    assert!(r.kinds.len() >= 5, "{:?}", r.kinds);
}

#[test]
fn edit() {
    let r = run::<edit::Edits>();
    assert!(r.kinds.len() >= 5, "{:?}", r.kinds);
}

#[test]
fn config() {
    let r = run::<config::Configs>();
    assert!(r.kinds.len() >= 5, "{:?}", r.kinds);
}
