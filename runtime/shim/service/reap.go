package service

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// reaper waits for the shim's children that nobody else waits for. The
// shim is the child subreaper of its pod: a process that a container
// without a pid namespace of its own (a hostPID pod) leaves behind, when
// its parent dies, becomes the shim's child, and stays a zombie unless the
// shim waits for it.
//
// Every other child of the shim is waited for by its pid, by the code that
// started it: libcontainer's and os/exec's Wait (container inits, execs,
// the pause process, and the intermediate processes libcontainer forks and
// waits for inside its calls). A wait for any child (wait4(-1)) would take
// their exit statuses from them. So the reaper waits only for children it
// does not know: the pids of processes waited for elsewhere are owned
// (own, disown), and no sweep runs while a process is being started (hold,
// release), when the intermediates come and go.
type reaper struct {
	sigs chan os.Signal
	done chan struct{}

	// mu guards the fields below and makes a sweep and the start of a
	// process exclude each other. A leaf.
	mu    sync.Mutex
	owned map[int]int
	holds int
	// pending is set when a child exited during a hold: the sweep runs at
	// its release.
	pending bool
}

// newReaper starts reaping on SIGCHLD.
func newReaper() *reaper {
	r := &reaper{sigs: make(chan os.Signal, 1), done: make(chan struct{}), owned: map[int]int{}}
	signal.Notify(r.sigs, unix.SIGCHLD)
	go r.loop()
	return r
}

func (r *reaper) loop() {
	defer close(r.done)
	for range r.sigs {
		r.mu.Lock()
		if r.holds > 0 {
			r.pending = true
		} else {
			r.sweepLocked()
		}
		r.mu.Unlock()
	}
}

// stop ends the reaping.
func (r *reaper) stop() {
	signal.Stop(r.sigs)
	close(r.sigs)
	<-r.done
}

// hold puts sweeps off while the caller starts a process; release ends the
// hold. Every hold is paired with a release.
func (r *reaper) hold() {
	r.mu.Lock()
	r.holds++
	r.mu.Unlock()
}

func (r *reaper) release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.holds--
	if r.holds == 0 && r.pending {
		r.pending = false
		r.sweepLocked()
	}
}

// own marks pid as waited for elsewhere until disown; call it while the
// process's start is held.
func (r *reaper) own(pid int) {
	r.mu.Lock()
	r.owned[pid]++
	r.mu.Unlock()
}

func (r *reaper) disown(pid int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.owned[pid]--; r.owned[pid] <= 0 {
		delete(r.owned, pid)
	}
}

// ownUntil owns pid until done is closed (the process has been waited
// for).
func (r *reaper) ownUntil(pid int, done <-chan struct{}) {
	r.own(pid)
	go func() {
		<-done
		r.disown(pid)
	}()
}

// sweepLocked waits for every child that is not owned and has exited.
//
// It first asks the kernel, without reaping (WNOWAIT), for one exited child:
// none (the usual case, the owner of the child that sent SIGCHLD has already
// waited for it) ends the sweep at the cost of one system call; one that is
// not owned is reaped and the kernel asked again. Only when an owned child
// that its owner has not waited for yet is in the way is every child listed
// (children), which reads a /proc file per thread of the shim, and costs
// milliseconds of CPU on the reset path when done on every SIGCHLD.
// Preconditions: r.mu held, no hold.
func (r *reaper) sweepLocked() {
	for {
		pid, err := exitedChild()
		if err != nil || pid == 0 {
			return
		}
		if r.owned[pid] > 0 {
			break
		}
		reap(pid)
	}
	for _, pid := range children() {
		if r.owned[pid] == 0 {
			reap(pid)
		}
	}
}

// exitedChild returns the pid of a child that has exited and not been waited
// for, without waiting for it; 0 when there is none.
func exitedChild() (int, error) {
	for {
		// Zeroed: the kernel leaves si_pid 0 when no child has exited.
		var info unix.Siginfo
		err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			// ECHILD: no child at all.
			return 0, err
		}
		return siginfoPid(&info), nil
	}
}

// siginfoPid is the si_pid field of a SIGCHLD siginfo, which x/sys/unix
// does not name: the first int32 of the union that follows the three int32
// header fields and their padding to 8 bytes.
func siginfoPid(info *unix.Siginfo) int {
	b := (*[unsafe.Sizeof(unix.Siginfo{})]byte)(unsafe.Pointer(info))
	return int(int32(binary.NativeEndian.Uint32(b[siginfoPidOffset:])))
}

// siginfoPidOffset is where si_pid lies in a siginfo_t: after si_signo,
// si_errno and si_code, the union is aligned to the size of a pointer.
const siginfoPidOffset = 3*4 + (unsafe.Sizeof(uintptr(0))-4)%8

// reap waits for child pid, which has exited, unless someone else has.
func reap(pid int) {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if err != unix.EINTR {
			return
		}
	}
}

// children lists the calling process's children, from the children files
// of its threads (a reparented child is its reaper thread's); without them
// (a kernel built without CONFIG_PROC_CHILDREN), from every process's
// parent.
func children() []int {
	// The threads' directories are listed and their children files read
	// by name: a glob would list every one of those directories too.
	tasks, err := os.ReadDir("/proc/self/task")
	var out []int
	found := false
	if err == nil {
		for _, t := range tasks {
			data, err := os.ReadFile("/proc/self/task/" + t.Name() + "/children")
			if err != nil {
				continue
			}
			found = true
			for _, f := range strings.Fields(string(data)) {
				if pid, err := strconv.Atoi(f); err == nil {
					out = append(out, pid)
				}
			}
		}
	}
	if found {
		return out
	}
	self := os.Getpid()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, ok := parent(pid); ok && ppid == self {
			out = append(out, pid)
		}
	}
	return out
}

// parent reads process pid's parent from /proc/<pid>/stat, whose command
// name, which may hold anything, ends at the last ')'.
func parent(pid int) (int, bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	return ppid, err == nil
}
