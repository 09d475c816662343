//! The configuration files of the node's programs, each confined to the node's folder.

use std::path::Path;

use super::{BRIDGE, BRIDGE_IP, NODE_NAME, PAUSE_IMAGE, POD_CIDR};

/// The name CNI results are cached under (the janitor removes `/var/lib/cni/results/<name>-*`).
pub const CNI_NETWORK: &str = "modelsync";

/// containerd with its own root, state, socket and runc root, so nothing of the machine's
/// (possibly absent) system containerd is used or touched.
pub fn containerd(dir: &Path, socket: &Path) -> String {
    let d = dir.display();
    format!(
        r#"version = 2
root = "{d}/containerd/root"
state = "{d}/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # The machine's capability bounding set lacks CAP_SYS_RESOURCE: without this every sandbox
  # fails in runc ("can't get final child's PID from pipe").
  restrict_oom_score_adj = true
  # Network namespaces under the node's folder, not /run/netns: unmounting the folder ends them.
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  enable_selinux = false

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        # runc's state beside the node, so clean-up can find and stop every container by id.
        Root = "{d}/runc"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni/net.d"
"#,
        socket = socket.display()
    )
}

/// One bridge network; pods get 10.244.0.0/24 with the host at 10.244.0.1. No masquerading:
/// pod traffic never leaves the machine.
pub fn cni(dir: &Path) -> String {
    serde_json::to_string_pretty(&serde_json::json!({
        "cniVersion": "0.4.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": POD_CIDR, "gateway": BRIDGE_IP.to_string() }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": dir.join("cni/ipam").display().to_string(),
                },
            },
            { "type": "portmap", "capabilities": { "portMappings": true } },
        ],
    }))
    .expect("a JSON literal serialises")
}

/// Paths the kubelet configuration refers to.
pub struct KubeletFiles<'a> {
    pub dir: &'a Path,
    pub ca_cert: &'a Path,
    pub serving_cert: &'a Path,
    pub serving_key: &'a Path,
    pub containerd_socket: &'a Path,
}

pub fn kubelet(f: &KubeletFiles<'_>) -> String {
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine has cgroups v1, which kubelets since 1.35 refuse unless told otherwise.
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
# Images here are imported, never pulled: collecting one would lose it for good.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
address: {BRIDGE_IP}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: {ca}
authorization:
  mode: Webhook
tlsCertFile: {cert}
tlsPrivateKeyFile: {key}
containerRuntimeEndpoint: unix://{socket}
resolvConf: /etc/resolv.conf
podLogsDir: {dir}/pod-logs
registerNode: true
"#,
        ca = f.ca_cert.display(),
        cert = f.serving_cert.display(),
        key = f.serving_key.display(),
        socket = f.containerd_socket.display(),
        dir = f.dir.display(),
    )
}

/// kube-proxy's command line: iptables mode, node ports only on the bridge, and conntrack
/// limits left as the machine has them.
pub fn kube_proxy_args(kubeconfig: &Path) -> Vec<String> {
    vec![
        format!("--kubeconfig={}", kubeconfig.display()),
        "--proxy-mode=iptables".into(),
        format!("--cluster-cidr={POD_CIDR}"),
        format!("--hostname-override={NODE_NAME}"),
        "--healthz-bind-address=127.0.0.1:10256".into(),
        "--metrics-bind-address=127.0.0.1:10249".into(),
        format!("--nodeport-addresses={POD_CIDR}"),
        "--conntrack-max-per-core=0".into(),
        "--conntrack-tcp-timeout-established=0".into(),
        "--conntrack-tcp-timeout-close-wait=0".into(),
        "--v=1".into(),
    ]
}
