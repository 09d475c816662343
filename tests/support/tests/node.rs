//! The real node: pods run, logs and Services work, and the machine is clean afterwards, even
//! when the process holding the node is killed with SIGKILL.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::Api;
use kube::api::PostParams;
use modelsync_testenv::node::{self, Node};

/// Set in the child process of [`janitor_cleans_up_after_sigkill`].
const CHILD_ENV: &str = "MODELSYNC_NODE_TEST_CHILD";

/// One node per machine: the tests of this file take turns.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_run_logs_and_services_work_and_teardown_is_clean() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let _turn = SERIAL.lock().await;
    // Settings are compared with the machine's own, not with a dirty machine's.
    tokio::task::spawn_blocking(node::clean_up_leftovers)
        .await
        .unwrap()
        .unwrap();
    let sysctls = node::sysctl_snapshot();
    let folders = absent_machine_folders();
    let started = Instant::now();
    let node = Node::start().await.expect("node starts");
    eprintln!(
        "node Ready in {:.1}s; node and control plane resident: {} MB",
        started.elapsed().as_secs_f64(),
        node.resident_bytes() / 1_000_000
    );
    let client = node.client().await.unwrap();
    let ns = modelsync_testenv::namespace(&client, "node").await.unwrap();
    wait_for_default_service_account(&client, &ns).await;

    // The pause image doubles as a tiny workload: its program dials the kubernetes Service
    // (kube-proxy's rules, the API server on the bridge) and says so on stdout.
    let service = format!("{}:443", node::KUBERNETES_SERVICE_IP);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod_started = Instant::now();
    pods.create(
        &PostParams::default(),
        &pod("dial", &["/pause", "dial", &service]),
    )
    .await
    .unwrap();
    let phase = wait_for_pod_end(&pods, "dial", Duration::from_secs(90)).await;
    eprintln!(
        "pod ended ({phase}) {:.1}s after create",
        pod_started.elapsed().as_secs_f64()
    );
    let logs = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(node.kubeconfig())
        .args(["-n", &ns, "logs", "dial"])
        .output()
        .expect("kubectl runs");
    let out = String::from_utf8_lossy(&logs.stdout);
    assert!(
        logs.status.success(),
        "kubectl logs failed: {}",
        String::from_utf8_lossy(&logs.stderr)
    );
    assert_eq!(phase, "Succeeded", "pod logs: {out}");
    assert_eq!(out.trim(), "connected to 10.96.0.1:443");

    let root = node.root().to_owned();
    let cp_root = node.control_plane().root().to_owned();
    let stopping = Instant::now();
    drop(node);
    eprintln!("node stopped in {:.1}s", stopping.elapsed().as_secs_f64());
    assert_clean(&root, &cp_root, &sysctls);
    for folder in folders {
        assert!(!folder.exists(), "{} was left behind", folder.display());
    }
}

fn absent_machine_folders() -> Vec<PathBuf> {
    node::MACHINE_FOLDERS
        .iter()
        .map(PathBuf::from)
        .filter(|p| !p.exists())
        .collect()
}

/// Run as a child (see [`CHILD_ENV`]), this starts a node, prints its folders and waits to be
/// killed. As a test, it SIGKILLs such a child and checks the janitor cleaned everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn janitor_cleans_up_after_sigkill() {
    if std::env::var_os(CHILD_ENV).is_some() {
        let node = Node::start().await.expect("node starts in the child");
        // A running pod, so the janitor has containers, mounts, a network namespace and pod
        // cgroups to clean up.
        let client = node.client().await.unwrap();
        let ns = modelsync_testenv::namespace(&client, "node-kill")
            .await
            .unwrap();
        wait_for_default_service_account(&client, &ns).await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        pods.create(&PostParams::default(), &pod("sleeper", &["/pause"]))
            .await
            .unwrap();
        wait_for_pod_running(&pods, "sleeper").await;
        println!(
            "NODE {} {}",
            node.root().display(),
            node.control_plane().root().display()
        );
        loop {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }
    let _turn = SERIAL.lock().await;
    // Settings are compared with the machine's own, not with a dirty machine's.
    tokio::task::spawn_blocking(node::clean_up_leftovers)
        .await
        .unwrap()
        .unwrap();
    let sysctls = node::sysctl_snapshot();
    let folders = absent_machine_folders();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "janitor_cleans_up_after_sigkill", "--nocapture"])
        .env(CHILD_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (root, cp_root) = tokio::task::spawn_blocking(move || {
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("NODE ") {
                let (a, b) = rest.split_once(' ').unwrap();
                return Some((PathBuf::from(a), PathBuf::from(b)));
            }
        }
        None
    })
    .await
    .unwrap()
    .expect("the child started a node");
    assert!(
        !node::leftovers(Some(&root)).is_empty(),
        "a running node shows up"
    );
    let killed = Instant::now();
    child.kill().unwrap();
    child.wait().unwrap();
    // The janitor holds the node lock until it has cleaned up.
    let lock = Command::new("flock")
        .args(["--exclusive", "--timeout", "180"])
        .arg(format!("{}/lock", node::STATE_DIR))
        .arg("true")
        .status()
        .unwrap();
    assert!(lock.success(), "the janitor did not finish within 180s");
    eprintln!(
        "janitor finished {:.1}s after SIGKILL",
        killed.elapsed().as_secs_f64()
    );
    assert_clean(&root, &cp_root, &sysctls);
    for folder in folders {
        assert!(!folder.exists(), "{} was left behind", folder.display());
    }
}

async fn wait_for_default_service_account(client: &kube::Client, ns: &str) {
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(30);
    while sas.get_opt("default").await.unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "no default service account in {ns}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn pod(name: &str, command: &[&str]) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name },
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": name,
                "image": node::PAUSE_IMAGE,
                "imagePullPolicy": "Never",
                "command": command,
            }],
        },
    }))
    .unwrap()
}

async fn wait_for_pod_running(pods: &Api<Pod>, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let pod = pods.get(name).await.unwrap();
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
        if phase.as_deref() == Some("Running") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pod {name} not Running: {:?}",
            pod.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_for_pod_end(pods: &Api<Pod>, name: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let pod = pods.get(name).await.unwrap();
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        if phase == "Succeeded" || phase == "Failed" {
            return phase;
        }
        assert!(
            Instant::now() < deadline,
            "pod {name} still {phase:?} after {timeout:?}: {:?}",
            pod.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn assert_clean(
    root: &std::path::Path,
    cp_root: &std::path::Path,
    sysctls: &std::collections::BTreeMap<String, String>,
) {
    // The control plane's own janitor removes its folder a few seconds after its processes end.
    let deadline = Instant::now() + Duration::from_secs(20);
    while (cp_root.exists()
        || !modelsync_testenv::process::pids_mentioning(&cp_root.display().to_string()).is_empty())
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        modelsync_testenv::process::pids_mentioning(&cp_root.display().to_string()),
        Vec::<u32>::new(),
        "control plane processes remain"
    );
    assert!(!cp_root.exists(), "{} remains", cp_root.display());
    assert_eq!(node::leftovers(Some(root)), Vec::<String>::new());
    let now = node::sysctl_snapshot();
    for (key, value) in sysctls {
        assert_eq!(now.get(key), Some(value), "sysctl {key} was not restored");
    }
}
