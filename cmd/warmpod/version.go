package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version is set at link time (make: git describe). A plain go build
// leaves it empty; it is then the main module's version that go build
// stamps from the checkout (a pseudo-version such as
// v0.0.0-20261202024000-7b2761123456+dirty), or "dev" without one.
var version string

func init() {
	if version != "" {
		return
	}
	version = "dev"
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		version = info.Main.Version
	}
}

// Modules whose versions "warmpod --version" reports: what decides how
// containers are created and what the kubelet may expect.
const (
	runcModule       = "github.com/opencontainers/runc"
	criAPIModule     = "k8s.io/cri-api"
	libseccompModule = "github.com/seccomp/libseccomp-golang"
)

// moduleVersions reads the versions of the modules linked into this binary.
func moduleVersions() map[string]string {
	out := map[string]string{}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return out
	}
	for _, m := range info.Deps {
		if m.Replace != nil {
			m = m.Replace
		}
		out[m.Path] = m.Version
	}
	return out
}

// printVersion writes warmpod's version and those of the runc
// (libcontainer), libseccomp and CRI API it was built with.
func printVersion(w io.Writer) {
	mods := moduleVersions()
	or := func(v, none string) string {
		if v == "" {
			return none
		}
		return v
	}
	seccomp := "not built in (build with -tags seccomp)"
	if v := libseccompVersion(); v != "" {
		seccomp = fmt.Sprintf("%s (libseccomp-golang %s)", v, or(mods[libseccompModule], "unknown"))
	}
	fmt.Fprintf(w, "warmpod %s\n", version)
	fmt.Fprintf(w, "  runc (libcontainer): %s\n", or(mods[runcModule], "unknown"))
	fmt.Fprintf(w, "  libseccomp:          %s\n", seccomp)
	fmt.Fprintf(w, "  CRI API:             v1 (%s %s)\n", criAPIModule, or(mods[criAPIModule], "unknown"))
	fmt.Fprintf(w, "  go:                  %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
