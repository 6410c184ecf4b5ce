package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	units "github.com/docker/go-units"
)

// Config is warmpod's configuration: defaults, then the TOML file, then
// command-line flags, each overriding the one before.
type Config struct {
	Root     string `toml:"root" json:"root"`
	State    string `toml:"state" json:"state"`
	Socket   string `toml:"socket" json:"socket"`
	LogLevel string `toml:"log_level" json:"logLevel"`
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
	// CgroupParent is the parent of pod cgroups when the kubelet names none.
	CgroupParent string `toml:"cgroup_parent" json:"cgroupParent"`
	// MaxPrecreate bounds how many container generations the node's shims
	// pre-create at once (0: one per CPU).
	MaxPrecreate int `toml:"max_precreate" json:"maxPrecreate"`
	// CDISpecDirs are searched for CDI device specs.
	CDISpecDirs []string `toml:"cdi_spec_dirs" json:"cdiSpecDirs"`
}

// DefaultConfigPath is read when --config is not given (and may be absent).
const DefaultConfigPath = "/etc/warmpod/config.toml"

func defaultConfig() Config {
	return Config{
		Root:     "/var/lib/warmpod",
		State:    "/run/warmpod",
		LogLevel: "info",
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
		Runtime: RuntimeConfig{
			Handlers:     []string{"", "warmpod"},
			CgroupParent: "/warmpod",
			CDISpecDirs:  []string{"/etc/cdi", "/var/run/cdi"},
		},
	}
}

// stringList is a flag holding a comma-separated list.
type stringList struct{ v *[]string }

func (s stringList) String() string {
	if s.v == nil {
		return ""
	}
	return strings.Join(*s.v, ",")
}

func (s stringList) Set(v string) error {
	*s.v = nil
	for _, p := range strings.Split(v, ",") {
		*s.v = append(*s.v, strings.TrimSpace(p))
	}
	return nil
}

// mirrorList is a repeatable flag "host=endpoint[,endpoint]".
type mirrorList struct{ m *map[string][]string }

func (s mirrorList) String() string { return "" }

func (s mirrorList) Set(v string) error {
	host, eps, ok := strings.Cut(v, "=")
	if !ok || host == "" || eps == "" {
		return fmt.Errorf("want host=endpoint[,endpoint], got %q", v)
	}
	if *s.m == nil {
		*s.m = map[string][]string{}
	}
	(*s.m)[host] = strings.Split(eps, ",")
	return nil
}

// flagSet binds warmpod's flags to cfg and path.
func flagSet(cfg *Config, path *string) *flag.FlagSet {
	fs := flag.NewFlagSet("warmpod", flag.ContinueOnError)
	fs.StringVar(path, "config", DefaultConfigPath, "TOML configuration file")
	fs.StringVar(&cfg.Root, "root", cfg.Root, "directory for persistent data: images, metadata, writable layers")
	fs.StringVar(&cfg.State, "state", cfg.State, "directory for runtime state: sockets, shims, pinned namespaces")
	fs.StringVar(&cfg.Socket, "socket", cfg.Socket, "CRI socket path (default <state>/warmpod.sock)")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "log level: trace, debug, info, warn, error")
	fs.StringVar(&cfg.ShimLogLevel, "shim-log-level", cfg.ShimLogLevel, "log level of pod shims (default: --log-level)")
	fs.StringVar(&cfg.StreamServerAddress, "stream-address", cfg.StreamServerAddress, "address of the exec/attach/port-forward streaming server")
	fs.StringVar(&cfg.StreamServerPort, "stream-port", cfg.StreamServerPort, `port of the streaming server ("0": a free port)`)
	fs.StringVar(&cfg.Network.Mode, "network-mode", cfg.Network.Mode, `pod network: "embedded" or "cni"`)
	fs.StringVar(&cfg.Network.Bridge, "network-bridge", cfg.Network.Bridge, "bridge of the embedded network")
	fs.StringVar(&cfg.Network.Subnet, "network-subnet", cfg.Network.Subnet, "pod subnet of the embedded network")
	fs.IntVar(&cfg.Network.MTU, "network-mtu", cfg.Network.MTU, "MTU of the embedded network (0: the uplink's)")
	fs.StringVar(&cfg.Network.ChainPrefix, "network-chain-prefix", cfg.Network.ChainPrefix, "prefix of warmpod's iptables chains")
	fs.StringVar(&cfg.Network.CNIConfDir, "cni-conf-dir", cfg.Network.CNIConfDir, "CNI configuration directory")
	fs.Var(stringList{&cfg.Network.CNIBinDirs}, "cni-bin-dirs", "CNI plugin directories (comma separated)")
	fs.StringVar(&cfg.Network.CNICacheDir, "cni-cache-dir", cfg.Network.CNICacheDir, "CNI cache directory (default <state>/cni)")
	fs.Var(stringList{&cfg.Registry.Insecure}, "registry-insecure", "registries reached over plain HTTP (comma separated)")
	fs.Var(mirrorList{&cfg.Registry.Mirrors}, "registry-mirror", "registry mirror host=endpoint[,endpoint] (repeatable)")
	fs.Var(&cfg.Image.MaxLayerSize, "image-max-layer-size", "largest layer: blob, tar stream and files (0: 32GiB)")
	fs.Var(&cfg.Image.MaxImageSize, "image-max-image-size", "largest total of files one pull unpacks (0: 64GiB)")
	fs.Int64Var(&cfg.Image.MaxLayerEntries, "image-max-layer-entries", cfg.Image.MaxLayerEntries, "most entries of one layer (0: 1048576)")
	fs.Int64Var(&cfg.Image.MaxImageEntries, "image-max-image-entries", cfg.Image.MaxImageEntries, "most entries of all the layers one pull unpacks (0: 2097152)")
	fs.Var(&cfg.Image.MaxManifestSize, "image-max-manifest-size", "largest manifest, index or config (0: 4MiB)")
	fs.Var(stringList{&cfg.Runtime.Handlers}, "runtime-handlers", "runtime handler names served (comma separated)")
	fs.StringVar(&cfg.Runtime.CgroupParent, "cgroup-parent", cfg.Runtime.CgroupParent, "parent of pod cgroups")
	fs.IntVar(&cfg.Runtime.MaxPrecreate, "max-precreate", cfg.Runtime.MaxPrecreate, "node-wide concurrent pre-creations (0: CPUs)")
	fs.Var(stringList{&cfg.Runtime.CDISpecDirs}, "cdi-spec-dirs", "CDI spec directories (comma separated)")
	return fs
}

// loadConfig builds the configuration from the defaults, the TOML file
// (--config, or the default path when it exists) and the flags in args.
func loadConfig(args []string) (Config, error) {
	// First pass: find the config file; the values it parses are dropped.
	scratch := defaultConfig()
	path := DefaultConfigPath
	first := flagSet(&scratch, &path)
	first.SetOutput(io.Discard)
	if err := first.Parse(args); err != nil {
		return Config{}, err
	}
	explicit := false
	first.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "config" })

	cfg := defaultConfig()
	if data, err := os.ReadFile(path); err == nil {
		md, err := toml.Decode(string(data), &cfg)
		if err != nil {
			return cfg, fmt.Errorf("config file %s: %w", path, err)
		}
		if undec := md.Undecoded(); len(undec) > 0 {
			return cfg, fmt.Errorf("config file %s: unknown keys %v", path, undec)
		}
	} else if explicit || !errors.Is(err, os.ErrNotExist) {
		return cfg, fmt.Errorf("config file: %w", err)
	}
	// Second pass: flags override the file.
	if err := flagSet(&cfg, &path).Parse(args); err != nil {
		return cfg, err
	}
	if first.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %v", first.Args())
	}
	if cfg.Socket == "" {
		cfg.Socket = cfg.State + "/warmpod.sock"
	}
	if cfg.ShimLogLevel == "" {
		cfg.ShimLogLevel = cfg.LogLevel
	}
	if cfg.Network.CNICacheDir == "" {
		cfg.Network.CNICacheDir = cfg.State + "/cni"
	}
	if cfg.Network.Mode != "embedded" && cfg.Network.Mode != "cni" {
		return cfg, fmt.Errorf("network mode %q: want \"embedded\" or \"cni\"", cfg.Network.Mode)
	}
	port, err := strconv.ParseUint(cfg.StreamServerPort, 10, 16)
	if err != nil {
		return cfg, fmt.Errorf("stream server port %q: want a number from 0 to 65535", cfg.StreamServerPort)
	}
	cfg.StreamServerPort = strconv.FormatUint(port, 10)
	if cfg.Image.MaxLayerEntries < 0 || cfg.Image.MaxImageEntries < 0 {
		return cfg, fmt.Errorf("image max layer or image entries is negative")
	}
	if cfg.StreamServerAddress == "" {
		return cfg, fmt.Errorf("stream server address is empty")
	}
	return cfg, nil
}

// streamAddr is the streaming server's host:port.
func (c *Config) streamAddr() string {
	return net.JoinHostPort(c.StreamServerAddress, c.StreamServerPort)
}
