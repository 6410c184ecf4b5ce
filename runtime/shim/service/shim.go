package service

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/warmpod/warmpod/runtime/broadcast"
	"github.com/warmpod/warmpod/runtime/container"
	"github.com/warmpod/warmpod/runtime/pause"
	"github.com/warmpod/warmpod/runtime/shim"
)

// lcDir, inside Config.StateDir, holds the libcontainer state of the pod's
// generations.
const lcDir = "lc"

// Shim owns the containers of one pod. Its methods are safe for concurrent
// use.
//
// # Goroutines
//
// Besides those of the gRPC server (one per call or stream), a shim runs:
//
//   - precreateLoop (one): pre-creates next generations when woken through
//     wake, each in a worker of its own (pipeline.parallel at once). Stops
//     when Shutdown closes wake, once its workers are done; it closes
//     precreateDone.
//   - cleanupLoop (one, counted in bg): destroys discarded generations (once
//     the pod is quiet, with a pipeline that has a quiet period). Stops when
//     Shutdown closes cleanups, which it does after precreateDone, as
//     pre-creation discards generations too.
//   - monitor (one per released generation): records the generation's exit
//     and applies restart rules. Stops once the generation's init process
//     has exited and its output drained (drainTimeout at most).
//   - output copiers (one or two per bound generation, see bind, and one
//     that closes gen.drained after them): stop at the end of the
//     container's output, when every process holding it has exited.
//   - a restart by rule (applyRule, one per matching exit): stops when the
//     restart (restartOne or Reset) returns.
//   - a removed container's log closer (Remove): stops once the container's
//     process has exited and its output drained.
//   - a destroyer per discarded generation that cleanupLoop's queue cannot
//     take (full, or closed by Shutdown), counted in bg.
//   - the reaper's loop (one): waits, on SIGCHLD, for the children nobody
//     else waits for (reap.go). Stopped by Shutdown, last. And one per
//     owned process (reaper.ownUntil), until the process has been waited
//     for.
//
// Shutdown first fences the operations that start or discard generations
// (creates, starts, resets, restarts by rule, removes, updates: enter,
// fenced) and waits for those in flight; then it kills every generation,
// which ends the monitors and copiers, and waits for precreateLoop,
// cleanupLoop and bg. The pause process's waiter belongs to package pause.
//
// # Locks
//
// The lock order is
//
//	resetMu → mu → ctr.mu → evMu → the record store's (then the journal's),
//	the event hub's and a fanout's
//
// (the last three are leaves: nothing is locked under them but the
// journal's; more than one ctr.mu is held only by resumeEvents, in the
// pod's start order). mu is never
// held across an operation that blocks on a container (create, wait, kill):
// waits for a condition release it (idle.Wait, waitQuietLocked). ctr.mu is
// held across a generation's release (its execve) and the commit of the
// resulting record, so that a container's records and events keep the
// order of its transitions. The node's pre-creation tokens (file locks)
// are taken with no lock held.
//
// # One container, five types
//
// See the package documentation: template, slot, ctr, gen, and
// container.Gen, with shim.Record for what is told of a ctr.
type Shim struct {
	// Set by New, never changed.
	cfg     *shim.Config
	records *recordStore
	engine  *container.Engine
	events  *broadcast.Hub[shim.Event]
	// log is the shim's own logger (derived from New's context), for the
	// work it does of its own accord; a request's work logs through the
	// request's context (log.G), which carries the daemon's request id.
	log    *log.Entry
	pause  *pause.Process
	tokens *tokens
	stats  *stats
	reaper *reaper
	// pipeline is how generations are pre-created and torn down, which
	// depends on what they cost to make (the spawner).
	pipeline pipeline
	// removedLinger is how long a container name whose container was
	// removed keeps its next generations for a successor (guarded by mu).
	removedLinger time.Duration

	// resetMu serialises resets and restarts by rule: a reset asked for
	// during another runs after it, as a reset of its own.
	resetMu sync.Mutex

	// evMu orders the pod's events (publish.go): it is held while an
	// event's time is fixed and the event published, so events go out in
	// the order of their timestamps.
	evMu sync.Mutex
	// lastEvent is the timestamp of the last event published.
	lastEvent int64

	// mu guards the fields below, and every field of every slot.
	mu sync.Mutex
	// containers are the pod's containers by id; an id is in it from the
	// moment Create reserves it until Remove.
	containers map[string]*ctr
	// slots are the pod's container names; order is the same slots in the
	// order of their first creation, which is the pod's start order.
	slots map[string]*slot
	order []*slot
	// restarting is the pod's AllContainersRestarting condition: set while
	// a reset kills the pod's containers.
	restarting bool
	// resets counts the resets done.
	resets uint64
	// foreground counts foreground work in progress (beginForeground);
	// pre-creation and cleanup wait for it to drop to zero.
	foreground int
	// lastActivity is when the pod last saw a container operation
	// (noteActivity); pre-creation and cleanup wait for precreateQuiet
	// after it.
	lastActivity time.Time
	// idle, a condition on mu, is signalled when foreground drops to zero,
	// when a slot's preparation finishes, and at Shutdown.
	idle *sync.Cond
	// closed is set by Shutdown: no container is created after it, and no
	// operation that may start a generation begins (enter).
	closed bool
	// inflight counts the operations that may start or discard a
	// generation (enter): creates, starts, resets, restarts by rule,
	// removes and updates. Shutdown waits for it to drop to zero before it
	// kills the pod's generations.
	inflight int
	// cleanupsClosed is set when cleanups is closed.
	cleanupsClosed bool

	// shutting is set when Shutdown begins, with closed. It is read under
	// a ctr's mu, where mu cannot be taken, right before a generation is
	// bound or released: none is after Shutdown began (fenced).
	shutting atomic.Bool
	// stop is done when Shutdown begins: in-flight work that waits (a
	// reset waiting for an init container, a retry's back-off) gives up.
	stop       context.Context
	cancelStop context.CancelFunc

	// killedHook, when set (by tests, before any reset), runs while a reset
	// holds the AllContainersRestarting condition, after its kills.
	killedHook func()
	// newGenHook, when set (by tests), runs at the start of the creation
	// of every generation of container name. Atomic: pre-creation may run
	// while a test sets it.
	newGenHook atomic.Pointer[func(name string, idle bool)]

	// wake asks precreateLoop to look for slots wanting a next generation;
	// Shutdown closes it.
	wake chan struct{}
	// cleanups queues discarded generations for cleanupLoop.
	cleanups chan *gen
	// precreateDone is closed when precreateLoop has stopped.
	precreateDone chan struct{}
	// bg counts cleanupLoop and the destroyers discard starts.
	bg sync.WaitGroup
}

// New prepares a shim for the pod described by cfg: it becomes the child
// subreaper of its descendants and starts the pause process when the pod
// shares a pid namespace. ctx's logger (log.G) is the shim's for the rest
// of its life.
func New(ctx context.Context, cfg *shim.Config) (*Shim, error) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("become subreaper: %w", err)
	}
	for _, d := range []string{cfg.StateDir, cfg.RootDir} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, fmt.Errorf("create shim dirs: %w", err)
		}
	}
	records, err := openRecords(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	engine, err := container.NewEngine(filepath.Join(cfg.StateDir, lcDir), container.Options{Spawner: cfg.Spawner})
	if err != nil {
		return nil, err
	}
	s := &Shim{
		cfg:           cfg,
		pipeline:      pipelineFor(cfg.Spawner),
		removedLinger: defaultRemovedLinger,
		records:       records,
		engine:        engine,
		events:        broadcast.New[shim.Event](eventBuffer),
		log:           log.G(ctx),
		tokens:        newTokens(cfg.PrecreateLockDir, cfg.MaxPrecreate),
		stats:         newStats(),
		containers:    make(map[string]*ctr),
		slots:         make(map[string]*slot),
		wake:          make(chan struct{}, 1),
		cleanups:      make(chan *gen, 64),
		precreateDone: make(chan struct{}),
	}
	s.idle = sync.NewCond(&s.mu)
	s.stop, s.cancelStop = context.WithCancel(context.Background())
	s.reaper = newReaper()
	if cfg.SharedPID {
		userns := ""
		if cfg.UserNS != nil {
			userns = cfg.UserNS.Path
		}
		s.reaper.hold()
		p, err := pause.Start(shim.PIDNamespacePath(cfg.StateDir), userns)
		if err == nil {
			s.reaper.ownUntil(p.Pid(), p.Done())
		}
		s.reaper.release()
		if err != nil {
			s.reaper.stop()
			records.close()
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
	// Precreating tells whether any slot has next generations in the
	// making or wanted.
	Precreating bool
}

// Info reports the shim's identity and the pod's reset condition.
func (s *Shim) Info() Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	info := Info{PodID: s.cfg.PodID, Pid: os.Getpid(), Restarting: s.restarting, Resets: s.resets}
	for _, sl := range s.order {
		info.Precreating = info.Precreating || s.precreatingLocked(sl)
	}
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

// recordOf is c's record with its slot's pre-creation state filled in.
func (s *Shim) recordOf(c *ctr) shim.Record {
	r := c.record()
	s.mu.Lock()
	defer s.mu.Unlock()
	sl := c.slot
	if sl.latest != c {
		return r
	}
	r.Warm = sl.warmFor(c)
	r.ReadyGenerations = uint32(len(sl.next))
	r.Precreating = s.precreatingLocked(sl)
	return r
}

// precreatingLocked tells whether sl has next generations in the making, or
// wanted and about to be made.
// Preconditions: s.mu held.
func (s *Shim) precreatingLocked(sl *slot) bool {
	return sl.preparing > 0 || sl.needsPreparing(s.depthLocked(sl))
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
//
// Shutdown fences the operations that start or discard generations: from
// its start no create, start, reset, restart by rule, remove or update
// begins, those in flight start no generation any more, and it waits for
// them to return before it kills the generations, so none outlives it.
func (s *Shim) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.shutting.Store(true)
	s.cancelStop()
	s.idle.Broadcast()
	for s.inflight > 0 {
		s.idle.Wait()
	}
	var gens []*gen
	for _, sl := range s.slots {
		gens = append(gens, sl.dropNext()...)
	}
	cs := make([]*ctr, 0, len(s.containers))
	for _, c := range s.containers {
		cs = append(cs, c)
	}
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
	// The fork server, a child of the shim, ends before the reaper stops.
	s.engine.Close()
	s.reaper.stop()
	s.events.Close()
	s.records.close()
	return nil
}

// errFenced marks the errors of operations refused by Shutdown's fence.
var errFenced = errors.New("shutting down")

// errShuttingDown is what operations refused by Shutdown's fence fail with.
func (s *Shim) errShuttingDown() error {
	return fmt.Errorf("pod %s is %w: %w", s.cfg.PodID, errFenced, errdefs.ErrFailedPrecondition)
}

// enter begins an operation that may start generations; it fails once
// Shutdown has begun. Every enter that succeeds is paired with a leave.
func (s *Shim) enter() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return s.errShuttingDown()
	}
	s.inflight++
	return nil
}

// leave ends an operation begun by enter.
func (s *Shim) leave() {
	s.mu.Lock()
	s.inflight--
	if s.inflight == 0 {
		s.idle.Broadcast()
	}
	s.mu.Unlock()
}

// fenced fails once Shutdown has begun: a generation made meanwhile must be
// discarded, not bound or released.
func (s *Shim) fenced() error {
	if s.shutting.Load() {
		return s.errShuttingDown()
	}
	return nil
}

// withStop returns ctx, done as well once Shutdown begins.
func (s *Shim) withStop(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.stop, cancel)
	return ctx, func() { stop(); cancel() }
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

// defaultMaxPrecreate bounds node-wide concurrent pre-creations.
func defaultMaxPrecreate() int { return runtime.NumCPU() }
