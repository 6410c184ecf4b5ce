package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	units "github.com/docker/go-units"
	"github.com/urfave/cli/v3"

	"github.com/warmpod/warmpod/runtime/container"
	"github.com/warmpod/warmpod/sandbox/cgroup"
)

// Config is warmpod's configuration: defaults, then the TOML file, then
// command-line flags, each overriding the one before.
type Config struct {
	Root     string `toml:"root" json:"root"`
	State    string `toml:"state" json:"state"`
	Socket   string `toml:"socket" json:"socket"`
	LogLevel string `toml:"log_level" json:"logLevel"`
	// LogFormat is "text" or "json" (one JSON object per line).
	LogFormat string `toml:"log_format" json:"logFormat"`
	// MetricsAddress is where Prometheus metrics are served over HTTP,
	// host:port ("": not served).
	MetricsAddress string `toml:"metrics_address" json:"metricsAddress"`
	// ShimLogLevel is the log level of the pods' shims (default: LogLevel).
	ShimLogLevel string         `toml:"shim_log_level" json:"shimLogLevel"`
	Network      NetworkConfig  `toml:"network" json:"network"`
	Registry     RegistryConfig `toml:"registry" json:"registry"`
	Image        ImageConfig    `toml:"image" json:"image"`
	Runtime      RuntimeConfig  `toml:"runtime" json:"runtime"`

	// StreamServerAddress and StreamServerPort are where the server for
	// exec, attach and port-forward sessions listens (port "0": a free one).
	StreamServerAddress string `toml:"stream_server_address" json:"streamServerAddress"`
	StreamServerPort    string `toml:"stream_server_port" json:"streamServerPort"`
}

// NetworkConfig selects and configures the pod network.
type NetworkConfig struct {
	// Mode is "embedded" (a bridge managed by warmpod) or "cni".
	Mode   string `toml:"mode" json:"mode"`
	Bridge string `toml:"bridge" json:"bridge"`
	Subnet string `toml:"subnet" json:"subnet"`
	MTU    int    `toml:"mtu" json:"mtu"`
	// ChainPrefix names warmpod's iptables chains.
	ChainPrefix string `toml:"chain_prefix" json:"chainPrefix"`
	// CNI configuration, for mode "cni".
	CNIConfDir  string   `toml:"cni_conf_dir" json:"cniConfDir"`
	CNIBinDirs  []string `toml:"cni_bin_dirs" json:"cniBinDirs"`
	CNICacheDir string   `toml:"cni_cache_dir" json:"cniCacheDir"`
}

// RegistryConfig configures image pulls.
type RegistryConfig struct {
	// Insecure lists registries (host[:port]) reached over plain HTTP.
	Insecure []string `toml:"insecure" json:"insecure"`
	// Mirrors maps a registry host to mirror endpoints tried in order
	// before it.
	Mirrors map[string][]string `toml:"mirrors" json:"mirrors"`
	// ConfigPath is a directory in containerd's hosts.toml layout
	// (/etc/warmpod/certs.d or /etc/containerd/certs.d): per registry,
	// mirrors with path prefixes, CAs, client certificates, skip_verify.
	ConfigPath string `toml:"config_path" json:"configPath"`
	// AuthFile is a Docker config.json whose credentials pulls use when the
	// kubelet sends none.
	AuthFile string `toml:"auth_file" json:"authFile"`
	// ImagePullProgressTimeout fails a pull that receives nothing for that
	// long ("0s": never).
	ImagePullProgressTimeout duration `toml:"image_pull_progress_timeout" json:"imagePullProgressTimeout"`
}

// duration is a time.Duration written as "5m" in TOML and JSON.
type duration struct{ time.Duration }

func (d duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

func (d *duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// ImageConfig bounds what one image may make the daemon read and write
// (0: the image store's default).
type ImageConfig struct {
	// MaxLayerSize bounds one layer's blob, tar stream and files.
	MaxLayerSize byteSize `toml:"max_layer_size" json:"maxLayerSize"`
	// MaxImageSize bounds the files of all the layers one pull unpacks.
	MaxImageSize byteSize `toml:"max_image_size" json:"maxImageSize"`
	// MaxLayerEntries bounds the entries of one layer, MaxImageEntries
	// those of all the layers one pull unpacks.
	MaxLayerEntries int64 `toml:"max_layer_entries" json:"maxLayerEntries"`
	MaxImageEntries int64 `toml:"max_image_entries" json:"maxImageEntries"`
	// MaxManifestSize bounds each manifest, index and config.
	MaxManifestSize byteSize `toml:"max_manifest_size" json:"maxManifestSize"`
}

// byteSize is a size in bytes, given as a number or with a binary unit
// ("512MiB", "32GiB", "64g").
type byteSize int64

func (b byteSize) String() string { return strconv.FormatInt(int64(b), 10) }

func (b *byteSize) Set(v string) error { return b.UnmarshalText([]byte(v)) }

func (b *byteSize) UnmarshalText(text []byte) error {
	n, err := units.RAMInBytes(strings.TrimSpace(string(text)))
	if err != nil || n < 0 {
		return fmt.Errorf("size %q: want bytes, or a number with a unit such as MiB or GiB", text)
	}
	*b = byteSize(n)
	return nil
}

// RuntimeConfig configures pods and containers.
type RuntimeConfig struct {
	// Handlers are the runtime handler names RunPodSandbox accepts.
	Handlers []string `toml:"handlers" json:"handlers"`
	// CgroupDriver is how pod and container cgroups are named and made:
	// "cgroupfs" (paths in the cgroup filesystem) or "systemd" (slices and
	// scopes through systemd). The kubelet's --cgroup-driver must match.
	CgroupDriver string `toml:"cgroup_driver" json:"cgroupDriver"`
	// CgroupParent is the parent of pod cgroups when the kubelet names none:
	// a cgroupfs path, or a slice under the systemd driver (default
	// "/warmpod" or "warmpod.slice").
	CgroupParent string `toml:"cgroup_parent" json:"cgroupParent"`
	// MaxPrecreate bounds how many container generations the node's shims
	// pre-create at once (0: one per CPU).
	MaxPrecreate int `toml:"max_precreate" json:"maxPrecreate"`
	// CDISpecDirs are searched for CDI device specs.
	CDISpecDirs []string `toml:"cdi_spec_dirs" json:"cdiSpecDirs"`
	// Spawner creates container generations: "libcontainer" or "fast"
	// (a per-pod fork server; see runtime/container).
	Spawner string `toml:"spawner" json:"spawner"`
	// CgroupFavorDynMods turns the cgroup2 mount option favordynmods on at
	// start where it is off (see sandbox/cgroup.FavorDynMods): cheap moves
	// of new containers into their cgroups, for a little more cost on every
	// fork and exit of the node. The option is the whole node's; false
	// leaves the mount as it is.
	CgroupFavorDynMods bool `toml:"cgroup_favordynmods" json:"cgroupFavorDynMods"`
}

// DefaultConfigPath is read when --config is not given (and may be absent).
const DefaultConfigPath = "/etc/warmpod/config.toml"

func defaultConfig() Config {
	return Config{
		Root:      "/var/lib/warmpod",
		State:     "/run/warmpod",
		LogLevel:  "info",
		LogFormat: "text",
		// Loopback only, like containerd's default: the kubelet on this
		// node is the one client, and sessions are not authenticated.
		StreamServerAddress: "127.0.0.1",
		StreamServerPort:    "0",
		Network: NetworkConfig{
			Mode:        "embedded",
			Bridge:      "warmpod0",
			Subnet:      "10.88.0.0/16",
			ChainPrefix: "WARMPOD",
			CNIConfDir:  "/etc/cni/net.d",
			CNIBinDirs:  []string{"/opt/cni/bin", "/usr/lib/cni"},
		},
		Registry: RegistryConfig{
			// containerd's default.
			ImagePullProgressTimeout: duration{5 * time.Minute},
		},
		Runtime: RuntimeConfig{
			Handlers:     []string{"", "warmpod"},
			CgroupDriver: cgroup.DriverCgroupfs,
			CDISpecDirs:  []string{"/etc/cdi", "/var/run/cdi"},
			Spawner:      container.SpawnerFast,

			CgroupFavorDynMods: true,
		},
	}
}

// option is one command-line flag and the Config field it sets. Flags are
// applied after the file, and only those given on the command line, so a
// flag overrides the file and an absent flag leaves the file's value.
type option struct {
	name, usage string
	// field returns the field of cfg the flag sets: a *string, *bool, *int,
	// *int64, *byteSize, *[]string (a comma-separated list) or
	// *map[string][]string (a repeatable host=endpoint[,endpoint]).
	field func(cfg *Config) any
	// defaultText replaces the default shown in the help when the default
	// is derived from other settings.
	defaultText string
}

// options are warmpod's flags, in the order the help lists them.
var options = []option{
	{name: "root", usage: "directory for persistent data: images, metadata, writable layers", field: func(c *Config) any { return &c.Root }},
	{name: "state", usage: "directory for runtime state: sockets, shims, pinned namespaces", field: func(c *Config) any { return &c.State }},
	{name: "socket", usage: "CRI socket path", field: func(c *Config) any { return &c.Socket }, defaultText: "<state>/warmpod.sock"},
	{name: "log-level", usage: "log level: trace, debug, info, warn, error", field: func(c *Config) any { return &c.LogLevel }},
	{name: "log-format", usage: `log format: "text" or "json"`, field: func(c *Config) any { return &c.LogFormat }},
	{name: "metrics-address", usage: `host:port serving Prometheus metrics at /metrics ("": off)`, field: func(c *Config) any { return &c.MetricsAddress }},
	{name: "shim-log-level", usage: "log level of pod shims", field: func(c *Config) any { return &c.ShimLogLevel }, defaultText: "--log-level"},
	{name: "stream-address", usage: "address of the exec/attach/port-forward streaming server", field: func(c *Config) any { return &c.StreamServerAddress }},
	{name: "stream-port", usage: `port of the streaming server ("0": a free port)`, field: func(c *Config) any { return &c.StreamServerPort }},
	{name: "network-mode", usage: `pod network: "embedded" or "cni"`, field: func(c *Config) any { return &c.Network.Mode }},
	{name: "network-bridge", usage: "bridge of the embedded network", field: func(c *Config) any { return &c.Network.Bridge }},
	{name: "network-subnet", usage: "pod subnet of the embedded network", field: func(c *Config) any { return &c.Network.Subnet }},
	{name: "network-mtu", usage: "MTU of the embedded network (0: the uplink's)", field: func(c *Config) any { return &c.Network.MTU }},
	{name: "network-chain-prefix", usage: "prefix of warmpod's iptables chains", field: func(c *Config) any { return &c.Network.ChainPrefix }},
	{name: "cni-conf-dir", usage: "CNI configuration directory", field: func(c *Config) any { return &c.Network.CNIConfDir }},
	{name: "cni-bin-dirs", usage: "CNI plugin directories (comma separated)", field: func(c *Config) any { return &c.Network.CNIBinDirs }},
	{name: "cni-cache-dir", usage: "CNI cache directory", field: func(c *Config) any { return &c.Network.CNICacheDir }, defaultText: "<state>/cni"},
	{name: "registry-insecure", usage: "registries reached over plain HTTP (comma separated)", field: func(c *Config) any { return &c.Registry.Insecure }},
	{name: "registry-mirror", usage: "registry mirror host=endpoint[,endpoint] (repeatable)", field: func(c *Config) any { return &c.Registry.Mirrors }},
	{name: "registry-config-path", usage: "directory of per-registry hosts.toml files, containerd's layout", field: func(c *Config) any { return &c.Registry.ConfigPath }},
	{name: "registry-auth-file", usage: "Docker config.json with the node's registry credentials", field: func(c *Config) any { return &c.Registry.AuthFile }},
	{name: "image-pull-progress-timeout", usage: "fail a pull that receives nothing for this long (0s: never)", field: func(c *Config) any { return &c.Registry.ImagePullProgressTimeout }},
	{name: "image-max-layer-size", usage: "largest layer: blob, tar stream and files (0: 32GiB)", field: func(c *Config) any { return &c.Image.MaxLayerSize }},
	{name: "image-max-image-size", usage: "largest total of files one pull unpacks (0: 64GiB)", field: func(c *Config) any { return &c.Image.MaxImageSize }},
	{name: "image-max-layer-entries", usage: "most entries of one layer (0: 1048576)", field: func(c *Config) any { return &c.Image.MaxLayerEntries }},
	{name: "image-max-image-entries", usage: "most entries of all the layers one pull unpacks (0: 2097152)", field: func(c *Config) any { return &c.Image.MaxImageEntries }},
	{name: "image-max-manifest-size", usage: "largest manifest, index or config (0: 4MiB)", field: func(c *Config) any { return &c.Image.MaxManifestSize }},
	{name: "runtime-handlers", usage: "runtime handler names served (comma separated)", field: func(c *Config) any { return &c.Runtime.Handlers }},
	{name: "cgroup-driver", usage: `cgroup driver, as the kubelet's: "cgroupfs" or "systemd"`, field: func(c *Config) any { return &c.Runtime.CgroupDriver }},
	{name: "cgroup-parent", usage: "parent of pod cgroups the kubelet names none for: a path, or a slice with the systemd driver", field: func(c *Config) any { return &c.Runtime.CgroupParent },
		defaultText: cgroup.DefaultParent + ", or " + cgroup.DefaultSlice + " with the systemd driver"},
	{name: "max-precreate", usage: "node-wide concurrent pre-creations (0: CPUs)", field: func(c *Config) any { return &c.Runtime.MaxPrecreate }},
	{name: "cdi-spec-dirs", usage: "CDI spec directories (comma separated)", field: func(c *Config) any { return &c.Runtime.CDISpecDirs }},
	{name: "spawner", usage: `how container generations are created: "libcontainer" or "fast"`, field: func(c *Config) any { return &c.Runtime.Spawner }},
	{name: "cgroup-favordynmods", usage: "turn the node's cgroup2 mount option favordynmods on at start (cheap cgroup placement of new containers)", field: func(c *Config) any { return &c.Runtime.CgroupFavorDynMods }},
}

// configFlag names the TOML file.
const configFlag = "config"

// flags returns the command-line flags: --config and one per option, each
// showing its default.
func flags() []cli.Flag {
	def := defaultConfig()
	out := []cli.Flag{&cli.StringFlag{Name: configFlag, Usage: "TOML configuration file (may be absent when not given)", Value: DefaultConfigPath}}
	for _, o := range options {
		var f cli.Flag
		switch p := o.field(&def).(type) {
		case *string:
			f = &cli.StringFlag{Name: o.name, Usage: o.usage, Value: *p, DefaultText: o.defaultText}
		case *bool:
			f = &cli.BoolFlag{Name: o.name, Usage: o.usage, Value: *p, DefaultText: o.defaultText}
		case *int:
			f = &cli.IntFlag{Name: o.name, Usage: o.usage, Value: *p, DefaultText: o.defaultText}
		case *int64:
			f = &cli.Int64Flag{Name: o.name, Usage: o.usage, Value: *p, DefaultText: o.defaultText}
		case *byteSize:
			f = &cli.StringFlag{Name: o.name, Usage: o.usage, Value: p.String(), DefaultText: o.defaultText}
		case *[]string:
			f = &cli.StringFlag{Name: o.name, Usage: o.usage, Value: strings.Join(*p, ","), DefaultText: o.defaultText}
		case *map[string][]string:
			f = &cli.StringSliceFlag{Name: o.name, Usage: o.usage}
		case *duration:
			f = &cli.DurationFlag{Name: o.name, Usage: o.usage, Value: p.Duration, DefaultText: o.defaultText}
		default:
			panic(fmt.Sprintf("option %s: unsupported field type %T", o.name, p))
		}
		out = append(out, f)
	}
	return out
}

// loadConfig builds the configuration from the defaults, the TOML file
// (--config, or the default path when it exists) and the flags given to
// cmd, in that order.
func loadConfig(cmd *cli.Command) (Config, error) {
	if cmd.Args().Len() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments: %v", cmd.Args().Slice())
	}
	cfg := defaultConfig()
	path := cmd.String(configFlag)
	if data, err := os.ReadFile(path); err == nil {
		md, err := toml.Decode(string(data), &cfg)
		if err != nil {
			return cfg, fmt.Errorf("config file %s: %w", path, err)
		}
		if undec := md.Undecoded(); len(undec) > 0 {
			return cfg, fmt.Errorf("config file %s: unknown keys %v", path, undec)
		}
	} else if cmd.IsSet(configFlag) || !errors.Is(err, os.ErrNotExist) {
		return cfg, fmt.Errorf("config file: %w", err)
	}
	for _, o := range options {
		if !cmd.IsSet(o.name) {
			continue
		}
		switch p := o.field(&cfg).(type) {
		case *string:
			*p = cmd.String(o.name)
		case *bool:
			*p = cmd.Bool(o.name)
		case *int:
			*p = cmd.Int(o.name)
		case *int64:
			*p = cmd.Int64(o.name)
		case *byteSize:
			if err := p.Set(cmd.String(o.name)); err != nil {
				return cfg, fmt.Errorf("--%s: %w", o.name, err)
			}
		case *[]string:
			*p = splitList(cmd.String(o.name))
		case *duration:
			p.Duration = cmd.Duration(o.name)
		case *map[string][]string:
			m, err := parseMirrors(cmd.StringSlice(o.name))
			if err != nil {
				return cfg, fmt.Errorf("--%s: %w", o.name, err)
			}
			// Added to the file's mirrors, replacing those of the same host.
			if *p == nil {
				*p = map[string][]string{}
			}
			for host, eps := range m {
				(*p)[host] = eps
			}
		}
	}
	return finishConfig(cfg)
}

// splitList splits a comma-separated flag value.
func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		out = append(out, strings.TrimSpace(p))
	}
	return out
}

// parseMirrors reads repeated "host=endpoint[,endpoint]" values; a host
// given twice keeps the last.
func parseMirrors(vals []string) (map[string][]string, error) {
	m := map[string][]string{}
	for _, v := range vals {
		host, eps, ok := strings.Cut(v, "=")
		if !ok || host == "" || eps == "" {
			return nil, fmt.Errorf("want host=endpoint[,endpoint], got %q", v)
		}
		m[host] = strings.Split(eps, ",")
	}
	return m, nil
}

// finishConfig fills the settings derived from others and checks the
// result.
func finishConfig(cfg Config) (Config, error) {
	if cfg.Socket == "" {
		cfg.Socket = cfg.State + "/warmpod.sock"
	}
	if cfg.ShimLogLevel == "" {
		cfg.ShimLogLevel = cfg.LogLevel
	}
	if cfg.Network.CNICacheDir == "" {
		cfg.Network.CNICacheDir = cfg.State + "/cni"
	}
	if cfg.Image.MaxLayerEntries < 0 || cfg.Image.MaxImageEntries < 0 {
		return cfg, fmt.Errorf("image max layer or image entries is negative")
	}
	if cfg.Registry.ImagePullProgressTimeout.Duration < 0 {
		return cfg, fmt.Errorf("image pull progress timeout %s is negative", cfg.Registry.ImagePullProgressTimeout)
	}
	if cfg.LogFormat != "text" && cfg.LogFormat != "json" {
		return cfg, fmt.Errorf("log format %q: want \"text\" or \"json\"", cfg.LogFormat)
	}
	if cfg.MetricsAddress != "" {
		if _, _, err := net.SplitHostPort(cfg.MetricsAddress); err != nil {
			return cfg, fmt.Errorf("metrics address %q: want host:port: %w", cfg.MetricsAddress, err)
		}
	}
	switch cfg.Runtime.CgroupDriver {
	case cgroup.DriverCgroupfs:
		if cfg.Runtime.CgroupParent == "" {
			cfg.Runtime.CgroupParent = cgroup.DefaultParent
		}
		if !strings.HasPrefix(cfg.Runtime.CgroupParent, "/") {
			return cfg, fmt.Errorf("cgroup parent %q: the cgroupfs driver wants an absolute path such as /warmpod", cfg.Runtime.CgroupParent)
		}
	case cgroup.DriverSystemd:
		if cfg.Runtime.CgroupParent == "" {
			cfg.Runtime.CgroupParent = cgroup.DefaultSlice
		}
		if !strings.HasSuffix(cfg.Runtime.CgroupParent, ".slice") || strings.Contains(cfg.Runtime.CgroupParent, "/") {
			return cfg, fmt.Errorf("cgroup parent %q: the systemd driver wants a slice such as warmpod.slice", cfg.Runtime.CgroupParent)
		}
	default:
		return cfg, fmt.Errorf("cgroup driver %q: want %q or %q", cfg.Runtime.CgroupDriver, cgroup.DriverCgroupfs, cgroup.DriverSystemd)
	}
	if cfg.Runtime.Spawner != container.SpawnerLibcontainer && cfg.Runtime.Spawner != container.SpawnerFast {
		return cfg, fmt.Errorf("spawner %q: want %q or %q", cfg.Runtime.Spawner, container.SpawnerLibcontainer, container.SpawnerFast)
	}
	if cfg.Network.Mode != "embedded" && cfg.Network.Mode != "cni" {
		return cfg, fmt.Errorf("network mode %q: want \"embedded\" or \"cni\"", cfg.Network.Mode)
	}
	port, err := strconv.ParseUint(cfg.StreamServerPort, 10, 16)
	if err != nil {
		return cfg, fmt.Errorf("stream server port %q: want a number from 0 to 65535", cfg.StreamServerPort)
	}
	cfg.StreamServerPort = strconv.FormatUint(port, 10)
	if cfg.StreamServerAddress == "" {
		return cfg, fmt.Errorf("stream server address is empty")
	}
	return cfg, nil
}

// writeDefaultConfig writes the defaults as a TOML file, every key
// included (derived ones with the value they take when nothing else is
// set).
func writeDefaultConfig(w io.Writer) error {
	cfg, err := finishConfig(defaultConfig())
	if err != nil {
		return err
	}
	// Empty lists and tables, not absent ones: the file shows every key.
	if cfg.Registry.Insecure == nil {
		cfg.Registry.Insecure = []string{}
	}
	if cfg.Registry.Mirrors == nil {
		cfg.Registry.Mirrors = map[string][]string{}
	}
	enc := toml.NewEncoder(w)
	enc.Indent = ""
	return enc.Encode(cfg)
}

// streamAddr is the streaming server's host:port.
func (c *Config) streamAddr() string {
	return net.JoinHostPort(c.StreamServerAddress, c.StreamServerPort)
}
