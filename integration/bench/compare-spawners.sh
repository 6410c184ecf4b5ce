#!/usr/bin/env bash
# Measures pod resets with both spawners in the same run: two warmpod daemons,
# one with runtime.spawner = "libcontainer" (the endpoint) and one with "fast"
# (the --compare endpoint), driven by `warmpodctl bench reset --compare`:
# iterations interleaved (the back-to-back scenarios one daemon after the
# other, the sustained mode too), one gRPC connection per daemon. Each daemon
# has private state dirs, socket, bridge, subnet, iptables chains and cgroup
# parent; both pull busybox from a registry on 127.0.0.1 started here. The
# report's ratios are the fast spawner's p50 against libcontainer's: "X p50 is
# 0.2x Y's" reads "fast takes 0.2 of libcontainer's time".
#
#   integration/bench/compare-spawners.sh [warmpodctl bench reset flags...]
#
# Needs root and `make build`; it creates pods, so on a shared machine run it
# as "flock /tmp/warmpod-heavy.lock integration/bench/compare-spawners.sh".
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
bin=$top/bin
for b in warmpod warmpodctl testregistry; do
  [ -x "$bin/$b" ] || { echo "missing $bin/$b: run make build" >&2; exit 1; }
done

work=$(mktemp -d /tmp/warmpod-spawners.XXXXXX)
port=$((20000 + RANDOM % 20000))
pids=()
# chains is the prefix of the iptables chains of spawner $1's daemon.
chains() { local s=${1:0:1}; echo "WPSP${s^^}"; }
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  for s in libcontainer fast; do
    br=wpsp${s:0:1}0
    # The bridge, and the pods' veths with it; warmpod's chains and the
    # rules that jump to them (tagged "warmpod <bridge>").
    ip link del "$br" 2>/dev/null
    for t in nat filter; do
      iptables -t $t -S 2>/dev/null | grep -e "--comment \"warmpod $br\"" | sed 's/^-A /-D /' |
        while read -r rule; do eval "iptables -t $t $rule" 2>/dev/null; done
      for c in $(iptables -t $t -S 2>/dev/null | awk -v p="$(chains "$s")" '$1 == "-N" && index($2, p) == 1 {print $2}'); do
        iptables -t $t -F "$c" 2>/dev/null
        iptables -t $t -X "$c" 2>/dev/null
      done
    done
  done
  find /sys/fs/cgroup -depth -type d -name 'warmpod-spawners-*' -exec rmdir {} + 2>/dev/null
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
  [ -n "${KEEP:-}" ] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT

"$bin/testregistry" --addr "127.0.0.1:$port" >"$work/registry.log" 2>&1 &
pids+=($!)

subnet=76
for s in libcontainer fast; do
  "$bin/warmpod" --config /dev/null --root "$work/$s/root" --state "$work/$s/state" \
    --socket "$work/$s.sock" --network-bridge "wpsp${s:0:1}0" --network-subnet "10.$subnet.0.0/16" \
    --network-chain-prefix "$(chains "$s")" --cgroup-parent "/warmpod-spawners-$s" --spawner "$s" \
    --registry-mirror "docker.io=http://127.0.0.1:$port" >"$work/$s.log" 2>&1 &
  pids+=($!)
  subnet=$((subnet + 1))
done
for s in libcontainer fast; do
  for _ in $(seq 100); do [ -S "$work/$s.sock" ] && break; sleep 0.1; done
  [ -S "$work/$s.sock" ] || { echo "no socket $work/$s.sock; logs in $work" >&2; cat "$work"/*.log >&2; exit 1; }
done

echo "warmpod $("$bin/warmpod" version | awk 'NR==1 {print $2}'): endpoint = libcontainer spawner, compare = fast spawner"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$bin/warmpodctl" bench reset --endpoint "unix://$work/libcontainer.sock" --compare "unix://$work/fast.sock" "$@"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
