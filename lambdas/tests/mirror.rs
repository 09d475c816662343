//! The mirror against real repositories: bare repositories on disk and over `git daemon`.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use modelsync_lambdas::mirror::{self, MirrorMetrics, MirrorState, SyncOutcome, SyncSpec};
use support::{Upstream, git, git_daemon};

fn spec(url: &str, root: &Path, git_ref: &str, depth: u32) -> SyncSpec {
    SyncSpec {
        repo: url.to_owned(),
        git_ref: git_ref.to_owned(),
        root: root.canonicalize().unwrap(),
        link: PathBuf::from("repo"),
        depth,
        credentials: Default::default(),
    }
}

fn worktrees(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(root.join(".worktrees"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn commit_count(root: &Path) -> usize {
    git(&root.join("repo"), &["rev-list", "--count", "HEAD"])
        .parse()
        .unwrap()
}

#[test]
fn first_sync_then_noop_then_new_commit() {
    let up = Upstream::new();
    let first = up.commit(&[("a.txt", "one")]);
    let root = tempfile::tempdir().unwrap();
    let spec = spec(&up.url(), root.path(), "main", 1);

    assert_eq!(
        mirror::sync::sync(&spec).unwrap(),
        SyncOutcome::Updated {
            hash: first.clone()
        }
    );
    let link = root.path().join("repo");
    assert_eq!(
        fs::read_link(&link).unwrap(),
        Path::new(".worktrees").join(&first)
    );
    assert_eq!(fs::read_to_string(link.join("a.txt")).unwrap(), "one");
    assert_eq!(
        mirror::sync::sync(&spec).unwrap(),
        SyncOutcome::Noop {
            hash: first.clone()
        }
    );

    let second = up.commit(&[("a.txt", "two")]);
    assert_eq!(
        mirror::sync::sync(&spec).unwrap(),
        SyncOutcome::Updated {
            hash: second.clone()
        }
    );
    assert_eq!(fs::read_to_string(link.join("a.txt")).unwrap(), "two");
    assert_eq!(
        worktrees(root.path()),
        vec![second.clone()],
        "old worktrees must be removed"
    );
    let registered: Vec<_> = fs::read_dir(root.path().join(".git/worktrees"))
        .unwrap()
        .collect();
    assert_eq!(registered.len(), 1);
}

/// What a program written for git-sync does with its volume: follow the link, read files, and
/// run git inside the checkout.
#[test]
fn git_sync_readers_work_unchanged() {
    let up = Upstream::new();
    let hash = up.commit(&[("manifests/model.yaml", "data:\n  model: m1\n")]);
    let root = tempfile::tempdir().unwrap();
    mirror::sync::sync(&spec(&up.url(), root.path(), "HEAD", 1)).unwrap();

    let reader = r#"set -eu
cd "$ROOT/$LINK"
target=$(readlink "$ROOT/$LINK")
test "$target" = ".worktrees/$(git rev-parse HEAD)"
test -z "$(git status --porcelain)"
grep -q 'model: m1' manifests/model.yaml
git rev-parse HEAD"#;
    let out = std::process::Command::new("sh")
        .args(["-c", reader])
        .env("ROOT", root.path())
        .env("LINK", "repo")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), hash);
}

#[test]
fn force_push_is_followed() {
    let up = Upstream::new();
    up.commit(&[("a.txt", "one")]);
    up.commit(&[("a.txt", "two")]);
    let root = tempfile::tempdir().unwrap();
    let spec = spec(&up.url(), root.path(), "main", 1);
    mirror::sync::sync(&spec).unwrap();

    git(&up.work(), &["reset", "-q", "--hard", "HEAD~1"]);
    let rewritten = up.commit(&[("a.txt", "rewritten")]);
    assert_eq!(
        mirror::sync::sync(&spec).unwrap(),
        SyncOutcome::Updated { hash: rewritten }
    );
    assert_eq!(
        fs::read_to_string(root.path().join("repo/a.txt")).unwrap(),
        "rewritten"
    );
}

#[test]
fn ref_can_be_a_tag_or_a_commit() {
    let up = Upstream::new();
    let old = up.commit(&[("a.txt", "old")]);
    git(&up.work(), &["tag", "-a", "-m", "release", "v1"]);
    git(&up.work(), &["push", "-q", "origin", "v1"]);
    let tip = up.commit(&[("a.txt", "tip")]);

    let root = tempfile::tempdir().unwrap();
    assert_eq!(
        mirror::sync::sync(&spec(&up.url(), root.path(), "v1", 1))
            .unwrap()
            .hash(),
        old
    );
    assert_eq!(
        fs::read_to_string(root.path().join("repo/a.txt")).unwrap(),
        "old"
    );

    for (depth, wanted) in [(1, tip.as_str()), (0, old.as_str()), (1, &old[..12])] {
        let root = tempfile::tempdir().unwrap();
        let outcome = mirror::sync::sync(&spec(&up.url(), root.path(), wanted, depth)).unwrap();
        assert!(
            outcome.hash().starts_with(wanted),
            "depth {depth}, ref {wanted}: got {outcome:?}"
        );
    }

    let root = tempfile::tempdir().unwrap();
    let err = mirror::sync::sync(&spec(&up.url(), root.path(), "nope", 1))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ref \"nope\" is not a branch, tag or commit") && err.contains("main, v1"),
        "{err}"
    );
}

#[test]
fn depth_one_is_shallow_and_zero_is_full() {
    let up = Upstream::new();
    for i in 0..4 {
        up.commit(&[("a.txt", &i.to_string())]);
    }
    let port = support::free_port();
    let _daemon = git_daemon(up.dir.path(), port);
    let url = format!("git://127.0.0.1:{port}/remote.git");
    let shallow = tempfile::tempdir().unwrap();
    mirror::sync::sync(&spec(&url, shallow.path(), "main", 1)).unwrap();
    assert!(shallow.path().join(".git/shallow").exists());
    assert_eq!(commit_count(shallow.path()), 1);

    let full = tempfile::tempdir().unwrap();
    mirror::sync::sync(&spec(&url, full.path(), "main", 0)).unwrap();
    assert_eq!(commit_count(full.path()), 4);

    // libgit2 cannot fetch shallow from a local path, so there depth is ignored, not an error.
    let local = tempfile::tempdir().unwrap();
    mirror::sync::sync(&spec(&up.url(), local.path(), "main", 1)).unwrap();
    assert_eq!(commit_count(local.path()), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_that_goes_away_keeps_the_last_good_tree() {
    let up = Upstream::new();
    let first = up.commit(&[("a.txt", "one")]);
    let port = support::free_port();
    let url = format!("git://127.0.0.1:{port}/remote.git");
    let root = tempfile::tempdir().unwrap();
    let spec = spec(&url, root.path(), "main", 1);
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = MirrorMetrics::register(&mut registry);
    let (state, state_rx) = tokio::sync::watch::channel(MirrorState::default());

    let daemon = git_daemon(up.dir.path(), port);
    mirror::sync_and_publish(&spec, &metrics, &state, None)
        .await
        .unwrap();
    drop(daemon);

    let err = mirror::sync_and_publish(&spec, &metrics, &state, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&url), "the error names the remote: {err}");
    let seen = state_rx.borrow().clone();
    assert_eq!(
        seen.synced.unwrap().hash,
        first,
        "the last good tree is still published"
    );
    assert!(seen.last_error.is_some());
    assert_eq!(
        fs::read_to_string(root.path().join("repo/a.txt")).unwrap(),
        "one"
    );

    let second = up.commit(&[("a.txt", "two")]);
    let _daemon = git_daemon(up.dir.path(), port);
    let outcome = mirror::sync_and_publish(&spec, &metrics, &state, None)
        .await
        .unwrap();
    assert_eq!(outcome, SyncOutcome::Updated { hash: second });
    assert!(state_rx.borrow().last_error.is_none());

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for line in [
        "git_sync_count_total{status=\"success\"} 2",
        "git_sync_count_total{status=\"error\"} 1",
        "git_sync_duration_seconds_count{status=\"error\"} 1",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}

/// A reader following the link while many syncs happen must only ever see whole trees: every
/// file present and all from the same commit.
#[test]
fn readers_never_see_a_half_written_tree() {
    const FILES: usize = 30;
    let up = Upstream::new();
    let write = |n: usize| {
        let text = n.to_string();
        let names: Vec<String> = (0..FILES).map(|i| format!("d{}/f{i}.txt", i % 3)).collect();
        let files: Vec<(&str, &str)> = names.iter().map(|p| (p.as_str(), text.as_str())).collect();
        up.commit(&files)
    };
    write(0);
    let root = tempfile::tempdir().unwrap();
    let spec = spec(&up.url(), root.path(), "main", 1);
    mirror::sync::sync(&spec).unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let complete_reads = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (done, complete_reads) = (done.clone(), complete_reads.clone());
        let link = root.path().join("repo");
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let target = fs::read_link(&link).expect("the link always exists");
                let tree = link.parent().unwrap().join(&target);
                let mut values = Vec::new();
                for i in 0..FILES {
                    match fs::read_to_string(tree.join(format!("d{}/f{i}.txt", i % 3))) {
                        Ok(v) => values.push(v),
                        // Removed after the link moved on: stale, never half-written.
                        Err(_) if fs::read_link(&link).unwrap() != target => break,
                        Err(e) => panic!(
                            "{} is published but file {i} is missing: {e}",
                            target.display()
                        ),
                    }
                }
                if values.len() == FILES {
                    assert!(
                        values.iter().all(|v| *v == values[0]),
                        "mixed tree: {values:?}"
                    );
                    complete_reads.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    for n in 1..=15 {
        let hash = write(n);
        assert_eq!(mirror::sync::sync(&spec).unwrap().hash(), hash);
    }
    done.store(true, Ordering::Relaxed);
    reader.join().expect("the reader saw only complete trees");
    assert!(
        complete_reads.load(Ordering::Relaxed) > 0,
        "the reader read nothing"
    );
    assert_eq!(worktrees(root.path()).len(), 1, "worktrees piled up");
}

#[tokio::test]
async fn webhook_gets_each_new_hash_and_http_root_waits_for_the_first_sync() {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    let (hooks_tx, mut hooks) = tokio::sync::mpsc::unbounded_channel::<String>();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let hooks_tx = hooks_tx.clone();
            async move {
                let hash = headers[mirror::webhook::HASH_HEADER]
                    .to_str()
                    .unwrap()
                    .to_owned();
                hooks_tx.send(hash).unwrap();
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await.unwrap() });

    let up = Upstream::new();
    let root = tempfile::tempdir().unwrap();
    let spec = spec(&up.url(), root.path(), "main", 1);
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = MirrorMetrics::register(&mut registry);
    let (state, state_rx) = tokio::sync::watch::channel(MirrorState::default());
    let app = mirror::http_app(state_rx, Arc::new(registry));
    let get_root = || async {
        app.clone()
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap()
            .status()
    };
    assert_eq!(get_root().await, 503);

    let webhook = mirror::webhook::spawn(hook_url);
    for text in ["one", "two"] {
        let hash = up.commit(&[("a.txt", text)]);
        mirror::sync_and_publish(&spec, &metrics, &state, Some(&webhook))
            .await
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), hooks.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, hash);
    }
    mirror::sync_and_publish(&spec, &metrics, &state, Some(&webhook))
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), hooks.recv())
            .await
            .is_err(),
        "a sync with no new commit must not call the webhook"
    );
    assert_eq!(get_root().await, 200);
}

#[test]
fn credentials_stay_out_of_errors() {
    let root = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let mut with_secret = spec(
        &format!("http://user:s3cret@127.0.0.1:{port}/r.git"),
        root.path(),
        "main",
        1,
    );
    let err = mirror::sync::sync(&with_secret).unwrap_err().to_string();
    assert!(
        err.contains("http://***@127.0.0.1") && !err.contains("s3cret"),
        "{err}"
    );

    with_secret.credentials.password_file = Some(root.path().join("missing-token"));
    let err = mirror::sync::sync(&with_secret).unwrap_err().to_string();
    assert!(
        err.starts_with("reading password file") && err.contains("missing-token"),
        "{err}"
    );
}

/// An HTTPS-style token read from a file reaches the server as basic auth, and nowhere else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_from_a_file_is_sent_as_basic_auth() {
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<String>();
    let server = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let seen_tx = seen_tx.clone();
        async move {
            match headers.get("authorization") {
                None => (
                    axum::http::StatusCode::UNAUTHORIZED,
                    [
                        ("www-authenticate", "Basic realm=\"git\""),
                        ("connection", "close"),
                    ],
                    "who are you",
                ),
                Some(v) => {
                    seen_tx.send(v.to_str().unwrap().to_owned()).unwrap();
                    (
                        axum::http::StatusCode::FORBIDDEN,
                        [("x-seen", "1"), ("connection", "close")],
                        "no repo here",
                    )
                }
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, server).await.unwrap() });

    let root = tempfile::tempdir().unwrap();
    // Not inside the root: like git-sync, the mirror empties a root that is not its repository.
    let secrets = tempfile::tempdir().unwrap();
    let token = secrets.path().join("token");
    fs::write(&token, "s3cret\n").unwrap();
    let mut spec = spec(&format!("http://{addr}/org/r.git"), root.path(), "main", 1);
    spec.credentials.username = Some("x-access-token".into());
    spec.credentials.password_file = Some(token);
    let sync =
        tokio::task::spawn_blocking(move || mirror::sync::sync(&spec).unwrap_err().to_string());
    let err = tokio::time::timeout(Duration::from_secs(30), sync)
        .await
        .expect("sync finishes")
        .unwrap();
    assert!(!err.contains("s3cret"), "{err}");
    let sent = seen
        .try_recv()
        .unwrap_or_else(|_| panic!("no credentials were sent; the sync said: {err}"));
    // base64("x-access-token:s3cret")
    assert_eq!(sent, "Basic eC1hY2Nlc3MtdG9rZW46czNjcmV0");
}

/// `git args...` in `dir` with no user configuration; its raw standard output.
fn git_bytes(dir: &Path, args: &[&str]) -> Vec<u8> {
    modelsync_testenv::git::Git::new(dir)
        .run_bytes(args)
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// Asserts that `worktree` holds exactly the tree of commit `hash` of `repo`, as `git ls-tree`
/// lists it: the same paths, file bytes, executable bits, symlink targets, and an empty folder
/// per submodule.
fn assert_checked_out(repo: &Path, worktree: &Path, hash: &str) {
    use std::os::unix::fs::PermissionsExt;
    let listing = git_bytes(repo, &["ls-tree", "-r", "-z", "--full-tree", hash]);
    let mut expected = Vec::new();
    for line in listing.split(|b| *b == 0).filter(|l| !l.is_empty()) {
        let line = String::from_utf8(line.to_vec()).unwrap();
        let (meta, path) = line.split_once('\t').unwrap();
        let [mode, _kind, id]: [&str; 3] = meta.split(' ').collect::<Vec<_>>().try_into().unwrap();
        let on_disk = worktree.join(path);
        let stat = fs::symlink_metadata(&on_disk)
            .unwrap_or_else(|e| panic!("{path} of {hash} is not checked out: {e}"));
        match mode {
            "100644" | "100755" => {
                assert!(stat.is_file(), "{path} is not a file");
                let blob = git_bytes(repo, &["cat-file", "blob", id]);
                assert_eq!(fs::read(&on_disk).unwrap(), blob, "{path}'s bytes");
                let executable = stat.permissions().mode() & 0o111 != 0;
                assert_eq!(executable, mode == "100755", "{path}'s executable bit");
            }
            "120000" => {
                let target = git_bytes(repo, &["cat-file", "blob", id]);
                let link = fs::read_link(&on_disk).unwrap();
                assert_eq!(
                    link.as_os_str().as_encoded_bytes(),
                    target,
                    "{path}'s target"
                );
            }
            "160000" => {
                assert!(stat.is_dir(), "submodule {path} is not a folder");
                assert_eq!(fs::read_dir(&on_disk).unwrap().count(), 0, "{path}");
            }
            other => panic!("{path}: unexpected mode {other}"),
        }
        expected.push(path.to_owned());
    }
    let mut found = Vec::new();
    list_leaves(worktree, "", &mut found);
    expected.sort();
    found.sort();
    assert_eq!(
        found, expected,
        "the worktree holds other paths than the commit"
    );
}

/// Files, symlinks and empty folders under `dir`, relative, without the worktree's `.git`.
fn list_leaves(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if prefix.is_empty() && name == ".git" {
            continue;
        }
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let kind = entry.file_type().unwrap();
        if kind.is_dir() && fs::read_dir(entry.path()).unwrap().next().is_some() {
            list_leaves(&entry.path(), &rel, out);
        } else {
            out.push(rel);
        }
    }
}

/// `git status` and `git diff` see nothing to report, and `git diff-files` (which trusts the
/// index's stat data without reading the files) neither: the index matches the files exactly.
fn assert_clean(worktree: &Path) {
    for args in [
        &["diff-files"][..],
        &["status", "--porcelain"],
        &["diff"],
        &["diff", "--cached"],
    ] {
        let out = git_bytes(worktree, args);
        assert!(
            out.is_empty(),
            "git {args:?} in {}:\n{}",
            worktree.display(),
            String::from_utf8_lossy(&out)
        );
    }
}

/// Every regular file of `dir` opened and read, as a reader holding them would: the handles
/// still see the files' bytes after the worktree is removed.
fn hold_files(dir: &Path) -> Vec<(PathBuf, fs::File, Vec<u8>)> {
    let mut paths = Vec::new();
    list_leaves(dir, "", &mut paths);
    paths
        .into_iter()
        .map(|p| dir.join(p))
        .filter(|p| fs::symlink_metadata(p).unwrap().is_file())
        .map(|p| {
            let bytes = fs::read(&p).unwrap();
            (p.clone(), fs::File::open(&p).unwrap(), bytes)
        })
        .collect()
}

fn assert_unaltered(held: &mut [(PathBuf, fs::File, Vec<u8>)]) {
    use std::io::{Read, Seek};
    for (path, file, before) in held {
        let mut now = Vec::new();
        file.rewind().unwrap();
        file.read_to_end(&mut now).unwrap();
        assert_eq!(
            now,
            *before,
            "{} changed under a reader during the sync",
            path.display()
        );
    }
}

fn inode(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::symlink_metadata(path).unwrap().ino()
}

/// A new commit changes modes, turns a file into a folder and a folder into a file, deletes
/// files and adds a symlink and a submodule: the new worktree is exactly the commit, unchanged
/// files are shared with the previous worktree, and the previous worktree's bytes never change
/// under its readers.
#[test]
fn new_commits_reuse_unchanged_files_and_never_alter_the_old_tree() {
    use std::os::unix::fs::PermissionsExt;
    let up = Upstream::new();
    let work = up.work();
    let first = up.commit(&[
        ("keep.txt", "kept\n"),
        ("a.sh", "echo a\n"),
        ("run.sh", "echo run\n"),
        ("dir/x.txt", "x1\n"),
        ("dir/y.txt", "y\n"),
        ("dir/deep/z.txt", "z\n"),
        ("becomes-dir", "a file\n"),
        ("becomes-file/inner.txt", "inner\n"),
    ]);
    fs::set_permissions(work.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    let first_exec = up.commit(&[]);
    let root = tempfile::tempdir().unwrap();
    let spec = spec(&up.url(), root.path(), "main", 1);
    assert_eq!(mirror::sync::sync(&spec).unwrap().hash(), first_exec);
    assert_ne!(first, first_exec);
    let old = root.path().join(".worktrees").join(&first_exec);
    assert_checked_out(&up.bare(), &old, &first_exec);
    assert_clean(&old);

    let mut held = hold_files(&old);
    let old_keep = inode(&old.join("keep.txt"));
    fs::set_permissions(work.join("a.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(work.join("run.sh"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::remove_file(work.join("becomes-dir")).unwrap();
    fs::remove_dir_all(work.join("becomes-file")).unwrap();
    std::os::unix::fs::symlink("keep.txt", work.join("link")).unwrap();
    std::os::unix::fs::symlink("../dir/deep", work.join("dir/link-to-dir")).unwrap();
    fs::create_dir(work.join("sub")).unwrap();
    let gitlink = format!("160000,{first},sub");
    git(&work, &["update-index", "--add", "--cacheinfo", &gitlink]);
    let second = up.commit_at(
        &[
            ("dir/x.txt", Some("x2\n")),
            ("dir/y.txt", None),
            ("becomes-dir/now.txt", Some("now a folder\n")),
            ("becomes-file", Some("now a file\n")),
        ],
        "2026-01-02T00:00:00Z",
    );
    assert_eq!(
        mirror::sync::sync(&spec).unwrap(),
        SyncOutcome::Updated {
            hash: second.clone()
        }
    );
    let new = root.path().join(".worktrees").join(&second);
    assert_unaltered(&mut held);
    assert_checked_out(&up.bare(), &new, &second);
    assert_clean(&new);
    assert_eq!(
        inode(&new.join("keep.txt")),
        old_keep,
        "an unchanged file is hard-linked, not written again"
    );
    assert!(!old.exists(), "the old worktree is removed");

    // And back: a later commit reuses the files of a worktree that itself reused files.
    let mut held = hold_files(&new);
    let third = up.commit_at(
        &[("keep.txt", Some("changed\n")), ("dir/x.txt", None)],
        "2026-01-03T00:00:00Z",
    );
    mirror::sync::sync(&spec).unwrap();
    assert_unaltered(&mut held);
    let newest = root.path().join(".worktrees").join(&third);
    assert_checked_out(&up.bare(), &newest, &third);
    assert_clean(&newest);
}

/// A reader that writes into a published file must not spread its change to later commits.
#[test]
fn a_file_changed_by_a_reader_is_written_anew() {
    let up = Upstream::new();
    up.commit(&[("a.txt", "pristine\n"), ("b.txt", "one\n")]);
    let root = tempfile::tempdir().unwrap();
    let spec = spec(&up.url(), root.path(), "main", 1);
    mirror::sync::sync(&spec).unwrap();
    let link = root.path().join("repo");
    let mut file = fs::OpenOptions::new()
        .append(true)
        .open(link.join("a.txt"))
        .unwrap();
    std::io::Write::write_all(&mut file, b"scribbled\n").unwrap();
    drop(file);

    let second = up.commit(&[("b.txt", "two\n")]);
    mirror::sync::sync(&spec).unwrap();
    assert_eq!(
        fs::read_to_string(link.join("a.txt")).unwrap(),
        "pristine\n"
    );
    let worktree = root.path().join(".worktrees").join(&second);
    assert_checked_out(&up.bare(), &worktree, &second);
    assert_clean(&worktree);
}

/// With a `.gitattributes` (at any depth) files are converted as git converts them; without,
/// they are the blobs' bytes; and a worktree that was converted is never reused as it is.
#[test]
fn attributes_are_honoured_and_trees_without_them_are_unconverted() {
    let up = Upstream::new();
    let root = tempfile::tempdir().unwrap();
    let spec = spec(&up.url(), root.path(), "main", 1);
    let link = root.path().join("repo");
    let read = |path: &str| fs::read_to_string(link.join(path)).unwrap();
    let check = |hash: &str| assert_clean(&root.path().join(".worktrees").join(hash));

    let plain = up.commit(&[("a.txt", "one\ntwo\n"), ("sub/b.txt", "x\ny\n")]);
    mirror::sync::sync(&spec).unwrap();
    assert_eq!(
        (read("a.txt"), read("sub/b.txt")),
        ("one\ntwo\n".into(), "x\ny\n".into())
    );
    check(&plain);

    let nested = up.commit(&[("sub/.gitattributes", "*.txt eol=crlf\n")]);
    mirror::sync::sync(&spec).unwrap();
    assert_eq!(read("sub/b.txt"), "x\r\ny\r\n", "nested attributes apply");
    assert_eq!(
        read("a.txt"),
        "one\ntwo\n",
        "outside their folder they do not"
    );
    check(&nested);

    // The blobs are the same as in the converted worktree, but its files are not the blobs.
    let removed = up.commit_at(&[("sub/.gitattributes", None)], "2026-01-02T00:00:00Z");
    mirror::sync::sync(&spec).unwrap();
    assert_eq!(read("sub/b.txt"), "x\ny\n");
    check(&removed);

    let top = up.commit(&[(".gitattributes", "*.txt text eol=crlf\n")]);
    mirror::sync::sync(&spec).unwrap();
    assert_eq!(
        (read("a.txt"), read("sub/b.txt")),
        ("one\r\ntwo\r\n".into(), "x\r\ny\r\n".into())
    );
    check(&top);
}

/// Removing the previous worktree changes the change time of the files hard-linked from it;
/// the new worktree's index records the new one, so git trusts its stat data again.
#[test]
fn the_index_is_refreshed_after_the_old_worktree_is_removed() {
    use mirror::layout;
    let up = Upstream::new();
    let files: Vec<(String, String)> = (0..50)
        .map(|i| (format!("d{}/f{i}.txt", i % 5), format!("{i}\n")))
        .collect();
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let first = up.commit(&files);
    let root = tempfile::tempdir().unwrap();
    let root_path = root.path().canonicalize().unwrap();
    mirror::sync::sync(&spec(&up.url(), &root_path, "main", 1)).unwrap();
    let second = up.commit(&[("d0/f0.txt", "changed\n")]);
    git(&root_path, &["fetch", "-q", &up.url(), "main"]);

    let repo = git2::Repository::open(&root_path).unwrap();
    let prepared = layout::prepare(&root_path, &first, Some(&second));
    assert!(
        prepared.is_some(),
        "the first worktree's files can be reused"
    );
    let worktree = layout::add_worktree(&repo, &root_path, &second, prepared).unwrap();
    assert_clean(&worktree.path);
    // Coarse file timestamps: make sure the removal happens at a later tick than the links.
    std::thread::sleep(Duration::from_millis(50));
    layout::publish(&root_path, Path::new("repo"), &worktree.path).unwrap();
    layout::remove_stale(&root_path, &second).unwrap();
    let path = worktree.path.clone();
    let refreshed = worktree.refresh_index().unwrap();
    assert_eq!(refreshed, 49, "every linked file's entry is refreshed");
    assert_clean(&path);
    assert_checked_out(&up.bare(), &path, &second);
}
