package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/warmpod/warmpod/integration/launch"
)

type listFlag []string

func (f *listFlag) String() string     { return strings.Join(*f, " ") }
func (f *listFlag) Set(v string) error { *f = append(*f, v); return nil }

type options struct {
	warmpod, private, dir    string
	root, state, socket, log string
	logLevel, daemonArgs     string
	insecure                 string
	mirrors                  listFlag
	serve                    bool
}

func main() {
	var o options
	flag.StringVar(&o.warmpod, "warmpod", "", "warmpod binary (default: build it from the repository into the daemon's directory)")
	flag.StringVar(&o.private, "private", "", "TAG: a daemon with places of its own, named after TAG (at most 4 lowercase characters), removed at the end")
	flag.StringVar(&o.dir, "dir", "", "directory of a --private daemon (default: a new temporary one, removed at the end)")
	flag.StringVar(&o.root, "root", "", "the daemon's --root (default: --dir/root with --private, else the daemon's)")
	flag.StringVar(&o.state, "state", "", "the daemon's --state (default: --dir/state with --private, else the daemon's)")
	flag.StringVar(&o.socket, "socket", "", "the daemon's --socket (default: <state>/warmpod.sock)")
	flag.StringVar(&o.log, "log", "", "file the daemon's output is appended to (default: --dir/warmpod.log with --private, else stderr)")
	flag.StringVar(&o.logLevel, "log-level", "", "the daemon's --log-level (default: debug with --private, else the daemon's)")
	flag.Var(&o.mirrors, "registry-mirror", "HOST=ENDPOINT[,ENDPOINT]: a registry mirror (repeatable)")
	flag.StringVar(&o.insecure, "registry-insecure", "", "registries reached over plain HTTP (comma separated)")
	flag.StringVar(&o.daemonArgs, "daemon-args", "", "more daemon flags, split at white space")
	flag.BoolVar(&o.serve, "serve", false, "after COMMAND succeeds, keep serving until SIGINT or SIGTERM")
	flag.Parse()
	code, err := run(o, flag.Args())
	if err != nil {
		fmt.Fprintln(os.Stderr, "withdaemon:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func run(o options, command []string) (code int, retErr error) {
	// Caught from the start, so that no signal ends withdaemon before the
	// daemon it started is stopped.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)

	cfg, cleanup, err := configure(o)
	if err != nil {
		return 2, err
	}
	defer func() { retErr = errors.Join(retErr, cleanup()) }()
	d := &launch.Daemon{Config: cfg}
	defer func() {
		retErr = errors.Join(retErr, d.Stop())
		if o.private != "" {
			retErr = errors.Join(retErr, d.Remove())
		}
	}()
	if err := d.Start(); err != nil {
		return 1, err
	}
	select {
	case s := <-sigs:
		return 128 + int(s.(syscall.Signal)), nil
	default:
	}
	logName := d.LogPath
	if logName == "" {
		logName = "stderr"
	}
	fmt.Printf("warmpod: serving CRI on %s (pid %d, log %s)\n", d.SocketPath(), d.PID(), logName)

	if len(command) > 0 {
		if code = runCommand(command, d.SocketPath(), sigs); code != 0 || !o.serve {
			return code, nil
		}
	}
	fmt.Printf(`warmpod keeps serving. In another terminal:
  crictl --runtime-endpoint unix://%[1]s --image-endpoint unix://%[1]s images
  (the README walks through pods and containers with crictl)
Ctrl-C stops the daemon.
`, d.SocketPath())
	<-sigs
	return 0, nil
}

// configure makes the daemon's Config from the flags, and a cleanup that
// removes the temporary directory it made (if any).
func configure(o options) (launch.Config, func() error, error) {
	nothing := func() error { return nil }
	var cfg launch.Config
	cleanup := nothing
	if o.private != "" {
		dir := o.dir
		if dir == "" {
			var err error
			if dir, err = os.MkdirTemp("", "warmpod-"+o.private+"-"); err != nil {
				return cfg, nothing, err
			}
			cleanup = func() error { return os.RemoveAll(dir) }
		}
		// Searchable by others, like /var/lib: a user namespace pod's root
		// is an unprivileged host user that must reach its rootfs.
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return cfg, cleanup, err
		}
		if err := os.Chmod(dir, 0o711); err != nil {
			return cfg, cleanup, err
		}
		bin, err := launch.Binary(o.warmpod, filepath.Join(dir, "bin"))
		if err != nil {
			return cfg, cleanup, err
		}
		if cfg, err = launch.Private(bin, dir, o.private); err != nil {
			return cfg, cleanup, err
		}
	} else {
		if o.dir != "" {
			return cfg, nothing, errors.New("--dir is for a --private daemon")
		}
		if o.warmpod == "" {
			return cfg, nothing, errors.New("--warmpod is required without --private")
		}
		bin, err := launch.Binary(o.warmpod, "")
		if err != nil {
			return cfg, nothing, err
		}
		cfg.Bin = bin
	}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&cfg.Root, o.root)
	set(&cfg.State, o.state)
	set(&cfg.Socket, o.socket)
	set(&cfg.LogPath, o.log)
	set(&cfg.LogLevel, o.logLevel)
	for _, m := range o.mirrors {
		host, eps, ok := strings.Cut(m, "=")
		if !ok || host == "" || eps == "" {
			return cfg, cleanup, fmt.Errorf("--registry-mirror %q: want HOST=ENDPOINT[,ENDPOINT]", m)
		}
		if cfg.Mirrors == nil {
			cfg.Mirrors = map[string][]string{}
		}
		cfg.Mirrors[host] = strings.Split(eps, ",")
	}
	if o.insecure != "" {
		cfg.Insecure = strings.Split(o.insecure, ",")
	}
	cfg.Args = strings.Fields(o.daemonArgs)
	cfg.OwnProcessGroup = true
	return cfg, cleanup, nil
}

// runCommand runs command with WARMPOD_SOCKET set and returns its exit
// status (128 + the signal for one a signal ended). SIGINT and SIGTERM
// that reach withdaemon meanwhile are passed on to it.
func runCommand(command []string, socket string, sigs <-chan os.Signal) int {
	cmd := exec.Command(command[0], command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), "WARMPOD_SOCKET="+socket)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "withdaemon:", err)
		return 127
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				_ = cmd.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	_ = cmd.Wait()
	close(done)
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return cmd.ProcessState.ExitCode()
}
