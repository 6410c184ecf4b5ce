package container

import (
	"errors"
	"fmt"
	"os"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/exeseal"

	// nsexec runs as a C constructor before the Go runtime starts and joins
	// or creates the container's namespaces for the "init" re-execution.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
)

// Init runs libcontainer's in-container setup and never returns when the
// process was started as a container's init ("<binary> init"); otherwise it
// returns at once. Call it first in main and in TestMain.
func Init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init()
	}
}

// SealedSelf returns a sealed, in-memory copy of the running binary. A
// process started from it (through /proc/self/fd/N) runs a binary that no
// container can overwrite (CVE-2019-5736), and libcontainer then starts each
// container's init from it directly, skipping the per-container copy or
// overlay it would otherwise make. The daemon makes one copy and starts every
// shim from it, so all pods share its pages.
func SealedSelf() (*os.File, error) {
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		return nil, err
	}
	defer self.Close()
	st, err := self.Stat()
	if err != nil {
		return nil, err
	}
	f, err := exeseal.CloneBinary(self, st.Size(), "warmpod", os.TempDir())
	if err != nil {
		return nil, fmt.Errorf("seal own binary: %w", err)
	}
	if !exeseal.IsCloned(f) {
		f.Close()
		return nil, errors.New("seal own binary: the kernel made no sealed memfd")
	}
	return f, nil
}
