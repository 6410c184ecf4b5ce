package service

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/warmpod/warmpod/runtime/container"
	"github.com/warmpod/warmpod/runtime/logs"
	"github.com/warmpod/warmpod/runtime/oci"
	"github.com/warmpod/warmpod/runtime/rootfs"
	"github.com/warmpod/warmpod/runtime/shim"
)

// CreateRequest asks for a new container.
type CreateRequest struct {
	ID, Name string
	// Spec is an OCI spec (JSON) without root.path and linux.cgroupsPath.
	Spec       []byte
	Layers     []string
	LogPath    string
	Tty        bool
	Stdin      bool
	StdinOnce  bool
	StopSignal int
	// TerminationMessagePath is the container path of the kubelet's
	// termination message file, bound by Spec (see api/shim/v1).
	TerminationMessagePath string
}

// template is what every generation of a container is made from: the
// container's spec, layers and stdio, and the key of its process shape. It
// is never changed once made (an update makes a new one), so it is shared
// without a lock.
type template struct {
	name string
	// stopSignalReq is the stop signal as requested (0: the default).
	stopSignalReq int
	spec          []byte
	layers        []string
	tty           bool
	stdin         bool
	stdinOnce     bool
	stopSignal    syscall.Signal
	// termPath is the container path of the kubelet's termination message
	// file ("" when none): every generation binds a file of its own there
	// (gen.termFile). termSource is the kubelet's host file the request
	// bound there, for its container only (ctr.termHost).
	termPath   string
	termSource string
	// key identifies the process shape: generations with equal keys are
	// interchangeable.
	key string
	// process is spec's process, parsed once for execs: they copy it and
	// never change what it points to.
	process *specs.Process
	// target is the container whose pid namespace every generation joins
	// (target.go); such a container is ephemeral.
	target string
}

// ephemeral tells whether the container is never restarted by the shim
// nor pre-created (target.go).
func (t *template) ephemeral() bool { return t.target != "" }

func newTemplate(r *CreateRequest) (*template, error) {
	var spec specs.Spec
	if err := json.Unmarshal(r.Spec, &spec); err != nil {
		return nil, fmt.Errorf("parse spec of container %q: %w: %w", r.Name, err, errdefs.ErrInvalidArgument)
	}
	return templateOf(r, &spec)
}

// withResources returns a copy of t whose generations get the cgroup limits
// of res; the device rules stay those of t.
func (t *template) withResources(res *specs.LinuxResources) (*template, error) {
	var spec specs.Spec
	if err := json.Unmarshal(t.spec, &spec); err != nil {
		return nil, err
	}
	if spec.Linux == nil {
		spec.Linux = &specs.Linux{}
	}
	merged := *res
	if spec.Linux.Resources != nil {
		merged.Devices = spec.Linux.Resources.Devices
	}
	spec.Linux.Resources = &merged
	data, err := json.Marshal(&spec)
	if err != nil {
		return nil, err
	}
	return templateOf(&CreateRequest{
		Name: t.name, Spec: data, Layers: t.layers, Tty: t.tty, Stdin: t.stdin, StdinOnce: t.stdinOnce, StopSignal: t.stopSignalReq,
		TerminationMessagePath: t.termPath,
	}, &spec)
}

// templateOf makes the template of r, whose spec parses to spec.
func templateOf(r *CreateRequest, spec *specs.Spec) (*template, error) {
	if spec.Process == nil || len(spec.Process.Args) == 0 {
		return nil, fmt.Errorf("spec of container %q has no process args: %w", r.Name, errdefs.ErrInvalidArgument)
	}
	key, err := shim.ProcessKey(spec, shim.Shape{
		Layers: r.Layers, Tty: r.Tty, Stdin: r.Stdin, StdinOnce: r.StdinOnce, StopSignal: r.StopSignal,
		TerminationMessagePath: r.TerminationMessagePath,
	})
	if err != nil {
		return nil, fmt.Errorf("container %q: %w", r.Name, err)
	}
	termSource := ""
	if r.TerminationMessagePath != "" {
		termSource = spec.Mounts[shim.TerminationMount(spec, r.TerminationMessagePath)].Source
	}
	sig := syscall.Signal(r.StopSignal)
	if sig == 0 {
		sig = unix.SIGTERM
	}
	return &template{
		name:          r.Name,
		stopSignalReq: r.StopSignal,
		spec:          r.Spec,
		process:       spec.Process,
		layers:        r.Layers,
		tty:           r.Tty,
		stdin:         r.Stdin,
		stdinOnce:     r.StdinOnce,
		stopSignal:    sig,
		termPath:      r.TerminationMessagePath,
		termSource:    termSource,
		key:           key,
		target:        targetOf(spec),
	}, nil
}

// gen is one generation of a container: one libcontainer container
// (container.Gen) with its own rootfs and cgroup. It is made ahead of time
// (pre-created, held by a slot) or on demand, then bound to a ctr, released
// (its process execs), and discarded once it has exited or is of no use.
// Its fields are set before it is shared, or, where said, once under the
// owning ctr's mu.
type gen struct {
	id     string
	key    string
	c      *container.Gen
	rootfs rootfs.Rootfs
	// termFile is the file bound at the template's termination message
	// path ("" when none).
	termFile string
	// exited is closed once the process exit has been recorded; only for a
	// released generation (released set, under ctr.mu, before monitor
	// starts).
	exited   chan struct{}
	released bool
	// drained is closed once the process's output has been copied to
	// the log; nil until the generation is bound to a container.
	drained chan struct{}
	// start is when the init process started (procStart): with its pid,
	// the process for good.
	start uint64
}

// drainTimeout bounds the wait for a dead container's output: a process
// that escaped the kill must not hold an exit record back forever.
const drainTimeout = 2 * time.Second

func (g *gen) waitDrained() {
	if g.drained == nil {
		return
	}
	select {
	case <-g.drained:
	case <-time.After(drainTimeout):
	}
}

func (g *gen) kill() error { return g.c.Kill() }

// ctr is one CRI container: one id, from CreateContainer to
// RemoveContainer, and one generation at a time (gen); an in-place restart
// gives it a new generation under the same id.
type ctr struct {
	// Set before the container is published in Shim.containers, never
	// changed.
	id     string
	name   string
	slot   *slot
	stdout *fanout
	stderr *fanout
	// termHost is the kubelet's termination message file of this
	// container, "" when it has none: each exit's message is copied there.
	termHost string

	// mu guards the fields below.
	mu sync.Mutex
	// tmpl changes when the container's resources are updated.
	tmpl *template
	rec  shim.Record
	gen  *gen
	log  *logs.File
	// killing marks an exit the shim caused (stop, remove, reset): restart
	// rules do not apply to it.
	killing bool
	// removed is set by Remove: the container is gone for its callers,
	// its generation is being discarded.
	removed bool
	// eventsSuppressed holds back events while the shim restarts the
	// container itself (a reset, a restart rule): the kubelet sees only
	// where the restart ends, never the transient exit it would otherwise
	// act on (publish.go).
	eventsSuppressed bool
	// rulesPending counts the exits that matched a restart rule whose
	// restart has not finished (applyRule): until none is left, the
	// container's events stay held back, even past the end of another
	// restart (a run that exits again before the restart that started it
	// has told what it did).
	rulesPending int
	// told is the record of the last event published of the container
	// (toldAny: there was one).
	told    shim.Record
	toldAny bool
}

func (c *ctr) template() *template {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tmpl
}

func (c *ctr) record() shim.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.rec
	return r
}

func (c *ctr) closeLog() {
	c.mu.Lock()
	l := c.log
	c.mu.Unlock()
	if l != nil {
		l.Close()
	}
}

// genSpec makes the spec of a new generation from the template, with
// termFile bound at its termination message path.
func (s *Shim) genSpec(t *template, id string, rfs rootfs.Rootfs, termFile string) (*specs.Spec, error) {
	var spec specs.Spec
	if err := json.Unmarshal(t.spec, &spec); err != nil {
		return nil, err
	}
	if spec.Root == nil {
		spec.Root = &specs.Root{}
	}
	spec.Root.Path = rfs.Merged
	if spec.Linux == nil {
		spec.Linux = &specs.Linux{}
	}
	// A cgroupfs parent is a path from the hierarchy's root; a slice (the
	// systemd driver) is a name.
	parent := s.cfg.CgroupParent
	if !strings.HasSuffix(parent, ".slice") {
		parent = filepath.Join("/", parent)
	}
	cgroupsPath, err := oci.CgroupsPath(parent, id)
	if err != nil {
		return nil, err
	}
	spec.Linux.CgroupsPath = cgroupsPath
	if t.termPath != "" {
		spec.Mounts[shim.TerminationMount(&spec, t.termPath)].Source = termFile
	}
	return &spec, nil
}

// newGen creates a generation from t: rootfs, cgroup, namespaces and a
// process blocked before execve. An idle generation is created with CPU
// time nothing else wants (pre-creation); a foreground one at full
// priority. On error nothing is left behind.
func (s *Shim) newGen(t *template, idle bool) (*gen, error) {
	if hook := s.newGenHook.Load(); hook != nil {
		(*hook)(t.name, idle)
	}
	// Mounting the rootfs and creating the container start processes that
	// are waited for by pid, some inside these calls.
	s.reaper.hold()
	defer s.reaper.release()
	id := newID()
	rfs, err := rootfs.Mount(t.layers, filepath.Join(s.cfg.RootDir, "gens", id), s.cfg.UserNS)
	if err != nil {
		return nil, err
	}
	termFile := ""
	if t.termPath != "" {
		termFile = filepath.Join(rfs.Dir, termFileName)
		if err := createTermFile(termFile); err != nil {
			_ = rfs.Remove()
			return nil, err
		}
	}
	spec, err := s.genSpec(t, id, rfs, termFile)
	if err != nil {
		_ = rfs.Remove()
		return nil, err
	}
	joined, err := s.joinTarget(t, spec)
	if err != nil {
		_ = rfs.Remove()
		return nil, err
	}
	c, err := s.engine.Create(container.Config{ID: id, Spec: spec, Tty: t.tty, Stdin: t.stdin, Idle: idle, Template: t.key})
	joined()
	if err != nil {
		_ = rfs.Remove()
		return nil, err
	}
	s.reaper.ownUntil(c.Init.Pid(), c.Init.Done())
	if spawner, why := c.Spawner(); why != "" {
		s.log.WithField("container", t.name).Debugf("generation made by %s: the fast spawner leaves it to libcontainer: %s", spawner, why)
	}
	g := &gen{id: id, key: t.key, c: c, rootfs: rfs, termFile: termFile, exited: make(chan struct{})}
	// Blocked before its execve, the process cannot have exited yet.
	g.start, _ = procStart(c.Init.Pid())
	return g, nil
}

// Create creates container r.ID, from the slot's pre-created generation when
// it has the same process shape, and binds its output to r.LogPath.
func (s *Shim) Create(ctx context.Context, r *CreateRequest) (shim.Record, bool, error) {
	if r.ID == "" || r.Name == "" {
		return shim.Record{}, false, fmt.Errorf("container id and name are required: %w", errdefs.ErrInvalidArgument)
	}
	t, err := newTemplate(r)
	if err != nil {
		return shim.Record{}, false, err
	}
	if err := s.enter(); err != nil {
		return shim.Record{}, false, err
	}
	defer s.leave()
	s.noteActivity()
	c := &ctr{id: r.ID, name: r.Name, tmpl: t, stdout: newFanout(), stderr: newFanout(), termHost: t.termSource}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return shim.Record{}, false, s.errShuttingDown()
	}
	if _, ok := s.containers[r.ID]; ok {
		s.mu.Unlock()
		return shim.Record{}, false, fmt.Errorf("container %q: %w", r.ID, errdefs.ErrAlreadyExists)
	}
	// Reserve the id before creating anything. The slot adopts c only
	// once it is created (log open, generation bound): until then a reset
	// must not restart it.
	s.containers[r.ID] = c
	sl := s.slotFor(r.Name)
	c.slot = sl
	g, stale := s.takeNextLocked(sl, t.key)
	s.mu.Unlock()
	// fail lets go of the reservation, and of g when there is one.
	fail := func(err error) (shim.Record, bool, error) {
		if g != nil {
			s.discard(g)
		}
		s.mu.Lock()
		delete(s.containers, r.ID)
		if sl.forget(c) {
			s.lingerLocked(sl)
		}
		s.mu.Unlock()
		return shim.Record{}, false, err
	}

	warm := g != nil
	for _, old := range stale {
		s.discard(old)
	}
	switch {
	case g == nil && len(stale) > 0:
		log.G(ctx).WithField("container", r.ID).Debugf("the pre-created generation of %q does not fit: its process shape changed", r.Name)
	case g == nil:
		log.G(ctx).WithField("container", r.ID).Debugf("no pre-created generation of %q is ready", r.Name)
	}
	if !warm {
		s.beginForeground()
		g, err = s.newGen(t, false)
		s.endForeground()
		if err != nil {
			g = nil
			return fail(fmt.Errorf("create container %q: %w", r.Name, err))
		}
	}
	l, err := logs.Open(r.LogPath)
	if err != nil {
		return fail(fmt.Errorf("create container %q: %w", r.Name, err))
	}
	s.stats.created(warm)
	now := time.Now().UnixNano()
	s.mu.Lock()
	c.mu.Lock()
	err = s.fenced()
	if err == nil && c.removed {
		err = fmt.Errorf("container %q was removed while it was created: %w", r.ID, errdefs.ErrNotFound)
	}
	if err != nil {
		c.mu.Unlock()
		s.mu.Unlock()
		l.Close()
		return fail(err)
	}
	c.log = l
	c.rec = shim.Record{ID: r.ID, Name: r.Name, State: shim.StateCreated, CreatedAt: now, LogPath: r.LogPath, FromWarm: warm}
	s.bind(c, g)
	rec := s.commit(c, shim.EventCreated)
	c.mu.Unlock()
	sl.adopt(c, t)
	s.mu.Unlock()
	return rec, warm, nil
}

// slotFor returns the slot for a container name, creating it, and classifies
// earlier slots: a slot whose container already completed successfully when
// a new slot appears ran as an init container.
// Preconditions: s.mu held.
func (s *Shim) slotFor(name string) *slot {
	if sl, ok := s.slots[name]; ok {
		return sl
	}
	for _, prev := range s.order {
		prev.classify()
	}
	sl := &slot{name: name}
	for _, n := range s.cfg.InitContainers {
		if n == name {
			sl.markInit()
		}
	}
	s.slots[name] = sl
	s.order = append(s.order, sl)
	return sl
}

// bind makes g the current generation of c and starts copying its output
// to c's log.
// Preconditions: c.mu held; c.log set (c is created).
func (s *Shim) bind(c *ctr, g *gen) {
	c.gen = g
	c.rec.Pid = g.c.Init.Pid()
	c.rec.CgroupPath = g.c.CgroupPath()
	c.rec.UpperDir = g.rootfs.Upper
	io := g.c.Init.IO
	l := c.log
	drained := make(chan struct{})
	g.drained = drained
	if io.Console != nil {
		go func() {
			_ = logs.Copy(l, logs.Stdout, io.Console, c.stdout)
			close(drained)
		}()
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { _ = logs.Copy(l, logs.Stdout, io.Stdout, c.stdout); wg.Done() }()
	go func() { _ = logs.Copy(l, logs.Stderr, io.Stderr, c.stderr); wg.Done() }()
	go func() { wg.Wait(); close(drained) }()
}

// Start releases container id's process.
func (s *Shim) Start(ctx context.Context, id string) (shim.Record, error) {
	c, err := s.lookup(id)
	if err != nil {
		return shim.Record{}, err
	}
	if err := s.enter(); err != nil {
		return shim.Record{}, err
	}
	defer s.leave()
	s.noteActivity()
	c.mu.Lock()
	if c.removed {
		c.mu.Unlock()
		return shim.Record{}, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
	}
	if c.rec.State != shim.StateCreated {
		st := c.rec.State
		c.mu.Unlock()
		return shim.Record{}, fmt.Errorf("container %q is %s, not created: %w", id, st, errdefs.ErrFailedPrecondition)
	}
	if err := s.fenced(); err != nil {
		c.mu.Unlock()
		return shim.Record{}, err
	}
	g := c.gen
	if err := s.release(c, g); err != nil {
		s.commit(c, shim.EventStopped)
		killed := c.killing
		c.mu.Unlock()
		if killed {
			// A reset (or a removal) killed the generation before it
			// was released: the call lost a race, the runtime did not
			// fail.
			return shim.Record{}, fmt.Errorf("container %q was killed by a reset or removal before it started: %w: %w", id, err, errdefs.ErrFailedPrecondition)
		}
		return shim.Record{}, err
	}
	rec := s.commit(c, shim.EventStarted)
	c.mu.Unlock()
	s.stats.startedByCall(c.name, time.Now())
	s.schedule(c.slot)
	return rec, nil
}

// release execs g's process and starts watching for its exit.
// Preconditions: c.mu held; g is c's current generation.
func (s *Shim) release(c *ctr, g *gen) error {
	// Taken before the process is let go: a command that exits at once can
	// be reaped, and its exit time taken, before Release returns.
	started := time.Now()
	if err := g.c.Release(); err != nil {
		// The process died before it could exec: record it as exited.
		_ = g.kill()
		<-g.c.Init.Done()
		code, at := g.c.Init.Exit()
		c.rec.State = shim.StateExited
		c.rec.StartedAt = at.UnixNano()
		c.rec.FinishedAt = at.UnixNano()
		c.rec.ExitCode = int32(code)
		c.rec.Reason = shim.ReasonStartError
		c.rec.Message = err.Error()
		close(g.exited)
		return fmt.Errorf("start container %q: %w", c.name, err)
	}
	g.released = true
	c.rec.State = shim.StateRunning
	c.rec.StartedAt = started.UnixNano()
	c.rec.FinishedAt = 0
	c.rec.ExitCode = 0
	c.rec.Reason = ""
	c.rec.Message = ""
	c.killing = false
	go s.monitor(c, g)
	return nil
}

// monitor records the exit of g, c's generation, and applies restart rules.
func (s *Shim) monitor(c *ctr, g *gen) {
	<-g.c.Init.Done()
	code, at := g.c.Init.Exit()
	// Processes left behind by an init that shared its pid namespace would
	// keep the output pipes open; containers end with their init.
	_ = g.kill()
	oom := g.c.OOMKilled()
	g.waitDrained()

	c.mu.Lock()
	if c.gen != g || c.removed {
		c.mu.Unlock()
		close(g.exited)
		return
	}
	if c.rec.State == shim.StateExited {
		// A reset recorded the exit already (noteExit); only the OOM
		// verdict is new.
		if oom && c.rec.Reason != shim.ReasonOOMKilled {
			c.rec.Reason = shim.ReasonOOMKilled
			s.commit(c, shim.EventStopped)
		}
		c.mu.Unlock()
		close(g.exited)
		return
	}
	action := ""
	if !c.killing && !c.tmpl.ephemeral() {
		if a, ok := shim.MatchRule(s.cfg.RestartRules[c.name], int32(code)); ok {
			action = a
			c.eventsSuppressed = true
			c.rulesPending++
		}
	}
	s.saveTermMessage(c, g)
	c.rec.State = shim.StateExited
	c.rec.FinishedAt = at.UnixNano()
	c.rec.ExitCode = int32(code)
	switch {
	case oom:
		c.rec.Reason = shim.ReasonOOMKilled
	case code == 0:
		c.rec.Reason = shim.ReasonCompleted
	default:
		c.rec.Reason = shim.ReasonError
	}
	rec := s.commit(c, shim.EventStopped)
	c.mu.Unlock()
	close(g.exited)
	if action != "" {
		if err := s.enter(); err != nil {
			// Shutdown began: the exit stands.
			c.ruleDone()
			s.resumeEvents([]*ctr{c})
			return
		}
		s.applyRule(c, action, rec.ExitCode)
	}
}

// saveTermMessage copies the termination message g, c's generation that
// has exited, left in its file to the kubelet's file of c.
// Preconditions: c.mu held, before the exit is committed: the kubelet reads
// its file once it learns of the exit.
func (s *Shim) saveTermMessage(c *ctr, g *gen) {
	if g.termFile == "" || c.termHost == "" {
		return
	}
	if err := copyTermMessage(g.termFile, c.termHost); err != nil {
		s.log.WithError(err).WithField("container", c.id).Warn("copy termination message")
	}
}

// Stop signals container id with its stop signal and kills it after timeout;
// it returns once the container has exited. Stopping a container that is not
// running does nothing.
func (s *Shim) Stop(ctx context.Context, id string, timeout time.Duration) (shim.Record, error) {
	c, err := s.lookup(id)
	if err != nil {
		return shim.Record{}, err
	}
	s.noteActivity()
	c.mu.Lock()
	g := c.gen
	running := c.rec.State == shim.StateRunning
	if running {
		c.killing = true
	}
	c.mu.Unlock()
	if !running {
		return c.record(), nil
	}
	s.stats.stoppedByCall(c.name, time.Now())
	if timeout > 0 {
		if err := g.c.Signal(c.template().stopSignal); err != nil {
			log.G(ctx).WithError(err).WithField("container", id).Debug("stop signal")
		}
		select {
		case <-g.exited:
			return c.record(), nil
		case <-time.After(timeout):
		case <-ctx.Done():
			return shim.Record{}, ctx.Err()
		}
	}
	if err := g.kill(); err != nil {
		return shim.Record{}, err
	}
	select {
	case <-g.exited:
	case <-ctx.Done():
		return shim.Record{}, ctx.Err()
	}
	return c.record(), nil
}

// Remove forgets container id, killing it first when it runs. Its rootfs
// and libcontainer state are released in the background.
func (s *Shim) Remove(ctx context.Context, id string) error {
	c, err := s.lookup(id)
	if err != nil {
		return err
	}
	// Shutdown releases every generation itself.
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	s.noteActivity()
	c.mu.Lock()
	if c.removed {
		c.mu.Unlock()
		return nil
	}
	c.removed = true
	c.killing = true
	g := c.gen
	// After every event of c: none comes once it is removed.
	s.publishDeleted(c)
	c.mu.Unlock()

	s.mu.Lock()
	delete(s.containers, id)
	if c.slot.forget(c) {
		s.lingerLocked(c.slot)
	}
	s.mu.Unlock()

	if g != nil {
		s.discard(g)
	}
	if err := s.records.delete(id); err != nil {
		log.G(ctx).WithError(err).WithField("container", id).Warn("remove container record; written again with the next record")
	}
	go func() {
		if g != nil {
			<-g.c.Init.Done()
			g.waitDrained()
		}
		c.closeLog()
	}()
	return nil
}

// ReopenLog reopens container id's log file after rotation.
func (s *Shim) ReopenLog(id string) error {
	c, err := s.lookup(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	l, st := c.log, c.rec.State
	c.mu.Unlock()
	if st != shim.StateRunning {
		return fmt.Errorf("container %q is %s, not running: %w", id, st, errdefs.ErrFailedPrecondition)
	}
	return l.Reopen()
}

// Update applies new resource limits to container id, and to its later
// generations: the template takes them, and a pre-created generation made
// with the old ones is dropped.
func (s *Shim) Update(id string, res *specs.LinuxResources) error {
	c, err := s.lookup(id)
	if err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	c.mu.Lock()
	g, st, old := c.gen, c.rec.State, c.tmpl
	c.mu.Unlock()
	if st != shim.StateCreated && st != shim.StateRunning {
		return fmt.Errorf("container %q is %s: %w", id, st, errdefs.ErrFailedPrecondition)
	}
	if err := g.c.Update(res); err != nil {
		return err
	}
	t, err := old.withResources(res)
	if err != nil {
		return fmt.Errorf("update template of container %q: %w", id, err)
	}
	c.mu.Lock()
	c.tmpl = t
	c.mu.Unlock()
	s.mu.Lock()
	stale := c.slot.retemplate(c, t)
	s.mu.Unlock()
	for _, g := range stale {
		s.discard(g)
	}
	if len(stale) > 0 {
		s.schedule(c.slot)
	}
	return nil
}

// running returns c's current generation if it is running.
func (c *ctr) running() (*gen, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rec.State != shim.StateRunning {
		return nil, fmt.Errorf("container %q is %s, not running: %w", c.id, c.rec.State, errdefs.ErrFailedPrecondition)
	}
	return c.gen, nil
}

// discard kills g and queues its destruction.
func (s *Shim) discard(g *gen) {
	_ = g.kill()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.cleanupsClosed {
		select {
		case s.cleanups <- g:
			return
		default:
		}
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		s.destroy(g)
	}()
}

// cleanupLoop destroys discarded generations. With a pipeline that has a
// quiet period (libcontainer's), only once the pod is quiet, as for
// pre-creation: tearing down a container's mounts stalls every CPU briefly
// (an RCU grace period), which a reset in progress, or the kubelet's burst of
// calls restarting the pod, would feel. Without one (the fast spawner's),
// resets may come back to back for as long as the pod lives, and teardown
// must keep up: it runs beside them at idle CPU priority.
func (s *Shim) cleanupLoop() {
	defer s.bg.Done()
	if s.pipeline.quiet == 0 {
		// Teardown runs beside resets, on CPU time nothing else wants.
		_, restore := container.IdleThread()
		defer restore()
	}
	for g := range s.cleanups {
		s.mu.Lock()
		s.waitQuietLocked()
		s.mu.Unlock()
		s.destroy(g)
	}
}

// destroy releases everything g holds: process, cgroup, libcontainer state,
// output streams and rootfs.
func (s *Shim) destroy(g *gen) {
	if g.released {
		// The monitor still reads the container's cgroup after the exit.
		<-g.exited
	}
	if err := g.c.Destroy(); err != nil {
		s.log.WithError(err).WithField("gen", g.id).Warn("destroy container generation")
	}
	g.waitDrained()
	g.c.Init.IO.Close()
	if err := g.rootfs.Remove(); err != nil {
		s.log.WithError(err).WithField("gen", g.id).Warn("remove rootfs")
	}
}
