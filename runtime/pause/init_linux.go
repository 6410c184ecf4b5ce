package pause

/*
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

// Everything after fork runs in a copy of one thread of a multi-threaded
// Go process: only async-signal-safe calls, and never a return into Go.

static void wp_report(int fd, int err, int pid)
{
	int msg[2] = { err, pid };
	(void)!write(fd, msg, sizeof(msg));
}

// wp_init_child runs in the grandchild, pid 1 of the new pid namespace:
// it becomes root of the user namespace, takes its fds and execs.
static void wp_init_child(int report_fd, const char *exe, char *const argv[], char *const envp[], const int *fds, int nfds)
{
	sigset_t none;
	int i, moved[16];

	if (setresgid(0, 0, 0) < 0 || setgroups(0, NULL) < 0 || setresuid(0, 0, 0) < 0)
		goto fail;
	// Move the wanted fds out of the way first, so that no dup2 below
	// closes one still to be placed.
	for (i = 0; i < nfds; i++) {
		moved[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 64);
		if (moved[i] < 0)
			goto fail;
	}
	for (i = 0; i < nfds; i++)
		if (dup2(moved[i], i) < 0)
			goto fail;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execve(exe, argv, envp);
fail:
	wp_report(report_fd, errno, 0);
	_exit(127);
}

// wp_start_init forks a child that joins the user namespace userns_fd and
// clones, as a sibling of itself (CLONE_PARENT: the caller's child), pid 1
// of a new pid namespace, which that user namespace owns. The child reports
// the new pid, or an errno, on report_fd and exits. It returns the child's
// pid, or -errno.
static int wp_start_init(int userns_fd, int report_fd, const char *exe, char *const argv[], char *const envp[], const int *fds, int nfds)
{
	sigset_t all, old;
	pid_t child;
	long init;

	if (nfds > 16)
		return -EINVAL;
	// No Go signal handler may run in the forked copies.
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	child = fork();
	if (child != 0) {
		int err = errno;
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		return child < 0 ? -err : child;
	}
	if (setns(userns_fd, CLONE_NEWUSER) < 0) {
		wp_report(report_fd, errno, 0);
		_exit(1);
	}
	init = syscall(SYS_clone, CLONE_NEWPID | CLONE_PARENT | SIGCHLD, 0, 0, 0, 0);
	if (init < 0) {
		wp_report(report_fd, errno, 0);
		_exit(1);
	}
	if (init == 0)
		wp_init_child(report_fd, exe, argv, envp, fds, nfds);
	wp_report(report_fd, 0, (int)init);
	_exit(0);
}
*/
import "C"

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxInitFiles bounds the files startInit hands on.
const maxInitFiles = 16

// startInit starts argv (argv[0] is only its name: the program is this
// binary, /proc/self/exe) as pid 1 of a new pid namespace owned by the user
// namespace pinned at userns, running as that namespace's root. files[i]
// becomes its fd i. The process is the caller's child; it gets the caller's
// environment.
//
// It is how a pod's pid namespace is made to belong to the pod's user
// namespace, so that the pod's containers may mount /proc: the pid
// namespace's owner is fixed when it is made, and a Go process cannot enter
// a user namespace to make it (the kernel refuses setns of a user namespace
// to a multi-threaded process, and every Go process is one). A forked copy
// of this process can, before it execs.
func startInit(userns string, argv []string, files []*os.File) (*os.Process, error) {
	if len(argv) == 0 || len(files) > maxInitFiles {
		return nil, fmt.Errorf("start init with %d args and %d files: at most %d files, at least one arg", len(argv), len(files), maxInitFiles)
	}
	nsfd, err := unix.Open(userns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open user namespace: %w", err)
	}
	defer unix.Close(nsfd)
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()

	exe := C.CString("/proc/self/exe")
	defer C.free(unsafe.Pointer(exe))
	cArgv := cStrings(argv)
	defer freeCStrings(cArgv)
	cEnv := cStrings(os.Environ())
	defer freeCStrings(cEnv)
	fds := make([]C.int, maxInitFiles)
	for i, f := range files {
		fds[i] = C.int(f.Fd())
	}
	child := C.wp_start_init(C.int(nsfd), C.int(w.Fd()), exe, &cArgv[0], &cEnv[0], &fds[0], C.int(len(files)))
	w.Close()
	if child < 0 {
		return nil, fmt.Errorf("fork: %w", unix.Errno(-child))
	}
	// The child only forks and exits; reap it before anything else.
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(int(child), &ws, 0, nil)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	// The child reports the new pid; the pid 1 reports only a failure,
	// and the pipe ends when it has exec'd (close-on-exec) or exited.
	var pid int
	var failure error
	for {
		var msg [8]byte
		if _, err := io.ReadFull(r, msg[:]); err != nil {
			break
		}
		errno, p := int32(binary.NativeEndian.Uint32(msg[:4])), int(int32(binary.NativeEndian.Uint32(msg[4:])))
		switch {
		case errno != 0 && failure == nil:
			failure = unix.Errno(errno)
		case p != 0:
			pid = p
		}
	}
	if pid == 0 {
		if failure == nil {
			failure = errors.New("no pid reported")
		}
		return nil, fmt.Errorf("create a pid namespace in user namespace %s: %w", userns, failure)
	}
	proc, err := os.FindProcess(pid)
	if err != nil {
		return nil, err
	}
	if failure != nil {
		// It is our child and a zombie by now: reap it.
		_, _ = proc.Wait()
		return nil, fmt.Errorf("start %s in user namespace %s: %w", argv[0], userns, failure)
	}
	return proc, nil
}

// cStrings returns a NULL-terminated C array of copies of ss.
func cStrings(ss []string) []*C.char {
	out := make([]*C.char, len(ss)+1)
	for i, s := range ss {
		out[i] = C.CString(s)
	}
	return out
}

func freeCStrings(cs []*C.char) {
	for _, c := range cs {
		if c != nil {
			C.free(unsafe.Pointer(c))
		}
	}
}
