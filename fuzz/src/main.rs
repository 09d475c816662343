//! `modelsync-fuzz [TARGET...] [--cases N] [--seed S]`: the long fuzz runs (`cargo xtask fuzz`
//! builds this in release mode and runs it).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use modelsync_fuzz::runner::Options;
use modelsync_fuzz::targets::{TARGETS, find};
use modelsync_fuzz::{Report, table};

#[derive(Parser)]
#[command(
    name = "modelsync-fuzz",
    about = "Fuzz modelsync's parsers and editors"
)]
struct Args {
    /// Targets to run (default: all). `--list` names them.
    targets: Vec<String>,
    /// Cases per target.
    #[arg(long, default_value_t = 1_000_000)]
    cases: u64,
    /// The run's seed (default: from the clock, printed so a run can be repeated).
    #[arg(long)]
    seed: Option<u64>,
    /// Replay this one case of the seed (a failure file names both).
    #[arg(long)]
    case: Option<u64>,
    /// Where minimised failing inputs are written.
    #[arg(long, default_value = "target/fuzz")]
    out: PathBuf,
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 10)]
    progress: u64,
    /// List the targets and what each covers.
    #[arg(long)]
    list: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list {
        for t in TARGETS {
            println!("{:<10} {}", t.name, t.about);
        }
        return ExitCode::SUCCESS;
    }
    let mut chosen = Vec::new();
    for name in &args.targets {
        match find(name) {
            Some(t) => chosen.push(t),
            None => {
                let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
                eprintln!(
                    "no fuzz target {name:?}; the targets are {}",
                    names.join(", ")
                );
                return ExitCode::from(2);
            }
        }
    }
    if chosen.is_empty() {
        chosen = TARGETS.iter().collect();
    }
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    let opts = Options {
        cases: if args.case.is_some() { 1 } else { args.cases },
        first_case: args.case.unwrap_or(0),
        seed,
        save_to: Some(args.out.clone()),
        keep_failures: 3,
        progress_every: Duration::from_secs(args.progress.max(1)),
    };
    eprintln!(
        "fuzzing {} with {} cases each, seed {seed}; failing inputs go to {}",
        chosen.iter().map(|t| t.name).collect::<Vec<_>>().join(", "),
        opts.cases,
        args.out.display()
    );
    let mut reports: Vec<Report> = Vec::new();
    for target in chosen {
        let report = (target.run)(&opts, &mut |p| eprintln!("{}", table::progress_line(p)));
        eprintln!(
            "{:<10} done: {} cases in {:.1}s, {} panics, {} broken",
            report.target,
            report.cases,
            report.elapsed.as_secs_f64(),
            report.panics,
            report.broken
        );
        reports.push(report);
    }
    println!("\n{}", table::summary(&reports));
    println!("{}", table::details(&reports));
    if reports.iter().all(Report::clean) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
