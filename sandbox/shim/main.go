package shim

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"

	"github.com/warmpod/warmpod/runtime/atomicfile"
)

// ReadyFd is the descriptor on which a starting shim reports readiness
// ("ok\n") or the reason it could not start, then closes it.
const ReadyFd = 3

// Main runs the shim of the pod whose state dir is stateDir until it is told
// to shut down. It never returns without error otherwise.
func Main(stateDir string) error {
	ready := os.NewFile(ReadyFd, "ready")
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
	// Catch, don't ignore: an ignored signal stays ignored across execve,
	// so every container would start deaf to SIGHUP and SIGINT.
	signal.Notify(make(chan os.Signal, 1), unix.SIGHUP, unix.SIGINT)
	cfg, err := ReadConfig(stateDir)
	if err != nil {
		return err
	}
	logger := logrus.New()
	if lvl, err := logrus.ParseLevel(cfg.LogLevel); err == nil {
		logger.SetLevel(lvl)
	}
	log := logger.WithField("pod", cfg.PodID)

	s, err := New(cfg, log)
	if err != nil {
		return err
	}
	sock := SocketPath(cfg.StateDir)
	_ = os.Remove(sock)
	addr, done, err := SocketAddr(cfg.StateDir)
	if err != nil {
		_ = s.Shutdown(nil)
		return err
	}
	l, err := net.Listen("unix", addr)
	done()
	if err != nil {
		_ = s.Shutdown(nil)
		return fmt.Errorf("listen on %s: %w", sock, err)
	}
	// The address may name a descriptor closed by now; the daemon removes
	// the state dir with the socket in it.
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(sock, 0o600); err != nil {
		l.Close()
		_ = s.Shutdown(nil)
		return err
	}
	if err := atomicfile.Write(filepath.Join(cfg.StateDir, PidFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		l.Close()
		_ = s.Shutdown(nil)
		return fmt.Errorf("write pid file: %w", err)
	}
	g := grpc.NewServer(
		grpc.ChainUnaryInterceptor(ErrorInterceptor),
		grpc.ChainStreamInterceptor(StreamErrorInterceptor),
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
