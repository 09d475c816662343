//! `cargo xtask image [modelsync|python|all] [--import SOCKET]`: the daemonless images, built
//! (or found in the cache) and optionally imported into a containerd.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::{Args, ValueEnum};
use modelsync_testenv::image::modelsync::{BuiltImage, modelsync_image};
use modelsync_testenv::image::python::python_image;
use modelsync_testenv::image::rootfs::progress;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Which {
    /// The modelsync image, from the Dockerfile's recipe.
    Modelsync,
    /// The notebook training image for the train-notebook Task.
    Python,
    /// Both.
    All,
}

#[derive(Args)]
pub struct ImageArgs {
    /// Which image to build.
    #[arg(value_enum, default_value = "all")]
    which: Which,
    /// Import the images into the containerd listening on this socket (k8s.io namespace).
    #[arg(long, value_name = "SOCKET")]
    import: Option<PathBuf>,
}

type Builder = fn() -> Result<BuiltImage>;

pub fn run(args: ImageArgs) -> Result<()> {
    let mut builders: Vec<(&str, Builder)> = Vec::new();
    if matches!(args.which, Which::Modelsync | Which::All) {
        builders.push(("modelsync", modelsync_image));
    }
    if matches!(args.which, Which::Python | Which::All) {
        builders.push(("python", python_image));
    }
    let mut built = Vec::new();
    for (what, build) in builders {
        let started = Instant::now();
        progress(&format!(
            "{what} image: building or finding it in the cache"
        ));
        let image = build()?;
        let size = std::fs::metadata(&image.tar)?.len();
        println!(
            "{}\t{}\t{:.1} MB\t{:.1}s",
            image.name,
            image.tar.display(),
            size as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
        built.push(image);
    }
    if let Some(socket) = &args.import {
        for image in &built {
            let started = Instant::now();
            modelsync_testenv::image::import(socket, &image.tar)?;
            progress(&format!(
                "imported {} into {} in {:.1}s",
                image.name,
                socket.display(),
                started.elapsed().as_secs_f64()
            ));
        }
    }
    Ok(())
}
