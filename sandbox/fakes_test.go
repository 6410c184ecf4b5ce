package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	clog "github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	shimv1 "github.com/warmpod/warmpod/api/shim/v1"
	"github.com/warmpod/warmpod/runtime/image"
	"github.com/warmpod/warmpod/runtime/shim"
	shimclient "github.com/warmpod/warmpod/runtime/shim/client"
	"github.com/warmpod/warmpod/sandbox/cgroup"
	"github.com/warmpod/warmpod/sandbox/netns"
	"github.com/warmpod/warmpod/sandbox/network"
)

// The recording fakes of the manager's seams (seams.go, and Options'
// Network; Images is image_volume_test.go's fakeImages). Each keeps what is
// live, so a test can tell that what an operation made is undone, and fails
// the operation it is told to.

// fakeHost is a podHost that keeps the namespaces, cgroups and /dev/shm
// mounts it made, and the limits last set on each cgroup. fail maps
// "namespaces", "cgroup" or "shm" to the error their creation returns.
type fakeHost struct {
	mu     sync.Mutex
	fail   map[string]error
	ns     map[string]bool
	cgroup map[string]bool
	shm    map[string]bool
	limits map[string]*specs.LinuxResources
	// shims are the placements placeShim made.
	shims []string
	// killed lists the cgroups whose processes were killed, in order.
	killed []string
	onKill func(path string)
}

func newFakeHost() *fakeHost {
	return &fakeHost{
		fail: map[string]error{}, ns: map[string]bool{}, cgroup: map[string]bool{}, shm: map[string]bool{},
		limits: map[string]*specs.LinuxResources{},
	}
}

func (h *fakeHost) createNamespaces(dir string, opts netns.Options) (netns.Paths, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.fail["namespaces"]; err != nil {
		return netns.Paths{}, err
	}
	h.ns[dir] = true
	var p netns.Paths
	if opts.Net {
		p.Net = filepath.Join(dir, "net")
	}
	if opts.IPC {
		p.IPC = filepath.Join(dir, "ipc")
	}
	if opts.UTS {
		p.UTS = filepath.Join(dir, "uts")
	}
	return p, nil
}

func (h *fakeHost) removeNamespaces(dir string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.ns, dir)
	return nil
}

func (h *fakeHost) createCgroup(parent, name string) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.fail["cgroup"]; err != nil {
		return "", err
	}
	p := filepath.Join(parent, name)
	h.cgroup[p] = true
	return p, nil
}

func (h *fakeHost) updateCgroup(path string, res *specs.LinuxResources) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.cgroup[path] {
		return fmt.Errorf("cgroup %s: %w", path, cgroup.ErrNotFound)
	}
	h.limits[path] = res
	return nil
}

func (h *fakeHost) deleteCgroup(path string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.cgroup[path] {
		return fmt.Errorf("cgroup %s: %w", path, cgroup.ErrNotFound)
	}
	delete(h.cgroup, path)
	return nil
}

// placeShim records where the shim went: its cgroup below the pod's.
func (h *fakeHost) placeShim(podCgroup, _ string, pid int) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.fail["place"]; err != nil {
		return err
	}
	if !h.cgroup[podCgroup] {
		return fmt.Errorf("cgroup %s: %w", podCgroup, cgroup.ErrNotFound)
	}
	h.shims = append(h.shims, fmt.Sprintf("%d in %s/shim", pid, podCgroup))
	return nil
}

// killCgroup records that the processes of the cgroup were killed, and
// runs onKill (set by a test before the manager runs) first.
func (h *fakeHost) killCgroup(path string) error {
	if h.onKill != nil {
		h.onKill(path)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.killed = append(h.killed, path)
	return nil
}

// wasKilled tells whether the processes of cgroup path were killed.
func (h *fakeHost) wasKilled(path string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Contains(h.killed, path)
}

func (h *fakeHost) unmountBelow(dirs ...string) ([]string, error) { return nil, nil }

func (h *fakeHost) mountShm(path string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.fail["shm"]; err != nil {
		return err
	}
	// The mount point, as the host's: specs name it.
	if err := os.MkdirAll(path, 0o755); err != nil {
		return err
	}
	h.shm[path] = true
	return nil
}

func (h *fakeHost) unmountShm(path string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.shm, path)
	_ = os.Remove(path)
}

// live lists what the host holds, for comparing with what a test expects.
func (h *fakeHost) live() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for kind, m := range map[string]map[string]bool{"namespaces": h.ns, "cgroup": h.cgroup, "shm": h.shm} {
		for p := range m {
			out = append(out, kind+" "+p)
		}
	}
	sort.Strings(out)
	return out
}

// fakeNetwork is a Network that keeps the pods it set up.
type fakeNetwork struct {
	mu        sync.Mutex
	failSetup error
	pods      map[string]bool
}

func (n *fakeNetwork) Name() string { return "fake" }
func (n *fakeNetwork) Ready() error { return nil }

func (n *fakeNetwork) Setup(_ context.Context, pod network.Pod) (network.Result, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.failSetup != nil {
		return network.Result{}, n.failSetup
	}
	n.pods[pod.ID] = true
	return network.Result{Interface: "eth0", IPs: []net.IP{net.ParseIP("10.0.0.2")}}, nil
}

func (n *fakeNetwork) Teardown(_ context.Context, pod network.Pod) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.pods, pod.ID)
	return nil
}

func (n *fakeNetwork) live() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.pods)
}

// busybox is the image the fake world's fakeImages (image_volume_test.go)
// serves.
var busybox = image.Image{
	ID:       "sha256:b0b0",
	RepoTags: []string{"docker.io/library/busybox:latest"},
	Config:   image.Config{Cmd: []string{"sh"}},
	Layers:   []string{"/layers/busybox"},
}

// fakeShims is a shimLauncher of fakeShimConns: the shims it started, by
// state dir, and those a test put there for connect to find (a shim that
// outlived a daemon).
type fakeShims struct {
	mu        sync.Mutex
	failStart error
	shims     map[string]*fakeShimConn
	started   []*shim.Config
}

func (f *fakeShims) start(_ context.Context, cfg *shim.Config, place func(pid int) error) (shimConn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.started = append(f.started, cfg)
	if f.failStart != nil {
		return nil, f.failStart
	}
	pid := len(f.started) + 1000
	if place != nil {
		if err := place(pid); err != nil {
			return nil, err
		}
	}
	s := newFakeShimConn(pid)
	f.shims[cfg.StateDir] = s
	return s, nil
}

func (f *fakeShims) connect(_ context.Context, stateDir string) (shimConn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.shims[stateDir]
	if !ok || s.Exited() {
		return nil, fmt.Errorf("no shim serves %s: %w", stateDir, shimclient.ErrGone)
	}
	return s, nil
}

func (f *fakeShims) get(stateDir string) *fakeShimConn {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.shims[stateDir]
}

// fakeShimConn is a shim as the manager sees it: it keeps its containers'
// records and the calls it got. A call it does not implement panics
// (the nil ShimClient).
type fakeShimConn struct {
	shimv1.ShimClient

	pid int
	// createHook, when set, runs at the start of CreateContainer; its error
	// fails the call.
	createHook func(*shimv1.CreateContainerRequest) error
	// holdEvents, when set, holds Events calls back until it is closed.
	holdEvents chan struct{}
	// hung, when set, makes Shutdown fail as a shim that does not answer.
	hung bool

	mu     sync.Mutex
	calls  []string
	ctrs   map[string]*shimv1.ContainerState
	down   bool // shut down or killed: Exited, calls fail
	closed bool
	// gone is closed at shutdown: the events stream ends.
	gone chan struct{}
	// stream carries the events a test sends down the Events stream; a
	// send returns once the daemon's watcher has taken the event.
	stream chan *shimv1.Event
}

func newFakeShimConn(pid int) *fakeShimConn {
	return &fakeShimConn{pid: pid, ctrs: map[string]*shimv1.ContainerState{}, gone: make(chan struct{}),
		stream: make(chan *shimv1.Event)}
}

// send has the shim publish ev; it returns once the daemon's watcher has
// taken it.
func (s *fakeShimConn) send(ev *shimv1.Event) { s.stream <- ev }

func (s *fakeShimConn) note(call string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, call)
	if s.down {
		return fmt.Errorf("shim: %w", errdefs.ErrUnavailable)
	}
	return nil
}

func (s *fakeShimConn) called(call string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.calls {
		if c == call {
			n++
		}
	}
	return n
}

func (s *fakeShimConn) Pid() int { return s.pid }

func (s *fakeShimConn) Exited() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.down
}

// Stop kills the shim unless it is gone already.
func (s *fakeShimConn) Stop(context.Context, time.Duration) error {
	s.mu.Lock()
	s.calls = append(s.calls, "Stop")
	s.mu.Unlock()
	s.kill()
	return nil
}

func (s *fakeShimConn) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

// kill makes the shim die: its stream ends, it answers no more.
func (s *fakeShimConn) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.down {
		s.down = true
		close(s.gone)
	}
}

func (s *fakeShimConn) Shutdown(context.Context, *shimv1.ShutdownRequest, ...grpc.CallOption) (*shimv1.ShutdownResponse, error) {
	if err := s.note("Shutdown"); err != nil {
		return nil, err
	}
	if s.hung {
		return nil, fmt.Errorf("shim: %w", context.DeadlineExceeded)
	}
	s.kill()
	return &shimv1.ShutdownResponse{}, nil
}

// Stats reports one ResetPod reset and a warm create, so that the node's
// totals can be checked.
func (s *fakeShimConn) Stats(context.Context, *shimv1.StatsRequest, ...grpc.CallOption) (*shimv1.StatsResponse, error) {
	if err := s.note("Stats"); err != nil {
		return nil, err
	}
	var h shim.Histogram
	h.Observe(3 * time.Millisecond)
	return &shimv1.StatsResponse{
		WarmCreates: 1,
		Resets:      []*shimv1.ResetStats{{Trigger: shim.TriggerResetPod, Duration: shim.HistogramToProto(h)}},
	}, nil
}

func (s *fakeShimConn) Info(context.Context, *shimv1.InfoRequest, ...grpc.CallOption) (*shimv1.InfoResponse, error) {
	if err := s.note("Info"); err != nil {
		return nil, err
	}
	return &shimv1.InfoResponse{Pid: int32(s.pid)}, nil
}

func (s *fakeShimConn) CreateContainer(_ context.Context, r *shimv1.CreateContainerRequest, _ ...grpc.CallOption) (*shimv1.CreateContainerResponse, error) {
	if err := s.note("CreateContainer"); err != nil {
		return nil, err
	}
	if s.createHook != nil {
		if err := s.createHook(r); err != nil {
			return nil, err
		}
	}
	st := &shimv1.ContainerState{Id: r.Id, Name: r.Name, Status: shimv1.Status(shim.StateCreated), LogPath: r.LogPath, CreatedAt: 1}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.ctrs[r.Id]; ok {
		return nil, fmt.Errorf("container %q: %w", r.Id, errdefs.ErrAlreadyExists)
	}
	s.ctrs[r.Id] = st
	return &shimv1.CreateContainerResponse{State: st}, nil
}

func (s *fakeShimConn) RemoveContainer(_ context.Context, r *shimv1.ContainerRequest, _ ...grpc.CallOption) (*shimv1.RemoveContainerResponse, error) {
	if err := s.note("RemoveContainer"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.ctrs, r.Id)
	return &shimv1.RemoveContainerResponse{}, nil
}

func (s *fakeShimConn) ListContainers(context.Context, *shimv1.ListContainersRequest, ...grpc.CallOption) (*shimv1.ListContainersResponse, error) {
	if err := s.note("ListContainers"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := &shimv1.ListContainersResponse{}
	for _, st := range s.ctrs {
		resp.Containers = append(resp.Containers, st)
	}
	return resp, nil
}

// Events streams what a test sends on s.stream until the shim dies.
func (s *fakeShimConn) Events(ctx context.Context, _ *shimv1.EventsRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[shimv1.Event], error) {
	if err := s.note("Events"); err != nil {
		return nil, err
	}
	if s.holdEvents != nil {
		select {
		case <-s.holdEvents:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return &fakeEvents{ctx: ctx, gone: s.gone, events: s.stream}, nil
}

// set makes the shim hold container st, as if it had created it.
func (s *fakeShimConn) set(st *shimv1.ContainerState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ctrs[st.Id] = st
}

type fakeEvents struct {
	grpc.ClientStream
	ctx    context.Context
	gone   <-chan struct{}
	events <-chan *shimv1.Event
}

func (e *fakeEvents) Recv() (*shimv1.Event, error) {
	select {
	case ev := <-e.events:
		return ev, nil
	case <-e.gone:
		return nil, io.EOF
	case <-e.ctx.Done():
		return nil, e.ctx.Err()
	}
}

func (e *fakeEvents) Header() (metadata.MD, error) { return nil, nil }

// fakeWorld is a Manager whose seams are fakes, with its state in a
// temporary directory.
type fakeWorld struct {
	// ctx carries a logger that writes nothing.
	ctx    context.Context
	m      *Manager
	opts   Options
	host   *fakeHost
	net    *fakeNetwork
	images *fakeImages
	shims  *fakeShims
}

func newFakeWorld(t *testing.T) *fakeWorld {
	t.Helper()
	log := logrus.New()
	log.SetOutput(io.Discard)
	w := &fakeWorld{
		ctx:    clog.WithLogger(context.Background(), logrus.NewEntry(log)),
		host:   newFakeHost(),
		net:    &fakeNetwork{pods: map[string]bool{}},
		images: &fakeImages{images: map[string]image.Image{"busybox": busybox}, holds: map[string]int{}},
		shims:  &fakeShims{shims: map[string]*fakeShimConn{}},
	}
	dir := t.TempDir()
	w.opts = Options{
		RootDir:             filepath.Join(dir, "root"),
		StateDir:            filepath.Join(dir, "state"),
		Images:              w.images,
		Network:             w.net,
		DefaultCgroupParent: "/warmpod-test",
	}
	w.m = w.newManager(t)
	// The shims die with the test, which ends the managers' watchers.
	t.Cleanup(func() {
		w.shims.mu.Lock()
		defer w.shims.mu.Unlock()
		for _, s := range w.shims.shims {
			s.kill()
		}
	})
	return w
}

// newManager makes a manager on the world's state, as a daemon that starts
// anew would (without recovering it: see restart).
func (w *fakeWorld) newManager(t *testing.T) *Manager {
	t.Helper()
	m, err := newManager(w.ctx, w.opts, w.shims, w.host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

// restart replaces the world's manager with one recovered from its state,
// as after a daemon restart: the shims live on, the image store is a new
// one.
func (w *fakeWorld) restart(t *testing.T) {
	t.Helper()
	w.m.Close()
	w.images.holds = map[string]int{}
	w.m = w.newManager(t)
	if err := w.m.recover(w.ctx); err != nil {
		t.Fatal(err)
	}
}

func podConfig(name string) PodConfig {
	return PodConfig{Name: name, Namespace: "default", UID: "uid-" + name}
}

// errInjected is what the fakes fail with when told to.
var errInjected = errors.New("injected failure")

// sameStrings compares two lists whatever their order.
func sameStrings(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
