package oci

import (
	"errors"
	"io/fs"
)

// Host holds the facts about the node that shape every spec. DetectHost reads them once; tests build
// their own.
type Host struct {
	// CgroupV2 is true on a unified (v2-only) hierarchy; a hybrid host counts as v1.
	CgroupV2 bool
	// Capabilities are the capabilities this process holds and can hand to a container ("CAP_CHOWN", …),
	// in kernel order. Privileged containers get all of them.
	Capabilities []string
	// SwapAccounting is true when the memory controller can limit swap.
	SwapAccounting bool
	// HugePageSizes are the page sizes the hugetlb controller accepts ("2MB", "1GB"); nil when the
	// controller is missing, in which case hugepage limits are dropped (containerd's default too).
	HugePageSizes []string
	// RecursiveReadOnly is true on kernels with mount_setattr(AT_RECURSIVE), 5.12 and later.
	RecursiveReadOnly bool
	// AppArmor is true when the kernel enforces AppArmor.
	AppArmor bool
}

// system is the seam between the builder and the host's filesystem: everything a build looks up on the
// host at build time goes through it, so tests can answer with a recording fake.
type system interface {
	// Hostname is the node's hostname, for pods on the host network.
	Hostname() (string, error)
	// EvalSymlinks resolves path to an existing absolute path without symlinks.
	EvalSymlinks(path string) (string, error)
	// MountPropagation reports the propagation of the mount that holds path: "shared" (also when it
	// is a slave as well), "slave" or "private", and that mount's mountpoint.
	MountPropagation(path string) (propagation, mountpoint string, err error)
	// Devices returns the device node at path, or every device node under path when it is a directory.
	Devices(path string) ([]hostDevice, error)
	// ReadFile reads a host file (a seccomp profile).
	ReadFile(path string) ([]byte, error)
}

// hostDevice is a device node as found on the host.
type hostDevice struct {
	Path         string
	Type         string // "c" or "b"
	Major, Minor int64
	Mode         fs.FileMode // permission bits only
	UID, GID     uint32
}

var errNotDevice = errors.New("not a character or block device")
