package netns

import (
	"fmt"
	"os"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// holderArgs are the arguments of the child that holds new namespaces while
// they are pinned. It never runs them (see pinFromChild); should it ever,
// both the warmpod binary and a Go test binary just exit on "--version".
var holderArgs = []string{"warmpod-userns", "--version"}

// pinFromChild creates the namespaces of kinds, a user namespace among them,
// by cloning a child into all of them at once: the kernel makes the user
// namespace first and the others owned by it. Each of the child's
// namespaces is pinned on its target, the hostname set, and the child
// killed. It returns the targets it mounted, also on error, so the caller
// can undo them.
//
// The child is traced (PTRACE_TRACEME), so it stops at its execve before
// running a single instruction of the program: any executable will do, and
// /proc/self/exe is always there. A clone and an exec cost about a
// millisecond, which RunPodSandbox can afford for the pods that ask for a
// user namespace.
func pinFromChild(kinds []kind, targets []string, opts Options) (mounted []string, retErr error) {
	flags := 0
	for _, k := range kinds {
		flags |= k.flag
	}
	// The thread that clones a traced child is its tracer, and the thread
	// whose end fires the child's Pdeathsig. Holding it until the child is
	// reaped means the child never runs: were the tracer to go, the child
	// would be let loose; were the process to die, Pdeathsig kills it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	proc, err := os.StartProcess("/proc/self/exe", holderArgs, &os.ProcAttr{Sys: &syscall.SysProcAttr{
		Cloneflags:  uintptr(flags),
		UidMappings: sysIDMaps(opts.User.UIDs),
		GidMappings: sysIDMaps(opts.User.GIDs),
		// Containers in the namespace set their supplementary groups.
		GidMappingsEnableSetgroups: true,
		Ptrace:                     true,
		Pdeathsig:                  unix.SIGKILL,
	}})
	if err != nil {
		return nil, fmt.Errorf("create user namespace (uids %v, gids %v): %w", opts.User.UIDs, opts.User.GIDs, err)
	}
	defer func() {
		_ = proc.Kill()
		_, _ = proc.Wait()
	}()
	var uts string
	for i, k := range kinds {
		src := fmt.Sprintf("/proc/%d/ns/%s", proc.Pid, k.file)
		if err := unix.Mount(src, targets[i], "", unix.MS_BIND, ""); err != nil {
			return mounted, fmt.Errorf("pin %s namespace on %s: %w", k.file, targets[i], err)
		}
		mounted = append(mounted, targets[i])
		if k.file == utsFile {
			uts = targets[i]
		}
	}
	if opts.Hostname != "" {
		// Root on the host holds every capability in the namespaces of a
		// user namespace it created, so a thread of ours may join the UTS
		// namespace without joining the user namespace.
		err := Do(uts, func() error { return unix.Sethostname([]byte(opts.Hostname)) })
		if err != nil {
			return mounted, fmt.Errorf("set hostname %q: %w", opts.Hostname, err)
		}
	}
	return mounted, nil
}

func sysIDMaps(ms []IDMap) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(ms))
	for i, m := range ms {
		out[i] = syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)}
	}
	return out
}
