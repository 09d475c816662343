//! What the node needs from and does to the machine: the packages it runs, the ledger of every
//! change (read back by the janitor), the bridge and the forwarding guard.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::{BRIDGE, BRIDGE_IP};

/// The one line that installs everything the node runs.
pub const APT_INSTALL: &str = "apt-get install -y containerd runc containernetworking-plugins \
                               iptables nftables conntrack iproute2 util-linux";

/// Programs the node runs or that its programs run.
const COMMANDS: &[&str] = &[
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "runc",
    "iptables",
    "ip6tables",
    "ip",
    "conntrack",
    "flock",
    "nft",
    "mount",
    "umount",
];

/// CNI plugins the node's network uses (Debian puts them in /usr/lib/cni).
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";
const CNI_PLUGINS: &[&str] = &["bridge", "host-local", "portmap", "loopback"];

/// Machine-wide sysctls that kubelet (kernel tunables), the CNI bridge (forwarding) and
/// kube-proxy (conntrack, localnet) are known to set; their values before the node are
/// restored after it.
pub const SYSCTLS: &[&str] = &[
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.forwarding",
    "net.ipv4.conf.default.forwarding",
    // Turning forwarding on resets it; restored after forwarding (the ledger keeps this order).
    "net.ipv4.conf.all.accept_redirects",
    "net.ipv6.conf.all.forwarding",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_tcp_timeout_established",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
    "net.netfilter.nf_conntrack_tcp_be_liberal",
];

/// Machine folders the node's programs create when missing, whatever their configuration says.
pub const MAYBE_CREATED: &[&str] = &[
    "/var/log/containers",
    "/var/log/pods",
    "/var/lib/cni",
    "/var/lib/kubelet",
    "/run/containerd",
    "/run/netns",
    "/opt/containerd",
    "/etc/kubernetes",
];

/// Tables iptables-nft creates on first use.
const NFT_TABLES: &[(&str, &str)] = &[
    ("ip", "filter"),
    ("ip", "nat"),
    ("ip", "mangle"),
    ("ip", "raw"),
    ("ip6", "filter"),
    ("ip6", "nat"),
    ("ip6", "mangle"),
    ("ip6", "raw"),
];

/// Fails, naming the fix, unless this machine can run a node.
pub fn preflight() -> Result<()> {
    if !cfg!(target_os = "linux") {
        bail!(
            "a real node runs on Linux only (it needs cgroups, network namespaces and overlayfs)"
        );
    }
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next().map(str::to_owned));
    if uid.as_deref() != Some("0") {
        bail!(
            "a real node needs root: it creates a network bridge, mounts, cgroups and firewall \
             rules. Run as root (for example in a disposable VM or CI machine)"
        );
    }
    let mut missing: Vec<String> = COMMANDS
        .iter()
        .filter(|c| find_command(c).is_none())
        .map(|c| (*c).to_owned())
        .collect();
    missing.extend(
        CNI_PLUGINS
            .iter()
            .map(|p| Path::new(CNI_BIN_DIR).join(p))
            .filter(|p| !p.is_file())
            .map(|p| p.display().to_string()),
    );
    if !missing.is_empty() {
        bail!(
            "a real node needs {} which {} not installed: run `{APT_INSTALL}`",
            missing.join(", "),
            if missing.len() == 1 { "is" } else { "are" }
        );
    }
    Ok(())
}

/// `PATH` for the node's programs: they run `iptables`, `mount`, `runc` and such, which live in
/// sbin folders a user's PATH may lack.
pub fn program_path() -> String {
    let mut path = std::env::var("PATH").unwrap_or_default();
    for dir in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        if !path.split(':').any(|p| p == dir) {
            if !path.is_empty() {
                path.push(':');
            }
            path.push_str(dir);
        }
    }
    path
}

fn find_command(name: &str) -> Option<PathBuf> {
    program_path()
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// The list of machine changes, appended to before each change is made.
pub struct Ledger {
    file: File,
}

impl Ledger {
    /// Starts a fresh ledger (the janitor has already undone any previous one).
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Ledger { file })
    }

    pub fn record(&mut self, kind: &str, value: &str) -> Result<()> {
        writeln!(self.file, "{kind} {value}")?;
        self.file.sync_data()?;
        Ok(())
    }

    /// Records what must be restored or removed whatever the node ends up doing.
    pub fn record_machine_state(&mut self) -> Result<()> {
        for key in SYSCTLS {
            if let Some(value) = read_sysctl(key) {
                self.record("sysctl", &format!("{key} {value}"))?;
            }
        }
        for path in MAYBE_CREATED {
            if fs::symlink_metadata(path).is_err() {
                self.record("absent", path)?;
            }
        }
        let tables = run_output("nft", &["list", "tables"]).unwrap_or_default();
        for (family, table) in NFT_TABLES {
            if !tables
                .lines()
                .any(|l| l.trim() == format!("table {family} {table}"))
            {
                self.record("nft-absent", &format!("{family} {table}"))?;
            }
        }
        Ok(())
    }
}

/// A sysctl's current value, `None` when this kernel does not have it.
pub fn read_sysctl(key: &str) -> Option<String> {
    let path = Path::new("/proc/sys").join(key.replace('.', "/"));
    let value = fs::read_to_string(path).ok()?;
    let value = value.trim();
    // Values with spaces (ranges) are not among those recorded; keep the ledger one line each.
    (!value.is_empty() && !value.contains(char::is_whitespace)).then(|| value.to_owned())
}

/// Creates the bridge with the host's address before kubelet starts (kubelet serves on it, and
/// the API server advertises it), and keeps pod traffic on the machine: pods may reach the host
/// and each other, but nothing is forwarded from the bridge to any other interface.
pub fn create_network(ledger: &mut Ledger) -> Result<()> {
    ledger.record("bridge", BRIDGE)?;
    run("ip", &["link", "add", BRIDGE, "type", "bridge"])?;
    run(
        "ip",
        &["addr", "add", &format!("{BRIDGE_IP}/24"), "dev", BRIDGE],
    )?;
    run("ip", &["link", "set", BRIDGE, "up"])?;
    // The janitor removes MSYNC-* chains and the jumps to them.
    run("iptables", &["-w", "5", "-N", "MSYNC-FORWARD"])?;
    run(
        "iptables",
        &[
            "-w",
            "5",
            "-A",
            "MSYNC-FORWARD",
            "-j",
            "REJECT",
            "--reject-with",
            "icmp-net-unreachable",
        ],
    )?;
    run(
        "iptables",
        &[
            "-w",
            "5",
            "-I",
            "FORWARD",
            "-i",
            BRIDGE,
            "!",
            "-o",
            BRIDGE,
            "-m",
            "comment",
            "--comment",
            "modelsync node: pod traffic stays on this machine",
            "-j",
            "MSYNC-FORWARD",
        ],
    )?;
    Ok(())
}

pub fn run(program: &str, args: &[&str]) -> Result<()> {
    run_output(program, args).map(drop)
}

pub fn run_output(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .env("PATH", program_path())
        .output()
        .with_context(|| format!("running {program}: is it installed? run `{APT_INSTALL}`"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
