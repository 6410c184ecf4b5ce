package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

// run runs warmpod's command line with args and returns the configuration
// the daemon would have been started with, and what was printed.
func run(t *testing.T, args ...string) (Config, string, error) {
	t.Helper()
	var got Config
	var out bytes.Buffer
	cmd := newCommand(func(c Config, _ func() (Config, error)) error { got = c; return nil })
	cmd.Writer = &out
	cmd.ErrWriter = &out
	err := cmd.Run(context.Background(), append([]string{"warmpod"}, args...))
	return got, out.String(), err
}

// noFile is a --config that does not exist; given explicitly it is an
// error, so tests name an empty file instead.
func emptyFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFlagsSetTheirFields(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		check func(Config) bool
	}{
		{[]string{"--root", "/r"}, func(c Config) bool { return c.Root == "/r" }},
		{[]string{"-root", "/r"}, func(c Config) bool { return c.Root == "/r" }},
		{[]string{"--root=/r"}, func(c Config) bool { return c.Root == "/r" }},
		{[]string{"--state", "/s"}, func(c Config) bool {
			return c.State == "/s" && c.Socket == "/s/warmpod.sock" && c.Network.CNICacheDir == "/s/cni"
		}},
		{[]string{"--socket", "/x.sock"}, func(c Config) bool { return c.Socket == "/x.sock" }},
		{[]string{"--log-level", "debug"}, func(c Config) bool { return c.LogLevel == "debug" && c.ShimLogLevel == "debug" }},
		{[]string{"--log-level", "debug", "--shim-log-level", "warn"}, func(c Config) bool { return c.ShimLogLevel == "warn" }},
		{[]string{"--stream-address", "0.0.0.0", "--stream-port", "10010"}, func(c Config) bool {
			return c.StreamServerAddress == "0.0.0.0" && c.StreamServerPort == "10010"
		}},
		{[]string{"--network-mode", "cni", "--cni-conf-dir", "/c", "--cni-bin-dirs", "/a, /b", "--cni-cache-dir", "/cc"}, func(c Config) bool {
			return c.Network.Mode == "cni" && c.Network.CNIConfDir == "/c" &&
				reflect.DeepEqual(c.Network.CNIBinDirs, []string{"/a", "/b"}) && c.Network.CNICacheDir == "/cc"
		}},
		{[]string{"--network-bridge", "br1", "--network-subnet", "10.1.0.0/16", "--network-mtu", "1400", "--network-chain-prefix", "WP"}, func(c Config) bool {
			n := c.Network
			return n.Bridge == "br1" && n.Subnet == "10.1.0.0/16" && n.MTU == 1400 && n.ChainPrefix == "WP"
		}},
		{[]string{"--registry-insecure", "a:5000,b"}, func(c Config) bool { return reflect.DeepEqual(c.Registry.Insecure, []string{"a:5000", "b"}) }},
		{[]string{"--registry-mirror", "docker.io=http://m1,http://m2", "--registry-mirror", "quay.io=https://q"}, func(c Config) bool {
			return reflect.DeepEqual(c.Registry.Mirrors, map[string][]string{"docker.io": {"http://m1", "http://m2"}, "quay.io": {"https://q"}})
		}},
		{[]string{"--registry-config-path", "/etc/containerd/certs.d", "--registry-auth-file", "/etc/warmpod/auth.json", "--image-pull-progress-timeout", "1m30s"}, func(c Config) bool {
			r := c.Registry
			return r.ConfigPath == "/etc/containerd/certs.d" && r.AuthFile == "/etc/warmpod/auth.json" && r.ImagePullProgressTimeout.Duration == 90*time.Second
		}},
		{nil, func(c Config) bool { return c.Registry.ImagePullProgressTimeout.Duration == 5*time.Minute }},
		{[]string{"--runtime-handlers", ",a,b"}, func(c Config) bool { return reflect.DeepEqual(c.Runtime.Handlers, []string{"", "a", "b"}) }},
		{[]string{"--cgroup-driver", "systemd"}, func(c Config) bool {
			return c.Runtime.CgroupDriver == "systemd" && c.Runtime.CgroupParent == "warmpod.slice"
		}},
		{[]string{"--cgroup-driver", "systemd", "--cgroup-parent", "kubepods.slice"}, func(c Config) bool { return c.Runtime.CgroupParent == "kubepods.slice" }},
		{nil, func(c Config) bool {
			return c.Runtime.CgroupDriver == "cgroupfs" && c.Runtime.CgroupParent == "/warmpod"
		}},
		{[]string{"--cgroup-parent", "/kubepods", "--max-precreate", "3", "--cdi-spec-dirs", "/cdi"}, func(c Config) bool {
			return c.Runtime.CgroupParent == "/kubepods" && c.Runtime.MaxPrecreate == 3 && reflect.DeepEqual(c.Runtime.CDISpecDirs, []string{"/cdi"})
		}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			cfg, out, err := run(t, append([]string{"--config", emptyFile(t)}, tc.args...)...)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if !tc.check(cfg) {
				t.Errorf("config %+v", cfg)
			}
		})
	}
}

func TestEveryOptionHasAFlag(t *testing.T) {
	// Each option's field must change when only its flag is given.
	for _, o := range options {
		def := defaultConfig()
		var val string
		switch o.field(&def).(type) {
		case *string:
			val = "/x"
		case *bool:
			val = "false"
		case *int, *int64:
			val = "7"
		case *byteSize:
			val = "1MiB"
		case *[]string:
			val = "/x,/y"
		case *map[string][]string:
			val = "r.example=http://m"
		case *duration:
			val = "90s"
		}
		if o.name == "network-mode" {
			val = "cni"
		}
		if o.name == "stream-port" {
			val = "7"
		}
		switch o.name {
		case "cgroup-driver":
			val = "systemd"
		case "log-format":
			val = "json"
		case "metrics-address":
			val = "127.0.0.1:9090"
		case "spawner":
			val = "libcontainer"
		}
		args := []string{"--config", emptyFile(t), "--" + o.name, val}
		if _, ok := o.field(&def).(*bool); ok {
			// A boolean flag takes its value after "=".
			args = []string{"--config", emptyFile(t), "--" + o.name + "=" + val}
		}
		cfg, out, err := run(t, args...)
		if err != nil {
			t.Errorf("--%s %s: %v\n%s", o.name, val, err, out)
			continue
		}
		want, _ := finishConfig(defaultConfig())
		if reflect.DeepEqual(o.field(&cfg), o.field(&want)) {
			t.Errorf("--%s %s changed nothing", o.name, val)
		}
	}
}

func TestConfigPrecedence(t *testing.T) {
	file := writeFile(t, `
root = "/file-root"
log_level = "warn"
[network]
mtu = 1300
[registry]
insecure = ["file:5000"]
image_pull_progress_timeout = "2m"
[registry.mirrors]
"docker.io" = ["http://file-mirror"]
"quay.io" = ["http://file-quay"]
`)
	cfg, out, err := run(t, "--config", file, "--log-level", "debug", "--registry-mirror", "quay.io=http://flag-quay")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	def := defaultConfig()
	for name, c := range map[string]bool{
		"default kept":            cfg.State == def.State && cfg.Network.Bridge == def.Network.Bridge,
		"file over default":       cfg.Root == "/file-root" && cfg.Network.MTU == 1300 && reflect.DeepEqual(cfg.Registry.Insecure, []string{"file:5000"}),
		"flag over file":          cfg.LogLevel == "debug" && cfg.ShimLogLevel == "debug",
		"flag mirror over file's": reflect.DeepEqual(cfg.Registry.Mirrors, map[string][]string{"docker.io": {"http://file-mirror"}, "quay.io": {"http://flag-quay"}}),
	} {
		if !c {
			t.Errorf("%s: %+v", name, cfg)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown key", []string{"--config", writeFile(t, "[network]\nbridgee = \"x\"\n")}, "unknown keys [network.bridgee]"},
		{"bad toml", []string{"--config", writeFile(t, "root = \n")}, "config file"},
		{"missing explicit file", []string{"--config", "/nonexistent/warmpod.toml"}, "no such file"},
		{"unknown flag", []string{"--bridge", "x"}, "flag provided but not defined: -bridge"},
		{"bad int", []string{"--network-mtu", "x"}, "network-mtu"},
		{"bad network mode", []string{"--config", emptyFile(t), "--network-mode", "flannel"}, `network mode "flannel"`},
		{"bad port", []string{"--config", emptyFile(t), "--stream-port", "70000"}, "stream server port"},
		{"bad mirror", []string{"--config", emptyFile(t), "--registry-mirror", "docker.io"}, "want host=endpoint"},
		{"argument", []string{"--config", emptyFile(t), "serve"}, "unexpected arguments: [serve]"},
		{"bad duration", []string{"--config", writeFile(t, "[registry]\nimage_pull_progress_timeout = \"soon\"\n")}, "image_pull_progress_timeout"},
		{"negative duration", []string{"--config", emptyFile(t), "--image-pull-progress-timeout", "-1s"}, "negative"},
		{"bad log format", []string{"--config", emptyFile(t), "--log-format", "xml"}, `log format "xml"`},
		{"bad metrics address", []string{"--config", emptyFile(t), "--metrics-address", "9090"}, `metrics address "9090"`},
		{"bad cgroup driver", []string{"--config", emptyFile(t), "--cgroup-driver", "cgroupv2"}, `cgroup driver "cgroupv2"`},
		{"bad spawner", []string{"--config", emptyFile(t), "--spawner", "crun"}, `spawner "crun"`},
		{"path parent with systemd", []string{"--config", emptyFile(t), "--cgroup-driver", "systemd", "--cgroup-parent", "/kubepods"}, "wants a slice"},
		{"slice parent with cgroupfs", []string{"--config", emptyFile(t), "--cgroup-parent", "kubepods.slice"}, "wants an absolute path"},
		{"daemon flag on a command", []string{"config", "default", "--root", "/r"}, "flag provided but not defined"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, out, err := run(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q\n%s", err, tc.want, out)
			}
			if exitStatus(err) != 2 {
				t.Errorf("exit status %d, want 2", exitStatus(err))
			}
		})
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		_, out, err := run(t, args...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		for _, o := range options {
			if !strings.Contains(out, "--"+o.name+" ") {
				t.Errorf("%v: help lacks --%s:\n%s", args, o.name, out)
			}
		}
		for _, want := range []string{"--config ", "--version", "config ", "version "} {
			if !strings.Contains(out, want) {
				t.Errorf("%v: help lacks %q", args, want)
			}
		}
	}
}

func TestVersionFlag(t *testing.T) {
	_, out, err := run(t, "--version")
	if err != nil || !strings.HasPrefix(out, "warmpod "+version+"\n") || !strings.Contains(out, "runc (libcontainer)") {
		t.Fatalf("%v:\n%s", err, out)
	}
}

// tomlKeys lists the TOML keys of a struct type, dotted for tables.
func tomlKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "" || name == "-" {
			continue
		}
		if isTable(f.Type) {
			keys = append(keys, tomlKeys(f.Type, prefix+name+".")...)
			continue
		}
		keys = append(keys, prefix+name)
	}
	return keys
}

func TestConfigDefault(t *testing.T) {
	_, out, err := run(t, "config", "default")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	md, err := toml.Decode(out, &m)
	if err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	for _, k := range tomlKeys(reflect.TypeOf(Config{}), "") {
		if !md.IsDefined(strings.Split(k, ".")...) {
			t.Errorf("config default lacks %s", k)
		}
	}
	// Read back, it gives the daemon's default configuration.
	cfg, _, err := run(t, "--config", writeFile(t, out))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := finishConfig(defaultConfig())
	want.Registry.Insecure = []string{}
	want.Registry.Mirrors = map[string][]string{}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("config default read back:\n%+v\nwant\n%+v", cfg, want)
	}
}

func TestExampleConfig(t *testing.T) {
	if _, out, err := run(t, "--config", "../../deploy/config.toml"); err != nil {
		t.Fatalf("deploy/config.toml: %v\n%s", err, out)
	}
}

// The image limits take sizes with units, from the file and from flags.
func TestImageLimitsConfig(t *testing.T) {
	path := writeFile(t, "[image]\nmax_layer_size = \"1GiB\"\nmax_image_size = 2147483648\nmax_layer_entries = 1000\n")
	cfg, out, err := run(t, "--config", path, "--image-max-manifest-size", "512KiB")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := ImageConfig{MaxLayerSize: 1 << 30, MaxImageSize: 2 << 30, MaxLayerEntries: 1000, MaxManifestSize: 512 << 10}
	if cfg.Image != want {
		t.Errorf("image config = %+v, want %+v", cfg.Image, want)
	}
	for _, bad := range [][]string{
		{"--config", path, "--image-max-layer-size", "lots"},
		{"--config", path, "--image-max-layer-entries", "-1"},
	} {
		if _, _, err := run(t, bad...); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
