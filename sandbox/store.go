package sandbox

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/warmpod/warmpod/runtime/journal"
	"github.com/warmpod/warmpod/runtime/shim"
	"github.com/warmpod/warmpod/sandbox/netns"
)

// podMeta is everything about a pod that is fixed once RunPodSandbox has
// succeeded. It is persisted as JSON in <root>/meta/pods/<id>.json.
type podMeta struct {
	ID        string      `json:"id"`
	Config    PodConfig   `json:"config"`
	CreatedAt int64       `json:"createdAt"`
	StateDir  string      `json:"stateDir"`
	RootDir   string      `json:"rootDir"`
	NS        netns.Paths `json:"ns"`
	// PIDNS is the pinned pod pid namespace when the pod shares one.
	PIDNS      string   `json:"pidns,omitempty"`
	CgroupPath string   `json:"cgroupPath"`
	ResolvConf string   `json:"resolvConf,omitempty"`
	Hosts      string   `json:"hosts,omitempty"`
	Hostname   string   `json:"hostnameFile,omitempty"`
	Shm        string   `json:"shm,omitempty"`
	IPs        []string `json:"ips,omitempty"`
	// Stopped is set once StopPodSandbox has released the pod's runtime
	// resources; a stopped pod stays stopped across daemon restarts.
	Stopped bool `json:"stopped,omitempty"`
}

// podStatus is the mutable part of a pod.
//
//	RunPodSandbox ──▶ Ready ──StopPodSandbox──▶ NotReady ──RemovePodSandbox──▶ (gone)
//	                    │                          ▲
//	                    └──── shim lost ───────────┘
type podStatus struct {
	State PodState
	// Stopping and Removing exclude conflicting operations while set.
	Stopping bool
	Removing bool
}

// pod is one pod sandbox known to the daemon.
type pod struct {
	meta podMeta

	mu     sync.Mutex
	status podStatus
	shim   shimConn

	// evStamp is the timestamp of the last event told of the pod's
	// containers (events.go). Guarded by Manager.mu.
	evStamp int64
}

// Update changes the pod's status through fn under the pod's lock; fn's
// error aborts the change.
func (p *pod) Update(fn func(podStatus) (podStatus, error)) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, err := fn(p.status)
	if err != nil {
		return err
	}
	p.status = s
	return nil
}

// Status returns a copy of the pod's status.
func (p *pod) Status() podStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

func (p *pod) client() (shimConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shim == nil || p.status.State != PodReady {
		return nil, fmt.Errorf("pod sandbox %s is not ready: %w", p.meta.ID, errdefs.ErrFailedPrecondition)
	}
	return p.shim, nil
}

// containerMeta is everything about a container that is fixed once
// CreateContainer has succeeded; persisted in <root>/meta/containers/<id>.json.
type containerMeta struct {
	ID        string          `json:"id"`
	PodID     string          `json:"podID"`
	Config    ContainerConfig `json:"config"`
	ImageID   string          `json:"imageID"`
	ImageName string          `json:"imageName"`
	CreatedAt int64           `json:"createdAt"`
	LogPath   string          `json:"logPath,omitempty"`
	// User is the process identity of the container's spec, which
	// ContainerStatus reports.
	User *specs.User `json:"user,omitempty"`
}

// containerStatus is the mutable part of a container: the shim's Record of
// it, kept up to date by the shim's events, the daemon's flags, and the
// resource limits last applied by UpdateContainerResources.
type containerStatus struct {
	Record   shim.Record
	Starting bool
	Removing bool
	// Creating is set from the moment CreateContainer indexes the
	// container (so that its shim's created event finds it) until the
	// first record from the shim (its answer or its created event, see
	// setRecord). Until then CRI does not show it: a container listed in
	// state UNKNOWN is one the kubelet sets out to kill, and one that is
	// rolled back would have been seen to exist.
	Creating bool
	// Resources are nil until an update; they are persisted beside the
	// metadata (containerEntry).
	Resources *specs.LinuxResources
}

// containerEntry is what the metadata journal holds of a container. (A
// Record, in this code base, is always the shim's account of a container,
// runtime/shim.Record.)
type containerEntry struct {
	containerMeta
	Resources *specs.LinuxResources `json:"resources,omitempty"`
}

// container is one container known to the daemon.
type container struct {
	meta containerMeta

	mu     sync.Mutex
	status containerStatus
	// releaseImage lets go of the container's hold on its image layers.
	releaseImage func()

	// ev is the container as its pod's events have told of it
	// (events.go). Guarded by Manager.mu.
	ev eventView
}

// Update changes the container's status through fn under its lock.
func (c *container) Update(fn func(containerStatus) (containerStatus, error)) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, err := fn(c.status)
	if err != nil {
		return err
	}
	c.status = s
	return nil
}

// Status returns a copy of the container's status.
func (c *container) Status() containerStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

func (c *container) info() ContainerInfo {
	return c.infoWith(c.Status().Record)
}

// infoWith is the container's info with record rec for its status. Its
// creation time is the one rec keeps, the shim's, which its created event
// has too; the daemon's own until the shim has created it.
func (c *container) infoWith(rec shim.Record) ContainerInfo {
	st := c.Status()
	created := c.meta.CreatedAt
	if rec.CreatedAt != 0 {
		created = rec.CreatedAt
	}
	return ContainerInfo{
		ID:        c.meta.ID,
		PodID:     c.meta.PodID,
		Config:    c.meta.Config,
		ImageID:   c.meta.ImageID,
		ImageName: c.meta.ImageName,
		CreatedAt: created,
		LogPath:   c.meta.LogPath,
		Status:    rec,
		Resources: st.Resources,
		User:      c.meta.User,
	}
}

// metaStore persists metadata in one journal per kind of object
// (<root>/meta/pods.log, <root>/meta/containers.log): a create or a remove
// is one append, which keeps the kubelet's per-reset CreateContainer and
// RemoveContainer off the filesystem's metadata paths.
type metaStore struct {
	journals map[string]*journal.Journal
}

func newMetaStore(root string) (*metaStore, error) {
	s := &metaStore{journals: map[string]*journal.Journal{}}
	for _, kind := range []string{"pods", "containers"} {
		j, err := journal.Open(filepath.Join(root, "meta", kind+".log"))
		if err != nil {
			s.close()
			return nil, fmt.Errorf("open %s metadata: %w", kind, err)
		}
		s.journals[kind] = j
	}
	return s, nil
}

func (s *metaStore) put(kind, id string, v any) error {
	if err := s.journals[kind].Put(id, v); err != nil {
		return fmt.Errorf("write %s metadata of %s: %w", kind, id, err)
	}
	return nil
}

func (s *metaStore) delete(kind, id string) error {
	if err := s.journals[kind].Delete(id); err != nil {
		return fmt.Errorf("delete %s metadata of %s: %w", kind, id, err)
	}
	return nil
}

// load decodes every object of kind with fn; the objects that fail are
// returned as errors beside the ones that loaded.
func (s *metaStore) load(kind string, fn func(data []byte) error) []error {
	var errs []error
	_ = s.journals[kind].Each(func(id string, v json.RawMessage) error {
		if err := fn(v); err != nil {
			errs = append(errs, fmt.Errorf("load %s %s: %w", kind, id, err))
		}
		return nil
	})
	return errs
}

func (s *metaStore) close() {
	for _, j := range s.journals {
		j.Close()
	}
}

// registrar reserves names so that two objects never get the same one;
// a name is reserved before anything is created and released on failure.
// A name reserved with create is "being created" until its request
// settles it, so that a retry can wait for the first request's result
// instead of answering with an object that may yet be rolled back.
type registrar struct {
	mu    sync.Mutex
	names map[string]string // name -> id
	// creating holds, for each name whose object is being created, a
	// channel closed when that request ends.
	creating map[string]chan struct{}
	// waiting, when set, is called as a request starts waiting for a
	// creation in flight (a test seam).
	waiting func(name string)
}

func newRegistrar() *registrar {
	return &registrar{names: make(map[string]string), creating: make(map[string]chan struct{})}
}

// reserve reserves name for id, an object that exists already (one
// recovered from disk).
func (r *registrar) reserve(name, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if owner, ok := r.names[name]; ok && owner != id {
		return fmt.Errorf("name %q is reserved by %s: %w", name, owner, errdefs.ErrAlreadyExists)
	}
	r.names[name] = id
	return nil
}

// create reserves name for id, an object about to be created. The caller
// calls settle once its request ends, created or rolled back (after the
// rollback released the name). When another id holds the name, create
// fails with errdefs.ErrAlreadyExists and, while that id's request is
// still creating it, returns busy, closed when that request ends.
func (r *registrar) create(name, id string) (settle func(), busy <-chan struct{}, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if owner, ok := r.names[name]; ok && owner != id {
		if ch, ok := r.creating[name]; ok {
			busy = ch
			if r.waiting != nil {
				r.waiting(name)
			}
		}
		return nil, busy, fmt.Errorf("name %q is reserved by %s: %w", name, owner, errdefs.ErrAlreadyExists)
	}
	r.names[name] = id
	ch := make(chan struct{})
	r.creating[name] = ch
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		// After a rollback another request may have reserved the name
		// anew; its creation is not this one's to end.
		if r.creating[name] == ch {
			delete(r.creating, name)
		}
		close(ch)
	}, nil, nil
}

func (r *registrar) release(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.names, name)
}
