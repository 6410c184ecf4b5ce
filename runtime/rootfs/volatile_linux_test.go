package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// refuseVolatile makes mount(2) answer EINVAL to the "volatile" option, as
// a kernel before 5.10 does, until the test ends, and counts the mounts
// that asked for it.
func refuseVolatile(t *testing.T) *int {
	t.Helper()
	asked := new(int)
	sysMount = func(source, target, fstype string, flags uintptr, data string) error {
		if slices.Contains(strings.Split(data, ","), "volatile") {
			*asked++
			return unix.EINVAL
		}
		return unix.Mount(source, target, fstype, flags, data)
	}
	t.Cleanup(func() {
		sysMount = unix.Mount
		volatileRefused.Store(false)
	})
	return asked
}

// A kernel that refuses "volatile" gets writable layers without it, asked
// once.
func TestVolatileRefused(t *testing.T) {
	requireRoot(t)
	asked := refuseVolatile(t)
	layer := newLayer(t)
	parent := t.TempDir()
	for i := range 3 {
		r, err := Mount([]string{layer}, filepath.Join(parent, fmt.Sprint(i)), nil)
		if err != nil {
			t.Fatalf("Mount %d: %v", i, err)
		}
		if err := os.WriteFile(filepath.Join(r.Merged, "new"), nil, 0o644); err != nil {
			t.Fatalf("write: %v", err)
		}
		if err := r.Remove(); err != nil {
			t.Fatalf("Remove: %v", err)
		}
	}
	if *asked != 1 {
		t.Errorf("mounts that asked for volatile = %d, want 1", *asked)
	}
	if Volatile() {
		t.Error("Volatile() = true after the kernel refused it")
	}
}

// EINVAL for another reason than the option is an error, and does not stop
// the next mounts from asking for it.
func TestVolatileOtherEINVAL(t *testing.T) {
	requireRoot(t)
	asked := refuseVolatile(t)
	sysMount = func(source, target, fstype string, flags uintptr, data string) error {
		if strings.Contains(data, "volatile") {
			*asked++
		}
		return unix.EINVAL
	}
	if _, err := Mount([]string{newLayer(t)}, filepath.Join(t.TempDir(), "gen"), nil); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("Mount = %v, want EINVAL", err)
	}
	if !Volatile() {
		t.Error("Volatile() = false after a mount that failed without it too")
	}
	if *asked != 1 {
		t.Errorf("mounts that asked for volatile = %d, want 1", *asked)
	}
}
