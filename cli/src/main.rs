//! `modelsync`: the one user-facing binary. Each subcommand's flags and work live in the crate
//! or module that owns it; this file only wires them together and turns errors into exit
//! codes (0 ok, 1 the thing failed, 2 usage or not found).

mod kube_args;
mod verbs;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use kube_args::KubeArgs;

/// jemalloc rather than glibc's malloc: the controller's watches interleave short-lived buffers
/// (each watch event's line and decoded object) with the long-lived cache, and glibc's heap
/// kept the holes. At 10k ModelSyncs with streaming lists the controller held 146-159 MB under
/// glibc and 98 MB under jemalloc (BENCHMARKS.md, section 2, with mimalloc's figures).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    Controller {
        #[command(flatten)]
        kube: KubeArgs,
        #[command(flatten)]
        args: modelsync_controller::ControllerArgs,
    },
    /// One line per ModelSync: ready, status, why, active run, last success, next poll.
    Get(verbs::get::GetArgs),
    /// Ask a ModelSync's lambda now; with --wait, follow the decision and the run; with
    /// --dry-run, ask it from here and show what the controller would do.
    Sync(verbs::sync::SyncArgs),
    /// What a deployer ModelSync last pinned, traced to the training run and data behind it.
    Lineage(verbs::lineage::LineageArgs),
    /// A ModelSync's decisions and runs, newest first: why, result, duration, pull request.
    History(verbs::history::HistoryArgs),
    /// Stop lambda calls and new runs of a ModelSync (a running run continues).
    Suspend(verbs::suspend::SuspendArgs),
    /// Undo `suspend`.
    Resume(verbs::suspend::SuspendArgs),
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let verb = match cli.command {
        Command::Get(args) => verbs::block_on(verbs::get::run(args)),
        Command::Sync(args) => verbs::block_on(verbs::sync::run(args)),
        Command::Lineage(args) => verbs::block_on(verbs::lineage::run(args)),
        Command::History(args) => verbs::block_on(verbs::history::run(args)),
        Command::Suspend(args) => verbs::block_on(verbs::suspend::run(args, true)),
        Command::Resume(args) => verbs::block_on(verbs::suspend::run(args, false)),
        other => return exit(tool(other)),
    };
    match verb {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

/// The subcommands that are tools rather than verbs on ModelSyncs.
fn tool(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Controller { kube, args } => modelsync_controller::main(args, kube.target()),
        Command::Crd => {
            print!("{}", modelsync_api::crd_yaml());
            Ok(())
        }
        Command::Lambdas(args) => modelsync_lambdas::server::run(args),
        Command::Mirror(args) => modelsync_lambdas::mirror::run(args),
        Command::LambdaCheck(args) => modelsync_lambdas::check::run(args),
        Command::BumpPr(args) => modelsync_bump_pr::main(args),
        Command::Get(_)
        | Command::Sync(_)
        | Command::Lineage(_)
        | Command::History(_)
        | Command::Suspend(_)
        | Command::Resume(_) => {
            unreachable!("verbs are handled in main")
        }
    }
}

/// Prints an error the way `fn main() -> anyhow::Result<()>` did, causes included.
fn exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:?}");
            ExitCode::from(1)
        }
    }
}
