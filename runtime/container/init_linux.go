package container

import (
	"os"

	"github.com/opencontainers/runc/libcontainer"

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
