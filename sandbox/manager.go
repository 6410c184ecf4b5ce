package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/warmpod/warmpod/runtime/broadcast"
	"github.com/warmpod/warmpod/runtime/image"
	"github.com/warmpod/warmpod/sandbox/cgroup"
	"github.com/warmpod/warmpod/sandbox/network"
)

// Network is the pod network seam: the embedded bridge or CNI.
type Network interface {
	Name() string
	Ready() error
	Setup(ctx context.Context, pod network.Pod) (network.Result, error)
	Teardown(ctx context.Context, pod network.Pod) error
}

// Devices resolves CDI devices into spec edits, once per pod and device
// set (package devices).
type Devices interface {
	// Inject applies the edits of the named devices to spec; errors
	// caused by the request match devices.ErrInvalid.
	Inject(podID string, names []string, spec *specs.Spec) error
	// Forget drops what was resolved for the pod.
	Forget(podID string)
}

// Images is the image store seam.
type Images interface {
	Get(ref string) (image.Image, error)
	Retain(id string) (release func(), err error)
}

// Options configures a Manager.
type Options struct {
	// RootDir holds persistent data (metadata, writable layers).
	RootDir string
	// StateDir holds runtime state (shim sockets, pinned namespaces).
	StateDir string
	// ShimBinary is the warmpod binary the shims run (default: this one).
	ShimBinary string
	Images     Images
	Network    Network
	// Devices resolves CDI devices; without it a container asking for one
	// fails.
	Devices Devices
	// DefaultCgroupParent is used for pods whose config names none.
	DefaultCgroupParent string
	// MaxPrecreate bounds node-wide concurrent pre-creations (0: CPUs).
	MaxPrecreate int
	// Spawner creates the pods' container generations ("libcontainer",
	// "fast"; "" is libcontainer).
	Spawner string
	// FavorDynMods turns the node's cgroup2 mount option favordynmods on
	// at start (cgroup.FavorDynMods).
	FavorDynMods bool
	ShimLogLevel string
	// ShimLogFormat is "text" (default) or "json".
	ShimLogFormat string
}

// Manager owns the pods and containers of the node. It is safe for
// concurrent use; operations on different objects never wait for each other.
type Manager struct {
	opts   Options
	meta   *metaStore
	events *broadcast.Hub[Event]
	// log is the manager's own logger, from New's context: for the work it
	// does of its own accord (watching shims, sampling). A request's work
	// logs through the request's context (log.G), which carries its RPC
	// name and request id.
	log *log.Entry
	// shims starts and finds the pods' shims; host makes what a pod keeps
	// on the node (seams.go).
	shims shimLauncher
	host  podHost

	podNames *registrar
	ctrNames *registrar
	vols     *imageVolumes
	// userNSProbe is probeUserNS of the root and state dirs, run once: the
	// kernel and the filesystem do not change while the daemon runs.
	userNSProbe func() error

	// retiredMu guards retired: the summed counters of shims already shut
	// down, for the node's metrics.
	retiredMu sync.Mutex
	retired   shimTotals

	// mu guards the indexes, and is held for writing while a container
	// event is applied and published (events.go), which it orders.
	mu   sync.RWMutex
	pods map[string]*pod
	ctrs map[string]*container
	// gone are containers removed from ctrs whose deletion the pod's shim
	// is still to tell.
	gone map[string]*container
}

// New creates a Manager and recovers the pods and containers of a previous
// daemon from disk; it must finish before the CRI socket is served. ctx's
// logger (log.G) is the manager's for the rest of its life.
func New(ctx context.Context, opts Options) (*Manager, error) {
	if opts.ShimBinary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find shim binary: %w", err)
		}
		opts.ShimBinary = exe
	}
	m, err := newManager(ctx, opts, clientLauncher{binary: opts.ShimBinary}, hostPod{})
	if err != nil {
		return nil, err
	}
	// Every container start moves its first process into its cgroup; see
	// cgroup.FavorDynMods for why this node-wide option makes that cheap.
	if !opts.FavorDynMods {
		m.log.Debug("cgroup2 mount options left as they are (runtime.cgroup_favordynmods = false)")
	} else if on, err := cgroup.FavorDynMods(); err != nil {
		m.log.WithError(err).Warn("cgroup placement stays slow after idle periods")
	} else if on {
		m.log.Info("turned the cgroup2 mount option favordynmods on (cheap cgroup placement of new containers)")
	}
	if err := m.recover(ctx); err != nil {
		return nil, err
	}
	return m, nil
}

// newManager makes a Manager with the given seams and no pods; New recovers
// them. ctx's logger is the manager's.
func newManager(ctx context.Context, opts Options, shims shimLauncher, host podHost) (*Manager, error) {
	for _, d := range []string{opts.RootDir, opts.StateDir, filepath.Join(opts.StateDir, "pods"), filepath.Join(opts.RootDir, "pods")} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	meta, err := newMetaStore(opts.RootDir)
	if err != nil {
		return nil, err
	}
	return &Manager{
		opts:        opts,
		meta:        meta,
		events:      broadcast.New[Event](eventBuffer),
		log:         log.G(ctx),
		shims:       shims,
		host:        host,
		podNames:    newRegistrar(),
		ctrNames:    newRegistrar(),
		vols:        newImageVolumes(opts.StateDir, opts.Images, overlayMounter{}),
		userNSProbe: sync.OnceValue(func() error { return probeUserNS(opts.RootDir, opts.StateDir) }),
		pods:        make(map[string]*pod),
		ctrs:        make(map[string]*container),
		gone:        make(map[string]*container),
	}, nil
}

func newID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (m *Manager) podStateDir(id string) string { return filepath.Join(m.opts.StateDir, "pods", id) }
func (m *Manager) podRootDir(id string) string  { return filepath.Join(m.opts.RootDir, "pods", id) }

// podKey and ctrKey name a pod or container for the registrars: one
// object per key. Each field is quoted, so no value can run into the next
// whatever it holds ("a_b" in one name and "b_c" in the next made
// different pods share a key when fields were joined with "_").
func podKey(c *PodConfig) string {
	return fmt.Sprintf("%q %q %q %d", c.Name, c.Namespace, c.UID, c.Attempt)
}

func ctrKey(podID string, c *ContainerConfig) string {
	return fmt.Sprintf("%q %q %d", podID, c.Name, c.Attempt)
}

// getPod finds a pod by id or by a unique id prefix.
func (m *Manager) getPod(id string) (*pod, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return lookup(m.pods, id, "pod sandbox")
}

// getContainer finds a container by id or by a unique id prefix.
func (m *Manager) getContainer(id string) (*container, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return lookup(m.ctrs, id, "container")
}

// lookup finds id in objs, exactly or as the only id it is a prefix of (as
// crictl's truncated ids are).
func lookup[T any](objs map[string]T, id, kind string) (T, error) {
	if o, ok := objs[id]; ok {
		return o, nil
	}
	var found T
	n := 0
	if id != "" {
		for oid, o := range objs {
			if strings.HasPrefix(oid, id) {
				found = o
				n++
			}
		}
	}
	switch n {
	case 0:
		return found, fmt.Errorf("%s %q: %w", kind, id, errdefs.ErrNotFound)
	case 1:
		return found, nil
	}
	var zero T
	return zero, fmt.Errorf("%s id prefix %q is ambiguous: %w", kind, id, errdefs.ErrInvalidArgument)
}

// podContainers returns the containers of pod id.
func (m *Manager) podContainers(id string) []*container {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.podContainersLocked(id)
}

// podContainersLocked is podContainers.
// Preconditions: m.mu held.
func (m *Manager) podContainersLocked(id string) []*container {
	var out []*container
	for _, c := range m.ctrs {
		if c.meta.PodID == id {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].meta.CreatedAt < out[j].meta.CreatedAt })
	return out
}

// cleanups is a rollback stack: functions run in reverse order unless the
// operation succeeded and released them. Each gets a fresh context, so a
// rollback still runs when the request's context has ended; it keeps the
// request's values (its logger).
type cleanups struct {
	fns []func(ctx context.Context)
}

const cleanupTimeout = 30 * time.Second

func (c *cleanups) add(fn func(ctx context.Context)) { c.fns = append(c.fns, fn) }

func (c *cleanups) release() { c.fns = nil }

func (c *cleanups) run(req context.Context) {
	for i := len(c.fns) - 1; i >= 0; i-- {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(req), cleanupTimeout)
		c.fns[i](ctx)
		cancel()
	}
	c.fns = nil
}

// background returns a context for work the manager does of its own
// accord; it carries the manager's logger.
func (m *Manager) background() context.Context { return log.WithLogger(context.Background(), m.log) }

// NetworkReady reports whether pods can get a network.
func (m *Manager) NetworkReady() error { return m.opts.Network.Ready() }

// Close releases the manager's files. Pods keep running.
func (m *Manager) Close() { m.meta.close() }
