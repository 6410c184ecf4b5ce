#!/usr/bin/env bash
# "make e2e": warmpod under a real single-node Kubernetes cluster. As root on Debian 12 with Go: installs
# the Debian packages the run needs when missing, builds (or finds cached) etcd and the Kubernetes
# binaries from the Go module proxy (build-cluster.sh), then runs the e2e tests once per kubelet PLEG mode
# (E2E_PLEGS, default "generic evented"), each holding the host-wide test lock, and prints the measured
# numbers at the end.
#
# Settings: E2E_PLEGS, E2E_RESTARTS (restarts per measurement, default 20), E2E_RUN (go test -run),
# E2E_LOG_DIR (keep each run's component logs there), K8S_VERSION, ETCD_VERSION, E2E_CACHE (see
# build-cluster.sh).
set -euo pipefail
cd "$(dirname "$0")"

if [ "$(id -u)" != 0 ]; then
	echo "make e2e must run as root: it starts a kubelet and warmpod (namespaces, cgroups, mounts, a bridge, iptables)" >&2
	exit 1
fi
GO="${GO:-go}"
export GO

# The same packages .ci/run installs for warmpod's own tests; util-linux has flock.
pkgs=(ca-certificates gcc libc6-dev make pkg-config git libseccomp-dev busybox-static iproute2 iptables util-linux)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update
	apt-get install -y --no-install-recommends "${missing[@]}"
fi

start=$(date +%s)
E2E_K8S_BIN=$(./build-cluster.sh)
export E2E_K8S_BIN
echo "e2e: cluster binaries in $E2E_K8S_BIN ($(($(date +%s) - start)) s)"

summary=$(mktemp)
trap 'rm -f "$summary" "$summary.log"' EXIT
rc=0
for mode in ${E2E_PLEGS:-generic evented}; do
	echo "==== e2e with the kubelet's $mode PLEG"
	# -mod=mod: the module replaces warmpod with the repository itself, so a dependency change there needs
	# new go.sum lines here; take them rather than fail (make lint's vet points them out).
	args=(test -mod=mod -count=1 -v -timeout "${E2E_TIMEOUT:-60m}")
	[ -n "${E2E_RUN:-}" ] && args+=(-run "$E2E_RUN")
	set +e
	E2E_PLEG=$mode flock /tmp/warmpod-heavy.lock "$GO" "${args[@]}" . 2>&1 | tee "$summary.log"
	status=${PIPESTATUS[0]}
	set -e
	grep '^e2e \(latency\|throughput\|turnaround\)' "$summary.log" >>"$summary" || true
	[ "$status" = 0 ] || rc=1
done
echo "==== e2e numbers"
cat "$summary"
exit $rc
