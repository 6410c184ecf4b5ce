package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/warmpod/warmpod/runtime/oci"
	"github.com/warmpod/warmpod/sandbox/cgroup"
	"github.com/warmpod/warmpod/sandbox/etcfiles"
	"github.com/warmpod/warmpod/sandbox/netns"
	"github.com/warmpod/warmpod/sandbox/network"
	"github.com/warmpod/warmpod/sandbox/shim"
	"github.com/warmpod/warmpod/sandbox/shimclient"
)

// shmSize is the size of a pod's /dev/shm, as the kubelet's runtimes use.
const shmSize = 64 << 20

// RunPod creates a pod sandbox and returns its id. Everything it made is
// undone when it fails. A retry for a pod that already exists (same name,
// namespace, uid and attempt) returns that pod's id.
func (m *Manager) RunPod(ctx context.Context, cfg PodConfig) (string, error) {
	if cfg.Name == "" || cfg.Namespace == "" || cfg.UID == "" {
		return "", fmt.Errorf("pod sandbox metadata needs name, namespace and uid: %w", errdefs.ErrInvalidArgument)
	}
	if err := etcfiles.ValidateDNS(cfg.DNS); err != nil {
		return "", fmt.Errorf("dns config: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	if cfg.Namespaces.Network == oci.NamespaceContainer || cfg.Namespaces.Network == oci.NamespaceTarget {
		return "", fmt.Errorf("pod network namespace mode must be POD or NODE: %w", errdefs.ErrInvalidArgument)
	}
	id := newID()
	key := podKey(&cfg)
	if err := m.podNames.reserve(key, id); err != nil {
		if existing := m.podByKey(key); existing != nil {
			return existing.meta.ID, nil
		}
		return "", fmt.Errorf("pod sandbox %q is being created: %w", key, err)
	}
	var undo cleanups
	defer undo.run()
	undo.add(func(context.Context) { m.podNames.release(key) })

	meta := podMeta{
		ID:        id,
		Config:    cfg,
		CreatedAt: time.Now().UnixNano(),
		StateDir:  m.podStateDir(id),
		RootDir:   m.podRootDir(id),
	}
	for _, d := range []string{meta.StateDir, meta.RootDir} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return "", fmt.Errorf("create pod dir: %w", err)
		}
	}
	undo.add(func(context.Context) {
		_ = os.RemoveAll(meta.StateDir)
		_ = os.RemoveAll(meta.RootDir)
	})

	hostNet := cfg.HostNetwork()
	nsOpts := netns.Options{Net: !hostNet, UTS: !hostNet, IPC: cfg.Namespaces.IPC != oci.NamespaceNode}
	hostname := cfg.Hostname
	if hostNet || hostname == "" {
		// Host-network pods share the node's UTS namespace and its name;
		// other pods without one get the node's name too, as elsewhere.
		hostname, _ = os.Hostname()
	}
	if !hostNet {
		nsOpts.Hostname = hostname
	}
	ns, err := netns.Create(filepath.Join(meta.StateDir, "ns"), nsOpts)
	if err != nil {
		if errors.Is(err, netns.ErrInvalidOptions) {
			err = fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
		}
		return "", fmt.Errorf("create namespaces of pod %s: %w", id, err)
	}
	meta.NS = ns
	undo.add(func(context.Context) { _ = netns.Remove(filepath.Join(meta.StateDir, "ns")) })

	cg, err := cgroup.Create(m.cgroupParent(&cfg), id, nil)
	if err != nil {
		if errors.Is(err, cgroup.ErrInvalid) {
			err = fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
		}
		return "", fmt.Errorf("create cgroup of pod %s: %w", id, err)
	}
	meta.CgroupPath = cg
	undo.add(func(context.Context) { _ = cgroup.Delete(cg) })

	if cfg.Namespaces.IPC != oci.NamespaceNode {
		meta.Shm = filepath.Join(meta.StateDir, "shm")
		if err := mountShm(meta.Shm); err != nil {
			return "", fmt.Errorf("mount /dev/shm of pod %s: %w", id, err)
		}
		undo.add(func(context.Context) { unmountShm(meta.Shm) })
	}

	var ips []net.IP
	if !hostNet {
		np := m.networkPod(&meta)
		res, err := m.opts.Network.Setup(ctx, np)
		if err != nil {
			return "", fmt.Errorf("set up network of pod %s: %w", id, err)
		}
		undo.add(func(ctx context.Context) { _ = m.opts.Network.Teardown(ctx, np) })
		ips = res.IPs
		for _, ip := range res.IPs {
			meta.IPs = append(meta.IPs, ip.String())
		}
	}

	if err := m.writeEtcFiles(&meta, hostname, ips); err != nil {
		return "", err
	}

	if cfg.Namespaces.PID == oci.NamespacePod {
		meta.PIDNS = shim.PIDNamespacePath(meta.StateDir)
	}
	client, err := shimclient.Start(ctx, m.opts.ShimBinary, &shim.Config{
		PodID:            id,
		StateDir:         meta.StateDir,
		RootDir:          meta.RootDir,
		CgroupParent:     cg,
		SharedPID:        meta.PIDNS != "",
		InitContainers:   cfg.InitContainers,
		RestartRules:     cfg.RestartRules,
		RestartPolicy:    cfg.RestartPolicy,
		MaxPrecreate:     m.opts.MaxPrecreate,
		PrecreateLockDir: filepath.Join(m.opts.StateDir, "precreate"),
		LogLevel:         m.opts.ShimLogLevel,
	})
	if err != nil {
		return "", fmt.Errorf("start shim of pod %s: %w", id, err)
	}
	undo.add(func(ctx context.Context) { m.shutdownShim(ctx, client) })

	if err := m.meta.put("pods", id, &meta); err != nil {
		return "", err
	}
	p := &pod{meta: meta, status: podStatus{State: PodReady}, shim: client}
	m.mu.Lock()
	m.pods[id] = p
	m.mu.Unlock()
	undo.release()
	go m.watch(p, client)
	m.log.WithField("pod", id).Infof("pod sandbox %s/%s running", cfg.Namespace, cfg.Name)
	return id, nil
}

func (m *Manager) podByKey(key string) *pod {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, p := range m.pods {
		if podKey(&p.meta.Config) == key {
			return p
		}
	}
	return nil
}

func (m *Manager) cgroupParent(cfg *PodConfig) string {
	if cfg.CgroupParent != "" {
		return cfg.CgroupParent
	}
	if m.opts.DefaultCgroupParent != "" {
		return m.opts.DefaultCgroupParent
	}
	return cgroup.DefaultParent
}

func (m *Manager) networkPod(meta *podMeta) network.Pod {
	return network.Pod{
		ID:           meta.ID,
		Name:         meta.Config.Name,
		Namespace:    meta.Config.Namespace,
		UID:          meta.Config.UID,
		NetNS:        meta.NS.Net,
		PortMappings: meta.Config.PortMappings,
		Annotations:  meta.Config.Annotations,
	}
}

// writeEtcFiles writes the pod's resolv.conf, hosts and hostname files.
func (m *Manager) writeEtcFiles(meta *podMeta, hostname string, ips []net.IP) error {
	cfg := &meta.Config
	meta.ResolvConf = filepath.Join(meta.StateDir, "resolv.conf")
	if err := etcfiles.WriteResolvConf(meta.ResolvConf, cfg.DNS); err != nil {
		return fmt.Errorf("write resolv.conf of pod %s: %w", meta.ID, err)
	}
	meta.Hosts = filepath.Join(meta.StateDir, "hosts")
	if cfg.HostNetwork() {
		// Host-network pods see the node's own hosts file, as with other runtimes.
		meta.Hosts = "/etc/hosts"
	} else if err := etcfiles.WriteHosts(meta.Hosts, hostname, ips, cfg.HostAliases); err != nil {
		if errors.Is(err, etcfiles.ErrInvalid) {
			err = fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
		}
		return fmt.Errorf("write hosts of pod %s: %w", meta.ID, err)
	}
	meta.Hostname = filepath.Join(meta.StateDir, "hostname")
	if err := etcfiles.WriteHostname(meta.Hostname, hostname); err != nil {
		if errors.Is(err, etcfiles.ErrInvalid) {
			err = fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
		}
		return fmt.Errorf("write hostname of pod %s: %w", meta.ID, err)
	}
	return nil
}

func mountShm(path string) error {
	if err := os.MkdirAll(path, 0o755); err != nil {
		return err
	}
	opts := fmt.Sprintf("mode=1777,size=%d", shmSize)
	if err := unix.Mount("shm", path, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts); err != nil {
		return err
	}
	return nil
}

func unmountShm(path string) {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return
	}
	_ = os.Remove(path)
}
