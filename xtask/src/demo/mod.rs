//! `cargo xtask demo`: the whole modelsync loop, narrated. On a real node where the machine
//! allows one ([`real`]), else on a local control plane with Tekton's controller played
//! ([`played`]). Both stories tell the same [`acts`] in the same words ([`narrate`]), following
//! the cluster through one [`watch`].

mod acts;
mod narrate;
mod notifications;
mod played;
mod real;
mod watch;

use anyhow::Result;

use narrate::Narrator;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Non-interactive: exit (0) when the story is told, non-zero if a step does not happen
    /// within its time.
    #[arg(long)]
    ci: bool,
    /// Play Tekton's controller (no node, no pods) even where a real node could run.
    #[arg(long)]
    played: bool,
}

pub fn run(args: DemoArgs) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        tokio::select! {
            r = choose(args) => r,
            r = tokio::signal::ctrl_c() => {
                r?;
                eprintln!("\ninterrupted: stopping the controller, lambda server and control plane");
                Ok(())
            }
        }
    })
}

/// The real node where the machine allows it, the played Tekton elsewhere; says which and why.
async fn choose(args: DemoArgs) -> Result<()> {
    let say = Narrator::start();
    if args.played {
        say.say(
            "demo",
            "--played: Tekton's controller is played; no node, no pods",
        );
        return played::story(args.ci, say).await;
    }
    match real::possible() {
        Ok(()) => {
            say.say("demo", "this machine can run a real node (Linux, root, containerd, runc, CNI plugins, iptables): the real loop");
            real::story(args.ci, say).await
        }
        Err(why) => {
            say.say(
                "demo",
                format!("no real node here, so Tekton's controller is played instead: {why}"),
            );
            played::story(args.ci, say).await
        }
    }
}
