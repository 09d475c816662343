//! `modelsync-bench`: benchmarks against the real local control plane and real processes.
//! Run through `cargo xtask bench [name]`, which builds this and the `modelsync` binary in
//! release mode. Prints a table and writes JSON (`target/bench/<name>.json`).

mod cold_start;
mod decision;
mod env;
mod first_start;
mod fleet;
mod fleet_100k;
mod lambdas;
mod mirror;
mod push;
mod report;
mod writes;

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

#[derive(Parser)]
#[command(about = "modelsync benchmarks")]
struct Cli {
    /// Which benchmarks (default: all).
    #[arg(value_enum)]
    names: Vec<Bench>,
    /// Repetitions of each benchmark; figures are the median with min and max.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The release `modelsync` binary to measure.
    #[arg(long, env = "MODELSYNC_BIN")]
    modelsync: PathBuf,
    /// Folder for the JSON results.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// `--initial-list` of the controllers the scale benchmarks start (default: the
    /// controller's own, auto), to compare paged and streaming cold starts on one build.
    #[arg(long, env = "MODELSYNC_BENCH_INITIAL_LIST", value_parser = ["auto", "streaming", "paged"])]
    initial_list: Option<String>,
    /// Fleet sizes `scale` (and `memory`) measure, comma-separated (default 1000,10000); fewer
    /// or smaller ones for a quick check on a busy machine (1000 alone takes about two
    /// minutes). `first-start` measures the first size given (default 20000).
    #[arg(long, value_delimiter = ',')]
    scale_sizes: Vec<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Bench {
    Decision,
    Scale,
    /// 100,000 ModelSyncs on one controller (not in the default set: the fleet is made once,
    /// in minutes, and each measurement lasts several poll periods).
    #[value(name = "scale-100k")]
    Scale100k,
    /// The same 100,000 on 4 shard controllers of 25,000 (not in the default set either).
    #[value(name = "scale-100k-shards")]
    Scale100kShards,
    Memory,
    Lambdas,
    Mirror,
    /// The first start on a new fleet without statuses, one controller and 4 shards (not in
    /// the default set: it makes two fleets).
    #[value(name = "first-start")]
    FirstStart,
    /// Only the API writes per run life, which `decision` also counts.
    Writes,
    Push,
}

/// What every benchmark gets.
pub struct Opts {
    pub runs: usize,
    pub modelsync: PathBuf,
    pub initial_list: Option<String>,
    pub scale_sizes: Vec<usize>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let names = if cli.names.is_empty() {
        vec![
            Bench::Decision,
            Bench::Scale,
            Bench::Memory,
            Bench::Lambdas,
            Bench::Mirror,
            Bench::Push,
        ]
    } else {
        cli.names.clone()
    };
    let opts = Opts {
        runs: cli.runs,
        modelsync: cli.modelsync.clone(),
        initial_list: cli.initial_list.clone(),
        scale_sizes: cli.scale_sizes.clone(),
    };
    let rt = tokio::runtime::Runtime::new()?;
    let suite = std::time::Instant::now();
    let mut all: Vec<report::Figure> = Vec::new();
    let mut fleet_done = false;
    for name in names.iter().copied() {
        // Scale and memory are measured on one fleet: building 10,000 ModelSyncs with 30,000
        // runs twice would not fit the time budget.
        let fleet = matches!(name, Bench::Scale | Bench::Memory);
        if fleet && fleet_done {
            continue;
        }
        let started = std::time::Instant::now();
        eprintln!("== {name:?}");
        let figures: Vec<report::Figure> = rt.block_on(async {
            match name {
                Bench::Decision => decision::run(&opts).await,
                Bench::Writes => decision::writes_figures(&opts).await,
                Bench::Scale100k => fleet_100k::run(&opts, fleet_100k::Replicas::One).await,
                Bench::Scale100kShards => {
                    fleet_100k::run(&opts, fleet_100k::Replicas::Shards).await
                }
                Bench::FirstStart => first_start::run(&opts).await,
                Bench::Lambdas => lambdas::run(&opts).await,
                Bench::Mirror => mirror::run(&opts).await,
                Bench::Push => push::run(&opts).await,
                Bench::Scale | Bench::Memory => fleet::run(&opts).await,
            }
        })?;
        fleet_done |= fleet;
        eprintln!("   {name:?} took {:.0}s", started.elapsed().as_secs_f64());
        std::fs::create_dir_all(&cli.out)?;
        let mut by_bench: std::collections::BTreeMap<String, Vec<&report::Figure>> =
            Default::default();
        for f in &figures {
            by_bench.entry(f.bench.clone()).or_default().push(f);
        }
        for (bench, figs) in by_bench {
            std::fs::write(
                cli.out.join(format!("{bench}.json")),
                serde_json::to_string_pretty(&figs)?,
            )?;
        }
        all.extend(figures);
    }
    print!("{}", report::table(&all));
    eprintln!("all benchmarks took {:.0}s", suite.elapsed().as_secs_f64());
    Ok(())
}
