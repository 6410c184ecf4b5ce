#!/usr/bin/env bash
# Measures pod resets on warmpod and on Debian's containerd + runc in the same
# run: `warmpodctl bench reset --compare`, iterations interleaved (the
# back-to-back scenarios one runtime after the other), one gRPC connection per
# runtime. Both runtimes get private state dirs, sockets, bridges and subnets,
# and pull the same busybox image from a registry on 127.0.0.1 started here;
# nothing of the host's own configuration is used. WARMPOD_SPAWNER picks
# warmpod's spawner (libcontainer, fast).
#
#   integration/bench/compare-containerd.sh [warmpodctl bench reset flags...]
#
# Needs root, `make build`, and Debian's containerd, runc and
# containernetworking-plugins (apt-get install containerd runc
# containernetworking-plugins).
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
bin=$top/bin
for b in warmpod warmpodctl testregistry; do
  [ -x "$bin/$b" ] || { echo "missing $bin/$b: run make build" >&2; exit 1; }
done
command -v containerd >/dev/null || { echo "containerd is not installed" >&2; exit 1; }
cni_bin=/usr/lib/cni
[ -x "$cni_bin/bridge" ] || { echo "containernetworking-plugins are not installed" >&2; exit 1; }

work=$(mktemp -d /tmp/warmpod-compare.XXXXXX)
port=$((20000 + RANDOM % 20000))
pids=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  # Bridges, and the pods' veths with them.
  ip link del wpcmp0 2>/dev/null
  ip link del cmpctrd0 2>/dev/null
  # warmpod's chains and the rules that jump to them (all tagged "warmpod wpcmp0"), then
  # whatever CNI chains containerd's pods left.
  for t in nat filter; do
    iptables -t $t -S 2>/dev/null | grep -e '--comment "warmpod wpcmp0"' | sed 's/^-A /-D /' |
      while read -r rule; do eval "iptables -t $t $rule" 2>/dev/null; done
    for c in $(iptables -t $t -S 2>/dev/null | awk '/^-N (WPCMP|CNI-)/ {print $2}'); do
      iptables -t $t -F "$c" 2>/dev/null
      iptables -t $t -X "$c" 2>/dev/null
    done
  done
  # The cgroup parent both runtimes put their pods under, empty once they are gone.
  find /sys/fs/cgroup -depth -type d -name 'warmpod-compare*' -exec rmdir {} + 2>/dev/null
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
  [ -n "${KEEP:-}" ] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT

"$bin/testregistry" --addr "127.0.0.1:$port" >"$work/registry.log" 2>&1 &
pids+=($!)

mkdir -p "$work/cni"
cat >"$work/cni/10-compare.conflist" <<EOC
{
  "cniVersion": "1.0.0",
  "name": "compare",
  "plugins": [
    {"type": "bridge", "bridge": "cmpctrd0", "isGateway": true, "ipMasq": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.79.0.0/16"}]], "dataDir": "$work/cni-ipam"}}
  ]
}
EOC
cat >"$work/containerd.toml" <<EOC
version = 2
root = "$work/containerd/root"
state = "$work/containerd/state"
[grpc]
  address = "$work/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "127.0.0.1:$port/pause:3.10"
  # Root may lack CAP_SYS_RESOURCE (it does on the project's VMs): the
  # pause container's -998 must be clamped or runc fails.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$cni_bin"
    conf_dir = "$work/cni"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]
    endpoint = ["http://127.0.0.1:$port"]
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."127.0.0.1:$port"]
    endpoint = ["http://127.0.0.1:$port"]
EOC
containerd --config "$work/containerd.toml" >"$work/containerd.log" 2>&1 &
pids+=($!)

"$bin/warmpod" --config /dev/null --root "$work/warmpod/root" --state "$work/warmpod/state" \
  --socket "$work/warmpod.sock" --network-bridge wpcmp0 --network-subnet 10.78.0.0/16 \
  --network-chain-prefix WPCMP --cgroup-parent /warmpod-compare \
  --registry-mirror "docker.io=http://127.0.0.1:$port" ${WARMPOD_SPAWNER:+--spawner "$WARMPOD_SPAWNER"} \
  >"$work/warmpod.log" 2>&1 &
pids+=($!)

for s in "$work/warmpod.sock" "$work/containerd.sock"; do
  for _ in $(seq 100); do [ -S "$s" ] && break; sleep 0.1; done
  [ -S "$s" ] || { echo "no socket $s; logs in $work" >&2; cat "$work"/*.log >&2; exit 1; }
done

echo "warmpod $("$bin/warmpod" --version | awk 'NR==1 {print $2}') vs containerd $(containerd --version | awk '{print $3}') + runc $(runc --version | awk 'NR==1 {print $3}')"
"$bin/warmpodctl" bench reset --endpoint "unix://$work/warmpod.sock" --compare "unix://$work/containerd.sock" "$@"
