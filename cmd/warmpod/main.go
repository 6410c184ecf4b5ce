// Command warmpod is the warmpod daemon: a CRI v1 runtime for Kubernetes
// nodes that keeps pods warm and resets all their containers in place in
// milliseconds. The same binary runs each pod's shim ("warmpod shim"), the
// pods' pause processes ("warmpod pause") and libcontainer's in-container
// setup ("warmpod init").
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	clog "github.com/containerd/log"
	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"

	"github.com/warmpod/warmpod/cri"
	"github.com/warmpod/warmpod/devices"
	"github.com/warmpod/warmpod/runtime/container"
	"github.com/warmpod/warmpod/runtime/image"
	"github.com/warmpod/warmpod/runtime/metrics"
	"github.com/warmpod/warmpod/runtime/pause"
	"github.com/warmpod/warmpod/runtime/shim/service"
	"github.com/warmpod/warmpod/sandbox"
	"github.com/warmpod/warmpod/sandbox/cgroup"
	"github.com/warmpod/warmpod/sandbox/network"
)

func main() {
	// libcontainer re-executes this binary as "warmpod init" inside each
	// new container; that never returns.
	container.Init()
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case pause.Arg:
			pause.Main()
			return
		case "shim":
			os.Exit(runShim(os.Args[2:]))
		}
	}
	err := newCommand(serve).Run(context.Background(), os.Args)
	switch exitStatus(err) {
	case 0:
	case 2:
		fmt.Fprintln(os.Stderr, "warmpod:", err)
		os.Exit(2)
	default:
		logrus.WithError(err).Error("warmpod failed")
		os.Exit(1)
	}
}

func runShim(args []string) int {
	fs := flag.NewFlagSet("warmpod shim", flag.ContinueOnError)
	state := fs.String("state", "", "the pod's state directory")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *state == "" {
		fmt.Fprintln(os.Stderr, "warmpod shim: --state is required")
		return 2
	}
	service.Version = version
	if err := service.Main(*state); err != nil {
		fmt.Fprintln(os.Stderr, "warmpod shim:", err)
		return 1
	}
	return 0
}

// serve runs the daemon with cfg until SIGTERM or SIGINT; on SIGHUP it
// re-reads its configuration with load.
func serve(cfg Config, load func() (Config, error)) error {
	level, err := logrus.ParseLevel(cfg.LogLevel)
	if err != nil {
		return fmt.Errorf("log level: %w", err)
	}
	logrus.SetLevel(level)
	if cfg.LogFormat == "json" {
		logrus.SetFormatter(&logrus.JSONFormatter{TimestampFormat: time.RFC3339Nano})
	} else {
		logrus.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: time.RFC3339Nano})
	}
	log := logrus.NewEntry(logrus.StandardLogger())
	// The components take their logger from this context (containerd/log's
	// log.G); requests add their RPC name and id to it.
	ctx := clog.WithLogger(context.Background(), log)
	if err := cgroup.SetDriver(cfg.Runtime.CgroupDriver); err != nil {
		return err
	}
	for _, d := range []string{cfg.Root, cfg.State} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}

	imageOpts := registryOptions(cfg.Registry)
	imageOpts.Root = filepath.Join(cfg.Root, "images")
	imageOpts.Limits = image.Limits{
		LayerSize:    int64(cfg.Image.MaxLayerSize),
		ImageSize:    int64(cfg.Image.MaxImageSize),
		LayerEntries: cfg.Image.MaxLayerEntries,
		ImageEntries: cfg.Image.MaxImageEntries,
		ManifestSize: int64(cfg.Image.MaxManifestSize),
	}
	images, err := image.New(ctx, imageOpts)
	if err != nil {
		return err
	}
	defer images.Close()

	net, err := newNetwork(cfg)
	if err != nil {
		return err
	}
	// CDI specs are read once here and then on change; each pod resolves
	// its devices once.
	devs, err := devices.New(devices.Options{SpecDirs: cfg.Runtime.CDISpecDirs})
	if err != nil {
		return err
	}
	defer devs.Close()
	// Shims start from one sealed in-memory copy of this binary: no
	// container can overwrite it, and libcontainer need not copy or seal
	// the binary again for every container it creates.
	shimBinary := ""
	if exe, err := container.SealedSelf(); err == nil {
		defer exe.Close()
		shimBinary = fmt.Sprintf("/proc/self/fd/%d", exe.Fd())
	} else {
		log.WithError(err).Warn("shims run from the binary on disk")
	}
	mgr, err := sandbox.New(ctx, sandbox.Options{
		ShimBinary:          shimBinary,
		RootDir:             cfg.Root,
		StateDir:            cfg.State,
		Images:              images,
		Network:             net,
		Devices:             devs,
		DefaultCgroupParent: cfg.Runtime.CgroupParent,
		MaxPrecreate:        cfg.Runtime.MaxPrecreate,
		Spawner:             cfg.Runtime.Spawner,
		FavorDynMods:        cfg.Runtime.CgroupFavorDynMods,
		ShimLogLevel:        cfg.ShimLogLevel,
		ShimLogFormat:       cfg.LogFormat,
	})
	if err != nil {
		return err
	}
	defer mgr.Close()
	metrics.RegisterNode(mgr.NodeStats)
	if err := mgr.UserNamespaces(); err != nil {
		log.WithError(err).Info("pods with a user namespace (hostUsers: false) are not available on this node")
	}
	// Removals a previous daemon did not finish; recovery has retained
	// every image a container still uses.
	if err := images.GC(); err != nil {
		log.WithError(err).Warn("image garbage collection")
	}

	if cfg.MetricsAddress != "" {
		stop, _, err := serveMetrics(cfg.MetricsAddress, log)
		if err != nil {
			return err
		}
		defer stop()
	}

	// The streaming server listens before CRI is served, so that the first
	// Exec already gets a URL that answers.
	streams, err := cri.NewStreamServer(cri.StreamConfig{Addr: cfg.streamAddr(), Log: log}, mgr)
	if err != nil {
		return err
	}
	defer streams.Close()
	go func() {
		if err := streams.Serve(); err != nil {
			log.WithError(err).Error("streaming server stopped")
		}
	}()
	var podCIDR func(string) error
	if u, ok := net.(interface{ UpdatePodCIDR(string) error }); ok {
		podCIDR = u.UpdatePodCIDR
	}

	handlers := make([]cri.Handler, 0, len(cfg.Runtime.Handlers))
	for _, h := range cfg.Runtime.Handlers {
		handlers = append(handlers, cri.Handler{Name: h})
	}
	svc := cri.New(cri.Options{
		Manager:  mgr,
		Images:   images,
		Handlers: handlers,
		Version:  version,
		Config:   cfg,
		Log:      log,
		Streams:  streams,
		PodCIDR:  podCIDR,
	})
	g := grpc.NewServer(
		grpc.ChainUnaryInterceptor(svc.UnaryInterceptor),
		grpc.ChainStreamInterceptor(svc.StreamInterceptor),
		grpc.MaxRecvMsgSize(16<<20),
		grpc.MaxSendMsgSize(16<<20),
	)
	svc.Register(g)

	l, err := listen(cfg.Socket)
	if err != nil {
		return err
	}
	// SIGHUP reloads what can change while the daemon runs; it never ends
	// the daemon.
	hups := make(chan os.Signal, 1)
	signal.Notify(hups, unix.SIGHUP)
	defer signal.Stop(hups)
	r := &reloader{cfg: cfg, load: load, images: images, log: log}
	go func() {
		for range hups {
			log.Info("received hangup: reloading the configuration")
			r.reload()
		}
	}()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT)
	go func() {
		sig := <-sigs
		log.Infof("received %s: stopping; pods keep running", sig)
		notifySystemd(daemon.SdNotifyStopping)
		done := make(chan struct{})
		go func() { g.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			g.Stop()
		}
	}()
	log.WithField("socket", cfg.Socket).Infof("warmpod %s serving CRI", version)
	// Under systemd (Type=notify) the unit becomes active only now: pods
	// are recovered and the socket accepts calls.
	notifySystemd(daemon.SdNotifyReady)
	if err := g.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

// listen creates the CRI socket, mode 0660, replacing a stale one.
func listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
		return nil, fmt.Errorf("create socket dir: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("another daemon is serving %s", path)
	}
	_ = os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

func newNetwork(cfg Config) (sandbox.Network, error) {
	switch cfg.Network.Mode {
	case "embedded":
		return network.NewEmbedded(network.EmbeddedConfig{
			Bridge:      cfg.Network.Bridge,
			Subnet:      cfg.Network.Subnet,
			MTU:         cfg.Network.MTU,
			StateDir:    filepath.Join(cfg.State, "network"),
			ChainPrefix: cfg.Network.ChainPrefix,
		})
	case "cni":
		return network.NewCNI(network.CNIConfig{
			ConfDir:  cfg.Network.CNIConfDir,
			BinDirs:  cfg.Network.CNIBinDirs,
			CacheDir: cfg.Network.CNICacheDir,
		})
	}
	return nil, fmt.Errorf("network mode %q is not available", cfg.Network.Mode)
}

// serveMetrics serves Prometheus metrics at http://addr/metrics until stop
// is called, and returns the address it listens on.
func serveMetrics(addr string, log *logrus.Entry) (stop func(), bound string, err error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("metrics address: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.WithError(err).Error("metrics server stopped")
		}
	}()
	log.WithField("address", l.Addr().String()).Info("serving metrics at /metrics")
	return func() { _ = srv.Close() }, l.Addr().String(), nil
}

// registryOptions are the image store's registry settings from r.
func registryOptions(r RegistryConfig) image.Options {
	return image.Options{
		Mirrors:             r.Mirrors,
		Insecure:            r.Insecure,
		ConfigPath:          r.ConfigPath,
		AuthFile:            r.AuthFile,
		PullProgressTimeout: r.ImagePullProgressTimeout.Duration,
	}
}
