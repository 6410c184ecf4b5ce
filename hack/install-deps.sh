#!/usr/bin/env bash
# Installs what building, running and testing warmpod needs on Debian 12: the apt packages below, crictl
# and critest. "make run", "make test" and .ci/run call it first. Idempotent: when everything is there it
# only checks (well under a second) and installs nothing.
#
# As root it installs what is missing. As any other user it installs nothing: when something is missing it
# names it in one line and exits 1.
#
#   hack/install-deps.sh           check, and install what is missing (root)
#   hack/install-deps.sh --check   check only; exit 1 naming what is missing
#
# Go itself is not installed here (Debian 12's golang is older than go.mod asks for): it is looked for on
# PATH, then in /usr/local/go/bin. Environment: GO (the go command), CRITEST (where critest is installed;
# the conformance run's default).
set -euo pipefail

CRI_TOOLS_VERSION=v1.37.0
CRITEST=${CRITEST:-/usr/local/bin/critest}
TOOLS_BIN=/usr/local/bin

# gcc, libc6-dev, pkg-config, libseccomp-dev: cgo for libcontainer, and seccomp (libseccomp-dev also has the
# libseccomp.a of the static release build). make, git: the build (go build stamps the commit).
# busybox-static: the test images. iproute2, iptables: the embedded pod network. containernetworking-plugins:
# the CNI network mode. systemd, dbus: the systemd cgroup driver and the test that runs warmpod as a systemd
# unit. util-linux: unshare and nsenter for that test. ca-certificates: go's module downloads.
PACKAGES=(
	ca-certificates gcc libc6-dev make pkg-config git libseccomp-dev
	busybox-static iproute2 iptables containernetworking-plugins
	systemd dbus util-linux
)

check_only=0
case ${1:-} in
--check) check_only=1 ;;
"") ;;
*) echo "install-deps.sh: unknown argument $1 (want --check or nothing)" >&2; exit 2 ;;
esac

GO=${GO:-go}
if ! command -v "$GO" >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	GO=/usr/local/go/bin/go
fi
if ! command -v "$GO" >/dev/null 2>&1; then
	echo "warmpod needs Go (https://go.dev/dl/, unpacked to /usr/local/go); not found on PATH or in /usr/local/go/bin" >&2
	exit 1
fi

missing_pkgs=()
declare -A installed=()
while read -r name status; do
	installed[${name%%:*}]=$status
done < <(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${PACKAGES[@]}" 2>/dev/null || true)
for p in "${PACKAGES[@]}"; do
	[ "${installed[$p]:-}" = installed ] || missing_pkgs+=("$p")
done

# crictl must be the version the tests are written against. A go-installed crictl carries no version of its
# own ("version unknown"), so its build information is read instead.
crictl_ok() {
	local c
	c=$(command -v crictl 2>/dev/null) || return 1
	"$GO" version -m "$c" 2>/dev/null | grep -q "sigs.k8s.io/cri-tools[[:space:]]\+$CRI_TOOLS_VERSION" && return 0
	"$c" --version 2>/dev/null | grep -q "$CRI_TOOLS_VERSION"
}
missing_tools=()
crictl_ok || missing_tools+=("crictl $CRI_TOOLS_VERSION")
[ -x "$CRITEST" ] || missing_tools+=("critest $CRI_TOOLS_VERSION")

# The conformance run fetches Debian's busybox package with "apt-get download", which needs package lists.
lists_ok=1
compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null || lists_ok=0

if [ ${#missing_pkgs[@]} -eq 0 ] && [ ${#missing_tools[@]} -eq 0 ] && [ $lists_ok = 1 ]; then
	exit 0
fi

if [ $check_only = 1 ] || [ "$(id -u)" != 0 ]; then
	what=()
	[ ${#missing_pkgs[@]} -eq 0 ] || what+=("apt packages: ${missing_pkgs[*]}")
	[ ${#missing_tools[@]} -eq 0 ] || what+=("tools: ${missing_tools[*]}")
	[ $lists_ok = 1 ] || what+=("apt package lists (apt-get update)")
	msg=$(IFS=';'; echo "${what[*]}")
	echo "warmpod is missing ${msg//;/; } -- run hack/install-deps.sh as root to install them" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
if [ ${#missing_pkgs[@]} -gt 0 ] || [ $lists_ok = 0 ]; then
	echo "install-deps: apt-get update"
	apt-get update -q
fi
if [ ${#missing_pkgs[@]} -gt 0 ]; then
	echo "install-deps: installing ${missing_pkgs[*]}"
	apt-get install -y -q --no-install-recommends "${missing_pkgs[@]}"
fi
if ! crictl_ok; then
	echo "install-deps: installing crictl $CRI_TOOLS_VERSION to $TOOLS_BIN"
	(cd / && GOBIN=$TOOLS_BIN GOFLAGS=-mod=mod "$GO" install "sigs.k8s.io/cri-tools/cmd/crictl@$CRI_TOOLS_VERSION")
	if ! crictl_ok; then
		echo "install-deps: $TOOLS_BIN/crictl is installed but another crictl comes first on PATH ($(command -v crictl))" >&2
		exit 1
	fi
fi
# critest is a Go test binary: go test -c builds it from the module cache.
if [ ! -x "$CRITEST" ]; then
	echo "install-deps: installing critest $CRI_TOOLS_VERSION to $CRITEST"
	(cd / && GOFLAGS=-mod=mod "$GO" mod download "sigs.k8s.io/cri-tools@$CRI_TOOLS_VERSION")
	(cd "$("$GO" env GOMODCACHE)/sigs.k8s.io/cri-tools@$CRI_TOOLS_VERSION" &&
		GOFLAGS=-mod=mod "$GO" test -c -o "$CRITEST" ./cmd/critest)
fi
