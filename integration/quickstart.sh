#!/usr/bin/env bash
# "make run": start a throwaway registry serving busybox on 127.0.0.1:5000, start the warmpod daemon on its
# defaults with that registry as the docker.io mirror (so "crictl pull busybox" works offline), run the
# in-place reset demo against it, then keep serving until Ctrl-C. Stopping stops the daemon and the registry;
# pods still running keep running in their shims (remove them first with crictl). The daemon is started,
# waited for and stopped by bin/withdaemon (integration/cmd/withdaemon), as the tests start theirs.
#
# Settings (environment): BIN (binaries, default bin), REGISTRY_ADDR (default 127.0.0.1:5000),
# WARMPOD_FLAGS (extra daemon flags, e.g. "--state /run/wp-try --root /var/lib/wp-try"), SOCKET (the daemon's
# socket, default /run/warmpod/warmpod.sock), LOG_DIR (default /tmp/warmpod-run), DEMO_FLAGS (default
# "--resets 5"; "--keep" leaves the demo pod), SERVE (0: exit after the demo).
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

registry_pid=
stop_registry() {
	if [ -n "$registry_pid" ]; then
		kill -TERM "$registry_pid" 2>/dev/null || true
		wait "$registry_pid" 2>/dev/null || true
	fi
}
trap stop_registry EXIT
trap 'exit 130' INT TERM

"$BIN/testregistry" --addr "$REGISTRY_ADDR" >"$LOG_DIR/registry.log" 2>&1 &
registry_pid=$!
host=${REGISTRY_ADDR%:*} port=${REGISTRY_ADDR##*:}
# Until it says it serves, failing if it exits or 30 s pass.
for ((i = 0; i < 300; i++)); do
	grep -q '^serving on' "$LOG_DIR/registry.log" 2>/dev/null && break
	if ! kill -0 "$registry_pid" 2>/dev/null; then
		echo "registry exited; its log:" >&2
		cat "$LOG_DIR/registry.log" >&2
		exit 1
	fi
	sleep 0.1
done
grep -q '^serving on' "$LOG_DIR/registry.log" || { echo "registry did not come up within 30 s; see $LOG_DIR/registry.log" >&2; exit 1; }
echo "registry: serving busybox on http://$REGISTRY_ADDR (log $LOG_DIR/registry.log)"

# The daemon runs under withdaemon (integration/launch): it waits until the socket answers, runs the demo,
# keeps serving until Ctrl-C when SERVE=1, and stops the daemon with SIGTERM.
serve=()
if [ "$SERVE" != 0 ]; then
	serve=(--serve)
fi
# shellcheck disable=SC2086 # DEMO_FLAGS is a list of flags
"$BIN/withdaemon" --warmpod "$BIN/warmpod" --socket "$SOCKET" --log "$LOG_DIR/warmpod.log" \
	--registry-mirror "docker.io=http://$REGISTRY_ADDR" --registry-insecure "$host:$port" \
	--daemon-args "$WARMPOD_FLAGS" "${serve[@]}" -- "$BIN/warmpod-demo" --socket "$SOCKET" $DEMO_FLAGS
