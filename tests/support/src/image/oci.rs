//! A one-layer OCI image-layout tar written straight from a root filesystem folder, so images
//! need no container daemon and no registry: containerd imports the tar as it is.
//!
//! The layer is left uncompressed: containerd unpacks it right after import on the same
//! machine, so gzip would only spend CPU on both sides.

use std::fs::{self, File};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// What the image runs and how it is named.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// The full reference, like `modelsync.local/pause:3`.
    pub name: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    /// Like `65532` or `65532:65532`.
    pub user: Option<String>,
    pub working_dir: Option<String>,
}

const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// Writes `rootfs` as the single layer of an OCI image layout, archived into `out_tar`.
///
/// File modes, owners (numeric), modification times and symlinks are kept as they are in the
/// folder, so a rootfs prepared with the right owners (for example by running as root) keeps
/// them in the image. Sockets are skipped: they cannot live in an image.
pub fn write_oci_tar(rootfs: &Path, config: &ImageConfig, out_tar: &Path) -> Result<()> {
    if !rootfs.is_dir() {
        bail!(
            "the image root filesystem {} is not a folder: build it before writing the image",
            rootfs.display()
        );
    }
    if config.name.is_empty() || !config.name.contains(':') {
        bail!(
            "image name {:?} must be a full reference with a tag, like modelsync.local/pause:3",
            config.name
        );
    }
    let out_dir = out_tar
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;

    // The layer goes to a temporary file first: its digest must be known before the blob
    // entry that carries it as its name can be written.
    let mut layer_file = tempfile::tempfile_in(out_dir)
        .with_context(|| format!("creating a temporary layer file in {}", out_dir.display()))?;
    let (layer_digest, layer_size) = {
        let mut hashing = Hashing::new(BufWriter::new(&mut layer_file));
        write_layer(rootfs, &mut hashing)
            .with_context(|| format!("archiving {}", rootfs.display()))?;
        let (digest, size, mut inner) = hashing.finish();
        inner.flush()?;
        (digest, size)
    };
    layer_file.seek(SeekFrom::Start(0))?;

    let config_blob = serde_json::to_vec(&config_json(config, &layer_digest))?;
    let config_digest = sha256_hex(&config_blob);
    let manifest_blob = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": format!("sha256:{config_digest}"),
            "size": config_blob.len(),
        },
        "layers": [{
            "mediaType": LAYER_MEDIA_TYPE,
            "digest": format!("sha256:{layer_digest}"),
            "size": layer_size,
        }],
    }))?;
    let manifest_digest = sha256_hex(&manifest_blob);
    let index_blob = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [{
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": format!("sha256:{manifest_digest}"),
            "size": manifest_blob.len(),
            "platform": { "architecture": "amd64", "os": "linux" },
            "annotations": {
                "io.containerd.image.name": config.name,
                "org.opencontainers.image.ref.name": config.name,
            },
        }],
    }))?;

    // Written beside the target and renamed, so a half-written tar never carries the name.
    let partial = PathBuf::from(format!("{}.partial", out_tar.display()));
    let result = (|| -> Result<()> {
        let mut out = tar::Builder::new(BufWriter::new(
            File::create(&partial).with_context(|| format!("creating {}", partial.display()))?,
        ));
        append_bytes(&mut out, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        append_bytes(&mut out, "index.json", &index_blob)?;
        append_dir(&mut out, "blobs/")?;
        append_dir(&mut out, "blobs/sha256/")?;
        append_bytes(
            &mut out,
            &format!("blobs/sha256/{manifest_digest}"),
            &manifest_blob,
        )?;
        append_bytes(
            &mut out,
            &format!("blobs/sha256/{config_digest}"),
            &config_blob,
        )?;
        let mut header = blob_header(layer_size);
        out.append_data(
            &mut header,
            format!("blobs/sha256/{layer_digest}"),
            &mut layer_file,
        )?;
        out.into_inner()?.flush()?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&partial);
        return Err(e.context(format!("writing image tar {}", out_tar.display())));
    }
    fs::rename(&partial, out_tar)
        .with_context(|| format!("renaming {} into place", partial.display()))?;
    Ok(())
}

/// Imports an image tar written by [`write_oci_tar`] into containerd's `k8s.io` namespace, where
/// the kubelet looks for images.
pub fn import(ctr_address: &Path, tar: &Path) -> Result<()> {
    let output = Command::new("ctr")
        .arg("--address")
        .arg(ctr_address)
        .args(["-n", "k8s.io", "images", "import"])
        .arg(tar)
        .output();
    let output = match output {
        Ok(o) => o,
        Err(e) if e.kind() == io::ErrorKind::NotFound => bail!(
            "`ctr` is not installed (it comes with containerd): run `apt-get install -y \
             containerd runc containernetworking-plugins iptables conntrack`"
        ),
        Err(e) => return Err(e).context("running ctr images import"),
    };
    if !output.status.success() {
        bail!(
            "`ctr --address {} -n k8s.io images import {}` failed ({}): {}{}",
            ctr_address.display(),
            tar.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            String::from_utf8_lossy(&output.stdout).trim()
        );
    }
    Ok(())
}

fn config_json(config: &ImageConfig, layer_digest: &str) -> Value {
    let mut run = serde_json::Map::new();
    let list = |v: &[String]| Value::from(v.to_vec());
    if !config.entrypoint.is_empty() {
        run.insert("Entrypoint".into(), list(&config.entrypoint));
    }
    if !config.cmd.is_empty() {
        run.insert("Cmd".into(), list(&config.cmd));
    }
    if !config.env.is_empty() {
        run.insert("Env".into(), list(&config.env));
    }
    if let Some(user) = &config.user {
        run.insert("User".into(), user.clone().into());
    }
    if let Some(dir) = &config.working_dir {
        run.insert("WorkingDir".into(), dir.clone().into());
    }
    json!({
        "architecture": "amd64",
        "os": "linux",
        "config": run,
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{layer_digest}")] },
        "history": [{ "created_by": "modelsync image::oci", "comment": config.name }],
    })
}

fn write_layer(rootfs: &Path, out: &mut impl Write) -> Result<()> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    // Complete keeps owners, modes and times from the folder instead of normalising them.
    builder.mode(tar::HeaderMode::Complete);
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = rootfs.join(&rel);
        let mut entries = fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .collect::<io::Result<Vec<_>>>()?;
        // Sorted so the same folder gives the same digest.
        entries.sort_by_key(|e| e.file_name());
        let mut subdirs = Vec::new();
        for entry in entries {
            let name = rel.join(entry.file_name());
            let path = entry.path();
            let kind = entry.file_type()?;
            if is_socket(&kind) {
                continue;
            }
            builder
                .append_path_with_name(&path, &name)
                .with_context(|| format!("adding {} to the layer", path.display()))?;
            if kind.is_dir() {
                subdirs.push(name);
            }
        }
        // Reversed so the stack pops them in sorted order.
        stack.extend(subdirs.into_iter().rev());
    }
    builder.finish()?;
    Ok(())
}

fn is_socket(kind: &fs::FileType) -> bool {
    use std::os::unix::fs::FileTypeExt;
    kind.is_socket()
}

fn blob_header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header
}

fn append_bytes<W: Write>(out: &mut tar::Builder<W>, name: &str, data: &[u8]) -> Result<()> {
    let mut header = blob_header(data.len() as u64);
    out.append_data(&mut header, name, data)
        .with_context(|| format!("adding {name} to the image tar"))?;
    Ok(())
}

fn append_dir<W: Write>(out: &mut tar::Builder<W>, name: &str) -> Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o755);
    header.set_size(0);
    header.set_mtime(0);
    out.append_data(&mut header, name, io::empty())?;
    Ok(())
}

fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    fn finish(self) -> (String, u64, W) {
        (hex(&self.hasher.finalize()), self.size, self.inner)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads every entry of an image tar into memory, by name (tests only need small images).
#[cfg(test)]
fn read_entries(tar_path: &Path) -> Result<std::collections::BTreeMap<String, Vec<u8>>> {
    use std::io::Read;
    let mut archive = tar::Archive::new(File::open(tar_path)?);
    let mut out = std::collections::BTreeMap::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        out.insert(name, data);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn blob<'a>(
        entries: &'a std::collections::BTreeMap<String, Vec<u8>>,
        digest: &str,
    ) -> &'a [u8] {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        let data = entries
            .get(&format!("blobs/sha256/{hex}"))
            .unwrap_or_else(|| panic!("no blob {digest}"));
        assert_eq!(
            sha256_hex(data),
            hex,
            "blob {digest} does not match its digest"
        );
        data
    }

    #[test]
    fn writes_a_valid_image_layout() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        fs::create_dir_all(rootfs.join("bin")).unwrap();
        fs::create_dir_all(rootfs.join("etc")).unwrap();
        fs::write(rootfs.join("bin/hello"), b"#!/bin/true\n").unwrap();
        fs::set_permissions(rootfs.join("bin/hello"), fs::Permissions::from_mode(0o4755)).unwrap();
        fs::write(rootfs.join("etc/motd"), b"hi").unwrap();
        symlink("hello", rootfs.join("bin/hi")).unwrap();
        let config = ImageConfig {
            name: "modelsync.local/test:1".into(),
            entrypoint: vec!["/bin/hello".into()],
            cmd: vec!["world".into()],
            env: vec!["PATH=/bin".into()],
            user: Some("65532".into()),
            working_dir: Some("/etc".into()),
        };
        let out = dir.path().join("out/image.tar");
        write_oci_tar(&rootfs, &config, &out).unwrap();
        assert!(!PathBuf::from(format!("{}.partial", out.display())).exists());

        let entries = read_entries(&out).unwrap();
        let layout: Value = serde_json::from_slice(&entries["oci-layout"]).unwrap();
        assert_eq!(layout["imageLayoutVersion"], "1.0.0");
        let index: Value = serde_json::from_slice(&entries["index.json"]).unwrap();
        let desc = &index["manifests"][0];
        assert_eq!(
            desc["annotations"]["io.containerd.image.name"],
            "modelsync.local/test:1"
        );
        assert_eq!(
            desc["annotations"]["org.opencontainers.image.ref.name"],
            "modelsync.local/test:1"
        );
        let manifest_data = blob(&entries, desc["digest"].as_str().unwrap());
        assert_eq!(desc["size"], manifest_data.len());
        let manifest: Value = serde_json::from_slice(manifest_data).unwrap();
        let config_data = blob(&entries, manifest["config"]["digest"].as_str().unwrap());
        assert_eq!(manifest["config"]["size"], config_data.len());
        let image: Value = serde_json::from_slice(config_data).unwrap();
        assert_eq!(image["architecture"], "amd64");
        assert_eq!(image["os"], "linux");
        assert_eq!(image["config"]["Entrypoint"], json!(["/bin/hello"]));
        assert_eq!(image["config"]["Cmd"], json!(["world"]));
        assert_eq!(image["config"]["Env"], json!(["PATH=/bin"]));
        assert_eq!(image["config"]["User"], "65532");
        assert_eq!(image["config"]["WorkingDir"], "/etc");
        let layer_digest = manifest["layers"][0]["digest"].as_str().unwrap();
        assert_eq!(image["rootfs"]["diff_ids"][0], layer_digest);
        let layer = blob(&entries, layer_digest);
        assert_eq!(manifest["layers"][0]["size"], layer.len());

        let mut found = std::collections::BTreeMap::new();
        for entry in tar::Archive::new(layer).entries().unwrap() {
            let entry = entry.unwrap();
            let h = entry.header();
            found.insert(
                entry.path().unwrap().to_string_lossy().into_owned(),
                (
                    h.entry_type(),
                    h.mode().unwrap(),
                    h.link_name()
                        .unwrap()
                        .map(|l| l.to_string_lossy().into_owned()),
                ),
            );
        }
        let names: Vec<&str> = found.keys().map(String::as_str).collect();
        assert_eq!(names, ["bin", "bin/hello", "bin/hi", "etc", "etc/motd"]);
        assert_eq!(found["bin/hello"].1 & 0o7777, 0o4755);
        assert_eq!(found["bin/hi"].0, tar::EntryType::Symlink);
        assert_eq!(found["bin/hi"].2.as_deref(), Some("hello"));
        assert_eq!(found["bin"].0, tar::EntryType::Directory);

        // The same folder gives the same image.
        let again = dir.path().join("again.tar");
        write_oci_tar(&rootfs, &config, &again).unwrap();
        assert_eq!(
            read_entries(&again).unwrap()["index.json"],
            entries["index.json"]
        );
    }

    #[test]
    fn refuses_a_name_without_tag_and_a_missing_folder() {
        let dir = tempfile::tempdir().unwrap();
        let config = ImageConfig {
            name: "modelsync.local/test".into(),
            ..Default::default()
        };
        let err = write_oci_tar(dir.path(), &config, &dir.path().join("x.tar")).unwrap_err();
        assert!(format!("{err:#}").contains("with a tag"), "{err:#}");
        let config = ImageConfig {
            name: "modelsync.local/test:1".into(),
            ..Default::default()
        };
        let err = write_oci_tar(&dir.path().join("nope"), &config, &dir.path().join("x.tar"))
            .unwrap_err();
        assert!(format!("{err:#}").contains("is not a folder"), "{err:#}");
    }
}
