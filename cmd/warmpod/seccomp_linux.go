//go:build seccomp && cgo

package main

import (
	"fmt"

	libseccomp "github.com/seccomp/libseccomp-golang"
)

// libseccompVersion is the version of the libseccomp library linked in
// (for a static binary, the one it was built with).
func libseccompVersion() string {
	major, minor, micro := libseccomp.GetLibraryVersion()
	return fmt.Sprintf("%d.%d.%d", major, minor, micro)
}
