package container

/*
#cgo CFLAGS: -Wall -O2
extern void warmpod_spawner_main(void);
// Runs before the Go runtime: a process started as a fork server never
// becomes a Go process (see spawner_linux.c).
static void __attribute__((constructor)) warmpod_spawner_init(void) { warmpod_spawner_main(); }
*/
import "C"

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// forkServer is a pod's fork server: a single-threaded C process, started
// once from the shim's own binary, that forks every fast generation (see
// spawner_linux.c). Each child is created with CLONE_PARENT, so it is the
// shim's child, reaped and signalled by the shim like any other.
//
// Requests are serialised: the server only clones, which takes tens of
// microseconds; the children set themselves up in parallel.
type forkServer struct {
	mu   sync.Mutex
	cmd  *exec.Cmd
	sock *os.File
	dead bool
	done chan struct{}
}

// spawnerEnv names the fork server's socket; the constructor checks it.
const spawnerEnv = "_WARMPOD_SPAWNER"

// Keep in sync with spawner_linux.c.
const (
	reqMagic = 0x77707370
	maxReq   = 1 << 20
	respSize = 4 + 4 + 200
	// Request kinds.
	reqSpawn  = 0
	reqFilter = 1
	// maxFilter is the most instructions a seccomp program can have.
	maxFilter = 4096
)

func startForkServer() (*forkServer, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("start fork server: %w", err)
	}
	ours := os.NewFile(uintptr(fds[0]), "spawner")
	theirs := os.NewFile(uintptr(fds[1]), "spawner-server")
	defer theirs.Close()
	// Room for a plan with a large seccomp filter in one datagram.
	_ = unix.SetsockoptInt(fds[0], unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 4*maxReq)
	_ = unix.SetsockoptInt(fds[1], unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4*maxReq)
	cmd := exec.Command("/proc/self/exe", "spawner")
	cmd.Args[0] = os.Args[0]
	cmd.ExtraFiles = []*os.File{theirs} // fd 3
	cmd.Env = []string{spawnerEnv + "=3"}
	// Not Pdeathsig (it follows the forking thread, not the process): the
	// server exits when the shim's end of the socket closes.
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	if err := cmd.Start(); err != nil {
		ours.Close()
		return nil, fmt.Errorf("start fork server: %w", err)
	}
	s := &forkServer{cmd: cmd, sock: ours, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(s.done)
	}()
	return s, nil
}

// request is one generation to fork.
type request struct {
	cloneFlags uint64
	rootfs     string
	// pidNS is a pid namespace to create the child in; "" for the server's.
	pidNS string
	// stdio, status and release are the child's descriptors; cgroup, when
	// not -1, is the cgroup v2 directory the child is cloned into.
	stdin, stdout, stderr int
	status, release       int
	cgroup                int
	plan                  []byte
}

// spawn sends r to the server and returns the child's pid.
func (s *forkServer) spawn(r *request) (int, error) {
	var fds []int
	index := func(fd int) int32 {
		if fd < 0 {
			return -1
		}
		fds = append(fds, fd)
		return int32(len(fds) - 1)
	}
	hdr := struct {
		Magic, Len                                     uint32
		CloneFlags                                     uint64
		Stdin, Stdout, Stderr, Status, Release, Cgroup int32
		RootfsLen, PidnsLen, PlanLen, Kind             uint32
	}{
		Magic: reqMagic, CloneFlags: r.cloneFlags,
		Stdin: index(r.stdin), Stdout: index(r.stdout), Stderr: index(r.stderr),
		Status: index(r.status), Release: index(r.release), Cgroup: index(r.cgroup),
		RootfsLen: uint32(len(r.rootfs)), PidnsLen: uint32(len(r.pidNS)), PlanLen: uint32(len(r.plan)),
	}
	size := int(unsafe.Sizeof(hdr)) + len(r.rootfs) + 1 + len(r.pidNS) + 1 + len(r.plan)
	if size > maxReq {
		return 0, fmt.Errorf("spawn request of %d bytes is too large", size)
	}
	hdr.Len = uint32(size)
	buf := make([]byte, 0, size)
	buf, _ = binary.Append(buf, binary.NativeEndian, &hdr)
	buf = append(buf, r.rootfs...)
	buf = append(buf, 0)
	buf = append(buf, r.pidNS...)
	buf = append(buf, 0)
	buf = append(buf, r.plan...)

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead {
		return 0, errors.New("fork server is gone")
	}
	err := unix.Sendmsg(int(s.sock.Fd()), buf, unix.UnixRights(fds...), nil, 0)
	if err != nil {
		s.dead = true
		return 0, fmt.Errorf("send spawn request: %w", err)
	}
	resp := make([]byte, respSize)
	n, _, _, _, err := unix.Recvmsg(int(s.sock.Fd()), resp, nil, 0)
	if err != nil || n != respSize {
		s.dead = true
		if err == nil {
			err = errors.New("fork server closed")
		}
		return 0, fmt.Errorf("read spawn reply: %w", err)
	}
	pid := int32(binary.NativeEndian.Uint32(resp[0:]))
	if pid <= 0 {
		errno := syscall.Errno(binary.NativeEndian.Uint32(resp[4:]))
		msg, _, _ := strings.Cut(string(resp[8:]), "\x00")
		return 0, fmt.Errorf("fork server: %s: %w", msg, errno)
	}
	return int(pid), nil
}

// readFilter reads the seccomp program of thread tid (see REQ_FILTER in
// spawner_linux.c).
func (s *forkServer) readFilter(tid int) (*seccompFilter, error) {
	hdr := struct {
		Magic, Len                                     uint32
		CloneFlags                                     uint64
		Stdin, Stdout, Stderr, Status, Release, Cgroup int32
		RootfsLen, PidnsLen, PlanLen, Kind             uint32
	}{Magic: reqMagic, CloneFlags: uint64(tid), Kind: reqFilter, Stdin: -1, Stdout: -1, Stderr: -1, Status: -1, Release: -1, Cgroup: -1}
	hdr.Len = uint32(unsafe.Sizeof(hdr)) + 2
	buf, _ := binary.Append(nil, binary.NativeEndian, &hdr)
	buf = append(buf, 0, 0)

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead {
		return nil, errors.New("fork server is gone")
	}
	if err := unix.Sendmsg(int(s.sock.Fd()), buf, nil, nil, 0); err != nil {
		s.dead = true
		return nil, fmt.Errorf("send filter request: %w", err)
	}
	resp := make([]byte, respSize+8+maxFilter*8)
	n, _, _, _, err := unix.Recvmsg(int(s.sock.Fd()), resp, nil, 0)
	if err != nil || n < respSize {
		s.dead = true
		if err == nil {
			err = errors.New("fork server closed")
		}
		return nil, fmt.Errorf("read filter reply: %w", err)
	}
	count := int32(binary.NativeEndian.Uint32(resp[0:]))
	if count <= 0 {
		errno := syscall.Errno(binary.NativeEndian.Uint32(resp[4:]))
		msg, _, _ := strings.Cut(string(resp[8:respSize]), "\x00")
		return nil, fmt.Errorf("read seccomp program: %s: %w", msg, errno)
	}
	if n != respSize+8+int(count)*8 {
		return nil, fmt.Errorf("read seccomp program: reply of %d bytes for %d instructions", n, count)
	}
	f := &seccompFilter{flags: uint32(binary.NativeEndian.Uint64(resp[respSize:]))}
	for i := 0; i < int(count); i++ {
		b := resp[respSize+8+8*i:]
		f.prog = append(f.prog, unix.SockFilter{
			Code: binary.NativeEndian.Uint16(b), Jt: b[2], Jf: b[3], K: binary.NativeEndian.Uint32(b[4:]),
		})
	}
	return f, nil
}

// close ends the server and waits for it.
func (s *forkServer) close() {
	s.mu.Lock()
	s.dead = true
	s.sock.Close()
	s.mu.Unlock()
	<-s.done
}

// Plan operations; keep in sync with spawner_linux.c.
const (
	opEnd uint32 = iota
	opPhase
	opSchedIdle
	opCgroupJoin
	opOOMScore
	opNonDumpable
	opSetns
	opUnshare
	opSetsid
	opKeyring
	opPrepareRoot
	opMount
	opMknod
	opPtmx
	opSymlink
	opPivot
	opRootPropagate
	opReopenDevNull
	opMkdirCwd
	opRemountRO
	opRootRO
	opUmask
	opHostname
	opDomainname
	opSysctl
	opReadonlyPath
	opMaskPaths
	opNNP
	opRlimit
	opSeccomp
	opChdirTry
	opCapBset
	opKeepCaps
	opFixStdio
	opSetgroups
	opSetgid
	opSetuid
	opChdirLate
	opVerifyCwd
	opCapset
	opAmbient
	opHomeEnv
	opLookPath
	opReady
	opExec
)

// Mount kinds of opMount.
const (
	mountProcSys uint32 = iota + 1
	mountGeneric
	mountBind
	mountCgroup2
)

// planWriter encodes a plan: operations and their arguments, native
// endian, strings as length, bytes and a NUL.
type planWriter struct {
	b   []byte
	err error
}

func (w *planWriter) u32(v uint32) *planWriter {
	w.b = binary.NativeEndian.AppendUint32(w.b, v)
	return w
}

func (w *planWriter) u64(v uint64) *planWriter {
	w.b = binary.NativeEndian.AppendUint64(w.b, v)
	return w
}

func (w *planWriter) str(s string) *planWriter {
	if strings.IndexByte(s, 0) >= 0 && w.err == nil {
		w.err = fmt.Errorf("%q contains a nul byte", s)
	}
	w.u32(uint32(len(s)))
	w.b = append(w.b, s...)
	w.b = append(w.b, 0)
	return w
}

func (w *planWriter) op(op uint32) *planWriter { return w.u32(op) }

func (w *planWriter) bytes() []byte { return w.b }
