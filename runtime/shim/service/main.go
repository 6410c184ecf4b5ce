package service

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"unsafe"

	clog "github.com/containerd/log"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"

	"github.com/warmpod/warmpod/runtime/atomicfile"
	"github.com/warmpod/warmpod/runtime/shim"
)

// Main runs the shim of the pod whose state dir is stateDir until it is told
// to shut down. It never returns without error otherwise.
func Main(stateDir string) error {
	ready := os.NewFile(shim.ReadyFd, "ready")
	report := func(msg string) {
		if ready != nil {
			_, _ = ready.WriteString(msg + "\n")
			ready.Close()
			ready = nil
		}
	}
	err := serve(stateDir, func() { report("ok") })
	if err != nil {
		report(err.Error())
	}
	return err
}

func serve(stateDir string, ready func()) error {
	resetIgnoredSignals()
	cfg, err := shim.ReadConfig(stateDir)
	if err != nil {
		return err
	}
	if cfg.WaitPlaced {
		if err := waitPlaced(); err != nil {
			return err
		}
	}
	logger := logrus.New()
	if lvl, err := logrus.ParseLevel(cfg.LogLevel); err == nil {
		logger.SetLevel(lvl)
	}
	if cfg.LogFormat == "json" {
		logger.SetFormatter(&logrus.JSONFormatter{})
	}
	log := logger.WithField("pod", cfg.PodID)

	s, err := New(clog.WithLogger(context.Background(), log), cfg)
	if err != nil {
		return err
	}
	sock := shim.SocketPath(cfg.StateDir)
	_ = os.Remove(sock)
	addr, done, err := shim.SocketAddr(cfg.StateDir)
	if err != nil {
		_ = s.Shutdown(context.Background())
		return err
	}
	l, err := net.Listen("unix", addr)
	done()
	if err != nil {
		_ = s.Shutdown(context.Background())
		return fmt.Errorf("listen on %s: %w", sock, err)
	}
	// The address may name a descriptor closed by now; the daemon removes
	// the state dir with the socket in it.
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(sock, 0o600); err != nil {
		l.Close()
		_ = s.Shutdown(context.Background())
		return err
	}
	if err := atomicfile.Write(filepath.Join(cfg.StateDir, shim.PidFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		l.Close()
		_ = s.Shutdown(context.Background())
		return fmt.Errorf("write pid file: %w", err)
	}
	g := grpc.NewServer(
		grpc.ChainUnaryInterceptor(UnaryInterceptor(log)),
		grpc.ChainStreamInterceptor(StreamInterceptor(log)),
		grpc.MaxRecvMsgSize(shim.MaxMessageSize),
		grpc.MaxSendMsgSize(shim.MaxMessageSize),
	)
	Register(g, s, g.GracefulStop)
	ready()
	log.Info("shim serving")
	if err := g.Serve(l); err != nil {
		return err
	}
	log.Info("shim shut down")
	return nil
}

// waitPlaced blocks until the daemon has put this process in its cgroup
// and set its OOM score (shim.PlacedFd).
func waitPlaced() error {
	f := os.NewFile(shim.PlacedFd, "placed")
	defer f.Close()
	var b [1]byte
	if _, err := f.Read(b[:]); err != nil {
		return fmt.Errorf("wait for the daemon to place the shim: %w", err)
	}
	return nil
}

// resetIgnoredSignals makes sure no container starts with a signal ignored.
// An ignored signal stays ignored across execve, and the shim inherits its
// ignored signals from whoever started the daemon (GNU make, for one, runs
// its commands with signals 32 and 33 ignored); a caught one is back to its
// default in the exec'd program. So the shim catches, into a sink, every
// signal it was started with ignored, and SIGHUP and SIGINT, which it must
// survive. Signals 32 and 33 belong to the C library, which Go does not let
// programs handle; they are set back to their default directly.
func resetIgnoredSignals() {
	var sigs []os.Signal
	for n := 1; n <= 64; n++ {
		sig := syscall.Signal(n)
		switch {
		case sig == unix.SIGKILL || sig == unix.SIGSTOP:
		case n == 32 || n == 33:
			defaultIfIgnored(n)
		case sig == unix.SIGHUP || sig == unix.SIGINT || signal.Ignored(sig):
			sigs = append(sigs, sig)
		}
	}
	signal.Notify(make(chan os.Signal, 1), sigs...)
}

// kernelSigaction is the kernel's struct sigaction on Linux.
type kernelSigaction struct {
	handler  uintptr
	flags    uint64
	restorer uintptr
	mask     uint64
}

const sigIgn = 1

// defaultIfIgnored sets signal n back to its default disposition if it is
// ignored, and leaves it alone otherwise.
func defaultIfIgnored(n int) {
	var old kernelSigaction
	if _, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(n), 0, uintptr(unsafe.Pointer(&old)), 8, 0, 0); e != 0 {
		return
	}
	if old.handler != sigIgn {
		return
	}
	act := kernelSigaction{}
	_, _, _ = unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(n), uintptr(unsafe.Pointer(&act)), 0, 8, 0, 0)
}
