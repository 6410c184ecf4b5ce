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
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/warmpod/warmpod/runtime/oci"
	"github.com/warmpod/warmpod/runtime/rootfs"
	"github.com/warmpod/warmpod/runtime/shim"
	"github.com/warmpod/warmpod/sandbox/cgroup"
	"github.com/warmpod/warmpod/sandbox/etcfiles"
	"github.com/warmpod/warmpod/sandbox/netns"
	"github.com/warmpod/warmpod/sandbox/network"
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
		return "", fmt.Errorf("dns config: %w", err)
	}
	if cfg.Namespaces.Network == oci.NamespaceContainer || cfg.Namespaces.Network == oci.NamespaceTarget {
		return "", fmt.Errorf("pod network namespace mode must be POD or NODE: %w", errdefs.ErrInvalidArgument)
	}
	userNS, err := podUserNS(&cfg)
	if err != nil {
		return "", err
	}
	if userNS != nil {
		if err := m.UserNamespaces(); err != nil {
			return "", fmt.Errorf("pod asks for a user namespace of its own: %w: %w", err, errdefs.ErrFailedPrecondition)
		}
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
	defer undo.run(ctx)
	undo.add(func(context.Context) { m.podNames.release(key) })

	meta := podMeta{
		ID:        id,
		Config:    cfg,
		CreatedAt: time.Now().UnixNano(),
		StateDir:  m.podStateDir(id),
		RootDir:   m.podRootDir(id),
	}
	for _, d := range []string{meta.StateDir, meta.RootDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return "", fmt.Errorf("create pod dir: %w", err)
		}
		if err := closePodDir(d, userNS); err != nil {
			return "", err
		}
	}
	undo.add(func(context.Context) {
		_ = os.RemoveAll(meta.StateDir)
		_ = os.RemoveAll(meta.RootDir)
	})

	hostNet := cfg.HostNetwork()
	nsOpts := netns.Options{Net: !hostNet, UTS: !hostNet, IPC: cfg.Namespaces.IPC != oci.NamespaceNode, User: userNS}
	hostname := cfg.Hostname
	if hostNet || hostname == "" {
		// Host-network pods share the node's UTS namespace and its name;
		// other pods without one get the node's name too, as elsewhere.
		hostname, _ = os.Hostname()
	}
	if !hostNet {
		nsOpts.Hostname = hostname
	}
	ns, err := m.host.createNamespaces(filepath.Join(meta.StateDir, "ns"), nsOpts)
	if err != nil {
		return "", fmt.Errorf("create namespaces of pod %s: %w", id, err)
	}
	meta.NS = ns
	undo.add(func(context.Context) { _ = m.host.removeNamespaces(filepath.Join(meta.StateDir, "ns")) })

	cg, err := m.host.createCgroup(m.cgroupParent(&cfg), id)
	if err != nil {
		return "", fmt.Errorf("create cgroup of pod %s: %w", id, err)
	}
	meta.CgroupPath = cg
	undo.add(func(context.Context) { _ = m.host.deleteCgroup(cg) })

	if cfg.Namespaces.IPC != oci.NamespaceNode {
		meta.Shm = filepath.Join(meta.StateDir, "shm")
		if err := m.host.mountShm(meta.Shm); err != nil {
			return "", fmt.Errorf("mount /dev/shm of pod %s: %w", id, err)
		}
		undo.add(func(context.Context) { m.host.unmountShm(meta.Shm) })
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
	var rootfsUserNS *rootfs.UserNS
	if userNS != nil {
		// podUserNS made sure root is mapped.
		uid, _ := userNS.RootUID()
		gid, _ := userNS.RootGID()
		rootfsUserNS = &rootfs.UserNS{Path: ns.User, UID: uid, GID: gid}
	}
	client, err := m.shims.start(ctx, &shim.Config{
		PodID:            id,
		StateDir:         meta.StateDir,
		RootDir:          meta.RootDir,
		CgroupParent:     cg,
		SharedPID:        meta.PIDNS != "",
		UserNS:           rootfsUserNS,
		InitContainers:   cfg.InitContainers,
		RestartRules:     cfg.RestartRules,
		RestartPolicy:    cfg.RestartPolicy,
		MaxPrecreate:     m.opts.MaxPrecreate,
		PrecreateLockDir: filepath.Join(m.opts.StateDir, "precreate"),
		LogLevel:         m.opts.ShimLogLevel,
		LogFormat:        m.opts.ShimLogFormat,
		Spawner:          m.opts.Spawner,
	}, func(pid int) error { return m.host.placeShim(cg, id, pid) })
	if err != nil {
		return "", fmt.Errorf("start shim of pod %s: %w", id, err)
	}
	undo.add(func(ctx context.Context) {
		_ = m.stopShim(ctx, client)
		client.Close()
	})

	if err := m.meta.put("pods", id, &meta); err != nil {
		return "", err
	}
	p := &pod{meta: meta, status: podStatus{State: PodReady}, shim: client}
	m.mu.Lock()
	m.pods[id] = p
	m.mu.Unlock()
	undo.release()
	go m.watch(p, client)
	log.G(ctx).WithField("pod", id).Infof("pod sandbox %s/%s running", cfg.Namespace, cfg.Name)
	return id, nil
}

// podUserNS returns the user namespace a pod asks for, nil for the node's.
// api.proto allows modes POD and NODE only; the kubelet sends one range
// each of uids and gids, but any mapping of root that the kernel takes is
// served.
func podUserNS(cfg *PodConfig) (*netns.UserNS, error) {
	u := cfg.Namespaces.UserNS
	if u == nil {
		return nil, nil
	}
	switch u.Mode {
	case oci.NamespaceNode:
		if len(u.UIDs) > 0 || len(u.GIDs) > 0 {
			return nil, fmt.Errorf("user namespace mode NODE takes no uid or gid mappings: %w", errdefs.ErrInvalidArgument)
		}
		return nil, nil
	case oci.NamespacePod:
	default:
		return nil, fmt.Errorf("user namespace mode %s is not supported: only POD and NODE are: %w", nsModeName(u.Mode), errdefs.ErrInvalidArgument)
	}
	un := &netns.UserNS{UIDs: netnsIDMaps(u.UIDs), GIDs: netnsIDMaps(u.GIDs)}
	if _, ok := un.RootUID(); !ok {
		return nil, fmt.Errorf("user namespace uid mappings %v do not map root (id 0): %w", u.UIDs, errdefs.ErrInvalidArgument)
	}
	if _, ok := un.RootGID(); !ok {
		return nil, fmt.Errorf("user namespace gid mappings %v do not map root (id 0): %w", u.GIDs, errdefs.ErrInvalidArgument)
	}
	return un, nil
}

func nsModeName(m oci.NamespaceMode) string {
	switch m {
	case oci.NamespacePod:
		return "POD"
	case oci.NamespaceContainer:
		return "CONTAINER"
	case oci.NamespaceNode:
		return "NODE"
	case oci.NamespaceTarget:
		return "TARGET"
	}
	return fmt.Sprintf("%d", int(m))
}

func netnsIDMaps(ms []oci.IDMapping) []netns.IDMap {
	out := make([]netns.IDMap, len(ms))
	for i, m := range ms {
		out[i] = netns.IDMap{ContainerID: m.ContainerID, HostID: m.HostID, Size: m.Length}
	}
	return out
}

// UserNamespaces tells whether pods may have user namespaces of their own
// (CRI user namespace mode POD) on this node, and if not, why: the kernel
// must make them and id-map the image layers for overlayfs (probed once),
// and the pods' containers, root only inside their user namespace, must be
// able to reach their root filesystems under the root dir.
func (m *Manager) UserNamespaces() error {
	if err := m.userNSProbe(); err != nil {
		return err
	}
	return searchable(filepath.Join(m.opts.RootDir, "pods"))
}

// probeUserNS makes a user namespace (its pin in stateDir) and a root
// filesystem for it from a layer in rootDir, where the image layers are.
func probeUserNS(rootDir, stateDir string) (retErr error) {
	scratch, err := os.MkdirTemp(stateDir, ".userns-probe-")
	if err != nil {
		return fmt.Errorf("probe user namespaces: %w", err)
	}
	defer os.Remove(scratch)
	// Any range will do: nothing runs in the namespace.
	const probeHostID = 1 << 30
	probe := []netns.IDMap{{ContainerID: 0, HostID: probeHostID, Size: 65536}}
	nsDir := filepath.Join(scratch, "ns")
	ns, err := netns.Create(nsDir, netns.Options{User: &netns.UserNS{UIDs: probe, GIDs: probe}})
	if err != nil {
		return fmt.Errorf("create a user namespace: %w", err)
	}
	defer func() {
		if err := netns.Remove(nsDir); err != nil && retErr == nil {
			retErr = err
		}
	}()
	if err := rootfs.CheckUserNS(rootDir, &rootfs.UserNS{Path: ns.User, UID: probeHostID, GID: probeHostID}); err != nil {
		return fmt.Errorf("id-mapped root filesystem: %w", err)
	}
	return nil
}

// closePodDir makes a pod's directory (its root filesystems, writable
// layers, /dev/shm, pinned namespaces) unreachable for host users: root's,
// mode 0700. In a pod with a user namespace of its own, the containers'
// root is an unprivileged host user that must reach its root filesystem
// below it: the directory's group is then that user's, who may search it
// but not list it (0710). The directories above it only need to be
// searchable (see searchable); this one is the gate. Without it, any host
// user could run the setuid binaries of any image (CVE-2021-41091) or read
// a pod's /dev/shm.
func closePodDir(dir string, userNS *netns.UserNS) error {
	gid, mode := uint32(0), os.FileMode(0o700)
	if userNS != nil {
		if g, ok := userNS.RootGID(); ok {
			gid, mode = g, 0o710
		}
	}
	if err := os.Chown(dir, 0, int(gid)); err != nil {
		return fmt.Errorf("close pod dir %s to other users: %w", dir, err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		return fmt.Errorf("close pod dir %s to other users: %w", dir, err)
	}
	return nil
}

// searchable checks that dir and every directory above it may be searched
// by any user: the kernel resolves a container's rootfs path with the
// container's credentials, which in a user namespace are nobody's on the
// host.
func searchable(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%s (mode %#o) is not searchable by other users, so containers in a user namespace could not reach their root filesystems below it; make it 0711", d, fi.Mode().Perm())
		}
		if d == "/" || d == "." {
			return nil
		}
	}
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
		return fmt.Errorf("write hosts of pod %s: %w", meta.ID, err)
	}
	meta.Hostname = filepath.Join(meta.StateDir, "hostname")
	if err := etcfiles.WriteHostname(meta.Hostname, hostname); err != nil {
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
