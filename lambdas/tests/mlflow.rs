//! The MLflow model source against a real `mlflow server` (sqlite backend, 127.0.0.1).
//!
//! MLflow is installed on first use into a venv in the user's cache, outside the repository,
//! keyed by version; later runs reuse it offline.

mod support;

use std::fs::{self, File};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use modelsync_lambdas::sources::mlflow::{MlflowSource, MlflowSpec};
use modelsync_testenv::process::Guarded;
use serde_json::{Value, json};

const MLFLOW_VERSION: &str = "3.17.2";
const COMPLETE: &str = ".complete";

/// `${XDG_CACHE_HOME:-$HOME/.cache}/modelsync/mlflow-<version>`, a venv with MLflow in it.
///
/// The venv is made in place (venvs cannot be moved), under an exclusive file lock so parallel
/// test binaries install once; a marker written last tells a finished install from a broken one.
fn mlflow_venv() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("set HOME or XDG_CACHE_HOME so MLflow can be cached for tests");
    let cache = base.join("modelsync");
    let dir = cache.join(format!("mlflow-{MLFLOW_VERSION}"));
    if dir.join(COMPLETE).exists() {
        return dir;
    }
    fs::create_dir_all(&cache).unwrap();
    let lock = File::create(cache.join(format!("mlflow-{MLFLOW_VERSION}.lock"))).unwrap();
    lock.lock().unwrap();
    if dir.join(COMPLETE).exists() {
        return dir;
    }
    if dir.exists() {
        fs::remove_dir_all(&dir).unwrap();
    }
    let run = |cmd: &mut Command, what: &str| {
        let out = cmd.output().unwrap_or_else(|e| {
            panic!("{what}: cannot run it ({e}). Install Python 3 with venv and pip (apt-get install python3 python3-venv python3-pip) and run the tests again.")
        });
        assert!(
            out.status.success(),
            "{what} failed; fix it (network to PyPI, python3-venv installed) and run the tests again:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&dir),
        "python3 -m venv",
    );
    run(
        Command::new(dir.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg(format!("mlflow=={MLFLOW_VERSION}")),
        "pip install mlflow",
    );
    fs::write(dir.join(COMPLETE), b"").unwrap();
    dir
}

/// A running `mlflow server` on a free 127.0.0.1 port, stopped when dropped.
struct Mlflow {
    url: String,
    _process: Guarded,
    _data: tempfile::TempDir,
}

fn start_mlflow() -> Mlflow {
    let venv = mlflow_venv();
    let data = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let backend = format!("sqlite:///{}", data.path().join("mlflow.db").display());
    let artifacts = data.path().join("artifacts").display().to_string();
    let log = data.path().join("mlflow.log");
    let mut command = Command::new(venv.join("bin/python"));
    command
        .args(["-m", "mlflow", "server", "--host", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .args(["--workers", "1", "--backend-store-uri", &backend])
        .args(["--default-artifact-root", &artifacts])
        .current_dir(data.path())
        // The job runner starts helper processes the test does not need.
        .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false");
    // Its workers are processes of their own: the whole session stops with the test.
    let process = Guarded::spawn_session("mlflow", &command, &log).unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ok = reqwest::blocking_get_ok(&format!("{url}/health"));
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "mlflow server did not answer /health on {url} within 120s"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    Mlflow {
        url,
        _process: process,
        _data: data,
    }
}

mod reqwest {
    /// A GET that only says whether it answered 200; std only, so no runtime is needed.
    pub fn blocking_get_ok(url: &str) -> bool {
        use std::io::{Read, Write};
        let rest = url.trim_start_matches("http://");
        let (host, path) = rest
            .split_once('/')
            .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
        let Ok(mut s) = std::net::TcpStream::connect(host) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(5)));
        if write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).is_ok() && buf.ends_with(b"200")
    }
}

async fn post(client: &::reqwest::Client, url: &str, path: &str, body: Value) -> Value {
    let resp = client
        .post(format!("{url}/api/2.0/mlflow/{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_versions_stages_and_aliases_from_a_real_mlflow() {
    let mlflow = tokio::task::spawn_blocking(start_mlflow).await.unwrap();
    let client = ::reqwest::Client::new();
    let url = mlflow.url.as_str();
    let source = |model: &str, stage: Option<&str>, alias: Option<&str>| {
        let spec = MlflowSpec {
            url: url.to_owned(),
            model: model.to_owned(),
            stage: stage.map(str::to_owned),
            alias: alias.map(str::to_owned),
        };
        MlflowSource::new(spec, Duration::from_secs(10)).unwrap()
    };

    let err = source("label-bot", None, None)
        .models()
        .await
        .map_err(|e| e.to_string());
    assert_eq!(
        err,
        Ok(vec![]),
        "a model with no versions (or none registered) lists nothing"
    );

    post(
        &client,
        url,
        "registered-models/create",
        json!({"name": "label-bot"}),
    )
    .await;
    for (i, rev) in ["aaa111", "bbb222"].iter().enumerate() {
        // MLflow only accepts a version whose source is a run's artifact.
        let run = post(&client, url, "runs/create", json!({"experiment_id": "0"})).await;
        let run_id = run["run"]["info"]["run_id"].as_str().unwrap().to_owned();
        let v = post(
            &client,
            url,
            "model-versions/create",
            json!({"name": "label-bot", "source": format!("runs:/{run_id}/model"), "run_id": run_id,
                   "tags": [{"key": "dataRevision", "value": rev}]}),
        )
        .await;
        assert_eq!(v["model_version"]["version"], (i + 1).to_string());
        // Distinct creation times, so "newest" is well defined.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let models = source("label-bot", None, None).models().await.unwrap();
    let newest = modelsync_lambdas::sources::newest(&models).unwrap();
    assert_eq!(newest.id, "models:/label-bot/2");
    assert_eq!(newest.data_revision.as_deref(), Some("bbb222"));
    assert_eq!(models.len(), 2);

    post(
        &client,
        url,
        "model-versions/transition-stage",
        json!({"name": "label-bot", "version": "1", "stage": "Production", "archive_existing_versions": false}),
    )
    .await;
    let prod = source("label-bot", Some("Production"), None)
        .models()
        .await
        .unwrap();
    assert_eq!(
        prod.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["models:/label-bot/1"]
    );

    let resp = client
        .post(format!("{url}/api/2.0/mlflow/registered-models/alias"))
        .json(&json!({"name": "label-bot", "alias": "champion", "version": "1"}))
        .send()
        .await
        .unwrap();
    assert!(
        resp.status().is_success(),
        "setting the alias: {}",
        resp.text().await.unwrap()
    );
    let champion = source("label-bot", None, Some("champion"))
        .models()
        .await
        .unwrap();
    assert_eq!(champion[0].id, "models:/label-bot/1");
    assert_eq!(champion[0].data_revision.as_deref(), Some("aaa111"));

    let err = source("label-bot", None, Some("nobody"))
        .models()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("registered-models/alias: HTTP 4"), "{err}");

    // The lambda server over the same registry: deploy the alias's version.
    let up = support::Upstream::new();
    up.commit(&[(
        "manifests/model.yaml",
        "data:\n  model: models:/label-bot/2\n",
    )]);
    let root = tempfile::tempdir().unwrap();
    let config = format!(
        "mirror: {{repo: \"{}\", root: \"{}\", period: 200ms}}\n\
         models: {{mlflow: {{url: \"{url}\", model: label-bot, alias: champion, period: 200ms}}}}\n\
         routes:\n  /deploy: {{lambda: deploy-if-newer, file: manifests/model.yaml, yamlPath: data.model}}\n",
        up.url(),
        root.path().display()
    );
    let here = tempfile::tempdir().unwrap();
    let config = modelsync_lambdas::config::parse(&config, here.path()).unwrap();
    let app =
        modelsync_lambdas::server::app(modelsync_lambdas::server::start(config).await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    let answer = loop {
        use tower::ServiceExt;
        let req = axum::http::Request::get("/deploy")
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        if status == 200 {
            break serde_json::from_slice::<Value>(&body).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "/deploy still answers {status}: {}",
            String::from_utf8_lossy(&body)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(answer["needsSync"], true, "{answer}");
    assert_eq!(answer["parameters"]["model"], "models:/label-bot/1");

    let dead = format!("http://127.0.0.1:{}", support::free_port());
    let source = MlflowSource::new(
        MlflowSpec {
            url: dead.clone(),
            model: "label-bot".into(),
            stage: None,
            alias: None,
        },
        Duration::from_secs(2),
    )
    .unwrap();
    let err = source.models().await.unwrap_err().to_string();
    assert!(err.starts_with(&format!("MLflow at {dead}")), "{err}");
}
