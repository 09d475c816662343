//! `modelsync`: the one user-facing binary. Each subcommand's flags and work live in the crate
//! that owns it; this file only wires them together.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "modelsync", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process; boxing the larger argument structs would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the ModelSync controller (kubeconfig or in-cluster, like kubectl).
    Controller(modelsync_controller::ControllerArgs),
    /// Print the ModelSync CustomResourceDefinition as YAML.
    Crd,
    /// Serve the built-in needs-sync lambdas over a git mirror.
    Lambdas(modelsync_lambdas::LambdasArgs),
    /// Mirror a git repository with git-sync v4's on-disk layout (a drop-in for git-sync).
    Mirror(modelsync_lambdas::MirrorArgs),
    /// Call a needs-sync lambda and check that its answer follows the protocol.
    LambdaCheck(modelsync_lambdas::LambdaCheckArgs),
    /// Pin a new model in a GitOps repository and open or update its one pull request.
    BumpPr(modelsync_bump_pr::BumpPrArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Controller(args) => modelsync_controller::main(args),
        Command::Crd => {
            print!("{}", modelsync_api::crd_yaml());
            Ok(())
        }
        Command::Lambdas(args) => modelsync_lambdas::server::run(args),
        Command::Mirror(args) => modelsync_lambdas::mirror::run(args),
        Command::LambdaCheck(args) => modelsync_lambdas::check::run(args),
        Command::BumpPr(args) => modelsync_bump_pr::main(args),
    }
}
