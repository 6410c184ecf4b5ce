package service

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/warmpod/warmpod/runtime/broadcast"
	"github.com/warmpod/warmpod/runtime/container"
	"github.com/warmpod/warmpod/runtime/journal"
	"github.com/warmpod/warmpod/runtime/pause"
	"github.com/warmpod/warmpod/runtime/shim"
)

// lcDir, inside Config.StateDir, holds the libcontainer state of the pod's
// generations.
const lcDir = "lc"

// Shim owns the containers of one pod. Its methods are safe for concurrent use.
type Shim struct {
	cfg     *shim.Config
	records *journal.Journal
	engine  *container.Engine
	events  *broadcast.Hub[shim.Event]
	log     *logrus.Entry
	pause   *pause.Process
	tokens  *tokens

	// resetMu serialises resets: a reset asked for during another runs
	// after it, as a reset of its own.
	resetMu sync.Mutex

	// mu guards the maps and flags below. It is never held across a
	// container operation that blocks (create, wait, kill).
	mu         sync.Mutex
	containers map[string]*ctr
	slots      map[string]*slot
	order      []*slot
	restarting bool
	resets     uint64
	// foreground counts foreground work (cold creates, resets) in
	// progress; pre-creation waits for it to drop to zero.
	foreground int
	// lastActivity is when the pod last saw a container operation;
	// pre-creation waits for a quiet period after it (see precreateQuiet).
	lastActivity time.Time
	idle         *sync.Cond
	closed       bool

	// cleanupsClosed is set, under mu, when cleanups is closed.
	cleanupsClosed bool

	// killedHook, when set (by tests), runs while a reset holds the
	// AllContainersRestarting condition, after its kills.
	killedHook func()

	wake          chan struct{}
	cleanups      chan *gen
	precreateDone chan struct{}
	bg            sync.WaitGroup
}

// New prepares a shim for the pod described by cfg: it becomes the child
// subreaper of its descendants and starts the pause process when the pod
// shares a pid namespace.
func New(cfg *shim.Config, log *logrus.Entry) (*Shim, error) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("become subreaper: %w", err)
	}
	for _, d := range []string{cfg.StateDir, cfg.RootDir} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, fmt.Errorf("create shim dirs: %w", err)
		}
	}
	records, err := journal.Open(shim.JournalPath(cfg.StateDir))
	if err != nil {
		return nil, err
	}
	engine, err := container.NewEngine(filepath.Join(cfg.StateDir, lcDir))
	if err != nil {
		return nil, err
	}
	s := &Shim{
		cfg:           cfg,
		records:       records,
		engine:        engine,
		events:        broadcast.New[shim.Event](eventBuffer),
		log:           log,
		tokens:        newTokens(cfg.PrecreateLockDir, cfg.MaxPrecreate),
		containers:    make(map[string]*ctr),
		slots:         make(map[string]*slot),
		wake:          make(chan struct{}, 1),
		cleanups:      make(chan *gen, 64),
		precreateDone: make(chan struct{}),
	}
	s.idle = sync.NewCond(&s.mu)
	if cfg.SharedPID {
		userns := ""
		if cfg.UserNS != nil {
			userns = cfg.UserNS.Path
		}
		p, err := pause.Start(shim.PIDNamespacePath(cfg.StateDir), userns)
		if err != nil {
			records.Close()
			return nil, err
		}
		s.pause = p
	}
	s.bg.Add(1)
	go s.precreateLoop()
	go s.cleanupLoop()
	return s, nil
}

// Info describes the shim.
type Info struct {
	PodID      string
	Pid        int
	PausePid   int
	Restarting bool
	Resets     uint64
}

// Info reports the shim's identity and the pod's reset condition.
func (s *Shim) Info() Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	info := Info{PodID: s.cfg.PodID, Pid: os.Getpid(), Restarting: s.restarting, Resets: s.resets}
	if s.pause != nil {
		info.PausePid = s.pause.Pid()
	}
	return info
}

// Subscribe returns a channel of container events and a function that ends
// the subscription.
func (s *Shim) Subscribe() (<-chan shim.Event, func()) { return s.events.Subscribe() }

// List returns the records of every container of the pod.
func (s *Shim) List() []shim.Record {
	s.mu.Lock()
	cs := make([]*ctr, 0, len(s.containers))
	for _, c := range s.containers {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	out := make([]shim.Record, 0, len(cs))
	for _, c := range cs {
		out = append(out, s.recordOf(c))
	}
	return out
}

// Get returns the record of container id.
func (s *Shim) Get(id string) (shim.Record, error) {
	c, err := s.lookup(id)
	if err != nil {
		return shim.Record{}, err
	}
	return s.recordOf(c), nil
}

// recordOf is c's record with Warm filled in.
func (s *Shim) recordOf(c *ctr) shim.Record {
	r := c.record()
	s.mu.Lock()
	r.Warm = c.slot.latest == c && c.slot.next != nil
	s.mu.Unlock()
	return r
}

func (s *Shim) lookup(id string) (*ctr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok {
		return nil, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
	}
	return c, nil
}

// Shutdown kills every container (pre-created generations included),
// releases their rootfs and stops the pause process. The shim is unusable
// afterwards.
func (s *Shim) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var gens []*gen
	for _, sl := range s.slots {
		if sl.next != nil {
			gens = append(gens, sl.next)
			sl.next = nil
		}
	}
	cs := make([]*ctr, 0, len(s.containers))
	for _, c := range s.containers {
		cs = append(cs, c)
	}
	s.idle.Broadcast()
	s.mu.Unlock()
	close(s.wake)

	for _, c := range cs {
		c.mu.Lock()
		c.killing = true
		if c.gen != nil {
			gens = append(gens, c.gen)
		}
		c.mu.Unlock()
	}
	for _, g := range gens {
		_ = g.kill()
	}
	for _, g := range gens {
		s.destroy(g)
	}
	for _, c := range cs {
		c.closeLog()
	}
	<-s.precreateDone
	s.mu.Lock()
	s.cleanupsClosed = true
	close(s.cleanups)
	s.mu.Unlock()
	s.bg.Wait()
	if s.pause != nil {
		s.pause.Stop()
	}
	s.events.Close()
	s.records.Close()
	return nil
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// beginForeground marks the start of foreground work (a cold create, a
// reset, a restart by rule), which pre-creation and cleanup wait for.
func (s *Shim) beginForeground() {
	s.mu.Lock()
	s.foreground++
	s.mu.Unlock()
}

// endForeground marks its end, which counts as activity (noteActivity).
func (s *Shim) endForeground() {
	s.mu.Lock()
	s.foreground--
	s.lastActivity = time.Now()
	if s.foreground == 0 {
		s.idle.Broadcast()
	}
	s.mu.Unlock()
}

// noteActivity notes a container operation: pre-creation and cleanup wait
// for precreateQuiet after the last one.
func (s *Shim) noteActivity() {
	s.mu.Lock()
	s.lastActivity = time.Now()
	s.mu.Unlock()
}

func (s *Shim) emit(t shim.EventType, c *ctr) {
	s.events.Publish(shim.Event{Type: t, Container: c.record(), Timestamp: time.Now().UnixNano()})
}

// defaultMaxPrecreate bounds node-wide concurrent pre-creations.
func defaultMaxPrecreate() int { return runtime.NumCPU() }
