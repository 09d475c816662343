//! The daemonless images: the modelsync image follows the Dockerfile's recipe and its binary
//! runs as user 65532; the notebook image runs the `train-notebook` Task's train step on the
//! example notebook without any network. Needs root (mmdebstrap, chroot); the first run builds
//! the images (several minutes, with progress lines), later runs reuse them.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use modelsync_testenv::image::modelsync::{BuiltImage, image_config, modelsync_image, rootfs_spec};
use modelsync_testenv::image::python::{PYTHON_PACKAGES, python_image};
use modelsync_testenv::image::recipe::Recipe;
use modelsync_testenv::image::rootfs::Chroot;
use serde_json::Value;

/// Two image builds at once would run two mmdebstraps on a 2-core machine.
static BUILDS: Mutex<()> = Mutex::new(());

fn build<T>(what: impl FnOnce() -> anyhow::Result<T>) -> T {
    let _one_at_a_time = BUILDS.lock().unwrap_or_else(|e| e.into_inner());
    what().unwrap_or_else(|e| panic!("{e:#}"))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn the_builder_follows_the_dockerfile() {
    // The builder reads these from the Dockerfile; a line it could not apply fails the parse.
    let recipe = Recipe::load().unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(recipe.base, "debian:bookworm-slim");
    assert_eq!(recipe.suite, "bookworm");
    for package in ["ca-certificates", "libssl3"] {
        assert!(recipe.packages.iter().any(|p| p == package), "{recipe:?}");
    }
    assert!(recipe.no_install_recommends);
    assert_eq!(recipe.user.as_deref(), Some("65532:65532"));
    assert_eq!(recipe.numeric_user(), Some((65532, 65532)));
    assert_eq!(recipe.entrypoint, ["/usr/local/bin/modelsync"]);
    assert_eq!(recipe.binary_path, "/usr/local/bin/modelsync");
    assert!(recipe.cargo_build_args.iter().any(|a| a == "--release"));

    let spec = rootfs_spec(&recipe);
    assert_eq!(spec.suite, recipe.suite);
    assert_eq!(spec.packages, recipe.packages);
    let config = image_config(&recipe, "0.1.0");
    assert_eq!(config.name, "modelsync.local/modelsync:0.1.0");
    assert_eq!(config.entrypoint, recipe.entrypoint);
    assert_eq!(config.cmd, recipe.cmd);
    assert_eq!(config.user, recipe.user);
    for entry in &recipe.env {
        assert!(config.env.contains(entry), "{config:?} lacks {entry}");
    }

    // The manifests run the image as the recipe's user, under the name the builder gives it.
    for manifest in [
        "kustomize/base/controller/controller.yaml",
        "kustomize/base/lambdas.yaml",
    ] {
        let text = std::fs::read_to_string(repo().join(manifest)).unwrap();
        assert!(text.contains("runAsUser: 65532"), "{manifest}");
        assert!(text.contains("runAsGroup: 65532"), "{manifest}");
    }
    let overlay =
        std::fs::read_to_string(repo().join("kustomize/overlays/local-image/kustomization.yaml"))
            .unwrap();
    let (repository, tag) = config.name.split_once(':').unwrap();
    assert!(
        overlay.contains(&format!("newName: {repository}")),
        "{overlay}"
    );
    assert!(overlay.contains(&format!("newTag: {tag}")), "{overlay}");
}

/// What an image tar holds: its config and, for the layer, each entry's mode, owner and size.
struct TarContents {
    name: String,
    config: Value,
    files: BTreeMap<String, (u32, u64, u64, tar::EntryType)>,
}

fn read_image_tar(path: &Path) -> TarContents {
    let mut blobs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut index = Value::Null;
    let mut manifest = Value::Null;
    let mut files = BTreeMap::new();
    let mut outer = tar::Archive::new(File::open(path).unwrap());
    for entry in outer.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let layer = manifest["layers"][0]["digest"]
            .as_str()
            .map(|d| format!("blobs/{}", d.replace(':', "/")));
        if layer.as_deref() == Some(name.as_str()) {
            for file in tar::Archive::new(&mut entry).entries().unwrap() {
                let file = file.unwrap();
                let h = file.header();
                files.insert(
                    file.path().unwrap().to_string_lossy().into_owned(),
                    (
                        h.mode().unwrap(),
                        h.uid().unwrap(),
                        h.size().unwrap(),
                        h.entry_type(),
                    ),
                );
            }
            continue;
        }
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        if name == "index.json" {
            index = serde_json::from_slice(&data).unwrap();
            let digest = index["manifests"][0]["digest"].as_str().unwrap();
            if let Some(m) = blobs.get(&format!("blobs/{}", digest.replace(':', "/"))) {
                manifest = serde_json::from_slice(m).unwrap();
            }
        } else if let Some(digest) = index["manifests"][0]["digest"].as_str()
            && name == format!("blobs/{}", digest.replace(':', "/"))
        {
            manifest = serde_json::from_slice(&data).unwrap();
        }
        blobs.insert(name, data);
    }
    assert!(!files.is_empty(), "no layer found in {}", path.display());
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let config =
        serde_json::from_slice(&blobs[&format!("blobs/{}", config_digest.replace(':', "/"))])
            .unwrap();
    TarContents {
        name: index["manifests"][0]["annotations"]["io.containerd.image.name"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        config,
        files,
    }
}

fn describe(image: &BuiltImage, started: Instant) {
    let size = std::fs::metadata(&image.tar).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "{} ready in {:.1}s: {} ({:.1} MB)",
        image.name,
        started.elapsed().as_secs_f64(),
        image.tar.display(),
        size as f64 / 1e6
    );
}

#[test]
fn modelsync_image_follows_the_recipe_and_its_binary_runs() {
    let started = Instant::now();
    let image = build(modelsync_image);
    describe(&image, started);
    let recipe = Recipe::load().unwrap();

    let tar = read_image_tar(&image.tar);
    assert_eq!(tar.name, image.name);
    let run = &tar.config["config"];
    assert_eq!(run["Entrypoint"], serde_json::json!(recipe.entrypoint));
    assert_eq!(run["Cmd"], serde_json::json!(recipe.cmd));
    assert_eq!(run["User"], "65532:65532");
    let env: Vec<String> = serde_json::from_value(run["Env"].clone()).unwrap();
    assert!(env.contains(&"HOME=/home/nonroot".to_owned()), "{env:?}");
    assert!(env.iter().any(|e| e.starts_with("PATH=")), "{env:?}");

    let (mode, uid, size, kind) = tar.files["usr/local/bin/modelsync"];
    assert_eq!(kind, tar::EntryType::Regular);
    assert_eq!(mode & 0o777, 0o755);
    assert_eq!(uid, 0);
    assert!(size > 1_000_000, "the binary is only {size} bytes");
    assert!(tar.files.contains_key("etc/ssl/certs/ca-certificates.crt"));
    let home = tar.files["home/nonroot"];
    assert_eq!((home.1, home.3), (65532, tar::EntryType::Directory));
    // Slim like the Dockerfile's base: no manuals, no apt lists, no device nodes.
    assert!(
        !tar.files
            .keys()
            .any(|f| f.starts_with("usr/share/man/") && f.len() > 15)
    );
    assert!(
        !tar.files.keys().any(|f| f.starts_with("var/lib/apt/lists/")
            && !f.ends_with("lock")
            && !f.ends_with("partial"))
    );
    assert!(
        !tar.files
            .keys()
            .any(|f| f.starts_with("dev/") && f.len() > 4)
    );

    let passwd = std::fs::read_to_string(image.rootfs.join("etc/passwd")).unwrap();
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("nonroot:x:65532:65532:")),
        "{passwd}"
    );

    // The binary runs inside the image's own root filesystem as its user: every library it
    // links is there.
    let out = Chroot {
        userspec: Some("65532:65532".into()),
        env: env.clone(),
        no_network: true,
        ..Chroot::new(&image.rootfs)
    }
    .run(&["/usr/local/bin/modelsync", "--help"])
    .unwrap_or_else(|e| panic!("{e:#}"));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("Usage"), "{help}");
    let whoami = Chroot {
        userspec: Some("65532:65532".into()),
        env,
        ..Chroot::new(&image.rootfs)
    }
    .run(&[
        "/bin/sh",
        "-c",
        "id -u; id -g; echo \"$HOME\"; test -w \"$HOME\"",
    ])
    .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        String::from_utf8_lossy(&whoami.stdout),
        "65532\n65532\n/home/nonroot\n"
    );

    // Runs write into a throw-away overlay and their mounts never reach this namespace.
    Chroot::new(&image.rootfs)
        .run(&[
            "/bin/sh",
            "-c",
            "echo probe > /tmp/probe && test -s /tmp/probe",
        ])
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(!image.rootfs.join("tmp/probe").exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let rootfs = image.rootfs.to_string_lossy();
    assert!(!mounts.contains(rootfs.as_ref()), "{mounts}");
}

/// The `train` step's script, as the Task has it.
fn train_script() -> String {
    let path = repo().join("tekton/tasks/train-notebook/train-notebook.yaml");
    let task: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    task["spec"]["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "train")
        .and_then(|s| s["script"].as_str())
        .unwrap_or_else(|| panic!("{} has no train step", path.display()))
        .to_owned()
}

#[test]
fn python_image_runs_the_train_step_offline() {
    let started = Instant::now();
    let image = build(python_image);
    describe(&image, started);
    let tar = read_image_tar(&image.tar);
    assert_eq!(tar.name, image.name);
    let env: Vec<String> = serde_json::from_value(tar.config["config"]["Env"].clone()).unwrap();
    let offline = |env: Vec<String>| Chroot {
        env,
        no_network: true,
        ..Chroot::new(&image.rootfs)
    };

    offline(env.clone())
        .run(&["python3", "-c", "import papermill, nbconvert, ipykernel"])
        .unwrap_or_else(|e| panic!("{e:#}"));

    // Even a plain `pip install` of the tools, in a venv like the Task's, finds them all
    // installed and touches no network.
    let pinned: Vec<&str> = PYTHON_PACKAGES
        .iter()
        .map(|p| p.split("==").next().unwrap())
        .collect();
    let t = Instant::now();
    let out = offline(env.clone())
        .run(&[
            "bash",
            "-c",
            &format!(
                "python3 -m venv --system-site-packages /tmp/venv && . /tmp/venv/bin/activate \
                 && python3 -m pip install {}",
                pinned.join(" ")
            ),
        ])
        .unwrap_or_else(|e| panic!("{e:#}"));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("Requirement already satisfied: papermill"),
        "{said}"
    );
    eprintln!(
        "venv + satisfied pip install, offline: {:.1}s",
        t.elapsed().as_secs_f64()
    );

    // The Task's own train step on the example notebook, offline, as in a pod: the checkout
    // is the example repository, results and staging are scratch folders.
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("train.sh"), train_script()).unwrap();
    let mut step_env = env;
    step_env.extend(
        [
            "HOME=/tools/home",
            "SOURCE_DIR=/workspace/source",
            "STAGING_DIR=/staging/run",
            "NOTEBOOK=notebooks/train.ipynb",
            "REQUIREMENTS=notebooks/requirements.txt",
            "MODEL_ID=m-chroot",
            "RESULT_MODEL_ID=/tekton/results/model-id",
            "RESULT_CREATED=/tekton/results/created",
            "RESULT_DATA_REVISION=/tekton/results/data-revision",
        ]
        .map(str::to_owned),
    );
    let t = Instant::now();
    let out = Chroot {
        binds: vec![
            (
                repo().join("examples/gitops-repo"),
                "/workspace/source".into(),
            ),
            (work.path().to_path_buf(), "/task".into()),
        ],
        ..offline(step_env)
    }
    .run(&[
        "bash",
        "-c",
        "mkdir -p /tekton/results /tools && printf 0123abc > \"$RESULT_DATA_REVISION\" \
         && bash /task/train.sh && cat /staging/run/record.yaml /staging/run/model/model.json \
         && test -s /staging/run/notebook.html",
    ])
    .unwrap_or_else(|e| panic!("{e:#}"));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("trained m-chroot on 0123abc"), "{said}");
    assert!(said.contains("id: \"m-chroot\""), "{said}");
    assert!(said.contains("accuracy"), "{said}");
    assert!(said.contains("default_label"), "{said}");
    eprintln!(
        "train step in the image, offline: {:.1}s",
        t.elapsed().as_secs_f64()
    );
}
