package pause

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/warmpod/warmpod/internal/testutil"
)

// ioctl(2) request on nsfs files (linux/nsfs.h); x/sys/unix lacks it.
const nsGetUserNS = 0xb701 // _IO(0xb7, 0x1)

// helperEnv makes TestHelper act as one of the programs the tests run:
// "init" is what startInit starts in TestStartInit, "hold" a process that
// keeps a user namespace alive until its stdin closes.
const helperEnv = "WARMPOD_PAUSE_TEST_HELPER"

// TestHelper is not a test: see helperEnv. As "init" it reports, on its
// stdout, what pid 1 of the new pid namespace sees of itself (pid, uid, gid
// and uid_map), then waits for fd 3 to close, so that its namespaces can be
// looked at.
func TestHelper(t *testing.T) {
	switch os.Getenv(helperEnv) {
	case "init":
		uidMap, _ := os.ReadFile("/proc/self/uid_map")
		fmt.Printf("pid=%d uid=%d gid=%d map=%s\n", os.Getpid(), os.Getuid(), os.Getgid(), strings.Join(strings.Fields(string(uidMap)), " "))
		_, _ = io.Copy(io.Discard, os.NewFile(3, "hold"))
		os.Exit(0)
	case "hold":
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
	t.Skip("runs only as a helper program of the other tests")
}

// userNS starts a process in a new user namespace (root mapped to host uid
// 1000 and gid 2000) and returns the path of that namespace, valid until
// the test ends.
func userNS(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("/proc/self/exe", "-test.run=^TestHelper$")
	cmd.Env = append(os.Environ(), helperEnv+"=hold")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  unix.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 1000, Size: 100000}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 2000, Size: 65536}},
		// As in a pod's user namespace: its root may set its groups.
		GidMappingsEnableSetgroups: true,
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start a process in a new user namespace: %v", err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	return fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid)
}

func nsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return st.Ino
}

// ownerInode returns the inode of the user namespace owning the namespace
// at path.
func ownerInode(t *testing.T, path string) uint64 {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	owner, err := unix.IoctlRetInt(fd, nsGetUserNS)
	if err != nil {
		t.Fatalf("NS_GET_USERNS on %s: %v", path, err)
	}
	defer unix.Close(owner)
	var st unix.Stat_t
	if err := unix.Fstat(owner, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestStartInit(t *testing.T) {
	testutil.RequireRoot(t, "it creates namespaces")
	userns := userNS(t)
	t.Setenv(helperEnv, "init")
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer outR.Close()
	holdR, holdW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	proc, err := startInit(userns, []string{"init-helper", "-test.run=^TestHelper$"}, []*os.File{devNull, outW, outW, holdR})
	outW.Close()
	holdR.Close()
	if err != nil {
		holdW.Close()
		t.Fatalf("startInit: %v", err)
	}
	line, err := bufio.NewReader(outR).ReadString('\n')
	if err != nil {
		t.Errorf("helper output: %q, %v", line, err)
	} else if owner := ownerInode(t, fmt.Sprintf("/proc/%d/ns/pid", proc.Pid)); owner != nsInode(t, userns) {
		t.Errorf("the new pid namespace is not owned by the given user namespace")
	}
	holdW.Close()
	if state, err := proc.Wait(); err != nil || !state.Success() {
		t.Fatalf("helper: %v, %v", state, err)
	}
	if want := "pid=1 uid=0 gid=0 map=0 1000 100000"; !strings.Contains(line, want) {
		t.Errorf("helper saw %q, want %q", line, want)
	}

	if _, err := startInit(filepath.Join(t.TempDir(), "none"), []string{"x"}, nil); err == nil {
		t.Error("startInit with no user namespace succeeded")
	}
	if _, err := startInit("/proc/self/ns/net", []string{"x"}, nil); err == nil {
		t.Error("startInit with a network namespace for a user namespace succeeded")
	}
}
