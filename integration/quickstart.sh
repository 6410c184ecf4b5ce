#!/usr/bin/env bash
# "make run": start a throwaway registry serving busybox on 127.0.0.1:5000, start the warmpod daemon on its
# defaults with that registry as the docker.io mirror (so "crictl pull busybox" works offline), run the
# in-place reset demo against it, then keep serving until Ctrl-C. Stopping stops the daemon and the registry;
# pods still running keep running in their shims (remove them first with crictl).
#
# Settings (environment): BIN (binaries, default bin), REGISTRY_ADDR (default 127.0.0.1:5000),
# WARMPOD_FLAGS (extra daemon flags, e.g. "--state /run/wp-try --socket /run/wp-try/warmpod.sock"),
# SOCKET (the socket those flags give, default /run/warmpod/warmpod.sock), LOG_DIR (default /tmp/warmpod-run),
# DEMO_FLAGS (default "--resets 5"; "--keep" leaves the demo pod), SERVE (0: exit after the demo).
set -euo pipefail

BIN=${BIN:-bin}
REGISTRY_ADDR=${REGISTRY_ADDR:-127.0.0.1:5000}
WARMPOD_FLAGS=${WARMPOD_FLAGS:-}
SOCKET=${SOCKET:-/run/warmpod/warmpod.sock}
LOG_DIR=${LOG_DIR:-/tmp/warmpod-run}
DEMO_FLAGS=${DEMO_FLAGS:---resets 5}
SERVE=${SERVE:-1}

if [ "$(id -u)" != 0 ]; then
	echo "make run needs root: the daemon creates namespaces, cgroups, mounts and a bridge" >&2
	exit 1
fi
mkdir -p "$LOG_DIR"

pids=()
stop_all() {
	# Last started first: the daemon, then the registry.
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill -TERM "${pids[i]}" 2>/dev/null || true
		wait "${pids[i]}" 2>/dev/null || true
	done
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# wait_for NAME PID CHECK: run CHECK until it succeeds, failing if PID exits or 30 s pass.
wait_for() {
	local name=$1 pid=$2 check=$3 i
	for ((i = 0; i < 300; i++)); do
		if eval "$check" 2>/dev/null; then return 0; fi
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "$name exited; its log:" >&2
			cat "$LOG_DIR/$name.log" >&2
			return 1
		fi
		sleep 0.1
	done
	echo "$name did not come up within 30 s; see $LOG_DIR/$name.log" >&2
	return 1
}

"$BIN/testregistry" --addr "$REGISTRY_ADDR" >"$LOG_DIR/registry.log" 2>&1 &
pids+=($!)
host=${REGISTRY_ADDR%:*} port=${REGISTRY_ADDR##*:}
wait_for registry "${pids[-1]}" "grep -q '^serving on' '$LOG_DIR/registry.log'"
echo "registry: serving busybox on http://$REGISTRY_ADDR (log $LOG_DIR/registry.log)"

# shellcheck disable=SC2086 # WARMPOD_FLAGS is a list of flags
"$BIN/warmpod" --registry-mirror "docker.io=http://$REGISTRY_ADDR" --registry-insecure "$host:$port" \
	$WARMPOD_FLAGS >"$LOG_DIR/warmpod.log" 2>&1 &
pids+=($!)
wait_for warmpod "${pids[-1]}" "grep -q 'serving CRI' '$LOG_DIR/warmpod.log'"
echo "warmpod: serving CRI on $SOCKET (log $LOG_DIR/warmpod.log)"
echo

# shellcheck disable=SC2086 # DEMO_FLAGS is a list of flags
"$BIN/warmpod-demo" --socket "$SOCKET" $DEMO_FLAGS
echo

if [ "$SERVE" = 0 ]; then
	exit 0
fi
cat <<EOF
warmpod keeps serving. In another terminal:
  crictl --runtime-endpoint unix://$SOCKET --image-endpoint unix://$SOCKET pull busybox
  (the README walks through pods and containers with crictl)
Ctrl-C stops the daemon and the registry.
EOF
wait "${pids[-1]}"
