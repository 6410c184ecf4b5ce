package service

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

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
// Preconditions: r.mu held, no hold.
func (r *reaper) sweepLocked() {
	for _, pid := range children() {
		if r.owned[pid] > 0 {
			continue
		}
		var ws unix.WaitStatus
		for {
			_, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
			if err != unix.EINTR {
				break
			}
		}
	}
}

// children lists the calling process's children, from the children files
// of its threads (a reparented child is its reaper thread's); without them
// (a kernel built without CONFIG_PROC_CHILDREN), from every process's
// parent.
func children() []int {
	tasks, err := filepath.Glob("/proc/self/task/*/children")
	var out []int
	if err == nil && len(tasks) > 0 {
		for _, t := range tasks {
			data, err := os.ReadFile(t)
			if err != nil {
				continue
			}
			for _, f := range strings.Fields(string(data)) {
				if pid, err := strconv.Atoi(f); err == nil {
					out = append(out, pid)
				}
			}
		}
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
