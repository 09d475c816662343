//! The token is used (GitHub receives it) yet appears in no output, no log line at any level,
//! no error and no file under the clone.

mod common;

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use clap::Parser;
use common::*;
use modelsync_bump_pr::{BumpPrArgs, run};
use modelsync_testenv::github::Endpoint;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut count = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                count += 1;
                let bytes = std::fs::read(&path).unwrap();
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    hits.push(path.display().to_string());
                }
            }
        }
    }
    assert!(count > 5, "expected a clone under {}", dir.display());
    hits
}

#[tokio::test]
async fn the_token_is_sent_but_never_shown_or_stored() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let remote = Remote::new();
    let (_daemon, url) = remote.serve();
    let github = start_github().await;
    let (_t, token) = token_file();
    let mut output = Vec::new();
    for (model, work) in [("m-2", "first"), ("m-3", "second")] {
        let work_dir = remote.dir.path().join(work);
        let a = args(
            &url,
            github.url(),
            &token,
            model,
            &["--work-dir", work_dir.to_str().unwrap()],
        );
        output.extend(format!("{a:?}").into_bytes());
        run(&a, &mut output)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let hits = files_containing(&work_dir, TOKEN.as_bytes());
        assert!(hits.is_empty(), "token written to {hits:?}");
        let config = std::fs::read_to_string(work_dir.join("config")).unwrap();
        assert!(config.contains(&format!("url = {url}\n")), "{config}");
        assert!(
            work_dir.join("shallow").exists(),
            "git:// clones are shallow"
        );
    }
    // A failing GitHub call must not echo the token either.
    let broken = start_github().await;
    broken.fail(
        Endpoint::Any,
        401,
        serde_json::json!({"message": "Bad credentials"}),
    );
    let err = run(&args(&url, broken.url(), &token, "m-4", &[]), &mut output)
        .await
        .unwrap_err();
    output.extend(format!("{err:#} {err:?}").into_bytes());

    let seen = github.seen();
    assert!(
        !seen.is_empty() && seen.iter().all(|s| s.authorization.contains(TOKEN)),
        "GitHub must receive the token on every call"
    );
    let output = String::from_utf8(output).unwrap();
    assert!(output.contains("opened pull request"), "{output}");
    assert!(!output.contains(TOKEN), "token in the output");
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("pushed") && logs.contains("syncing the pull request"),
        "{logs}"
    );
    assert!(!logs.contains(TOKEN), "token in a log line");
    let hits = files_containing(remote.dir.path(), TOKEN.as_bytes());
    assert!(hits.is_empty(), "token written to {hits:?}");
}

#[test]
fn there_is_no_flag_that_takes_the_token_itself() {
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BumpPrArgs,
    }
    let base = [
        "bump-pr", "--repo", "r", "--branch", "b", "--file", "f", "--set", "a=b", "--author",
        "A <a@b>",
    ];
    for flag in ["--token", "--github-token"] {
        let mut argv = base.to_vec();
        argv.extend([flag, TOKEN]);
        assert!(Cli::try_parse_from(argv).is_err(), "{flag} must not exist");
    }
}
