#!/usr/bin/env bash
# GPU check: on a node with NVIDIA GPUs, bind them to a pod through CDI, run nvidia-smi in it through warmpod,
# reset the pod 100 times, and print the reset latency with the GPU bound next to that of a bare pod.
#
# Where no GPU exists (no /dev/nvidia0, /dev/nvidia1, ...) it says so and exits 0, so CI can always run it.
#
# The CDI spec comes from "nvidia-ctk cdi generate" when the NVIDIA Container Toolkit is installed; otherwise
# a minimal one is built here: the /dev/nvidia* nodes, the driver libraries ldconfig knows (libnvidia-*,
# libcuda) and nvidia-smi. Either way a second spec mounts nvidia-smi's own libraries (glibc and the loader),
# since the pod's image is a busybox-static one that has none.
#
# Settings (environment):
#   RESETS      resets per pod (default 100)
#   BIN         directory with prebuilt warmpod, withdaemon and gpubench binaries (default: build them here
#               with Go)
#   IMAGE_TAR   busybox image archive to import (default: "gpubench write-image", needs busybox-static)
#   KEEP_WORK   1: keep the work directory (CDI specs, daemon log) for inspection
#   GPU_CMD     what the GPU pod runs to use the GPU (default "nvidia-smi -L")
#   FAKE_GPU    1: stand-in devices (/dev/null's numbers) and a stand-in nvidia-smi, to try the script where
#               there is no GPU; FAKE_SMI names a host binary to mount as the stand-in (default: a script
#               printing one GPU), e.g. a dynamically linked one to try the library mounts
set -euo pipefail

RESETS=${RESETS:-100}
cd "$(dirname "$0")/../.."

shopt -s nullglob
gpus=(/dev/nvidia[0-9]*)
shopt -u nullglob
if [ "${FAKE_GPU:-0}" != 1 ] && [ ${#gpus[@]} -eq 0 ]; then
	echo "GPU check skipped: no NVIDIA GPU on this machine (no /dev/nvidia0, /dev/nvidia1, ...)"
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "the GPU check needs root: it runs the warmpod daemon" >&2
	exit 1
fi

suffix=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
work=$(mktemp -d "/tmp/warmpod-gpu-$suffix.XXXX")
state=/run/wpgpu-$suffix
socket=$state/warmpod.sock
cdi=$work/cdi
mkdir -p "$cdi" "$work/bin"

# The daemon is started, waited for, stopped and cleaned up after (its bridge, chains, cgroups, state) by
# withdaemon (integration/launch), as the tests start theirs; this only removes the work directory.
cleanup() {
	local rc=$?
	if [ "${KEEP_WORK:-0}" = 1 ] || [ $rc != 0 ]; then
		echo "work directory kept: $work (daemon log: $work/warmpod.log)"
	else
		rm -rf "$work"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- binaries ---------------------------------------------------------------------------------------------
if [ -n "${BIN:-}" ]; then
	bin=$(cd "$BIN" && pwd)
else
	bin=$work/bin
	GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
	echo "building warmpod, withdaemon and gpubench"
	"$GO" build -tags seccomp -o "$bin/warmpod" ./cmd/warmpod
	"$GO" build -o "$bin/withdaemon" ./integration/cmd/withdaemon
	"$GO" build -o "$bin/gpubench" ./integration/gpu/gpubench
fi
for b in warmpod withdaemon gpubench; do
	[ -x "$bin/$b" ] || { echo "$bin/$b is missing" >&2; exit 1; }
done

image=${IMAGE_TAR:-$work/busybox.tar}
if [ -z "${IMAGE_TAR:-}" ]; then
	"$bin/gpubench" write-image "$image"
fi

# --- CDI specs ----------------------------------------------------------------------------------------------
json_list() { # json_list ITEM...: a JSON array of the (already JSON) items
	local IFS=,
	echo "[$*]"
}
mount_json() { # mount_json PATH: a read-only bind mount of PATH at the same path
	printf '{"hostPath": "%s", "containerPath": "%s", "options": ["ro", "nosuid", "nodev", "rbind"]}' "$1" "$1"
}

dev_dir=/dev
smi=$(command -v nvidia-smi || true)
if [ "${FAKE_GPU:-0}" = 1 ]; then
	dev_dir=$work/fakedev
	mkdir -p "$dev_dir"
	for n in nvidia0 nvidiactl; do mknod -m 666 "$dev_dir/$n" c 1 3; done
	smi=${FAKE_SMI:-$work/fake/nvidia-smi}
	if [ -z "${FAKE_SMI:-}" ]; then
		mkdir -p "$(dirname "$smi")"
		printf '#!/bin/sh\necho "GPU 0: Stand-in GPU (UUID: GPU-00000000-fake)"\n' >"$smi"
		chmod 755 "$smi"
	fi
fi
if [ -z "$smi" ]; then
	echo "nvidia-smi not found: install the NVIDIA driver utilities" >&2
	exit 1
fi

lib_dirs=()
add_lib_dir() { local d; d=$(dirname "$1"); [[ " ${lib_dirs[*]} " == *" $d "* ]] || lib_dirs+=("$d"); }

if [ "${FAKE_GPU:-0}" != 1 ] && command -v nvidia-ctk >/dev/null; then
	echo "CDI spec: nvidia-ctk cdi generate"
	nvidia-ctk cdi generate --output="$cdi/nvidia.yaml" >"$work/nvidia-ctk.log" 2>&1 ||
		{ cat "$work/nvidia-ctk.log" >&2; exit 1; }
	gpu_device=nvidia.com/gpu=all
	while read -r lib; do add_lib_dir "$lib"; done < <(ldconfig -p | awk '/(libnvidia|libcuda)/ && /x86-64/ {print $NF}')
else
	echo "CDI spec: the device nodes in $dev_dir, the driver libraries ldconfig lists, and $smi"
	nodes=()
	for n in "$dev_dir"/nvidia*; do
		[ -c "$n" ] || continue
		nodes+=("$(printf '{"path": "/dev/%s", "hostPath": "%s"}' "$(basename "$n")" "$n")")
	done
	for n in "$dev_dir"/nvidia-caps/*; do
		[ -c "$n" ] && nodes+=("$(printf '{"path": "/dev/nvidia-caps/%s", "hostPath": "%s"}' "$(basename "$n")" "$n")")
	done
	mounts=("$(mount_json "$smi")")
	if [ "${FAKE_GPU:-0}" = 1 ]; then
		# The stand-in lives in the work dir; in the container it is where the real one would be.
		mounts=("$(printf '{"hostPath": "%s", "containerPath": "/usr/bin/nvidia-smi", "options": ["ro", "rbind"]}' "$smi")")
	fi
	while read -r lib; do
		mounts+=("$(mount_json "$lib")")
		add_lib_dir "$lib"
	done < <(ldconfig -p | awk '/(libnvidia|libcuda)/ && /x86-64/ {print $NF}' | sort -u)
	printf '{"cdiVersion": "0.6.0", "kind": "warmpod.test/gpu", "devices": [{"name": "all", "containerEdits": {"deviceNodes": %s}}], "containerEdits": {"mounts": %s}}\n' \
		"$(json_list "${nodes[@]}")" "$(json_list "${mounts[@]}")" >"$cdi/gpu.json"
	gpu_device=warmpod.test/gpu=all
fi

# nvidia-smi's own libraries (and the loader), at their host paths, for an image without any.
rt_mounts=()
while read -r lib; do
	[ -e "$lib" ] || continue
	rt_mounts+=("$(mount_json "$(readlink -f "$lib")")")
	[ "$(readlink -f "$lib")" = "$lib" ] || rt_mounts+=("$(printf '{"hostPath": "%s", "containerPath": "%s", "options": ["ro", "rbind"]}' "$(readlink -f "$lib")" "$lib")")
	add_lib_dir "$lib"
done < <(ldd "$smi" 2>/dev/null | awk '/=> \// {print $3} /^\t\// {print $1}' | sort -u)
ld_path=$(IFS=:; echo "${lib_dirs[*]}")
printf '{"cdiVersion": "0.6.0", "kind": "warmpod.test/gpu-runtime", "devices": [{"name": "libs", "containerEdits": {"env": ["LD_LIBRARY_PATH=%s"], "mounts": %s}}]}\n' \
	"$ld_path" "$(json_list "${rt_mounts[@]}")" >"$cdi/gpu-runtime.json"
devices=$gpu_device,warmpod.test/gpu-runtime=libs

# --- daemon and benchmark ----------------------------------------------------------------------------------
# A daemon of its own: root and log in the work directory, state in /run, bridge wpgpu<hex>, chains
# WPGPU<HEX>-* and cgroup parent /warmpod-gpu-<hex> (the pods use the host's network, so the bridge and
# chains are never made; withdaemon removes them all the same).
echo "devices for the GPU pod: $devices"
"$bin/withdaemon" --warmpod "$bin/warmpod" --private gpu --dir "$work" --state "$state" --log-level info \
	--daemon-args "--cdi-spec-dirs $cdi" -- \
	"$bin/gpubench" run --socket "$socket" --import "$image" --gpu-devices "$devices" --resets "$RESETS" \
	--cmd "${GPU_CMD:-nvidia-smi -L}" --log-dir "$work/logs"
