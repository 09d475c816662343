//! The stage every real-node test plays on, set up once per test binary: the node, the real
//! Tekton, our images imported, and modelsync installed from `kustomize/` (through the Label
//! Bot example, whose lambda server and GitOps repository the other tests leave alone).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use modelsync_testenv::image::{modelsync as ms_image, python};
use modelsync_testenv::labelbot::{Images, LabelBot};
use modelsync_testenv::node;
use modelsync_testenv::tekton_real;

pub struct Stage {
    pub kubeconfig: PathBuf,
    pub bridge_ip: IpAddr,
    pub images: Images,
    pub labelbot: LabelBot,
}

static STAGE: OnceLock<Result<Stage, String>> = OnceLock::new();

/// The stage, built on first use. Its servers (the GitHub stand-in, git daemon) run on a
/// runtime of their own that lives as long as the test binary.
pub fn stage() -> &'static Stage {
    let stage = STAGE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => return drop(tx.send(Err(e.to_string()))),
            };
            let built = rt.block_on(build()).map_err(|e| format!("{e:#}"));
            let _ = tx.send(built);
            rt.block_on(std::future::pending::<()>());
        });
        rx.recv()
            .unwrap_or_else(|_| Err("setting up the real-node stage panicked".to_owned()))
    });
    match stage {
        Ok(s) => s,
        Err(e) => panic!("the real-node stage could not be set up: {e}"),
    }
}

fn say(line: &str) {
    modelsync_testenv::binaries::progress(line);
}

async fn build() -> anyhow::Result<Stage> {
    let started = Instant::now();
    let cluster = node::shared();
    let kubeconfig = cluster.kubeconfig().to_path_buf();
    let socket = cluster.containerd_socket().to_path_buf();
    let bridge_ip = IpAddr::from(cluster.bridge_ip());

    let (modelsync, python) = tokio::task::spawn_blocking(|| -> anyhow::Result<_> {
        Ok((ms_image::modelsync_image()?, python::python_image()?))
    })
    .await??;
    for tar in [&modelsync.tar, &python.tar] {
        import(&socket, tar).await?;
    }
    say(&format!("imported {} and {}", modelsync.name, python.name));
    let tekton = tekton_real::install(&kubeconfig, &socket).await?;
    say(&format!(
        "Tekton {} ready ({:.1}s after apply)",
        tekton.version,
        tekton.ready_after_apply.as_secs_f64()
    ));
    let (rss, cores) = idle_usage(cluster).await;
    say(&format!(
        "idle node with Tekton (control plane, node, pods): {} MB resident, {cores:.3} cores over 10s",
        rss / 1_000_000
    ));
    let images = Images {
        modelsync: modelsync.name,
        python: python.name,
    };
    let client = cluster.client().await?;
    let labelbot = LabelBot::start(&client, &kubeconfig, bridge_ip, &images, &say).await?;
    say(&format!(
        "real-node stage ready in {:.1}s",
        started.elapsed().as_secs_f64()
    ));
    Ok(Stage {
        kubeconfig,
        bridge_ip,
        images,
        labelbot,
    })
}

async fn import(socket: &Path, tar: &Path) -> anyhow::Result<()> {
    let (socket, tar) = (socket.to_path_buf(), tar.to_path_buf());
    tokio::task::spawn_blocking(move || modelsync_testenv::image::oci::import(&socket, &tar))
        .await?
}

/// Memory and CPU of the control plane, the node's programs and every pod, over 10 s of rest.
async fn idle_usage(node: &node::Node) -> (u64, f64) {
    let cpu = || -> f64 {
        let mut pids = node.pids();
        pids.extend(node.control_plane().pids());
        let ticks: u64 = pids
            .iter()
            .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
            .filter_map(|stat| {
                // Fields after the command name, which may hold spaces: utime and stime are the
                // 12th and 13th of them.
                let rest = stat.rsplit_once(')')?.1;
                let fields: Vec<&str> = rest.split_whitespace().collect();
                Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
            })
            .sum();
        let pods_ns = std::fs::read_to_string("/sys/fs/cgroup/cpuacct/kubepods/cpuacct.usage")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        // Linux reports process times in USER_HZ, 100 per second on every common build.
        ticks as f64 / 100.0 + pods_ns as f64 / 1e9
    };
    let before = cpu();
    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    let cores = (cpu() - before) / 10.0;
    (node.resident_bytes(), cores)
}
