#!/usr/bin/env bash
# Builds the single-node cluster the e2e tests start -- etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler and the kubelet -- from source through the Go module proxy, into a cache keyed by versions:
#
#   $E2E_CACHE/k8s-$K8S_VERSION-etcd-$ETCD_VERSION/{etcd,kube-apiserver,...}
#
# A binary already in the cache is not built again. k8s.io/kubernetes replaces its k8s.io/* staging modules
# with local paths, which "go install pkg@version" refuses, so a scratch module that requires it and replaces
# each staging module with its published v0.MINOR.PATCH tag builds the cmd/ binaries; etcd's server module
# replaces its siblings the same way and gets a scratch module too. Prints the binary directory on success.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.7.3}"
E2E_CACHE="${E2E_CACHE:-/var/cache/warmpod-e2e}"
GO="${GO:-go}"

out="$E2E_CACHE/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"
k8s_bins=(kube-apiserver kube-controller-manager kube-scheduler kubelet)
mkdir -p "$out"

missing=()
for b in "${k8s_bins[@]}"; do
	[ -x "$out/$b" ] || missing+=("$b")
done

# The staging modules' published tags are v0.MINOR.PATCH for Kubernetes v1.MINOR.PATCH.
staging_version="v0.${K8S_VERSION#v1.}"
log() { echo "build-cluster: $*" >&2; }

# nice and -p 1: the build takes minutes of CPU and the machine is shared.
build() { # dir outdir pkgs...
	local dir=$1 outdir=$2
	shift 2
	(cd "$dir" && nice -n 10 env CGO_ENABLED=0 GOFLAGS=-mod=mod "$GO" build -p "${E2E_BUILD_PARALLEL:-1}" -trimpath \
		-ldflags "-s -w ${LDFLAGS_EXTRA:-}" -o "$outdir/" "$@")
}

if [ ${#missing[@]} -gt 0 ]; then
	src="$out/src-k8s"
	mkdir -p "$src"
	dir=$(cd "$src" && GOFLAGS=-mod=mod "$GO" mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -n "$dir" ] || { log "cannot download k8s.io/kubernetes@$K8S_VERSION"; exit 1; }
	{
		echo "module warmpod.e2e/k8sbuild"
		echo
		grep -m1 '^go ' "$dir/go.mod"
		echo
		echo "require k8s.io/kubernetes $K8S_VERSION"
		echo
		echo "replace ("
		# Every "k8s.io/x => ./staging/src/k8s.io/x" of upstream's go.mod becomes "k8s.io/x => k8s.io/x vX".
		sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"$staging_version"'#p' "$dir/go.mod"
		echo ")"
	} >"$src/go.mod"
	# A package that imports nothing: the build names the cmd/ packages itself.
	printf 'package k8sbuild\n' >"$src/doc.go"
	pkg="k8s.io/component-base/version"
	minor=${K8S_VERSION#v1.}
	minor=${minor%%.*}
	LDFLAGS_EXTRA="-X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
	pkgs=()
	for b in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
	log "building ${missing[*]} $K8S_VERSION (slow the first time: the kubelet alone takes minutes)"
	start=$(date +%s)
	LDFLAGS_EXTRA="$LDFLAGS_EXTRA" build "$src" "$out.tmp" "${pkgs[@]}"
	for b in "${missing[@]}"; do mv "$out.tmp/$b" "$out/$b"; done
	rmdir "$out.tmp"
	log "built ${missing[*]} in $(($(date +%s) - start)) s"
fi

if [ ! -x "$out/etcd" ]; then
	src="$out/src-etcd"
	mkdir -p "$src"
	printf 'module warmpod.e2e/etcdbuild\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" >"$src/go.mod"
	printf 'package etcdbuild\n' >"$src/doc.go"
	log "building etcd $ETCD_VERSION"
	start=$(date +%s)
	build "$src" "$out.tmp" go.etcd.io/etcd/server/v3
	mv "$out.tmp/server" "$out/etcd" 2>/dev/null || mv "$out.tmp/v3" "$out/etcd"
	rmdir "$out.tmp"
	log "built etcd in $(($(date +%s) - start)) s"
fi

echo "$out"
