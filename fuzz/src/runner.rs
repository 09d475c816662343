//! Driving one target: generating cases, catching panics, shrinking and saving what fails.
//!
//! Every case has its own random stream, seeded from the run's seed and the case number, so
//! one case is replayed alone (`--seed S --case N`) without generating those before it.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Once;
use std::time::{Duration, Instant};

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use crate::target::{Target, Verdict};

/// How to run a target.
#[derive(Clone, Debug)]
pub struct Options {
    pub cases: u64,
    /// The first case's number; later cases count up from it.
    pub first_case: u64,
    pub seed: u64,
    /// Where minimised failing inputs are written; nowhere when `None`.
    pub save_to: Option<PathBuf>,
    /// Failures of one kind are counted every time but shrunk and saved this many times.
    pub keep_failures: usize,
    /// How often progress is reported.
    pub progress_every: Duration,
}

impl Options {
    pub fn seeded(cases: u64, seed: u64) -> Self {
        Options {
            cases,
            first_case: 0,
            seed,
            save_to: None,
            keep_failures: 3,
            progress_every: Duration::from_secs(5),
        }
    }
}

/// Where a run stands, for progress lines.
#[derive(Clone, Debug)]
pub struct Progress {
    pub target: &'static str,
    pub done: u64,
    pub total: u64,
    pub elapsed: Duration,
    pub panics: u64,
    pub broken: u64,
}

impl Progress {
    pub fn rate(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A case whose check panicked or broke a property, minimised.
#[derive(Clone, Debug)]
pub struct Failure {
    pub case: u64,
    pub panic: bool,
    /// The panic message and place, or the broken property, for the minimised input.
    pub message: String,
    /// The minimised input, as the target shows it.
    pub input: String,
    pub shrink_steps: u32,
    pub file: Option<PathBuf>,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct Report {
    pub target: &'static str,
    pub seed: u64,
    pub cases: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub panics: u64,
    pub broken: u64,
    /// Error kinds of rejected inputs and how often each was seen.
    pub kinds: BTreeMap<String, u64>,
    pub failures: Vec<Failure>,
    pub elapsed: Duration,
}

impl Report {
    pub fn clean(&self) -> bool {
        self.panics == 0 && self.broken == 0
    }
}

enum Outcome {
    Verdict(Verdict),
    Panic(String),
}

impl Outcome {
    /// What tells one bug from another: the panic's place, or the broken property's name.
    fn failure_key(&self) -> Option<String> {
        match self {
            Outcome::Verdict(Verdict::Broken(text)) => {
                Some(text.split(':').next().unwrap_or(text).to_owned())
            }
            Outcome::Panic(text) => Some(text.rsplit(" at ").next().unwrap_or(text).to_owned()),
            Outcome::Verdict(_) => None,
        }
    }
}

/// Runs `opts.cases` cases of `T`, calling `progress` every `opts.progress_every`.
pub fn run<T: Target>(opts: &Options, progress: &mut dyn FnMut(&Progress)) -> Report {
    install_panic_hook();
    let strategy = T::inputs();
    let mut runner = TestRunner::new_with_rng(Config::default(), case_rng(opts.seed, 0));
    let mut report = Report {
        target: T::NAME,
        seed: opts.seed,
        cases: 0,
        accepted: 0,
        rejected: 0,
        panics: 0,
        broken: 0,
        kinds: BTreeMap::new(),
        failures: Vec::new(),
        elapsed: Duration::ZERO,
    };
    let mut kept: BTreeMap<String, usize> = BTreeMap::new();
    let start = Instant::now();
    let mut last_progress = start;
    for case in opts.first_case..opts.first_case + opts.cases {
        *runner.rng() = case_rng(opts.seed, case);
        let mut tree = match strategy.new_tree(&mut runner) {
            Ok(tree) => tree,
            Err(reason) => panic!("the {} generator gave up: {reason}", T::NAME),
        };
        let input = tree.current();
        let outcome = check::<T>(&input);
        report.cases += 1;
        match &outcome {
            Outcome::Verdict(Verdict::Accepted) => report.accepted += 1,
            Outcome::Verdict(Verdict::Rejected(kind)) => {
                report.rejected += 1;
                *report.kinds.entry(kind.clone()).or_default() += 1;
            }
            Outcome::Verdict(Verdict::Broken(_)) => report.broken += 1,
            Outcome::Panic(_) => report.panics += 1,
        }
        if let Some(key) = outcome.failure_key() {
            let times = kept.entry(key).or_default();
            if *times < opts.keep_failures {
                *times += 1;
                let failure = minimise::<T>(&mut tree, case, outcome, opts);
                report.failures.push(failure);
            }
        }
        if last_progress.elapsed() >= opts.progress_every {
            last_progress = Instant::now();
            progress(&Progress {
                target: T::NAME,
                done: report.cases,
                total: opts.cases,
                elapsed: start.elapsed(),
                panics: report.panics,
                broken: report.broken,
            });
        }
    }
    report.elapsed = start.elapsed();
    report
}

/// The random stream of one case.
fn case_rng(seed: u64, case: u64) -> TestRng {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..16].copy_from_slice(&case.to_le_bytes());
    TestRng::from_seed(RngAlgorithm::ChaCha, &bytes)
}

/// Shrinks while the check keeps failing the same way (a panic stays a panic, a broken
/// property stays that property), then saves the smallest input found.
fn minimise<T: Target>(
    tree: &mut impl ValueTree<Value = T::Input>,
    case: u64,
    first: Outcome,
    opts: &Options,
) -> Failure {
    const MAX_STEPS: u32 = 2000;
    let key = first.failure_key();
    let mut best = (tree.current(), first);
    let mut steps = 0;
    if tree.simplify() {
        while steps < MAX_STEPS {
            steps += 1;
            let candidate = tree.current();
            let outcome = check::<T>(&candidate);
            let same = outcome.failure_key().is_some() && outcome.failure_key() == key;
            if same {
                best = (candidate, outcome);
                if !tree.simplify() {
                    break;
                }
            } else if !tree.complicate() {
                break;
            }
        }
    }
    let (input, outcome) = best;
    let (panic, message) = match outcome {
        Outcome::Panic(text) => (true, text),
        Outcome::Verdict(Verdict::Broken(text)) => (false, text),
        Outcome::Verdict(other) => (false, format!("{other:?}")),
    };
    let shown = T::show(&input);
    let file = opts.save_to.as_ref().and_then(|dir| {
        let path = dir.join(format!("{}-seed{}-case{case}.txt", T::NAME, opts.seed));
        let what = if panic { "panic" } else { "broken property" };
        let text = format!(
            "target: {}\nseed: {}\ncase: {case}\nreplay: modelsync-fuzz {} --seed {} --case {case}\n{what}: {message}\nshrink steps: {steps}\n\nminimised input:\n{shown}",
            T::NAME,
            opts.seed,
            T::NAME,
            opts.seed,
        );
        std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&path, text))
            .ok()
            .map(|()| path)
    });
    Failure {
        case,
        panic,
        message,
        input: shown,
        shrink_steps: steps,
        file,
    }
}

thread_local! {
    /// Set while this thread runs a check: its panics are caught and reported, not printed.
    static CHECKING: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// One hook for the process, installed once and never removed: tests run on many threads,
/// and a hook swapped in and out per run would race with another test's. Panics outside a
/// check go to the hook that was there before.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if CHECKING.with(Cell::get) {
                let place = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()))
                    .unwrap_or_else(|| "an unknown place".into());
                let text = format!("{} at {place}", payload_text(info.payload()));
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(text));
            } else {
                previous(info);
            }
        }));
    });
}

fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

fn check<T: Target>(input: &T::Input) -> Outcome {
    CHECKING.with(|c| c.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(|| T::check(input)));
    CHECKING.with(|c| c.set(false));
    match result {
        Ok(verdict) => Outcome::Verdict(verdict),
        Err(payload) => Outcome::Panic(
            LAST_PANIC
                .with(|p| p.borrow_mut().take())
                .unwrap_or_else(|| payload_text(payload.as_ref())),
        ),
    }
}
