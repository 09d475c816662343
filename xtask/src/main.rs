//! Developer tasks: `cargo xtask cluster up|down|status|build`.

mod cluster;

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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Cluster(cmd) => cluster::run(cmd),
    }
}
