package launch

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// DefaultSocket is where a daemon on its defaults serves.
const DefaultSocket = "/run/warmpod/warmpod.sock"

// Timeouts of Start and Stop.
const (
	// ReadyTimeout bounds the wait for a started daemon to answer: it
	// recovers its pods before it serves the socket.
	ReadyTimeout = time.Minute
	// StopGrace is how long Stop waits after SIGTERM before SIGKILL.
	StopGrace = 30 * time.Second
)

// Config says how to run a daemon. Empty fields are left to the daemon's
// own defaults and given to it neither as a flag nor in the file, so a
// Config with only Bin (and LogPath) runs the daemon as "make run" does;
// [Private] fills in a daemon of its own.
type Config struct {
	// Bin is the warmpod binary ([Binary]).
	Bin string
	// Dir is a directory of the caller's run that holds Root, State and
	// the configuration file; Remove also unmounts what is left under it.
	Dir string
	// Root and State are the daemon's --root and --state.
	Root, State string
	// Socket is the CRI socket (default <State>/warmpod.sock, or
	// DefaultSocket when State is empty too).
	Socket string
	// ConfigPath is the TOML file Start writes and gives with --config.
	// Empty: none is written and the daemon reads its default path if
	// there is a file there.
	ConfigPath string
	// LogPath receives the daemon's output, appended (empty: this
	// process's stderr).
	LogPath string
	// LogLevel is the daemon's --log-level.
	LogLevel string
	// Bridge, Subnet and ChainPrefix configure the embedded pod network.
	Bridge, Subnet, ChainPrefix string
	// CgroupParent is the parent of the pods' cgroups.
	CgroupParent string
	// Spawner is the daemon's runtime.spawner ([Private] takes it from
	// WARMPOD_SPAWNER, so every test level runs with the spawner it names).
	Spawner string
	// Mirrors maps a registry host to its mirror endpoints; Insecure lists
	// registries reached over plain HTTP.
	Mirrors  map[string][]string
	Insecure []string
	// AllInFile writes every setting above to the configuration file and
	// gives only --config, as an operator runs the daemon. Otherwise the
	// registry settings go to the file and the rest are flags, so both
	// ways in are exercised.
	AllInFile bool
	// Args follow the flags Config gives (--cdi-spec-dirs, --network-mode
	// cni, ...); where they repeat one, they win.
	Args []string
	// OwnProcessGroup starts the daemon in a process group of its own, so
	// a terminal's Ctrl-C reaches only the caller, which then stops the
	// daemon in order. Leave it unset where the caller does not catch the
	// signal: the daemon then ends with it.
	OwnProcessGroup bool
}

// SocketPath is the socket the daemon serves.
func (c *Config) SocketPath() string {
	switch {
	case c.Socket != "":
		return c.Socket
	case c.State != "":
		return filepath.Join(c.State, "warmpod.sock")
	}
	return DefaultSocket
}

// Private lays out a daemon of its own under dir: its root, state
// directory, configuration file and log below dir, and a bridge, a free
// /24 subnet, an iptables chain prefix and a cgroup parent named after tag
// and a random suffix (bridge wp<tag><hex>, chains WP<TAG><HEX>-*, cgroup
// parent /warmpod-<tag>-<hex>), so two runs on one machine never share
// one. It logs at debug level. Nothing is created yet.
func Private(bin, dir, tag string) (Config, error) {
	// The chain prefix, WP<TAG> and 6 hex digits, may have 12 characters.
	if tag == "" || len(tag) > 4 || strings.ToLower(tag) != tag {
		return Config{}, fmt.Errorf("daemon tag %q: want 1 to 4 lowercase characters", tag)
	}
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		return Config{}, err
	}
	suffix := hex.EncodeToString(b)
	subnet, err := FreeSubnet()
	if err != nil {
		return Config{}, err
	}
	return Config{
		Bin:          bin,
		Dir:          dir,
		Root:         filepath.Join(dir, "root"),
		State:        filepath.Join(dir, "state"),
		ConfigPath:   filepath.Join(dir, "warmpod.toml"),
		LogPath:      filepath.Join(dir, "warmpod.log"),
		LogLevel:     "debug",
		Bridge:       "wp" + tag + suffix,
		Subnet:       subnet,
		ChainPrefix:  strings.ToUpper("wp" + tag + suffix),
		CgroupParent: "/warmpod-" + tag + "-" + suffix,
		Spawner:      os.Getenv("WARMPOD_SPAWNER"),
	}, nil
}

// fileConfig is the part of warmpod's TOML configuration a Config sets.
type fileConfig struct {
	Root     string `toml:"root,omitempty"`
	State    string `toml:"state,omitempty"`
	Socket   string `toml:"socket,omitempty"`
	LogLevel string `toml:"log_level,omitempty"`
	Network  struct {
		Bridge      string `toml:"bridge,omitempty"`
		Subnet      string `toml:"subnet,omitempty"`
		ChainPrefix string `toml:"chain_prefix,omitempty"`
	} `toml:"network"`
	Registry struct {
		Insecure []string            `toml:"insecure,omitempty"`
		Mirrors  map[string][]string `toml:"mirrors,omitempty"`
	} `toml:"registry"`
	Runtime struct {
		CgroupParent string `toml:"cgroup_parent,omitempty"`
		Spawner      string `toml:"spawner,omitempty"`
	} `toml:"runtime"`
}

// writeConfig writes the configuration file: the registry settings, and
// with AllInFile everything else too.
func (c *Config) writeConfig() error {
	var f fileConfig
	f.Registry.Insecure, f.Registry.Mirrors = c.Insecure, c.Mirrors
	if c.AllInFile {
		f.Root, f.State, f.LogLevel = c.Root, c.State, c.LogLevel
		if c.Root != "" || c.State != "" || c.Socket != "" {
			f.Socket = c.SocketPath()
		}
		f.Network.Bridge, f.Network.Subnet, f.Network.ChainPrefix = c.Bridge, c.Subnet, c.ChainPrefix
		f.Runtime.CgroupParent = c.CgroupParent
		f.Runtime.Spawner = c.Spawner
	}
	var buf bytes.Buffer
	buf.WriteString("# warmpod configuration written by integration/launch\n")
	if err := toml.NewEncoder(&buf).Encode(f); err != nil {
		return fmt.Errorf("encode daemon config: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(c.ConfigPath), 0o755); err != nil {
		return err
	}
	return os.WriteFile(c.ConfigPath, buf.Bytes(), 0o644)
}

// args are the daemon's command-line arguments.
func (c *Config) args() ([]string, error) {
	var args []string
	flag := func(name, v string) {
		if v != "" {
			args = append(args, name, v)
		}
	}
	if c.ConfigPath != "" {
		args = append(args, "--config", c.ConfigPath)
	} else if c.AllInFile {
		return nil, errors.New("AllInFile needs a ConfigPath")
	}
	if !c.AllInFile {
		flag("--root", c.Root)
		flag("--state", c.State)
		if c.Root != "" || c.State != "" || c.Socket != "" {
			flag("--socket", c.SocketPath())
		}
		flag("--log-level", c.LogLevel)
		flag("--network-bridge", c.Bridge)
		flag("--network-subnet", c.Subnet)
		flag("--network-chain-prefix", c.ChainPrefix)
		flag("--cgroup-parent", c.CgroupParent)
		flag("--spawner", c.Spawner)
	}
	if c.ConfigPath == "" {
		for host, eps := range c.Mirrors {
			flag("--registry-mirror", host+"="+strings.Join(eps, ","))
		}
		flag("--registry-insecure", strings.Join(c.Insecure, ","))
	}
	return append(args, c.Args...), nil
}

// Daemon runs one daemon process at a time on its Config's places: Start
// runs it, Stop or Kill ends it, and Start runs it again on the same
// places (a restart). Runtime and Image are the running daemon's CRI
// clients, replaced by every Start, so callers read them afresh after a
// restart. A Daemon is used from one goroutine at a time.
type Daemon struct {
	Config
	Runtime runtimeapi.RuntimeServiceClient
	Image   runtimeapi.ImageServiceClient

	cmd    *exec.Cmd
	exited chan struct{}
	conn   *grpc.ClientConn
}

// Start writes the configuration file, runs the daemon and waits until
// its socket answers Version. A daemon that exits meanwhile, or does not
// answer within ReadyTimeout, is an error that carries its log's end.
func (d *Daemon) Start() error {
	if d.PID() != 0 {
		return fmt.Errorf("daemon already running (pid %d)", d.PID())
	}
	if d.Bin == "" {
		return errors.New("no warmpod binary to start")
	}
	args, err := d.args()
	if err != nil {
		return err
	}
	if d.ConfigPath != "" {
		if err := d.writeConfig(); err != nil {
			return err
		}
	}
	out := io.Writer(os.Stderr)
	if d.LogPath != "" {
		if err := os.MkdirAll(filepath.Dir(d.LogPath), 0o755); err != nil {
			return err
		}
		logf, err := os.OpenFile(d.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("open daemon log: %w", err)
		}
		defer logf.Close()
		out = logf
	}
	fmt.Fprintf(out, "==== starting %s %s\n", d.Bin, strings.Join(args, " "))
	cmd := exec.Command(d.Bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if d.OwnProcessGroup {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start daemon: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	d.cmd, d.exited = cmd, exited

	// Reconnect quickly: the socket appears once the daemon has recovered
	// its pods, and gRPC's default backoff would wait up to two minutes.
	conn, err := grpc.NewClient("unix://"+d.SocketPath(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// The kubelet's limit on a CRI message.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{
			BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 250 * time.Millisecond,
		}}))
	if err != nil {
		d.Kill()
		return fmt.Errorf("dial daemon: %w", err)
	}
	d.conn = conn
	d.Runtime = runtimeapi.NewRuntimeServiceClient(conn)
	d.Image = runtimeapi.NewImageServiceClient(conn)
	if err := d.waitReady(); err != nil {
		d.Kill()
		return err
	}
	return nil
}

// waitReady waits until Version answers, the daemon exits or
// ReadyTimeout passes.
func (d *Daemon) waitReady() error {
	ctx, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
	defer cancel()
	exited := d.exited
	go func() {
		select {
		case <-exited:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		// WaitForReady: the call waits for the connection instead of
		// failing while the socket is not there yet.
		_, err := d.Runtime.Version(ctx, &runtimeapi.VersionRequest{}, grpc.WaitForReady(true))
		if err == nil {
			return nil
		}
		if d.isExited() {
			return fmt.Errorf("daemon exited during startup (%s); log:\n%s", d.cmd.ProcessState, d.LogTail(4000))
		}
		if ctx.Err() != nil {
			return fmt.Errorf("daemon not ready after %s: %w; log:\n%s", ReadyTimeout, err, d.LogTail(4000))
		}
		// It serves but refused; ask again.
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Conn is the running daemon's connection, for warmpod's own API.
func (d *Daemon) Conn() *grpc.ClientConn { return d.conn }

// PID is the running daemon's process id (0 when none runs).
func (d *Daemon) PID() int {
	if d.cmd == nil || d.cmd.Process == nil || d.isExited() {
		return 0
	}
	return d.cmd.Process.Pid
}

func (d *Daemon) isExited() bool {
	select {
	case <-d.exited:
		return true
	default:
		return false
	}
}

func (d *Daemon) closeConn() {
	if d.conn != nil {
		_ = d.conn.Close()
		d.conn = nil
	}
}

// Stop sends the daemon SIGTERM and waits for it to exit; after StopGrace
// it kills it. Not exiting in time, or exiting with an error, is an
// error. Pods keep running in their shims.
func (d *Daemon) Stop() error {
	d.closeConn()
	if d.PID() == 0 {
		return nil
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(StopGrace):
		d.Kill()
		return fmt.Errorf("daemon (pid %d) did not stop within %s of SIGTERM; killed it", d.cmd.Process.Pid, StopGrace)
	}
	if ws, ok := d.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.ExitStatus() != 0 {
		return fmt.Errorf("daemon exited with %s after SIGTERM", d.cmd.ProcessState)
	}
	return nil
}

// Kill ends the daemon with SIGKILL, as a crash would; pods keep running
// in their shims.
func (d *Daemon) Kill() {
	d.closeConn()
	if d.PID() == 0 {
		return
	}
	_ = d.cmd.Process.Kill()
	<-d.exited
}

// Restart stops the daemon, with SIGKILL (kill) or SIGTERM, and starts it
// again on the same places.
func (d *Daemon) Restart(kill bool) error {
	if kill {
		d.Kill()
	} else if err := d.Stop(); err != nil {
		return err
	}
	return d.Start()
}

// LogSize is the log's length, a mark for LogSince.
func (d *Daemon) LogSize() int64 {
	st, err := os.Stat(d.LogPath)
	if err != nil {
		return 0
	}
	return st.Size()
}

// LogSince is the log from offset on.
func (d *Daemon) LogSince(offset int64) string {
	f, err := os.Open(d.LogPath)
	if err != nil {
		return fmt.Sprintf("(no daemon log: %v)", err)
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return err.Error()
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// LogTail is the log's last n bytes.
func (d *Daemon) LogTail(n int64) string {
	return d.LogSince(max(d.LogSize()-n, 0))
}
