//! Developer tasks: `cargo xtask demo`, `cargo xtask cluster up|down|status|build`, `cargo xtask bench`,
//! `cargo xtask fuzz`, `cargo xtask image`.

mod bench;
mod cluster;
mod demo;
mod fuzz;
mod image;
mod release;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "modelsync developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A local control plane (etcd, kube-apiserver, kube-controller-manager) with Tekton's CRDs.
    #[command(subcommand)]
    Cluster(cluster::Command),
    /// The whole loop on a local control plane, narrated: lambdas decide, runs start and
    /// finish, a model is trained, a pull request bumps it, old runs are collected.
    Demo(demo::DemoArgs),
    /// Benchmarks against the local control plane (release builds); see BENCHMARKS.md.
    Bench(bench::BenchArgs),
    /// The long fuzz runs of the parsers and editors (release build, a million cases per
    /// target by default); the short seeded runs are in `cargo test`.
    Fuzz(fuzz::FuzzArgs),
    /// Daemonless container images (modelsync from the Dockerfile's recipe, the notebook
    /// trainer): built or found in the cache; prints each tar's path and size.
    Image(image::ImageArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Cluster(cmd) => cluster::run(cmd),
        Command::Demo(args) => demo::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Fuzz(args) => fuzz::run(args),
        Command::Image(args) => image::run(args),
    }
}
