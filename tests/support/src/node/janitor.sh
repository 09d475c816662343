# shellcheck shell=sh
# The local node's janitor. It runs under `flock` holding the machine-wide node lock, so only
# one node lives on a machine and a new one waits until the previous one is cleaned.
#
# 1. Undoes whatever a previous node left behind (its ledger survived: it was never cleaned).
# 2. Says "ready" and waits for its stdin to close: when the node is dropped, or when the
#    process that started it dies in any way, SIGKILL included.
# 3. Undoes everything the ledger lists and everything a node is known to leave.
#
# The ledger ($STATE/ledger) is appended to by the node *before* each change it makes, one
# "<kind> <value...>" line per change:
#   dir PATH              the node's folder (processes, mounts, files under it)
#   sysctl KEY VALUE      a sysctl's value before the node started
#   absent PATH           a machine folder that did not exist before the node started
#   nft-absent FAMILY T   an nftables table that did not exist before the node started
#   bridge NAME           a network bridge the node created
# Every step tolerates things already gone, so running it twice is harmless.

STATE=$MODELSYNC_NODE_STATE
LEDGER=$STATE/ledger
trap '' INT HUP TERM PIPE

log() { echo "$(date +%T) $*" >&2; }

# Pids whose command line mentions $1 (the node's unique folder): kubelet, containerd, its
# shims, kube-proxy, kube-scheduler and their guards. Only processes this node started.
pids_mentioning() {
    for p in /proc/[0-9]*; do
        pid=${p#/proc/}
        [ "$pid" = "$$" ] && continue
        cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
        case "$cmd" in
        *"$1"*) echo "$pid" ;;
        esac
    done
}

# stop_pids FILTER DIR: TERM, then KILL after 10 s, the node's processes whose command line
# matches (or, with "!", does not match) "containerd".
stop_pids() {
    want=$1
    dir=$2
    for round in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21; do
        left=""
        for pid in $(pids_mentioning "$dir"); do
            cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || continue
            case "$cmd" in
            *containerd*) [ "$want" = containerd ] || continue ;;
            *) [ "$want" = containerd ] && continue ;;
            esac
            left="$left $pid"
        done
        [ -z "$left" ] && return 0
        # $left is a list of pids: split on purpose.
        if [ "$round" = 1 ]; then
            log "stopping$left"
            # shellcheck disable=SC2086
            kill -TERM $left 2>/dev/null
        elif [ "$round" = 21 ]; then
            log "killing$left"
            # shellcheck disable=SC2086
            kill -KILL $left 2>/dev/null
            sleep 0.5
        fi
        sleep 0.5
    done
}

stop_containers() {
    root=$1
    [ -d "$root" ] || return 0
    for ns in "$root"/*; do
        [ -d "$ns" ] || continue
        for id in $(runc --root "$ns" list -q 2>/dev/null); do
            runc --root "$ns" kill "$id" KILL 2>/dev/null
            runc --root "$ns" delete --force "$id" 2>/dev/null || log "runc delete $id failed"
        done
    done
}

# Pod cgroups live at /kubepods of every hierarchy (cgroupfs driver). Leftover processes in
# them are pods of this node: kill them by pid, then remove the groups leaf first.
remove_kubepods_cgroups() {
    for round in 1 2 3 4 5 6 7 8 9 10; do
        found=""
        for d in /sys/fs/cgroup/kubepods /sys/fs/cgroup/*/kubepods; do
            [ -d "$d" ] || continue
            found=1
            find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null | while read -r pid; do
                kill -KILL "$pid" 2>/dev/null
            done
            find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
        done
        [ -z "$found" ] && return 0
        sleep 0.3
    done
    log "could not remove every /kubepods cgroup"
}

unmount_under() {
    dir=$1
    for round in 1 2 3; do
        mounts=$(awk -v d="$dir" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r)
        [ -z "$mounts" ] && return 0
        for m in $mounts; do
            m=$(printf '%b' "$m")
            umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "cannot unmount $m"
        done
    done
}

# Rules jumping to, and chains named, KUBE-* (kubelet, kube-proxy), CNI-* (CNI plugins) and
# MSYNC-* (this node's own), in iptables and ip6tables. Nothing else is touched.
remove_chains() {
    for cmd in iptables ip6tables; do
        command -v $cmd >/dev/null 2>&1 || continue
        for table in filter nat mangle raw; do
            rules=$($cmd -w 5 -t $table -S 2>/dev/null) || continue
            echo "$rules" | grep -E -- '^-A ' | grep -Ev -- '^-A (KUBE-|CNI-|MSYNC-)' |
                grep -E -- ' -[jg] (KUBE-|CNI-|MSYNC-)' | sed 's/^-A /-D /' |
                while read -r rule; do
                    eval "$cmd -w 5 -t $table $rule" 2>/dev/null || log "$cmd -t $table $rule failed"
                done
            chains=$(echo "$rules" | awk '$1 == "-N" && $2 ~ /^(KUBE-|CNI-|MSYNC-)/ { print $2 }')
            for c in $chains; do $cmd -w 5 -t $table -F "$c" 2>/dev/null; done
            for c in $chains; do $cmd -w 5 -t $table -X "$c" 2>/dev/null || log "$cmd -t $table -X $c failed"; done
        done
    done
    # kube-proxy's nftables mode keeps its own tables; gone with the node whatever its mode.
    if command -v nft >/dev/null 2>&1; then
        for family in ip ip6; do
            nft delete table $family kube-proxy 2>/dev/null
        done
    fi
}

# An nftables table that did not exist before the node, made by iptables-nft for its rules:
# removed only when nothing but empty built-in chains remain in it.
remove_table_if_empty() {
    family=$1
    table=$2
    command -v nft >/dev/null 2>&1 || return 0
    body=$(nft list table "$family" "$table" 2>/dev/null) || return 0
    if ! echo "$body" | grep -Ev '^\s*(table|chain|type|policy|\}|$)' | grep -q .; then
        nft delete table "$family" "$table" 2>/dev/null
    fi
}

undo() {
    log "cleaning up"
    dirs=""
    if [ -f "$LEDGER" ]; then
        dirs=$(awk '$1 == "dir" { print $2 }' "$LEDGER")
    fi
    # Control programs first, so nothing restarts pods while they are being stopped.
    for dir in $dirs; do stop_pids other "$dir"; done
    for dir in $dirs; do stop_containers "$dir/runc"; done
    for dir in $dirs; do stop_pids containerd "$dir"; done
    remove_kubepods_cgroups
    for dir in $dirs; do unmount_under "$dir"; done
    remove_chains
    if [ -f "$LEDGER" ]; then
        awk '$1 == "nft-absent" { print $2, $3 }' "$LEDGER" | while read -r family table; do
            remove_table_if_empty "$family" "$table"
        done
    fi
    for bridge in msync0 $( [ -f "$LEDGER" ] && awk '$1 == "bridge" { print $2 }' "$LEDGER"); do
        ip link show "$bridge" >/dev/null 2>&1 && { ip link delete "$bridge" || log "cannot delete $bridge"; }
    done
    if [ -f "$LEDGER" ]; then
        awk '$1 == "sysctl" { print $2, $3 }' "$LEDGER" | while read -r key value; do
            sysctl -q -w "$key=$value" >/dev/null 2>&1 || log "cannot restore $key=$value"
        done
        for dir in $dirs; do
            # kubelet links every container log into /var/log/containers.
            [ -d /var/log/containers ] && find /var/log/containers -maxdepth 1 -lname "$dir/*" -delete 2>/dev/null
            # The CNI library caches results by network name (containerd adds a loopback one).
            rm -f /var/lib/cni/results/modelsync-* /var/lib/cni/results/cni-loopback-* 2>/dev/null
            # kubelet's device-plugin socket ignores --root-dir.
            rm -f /var/lib/kubelet/device-plugins/kubelet.sock 2>/dev/null
            if awk -v d="$dir" '$5 == d || index($5, d "/") == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
                log "mounts remain under $dir: not removing it"
            else
                rm -rf --one-file-system "$dir"
            fi
        done
        # Only empty folders go: another container runtime on the machine may have put
        # something there since (containerd puts every shim's socket in /run/containerd/s).
        awk '$1 == "absent" { print $2 }' "$LEDGER" | sort -r | while read -r path; do
            [ -d "$path" ] && find "$path" -depth -type d -empty -delete 2>/dev/null
            [ -e "$path" ] && log "$path is not empty: left in place"
        done
        rm -f "$LEDGER"
    fi
    log "clean"
}

echo locked
if [ -f "$LEDGER" ] || ip link show msync0 >/dev/null 2>&1 || [ -d /sys/fs/cgroup/cpu/kubepods ]; then
    echo leftovers
    log "a previous node was not cleaned up: cleaning it now"
    undo
fi
echo ready
read -r _ignored
undo
