package oci

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/warmpod/warmpod/internal/testutil"
)

func TestKernelAtLeast(t *testing.T) {
	tests := []struct {
		release string
		want    bool
	}{
		{"5.12.0", true},
		{"6.1.0-18-amd64", true},
		{"5.11.22", false},
		{"4.19.0", false},
		{"5.12-rc1", true},
		{"10.0", true},
		{"garbage", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := kernelAtLeast(tt.release, 5, 12); got != tt.want {
			t.Errorf("kernelAtLeast(%q, 5, 12) = %v, want %v", tt.release, got, tt.want)
		}
	}
}

func TestDetectHost(t *testing.T) {
	h, err := DetectHost()
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Capabilities) == 0 && os.Geteuid() == 0 {
		t.Fatal("root holds no capabilities?")
	}
	for _, c := range h.Capabilities {
		if _, ok := capOrder[c]; !ok {
			t.Fatalf("unknown capability %q", c)
		}
	}
	if !slices.IsSortedFunc(h.Capabilities, func(a, b string) int { return capOrder[a] - capOrder[b] }) {
		t.Fatalf("capabilities not in kernel order: %v", h.Capabilities)
	}
	_, statErr := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	if h.CgroupV2 && statErr != nil {
		t.Fatal("cgroup v2 reported without /sys/fs/cgroup/cgroup.controllers")
	}
}

func TestHostOOMScoreAdjRange(t *testing.T) {
	lo, hi := HostOOMScoreAdjRange()
	if hi != 1000 || lo < -1000 || lo > hi {
		t.Fatalf("range [%d, %d]", lo, hi)
	}
	caps, err := heldCapabilities()
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(caps, "CAP_SYS_RESOURCE") {
		if lo != -1000 {
			t.Fatalf("with CAP_SYS_RESOURCE the range starts at %d, want -1000", lo)
		}
		return
	}
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		t.Fatal(err)
	}
	if own, _ := strconv.Atoi(strings.TrimSpace(string(b))); lo != own {
		t.Fatalf("without CAP_SYS_RESOURCE the range starts at %d, want our own %d", lo, own)
	}
}

func TestOSSystemDevices(t *testing.T) {
	var sys osSystem
	null, err := sys.Devices("/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	if len(null) != 1 || null[0].Type != "c" || null[0].Major != 1 || null[0].Minor != 3 {
		t.Fatalf("/dev/null = %+v", null)
	}
	all, err := sys.Devices("/dev")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(all, func(d hostDevice) bool { return d.Path == "/dev/null" }) {
		t.Fatalf("/dev listing lacks /dev/null: %d devices", len(all))
	}
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := sys.Devices(file); !errors.Is(err, errNotDevice) {
		t.Fatalf("regular file: err = %v, want errNotDevice", err)
	}
}

func TestOSSystemMountPropagation(t *testing.T) {
	testutil.RequireRoot(t, "it mounts a test tmpfs")
	dir := t.TempDir()
	if err := unix.Mount("warmpod-test", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	var sys osSystem
	for _, tt := range []struct {
		flag uintptr
		want string
	}{
		{unix.MS_PRIVATE, "private"},
		{unix.MS_SHARED, "shared"},
	} {
		if err := unix.Mount("", dir, "", tt.flag, ""); err != nil {
			t.Fatalf("change propagation: %v", err)
		}
		prop, mountpoint, err := sys.MountPropagation(sub)
		if err != nil {
			t.Fatal(err)
		}
		if prop != tt.want || mountpoint != dir {
			t.Fatalf("propagation of %s = %s on %s, want %s on %s", sub, prop, mountpoint, tt.want, dir)
		}
	}
}
