#!/usr/bin/env bash
# Runs the CRI validation suite, critest v1.37.0, against a warmpod daemon started for the run (make
# conformance), or critest's benchmarks with --benchmark (make conformance-benchmark). Needs root.
#
#   integration/conformance/run.sh [--benchmark] [-- CRITEST FLAGS...]
#
# Environment: BIN (where make build put warmpod; default bin), GO (default go), CRITEST (the critest
# binary; hack/install-deps.sh installs it to /usr/local/bin/critest), CONFORMANCE_BUSYBOX (the busybox the test
# images are built from; default: Debian's busybox package, fetched once into $BIN/conformance),
# CONFORMANCE_ARTIFACTS (a directory to keep the daemon log, critest's output and reports in).
#
# The specs it skips, and why, are listed below; integration/conformance/README.md has the details.
set -euo pipefail

cd "$(dirname "$0")/../.."
BIN=${BIN:-bin}
GO=${GO:-go}
CRITEST=${CRITEST:-/usr/local/bin/critest}

benchmark=()
critest_flags=()
while [ $# -gt 0 ]; do
	case $1 in
	--benchmark) benchmark=(--benchmark --benchmark-params integration/conformance/benchmark-params.yaml) ;;
	--) shift; critest_flags=("$@"); break ;;
	*) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done

if [ "$(id -u)" != 0 ]; then
	echo "run.sh: needs root (the daemon creates namespaces, cgroups, mounts, a bridge and iptables rules)" >&2
	exit 2
fi
[ -x "$BIN/warmpod" ] || { echo "run.sh: $BIN/warmpod is missing; run make build first" >&2; exit 2; }

# critest (and the apt package lists "apt-get download" needs) come from the project's install step.
if [ ! -x "$CRITEST" ]; then
	CRITEST=$CRITEST GO=$GO hack/install-deps.sh
fi

# The test images are built from a busybox whose shell executes applets as files, as the official busybox
# image's does: Debian's busybox package. busybox-static will not do: its standalone shell runs `ls` even
# where /bin/ls is masked (the MaskedPaths spec), and renames the processes it runs after their applet (the
# nginx look-alike's processes must be named nginx). The package is fetched once with apt-get download,
# never installed.
busybox=${CONFORMANCE_BUSYBOX:-$BIN/conformance/busybox}
if [ ! -x "$busybox" ] && [ -z "${CONFORMANCE_BUSYBOX:-}" ]; then
	echo "==== fetching Debian's busybox package into $BIN/conformance"
	mkdir -p "$BIN/conformance"
	tmp=$(mktemp -d)
	if ! (cd "$tmp" && apt-get download busybox && dpkg-deb -x busybox_*.deb root); then
		rm -rf "$tmp"
		echo "run.sh: apt-get download busybox failed (apt-get update first?)" >&2
		exit 2
	fi
	cp "$tmp/root/bin/busybox" "$busybox"
	rm -rf "$tmp"
fi

skips=()
# skip PATTERN REASON: PATTERN is a ginkgo skip regexp over the spec's full name.
skip() { skips+=(--skip "$1 => $2"); }

# critest pins test-image-digest to sha256:9700f9a2..., the digest of the upstream image's manifest list;
# no look-alike can hash to it and the upstream registry is out of reach. The run instead pulls the
# look-alike pinned to its own digest and checks what the spec checks (no repo tag, exactly that repo
# digest, removal by id): "digest-pinned pull of a look-alike" in the tally.
skip 'Image Manager public image with digest should be pulled and removed' \
	'pins an upstream digest no look-alike can hash to; checked with the look-alike pinned to its own digest'

"$GO" build -o "$BIN/conformance/conformance" ./integration/conformance
args=(--warmpod "$BIN/warmpod" --critest "$CRITEST" --busybox "$busybox" "${skips[@]}" "${benchmark[@]}")
if [ -n "${CONFORMANCE_ARTIFACTS:-}" ]; then
	args+=(--artifacts "$CONFORMANCE_ARTIFACTS")
fi
exec "$BIN/conformance/conformance" "${args[@]}" -- "${critest_flags[@]}"
