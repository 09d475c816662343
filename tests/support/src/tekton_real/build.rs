//! Building Tekton's programs from the pinned Go module and packing each into a local image.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{VERSION, image_name, manifests};
use crate::binaries::{fmt_elapsed, progress};
use crate::cache;
use crate::crds::tekton_module_dir;
use crate::image::{ImageConfig, write_oci_tar};

/// Tekton's images, built and packed, in the cache.
#[derive(Clone, Debug)]
pub struct Built {
    /// The cache folder, `<cache>/tekton/<version>`.
    pub dir: PathBuf,
    /// One per program the install references, plus the shell image.
    pub images: Vec<BuiltImage>,
}

/// One image tar ready for `ctr images import`.
#[derive(Clone, Debug)]
pub struct BuiltImage {
    /// Like `controller`, or `shell` for the busybox image.
    pub command: String,
    /// Like `modelsync.local/tekton-controller:v1.6.0`.
    pub name: String,
    pub tar: PathBuf,
}

/// The image that runs Tekton's `place-scripts` init container (`sh -c`, `cat`, `chmod`, ...):
/// every Task step written as `script:` needs one, and the release's default is pulled from a
/// registry, which this machine cannot reach.
pub const SHELL: &str = "shell";

/// Where Debian's `busybox-static` puts its binary.
const BUSYBOX: &str = "/bin/busybox";

/// Where ko puts a program in its image; Tekton's controller runs `/ko-app/entrypoint`,
/// `/ko-app/workingdirinit` and `/ko-app/sidecarlogresults` by these paths.
fn ko_path(command: &str) -> String {
    format!("/ko-app/{command}")
}

const NONROOT: u32 = 65532;

/// The images in the cache, building Tekton's programs first if no finished build exists
/// (about 5 minutes on 2 cores; progress lines go to the terminal).
pub fn build_cached() -> Result<Built> {
    let module = tekton_module_dir()?;
    let commands = manifests::referenced_commands(&module)?;
    let dir = cache::get_or_make(&format!("tekton/{VERSION}"), |out| {
        build(&module, &commands, out)
    })?;
    let mut images = Vec::new();
    for command in commands.iter().map(String::as_str).chain([SHELL]) {
        let tar = dir.join("images").join(format!("{command}.tar"));
        if !tar.is_file() {
            bail!(
                "the cached Tekton build {} has no {}: delete that folder so the next run \
                 builds it again",
                dir.display(),
                tar.display()
            );
        }
        images.push(BuiltImage {
            command: command.to_owned(),
            name: image_name(command),
            tar,
        });
    }
    Ok(Built { dir, images })
}

fn build(module: &Path, commands: &[String], out: &Path) -> Result<()> {
    // Checked before the long build so a missing package fails in a second, not in minutes.
    if !Path::new(BUSYBOX).is_file() {
        bail!(
            "{BUSYBOX} is missing; Tekton's script steps need a shell image made from it: run \
             `apt-get install -y busybox-static`"
        );
    }
    let started = Instant::now();
    progress(&format!(
        "tekton: building Tekton Pipelines {VERSION} ({}) from its Go module into {}; the first \
         build takes about 5 minutes on 2 cores, later runs reuse it",
        commands.join(", "),
        out.display()
    ));
    // The module cache is read-only and the module has `replace` directives, which only apply
    // when it is the main module: build inside a writable copy.
    let work = tempfile::Builder::new()
        .prefix("tekton-src-")
        .tempdir_in(out.parent().unwrap_or(out))
        .context("creating a folder for Tekton's sources")?;
    let src = work.path().join("src");
    copy_tree(module, &src)
        .with_context(|| format!("copying {} to {}", module.display(), src.display()))?;
    let bin = out.join("bin");
    fs::create_dir_all(&bin)?;
    go_build(&src, commands, &bin, &out.join("build.log"))?;
    progress(&format!(
        "tekton: built in {}; writing images",
        fmt_elapsed(started.elapsed())
    ));

    let images = out.join("images");
    fs::create_dir_all(&images)?;
    let rootfs_parent = tempfile::Builder::new()
        .prefix("tekton-rootfs-")
        .tempdir_in(out.parent().unwrap_or(out))?;
    for command in commands {
        let rootfs = rootfs_parent.path().join(command);
        program_rootfs(&rootfs, &bin.join(command), command)?;
        let config = ImageConfig {
            name: image_name(command),
            entrypoint: vec![ko_path(command)],
            env: vec![
                "PATH=/ko-app:/usr/local/bin:/usr/bin:/bin".into(),
                "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt".into(),
                "KO_DATA_PATH=/var/run/ko".into(),
            ],
            user: Some(NONROOT.to_string()),
            ..Default::default()
        };
        write_oci_tar(&rootfs, &config, &images.join(format!("{command}.tar")))?;
    }
    let rootfs = rootfs_parent.path().join(SHELL);
    shell_rootfs(&rootfs)?;
    let config = ImageConfig {
        name: image_name(SHELL),
        entrypoint: vec!["/bin/sh".into()],
        env: vec!["PATH=/usr/local/bin:/usr/bin:/bin".into()],
        ..Default::default()
    };
    write_oci_tar(&rootfs, &config, &images.join(format!("{SHELL}.tar")))?;
    // The images hold the programs; a second copy would only double the cache's size.
    fs::remove_dir_all(&bin)?;
    progress(&format!(
        "tekton: {} images written in {}",
        commands.len() + 1,
        fmt_elapsed(started.elapsed())
    ));
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_symlink() {
            symlink(fs::read_link(entry.path())?, &target)?;
        } else {
            fs::copy(entry.path(), &target)?;
            // Files in the module cache are read-only; the copy must be removable.
            let mut perms = fs::metadata(&target)?.permissions();
            perms.set_mode(perms.mode() | 0o200);
            fs::set_permissions(&target, perms)?;
        }
    }
    Ok(())
}

fn go_build(src: &Path, commands: &[String], bin: &Path, log_path: &Path) -> Result<()> {
    let log = fs::File::create(log_path)?;
    let mut args: Vec<String> = [
        "build",
        "-v",
        "-trimpath",
        "-ldflags",
        "-s -w",
        "-o",
        // A trailing slash makes go write each main package into the folder by its name.
        &format!("{}/", bin.display()),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(commands.iter().map(|c| format!("./cmd/{c}")));
    let mut child = Command::new("go")
        .args(&args)
        .current_dir(src)
        .env("CGO_ENABLED", "0")
        .env("GOWORK", "off")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting `go build` for Tekton: install Go 1.26 or newer and put it on PATH")?;
    let started = Instant::now();
    let mut last_report = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            if status.success() {
                return Ok(());
            }
            bail!(
                "go build of Tekton in {} failed ({status}); last lines of {}:\n{}",
                src.display(),
                log_path.display(),
                crate::process::log_tail(log_path, 30)
            );
        }
        if last_report.elapsed() >= Duration::from_secs(15) {
            last_report = Instant::now();
            progress(&format!(
                "tekton: building, {} elapsed, compiling {}",
                fmt_elapsed(started.elapsed()),
                crate::process::log_tail(log_path, 1).trim()
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// What ko's default base gives a Go program: the binary at `/ko-app/<name>`, a nonroot user,
/// CA certificates and a writable `/tmp`.
fn program_rootfs(rootfs: &Path, binary: &Path, command: &str) -> Result<()> {
    base_rootfs(rootfs)?;
    let target = rootfs.join(ko_path(command).trim_start_matches('/'));
    fs::create_dir_all(target.parent().unwrap_or(rootfs))?;
    fs::copy(binary, &target)
        .with_context(|| format!("copying {} into its image", binary.display()))?;
    fs::set_permissions(&target, fs::Permissions::from_mode(0o755))?;
    // ko's data folder; knative reads build details from it and tolerates it being empty.
    mkdir_mode(&rootfs.join("var/run/ko"), 0o755)?;
    Ok(())
}

/// busybox with its applets as symlinks in `/bin`, so `sh`, `cat`, `chmod` and friends exist.
fn shell_rootfs(rootfs: &Path) -> Result<()> {
    base_rootfs(rootfs)?;
    let bin = rootfs.join("bin");
    mkdir_mode(&bin, 0o755)?;
    fs::copy(BUSYBOX, bin.join("busybox"))
        .with_context(|| format!("copying {BUSYBOX} into the shell image"))?;
    fs::set_permissions(bin.join("busybox"), fs::Permissions::from_mode(0o755))?;
    let list = Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .with_context(|| format!("running {BUSYBOX} --list"))?;
    if !list.status.success() {
        bail!(
            "`{BUSYBOX} --list` failed ({}): reinstall it with `apt-get install --reinstall -y \
             busybox-static`",
            list.status
        );
    }
    for applet in String::from_utf8_lossy(&list.stdout).split_whitespace() {
        if applet != "busybox" && !applet.contains('/') {
            symlink("busybox", bin.join(applet))?;
        }
    }
    for dir in ["usr/bin", "usr/local/bin", "workspace", "home/nonroot"] {
        mkdir_mode(&rootfs.join(dir), 0o755)?;
    }
    Ok(())
}

fn base_rootfs(rootfs: &Path) -> Result<()> {
    mkdir_mode(rootfs, 0o755)?;
    mkdir_mode(&rootfs.join("etc/ssl/certs"), 0o755)?;
    fs::write(
        rootfs.join("etc/passwd"),
        format!(
            "root:x:0:0:root:/root:/sbin/nologin\n\
             nonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n"
        ),
    )?;
    fs::write(
        rootfs.join("etc/group"),
        format!("root:x:0:\nnonroot:x:{NONROOT}:\n"),
    )?;
    let certs = Path::new("/etc/ssl/certs/ca-certificates.crt");
    fs::copy(certs, rootfs.join("etc/ssl/certs/ca-certificates.crt")).with_context(|| {
        format!(
            "copying {} into an image: run `apt-get install -y ca-certificates`",
            certs.display()
        )
    })?;
    mkdir_mode(&rootfs.join("tmp"), 0o1777)?;
    mkdir_mode(&rootfs.join("home/nonroot"), 0o755)?;
    Ok(())
}

/// Creates `dir` (and parents) and gives it exactly `mode`, whatever the umask.
fn mkdir_mode(dir: &Path, mode: u32) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_rootfs_looks_like_ko() {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("nop");
        fs::write(&binary, b"\x7fELF").unwrap();
        let rootfs = dir.path().join("rootfs");
        program_rootfs(&rootfs, &binary, "nop").unwrap();
        let mode = |p: &str| fs::metadata(rootfs.join(p)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode("ko-app/nop"), 0o755);
        assert_eq!(mode("tmp"), 0o1777);
        let passwd = fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
        assert!(passwd.contains(":65532:65532:"), "{passwd}");
        assert!(rootfs.join("etc/ssl/certs/ca-certificates.crt").is_file());
        assert!(rootfs.join("etc/group").is_file());
    }
}
