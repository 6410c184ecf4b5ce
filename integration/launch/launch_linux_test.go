package launch

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/BurntSushi/toml"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The test binary doubles as a stand-in daemon, so starting, waiting,
// stopping and restarting are tested without root: run with
// LAUNCH_FAKE_DAEMON set, it serves Version on its --socket until
// SIGTERM. LAUNCH_FAKE_EXIT makes it exit at once with that status.
func TestMain(m *testing.M) {
	if os.Getenv("LAUNCH_FAKE_DAEMON") != "" {
		os.Exit(fakeDaemon(os.Args[1:]))
	}
	os.Exit(m.Run())
}

type fakeRuntime struct {
	runtimeapi.UnimplementedRuntimeServiceServer
}

func (fakeRuntime) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{RuntimeName: "fake"}, nil
}

func fakeDaemon(args []string) int {
	if code := os.Getenv("LAUNCH_FAKE_EXIT"); code != "" {
		fmt.Println("fake daemon exits with", code)
		var n int
		_, _ = fmt.Sscan(code, &n)
		return n
	}
	fs := flag.NewFlagSet("fake", flag.ContinueOnError)
	socket := fs.String("socket", "", "")
	for _, f := range []string{"config", "root", "state", "log-level", "network-bridge", "network-subnet", "network-chain-prefix", "cgroup-parent"} {
		fs.String(f, "", "")
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	_ = os.Remove(*socket) // left by a killed predecessor, as the daemon does
	l, err := net.Listen("unix", *socket)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	srv := grpc.NewServer()
	runtimeapi.RegisterRuntimeServiceServer(srv, fakeRuntime{})
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	go func() {
		<-term
		srv.GracefulStop()
	}()
	fmt.Println("fake daemon serving on", *socket)
	_ = srv.Serve(l)
	return 0
}

func fakeConfig(t *testing.T) Config {
	t.Helper()
	t.Setenv("LAUNCH_FAKE_DAEMON", "1")
	dir := t.TempDir()
	return Config{
		Bin: os.Args[0], Dir: dir, Root: filepath.Join(dir, "root"), State: dir,
		ConfigPath: filepath.Join(dir, "warmpod.toml"), LogPath: filepath.Join(dir, "warmpod.log"),
	}
}

func TestStartStopRestart(t *testing.T) {
	d := &Daemon{Config: fakeConfig(t)}
	t.Cleanup(d.Kill)
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	first := d.PID()
	if first == 0 {
		t.Fatal("no pid after Start")
	}
	if err := d.Start(); err == nil {
		t.Error("a second Start of a running daemon succeeded")
	}
	v, err := d.Runtime.Version(context.Background(), &runtimeapi.VersionRequest{})
	if err != nil || v.RuntimeName != "fake" {
		t.Fatalf("Version = %v, %v", v, err)
	}
	if err := d.Restart(false); err != nil {
		t.Fatalf("restart after SIGTERM: %v", err)
	}
	if d.PID() == 0 || d.PID() == first {
		t.Errorf("pid after the restart %d, was %d", d.PID(), first)
	}
	if err := d.Restart(true); err != nil {
		t.Fatalf("restart after SIGKILL (the socket file is left behind): %v", err)
	}
	if _, err := d.Runtime.Version(context.Background(), &runtimeapi.VersionRequest{}); err != nil {
		t.Errorf("Version after the restarts: %v", err)
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	if d.PID() != 0 {
		t.Error("pid after Stop")
	}
	if err := d.Stop(); err != nil {
		t.Errorf("Stop of a stopped daemon: %v", err)
	}
	// Every start is in the log, appended.
	if n := strings.Count(d.LogTail(1<<20), "==== starting "); n != 3 {
		t.Errorf("log has %d starts, want 3:\n%s", n, d.LogTail(1<<20))
	}
}

func TestStartFailsWhenTheDaemonExits(t *testing.T) {
	cfg := fakeConfig(t)
	t.Setenv("LAUNCH_FAKE_EXIT", "3")
	d := &Daemon{Config: cfg}
	t.Cleanup(d.Kill)
	err := d.Start()
	if err == nil || !strings.Contains(err.Error(), "exited during startup") || !strings.Contains(err.Error(), "fake daemon exits with 3") {
		t.Fatalf("Start = %v; want an error saying it exited, with the log", err)
	}
	if d.PID() != 0 {
		t.Error("pid after a failed start")
	}
}

func TestArgsAndConfigFile(t *testing.T) {
	base := Config{
		Bin: "/bin/warmpod", Root: "/r", State: "/s", ConfigPath: "", LogLevel: "debug",
		Bridge: "wpit1", Subnet: "10.200.1.0/24", ChainPrefix: "WPIT1", CgroupParent: "/warmpod-it-1",
		Mirrors: map[string][]string{"docker.io": {"http://127.0.0.1:5000"}}, Insecure: []string{"127.0.0.1:5000"},
		Args: []string{"--cdi-spec-dirs", "/cdi"},
	}
	places := []string{"--root", "/r", "--state", "/s", "--socket", "/s/warmpod.sock", "--log-level", "debug",
		"--network-bridge", "wpit1", "--network-subnet", "10.200.1.0/24", "--network-chain-prefix", "WPIT1",
		"--cgroup-parent", "/warmpod-it-1"}
	registryFlags := []string{"--registry-mirror", "docker.io=http://127.0.0.1:5000", "--registry-insecure", "127.0.0.1:5000"}
	extra := []string{"--cdi-spec-dirs", "/cdi"}
	for _, tc := range []struct {
		name     string
		change   func(*Config)
		wantArgs []string
		// wantFile is what the configuration file holds (nil: none is
		// written).
		wantFile *fileConfig
	}{
		{"no file: every setting a flag", func(*Config) {},
			slices.Concat(places, registryFlags, extra), nil},
		{"registry in the file, places as flags", func(c *Config) { c.ConfigPath = "F" },
			slices.Concat([]string{"--config", "F"}, places, extra),
			func() *fileConfig {
				var f fileConfig
				f.Registry.Mirrors, f.Registry.Insecure = base.Mirrors, base.Insecure
				return &f
			}()},
		{"all in the file", func(c *Config) { c.ConfigPath, c.AllInFile = "F", true },
			slices.Concat([]string{"--config", "F"}, extra),
			func() *fileConfig {
				f := fileConfig{Root: "/r", State: "/s", Socket: "/s/warmpod.sock", LogLevel: "debug"}
				f.Network.Bridge, f.Network.Subnet, f.Network.ChainPrefix = "wpit1", "10.200.1.0/24", "WPIT1"
				f.Registry.Mirrors, f.Registry.Insecure = base.Mirrors, base.Insecure
				f.Runtime.CgroupParent = "/warmpod-it-1"
				return &f
			}()},
		{"the daemon's defaults", func(c *Config) { *c = Config{Bin: c.Bin} }, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.change(&c)
			if c.ConfigPath != "" {
				c.ConfigPath = filepath.Join(t.TempDir(), "warmpod.toml")
				tc.wantArgs[1] = c.ConfigPath
			}
			args, err := c.args()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(args, tc.wantArgs) {
				t.Errorf("args\n got %q\nwant %q", args, tc.wantArgs)
			}
			if tc.wantFile == nil {
				return
			}
			if err := c.writeConfig(); err != nil {
				t.Fatal(err)
			}
			var got fileConfig
			md, err := toml.DecodeFile(c.ConfigPath, &got)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(*tc.wantFile) {
				t.Errorf("file holds %+v, want %+v", got, *tc.wantFile)
			}
			// The daemon refuses unknown keys: only its own may be there.
			if len(md.Undecoded()) > 0 {
				t.Errorf("keys the daemon does not know: %v", md.Undecoded())
			}
		})
	}
	if _, err := (&Config{AllInFile: true}).args(); err == nil {
		t.Error("AllInFile without a file: no error")
	}
}

func TestSocketPath(t *testing.T) {
	for _, tc := range []struct {
		c    Config
		want string
	}{
		{Config{}, DefaultSocket},
		{Config{State: "/s"}, "/s/warmpod.sock"},
		{Config{State: "/s", Socket: "/x.sock"}, "/x.sock"},
	} {
		if got := tc.c.SocketPath(); got != tc.want {
			t.Errorf("%+v: SocketPath = %q, want %q", tc.c, got, tc.want)
		}
	}
}

func TestPrivate(t *testing.T) {
	a, err := Private("/bin/warmpod", "/tmp/run", "crit")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Private("/bin/warmpod", "/tmp/run", "crit")
	if err != nil {
		t.Fatal(err)
	}
	if a.Bridge == b.Bridge || a.ChainPrefix == b.ChainPrefix || a.CgroupParent == b.CgroupParent {
		t.Errorf("two private daemons share names: %+v, %+v", a, b)
	}
	if len(a.Bridge) > 15 || len(a.ChainPrefix) > 12 {
		t.Errorf("bridge %q (at most 15 characters) or chain prefix %q (at most 12) too long", a.Bridge, a.ChainPrefix)
	}
	if !strings.HasPrefix(a.Bridge, "wpcrit") || !strings.HasPrefix(a.ChainPrefix, "WPCRIT") ||
		!strings.HasPrefix(a.CgroupParent, "/warmpod-crit-") || a.Root != "/tmp/run/root" || a.State != "/tmp/run/state" {
		t.Errorf("names %+v", a)
	}
	if !a.private() {
		t.Error("a private daemon is not private()")
	}
	if (&Config{Bin: "/bin/warmpod"}).private() {
		t.Error("a daemon on the defaults is private()")
	}
	for _, tag := range []string{"", "toolong", "IT"} {
		if _, err := Private("/bin/warmpod", "/tmp/run", tag); err == nil {
			t.Errorf("tag %q accepted", tag)
		}
	}
}

func TestRemoveRefusesTheDefaults(t *testing.T) {
	d := &Daemon{Config: Config{Bin: "/bin/warmpod", LogPath: "/tmp/x.log"}}
	if err := d.Remove(); err == nil {
		t.Fatal("Remove of a daemon on the defaults did not refuse")
	}
}

func TestModuleRootAndBinary(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if modulePath(filepath.Join(root, "go.mod")) != Module {
		t.Errorf("ModuleRoot = %s", root)
	}
	// A module nested in the repository (integration/e2e) is not warmpod's.
	nested := filepath.Join(t.TempDir(), "go.mod")
	if err := os.WriteFile(nested, []byte("module "+Module+"/integration/e2e\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := modulePath(nested); got != Module+"/integration/e2e" {
		t.Errorf("modulePath of a nested module = %q", got)
	}
	bin, err := Binary(os.Args[0], "")
	if err != nil || !filepath.IsAbs(bin) {
		t.Errorf("Binary(prebuilt) = %q, %v", bin, err)
	}
	if _, err := Binary(filepath.Join(t.TempDir(), "missing"), ""); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Binary of a missing file = %v", err)
	}
}
