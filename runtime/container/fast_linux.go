package container

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// fastTemplate is what the fast spawner made of one container template.
type fastTemplate struct {
	// cfg is the template's libcontainer config; a generation's copy gets
	// its own rootfs and cgroup.
	cfg *configs.Config
	// mu guards the fields below.
	mu sync.Mutex
	// why the fast spawner leaves the template to libcontainer; "" when it
	// makes it.
	why string
	// seccomp is the template's seccomp program, read back from a
	// generation libcontainer made (nil until then, or without seccomp).
	seccomp *seccompFilter
	// mounts and namespaces are the spec's that cfg was converted from. A
	// generation's spec may differ from them in mount sources (a file of the
	// generation's own bound into it) and namespace paths (a namespace of
	// another container's current generation) only: see mountsFor and
	// namespacesFor.
	mounts     []specs.Mount
	namespaces []specs.LinuxNamespace
}

// namespaceTypes are the OCI namespace types and libcontainer's, as specconv
// maps them.
var namespaceTypes = map[specs.LinuxNamespaceType]configs.NamespaceType{
	specs.PIDNamespace:     configs.NEWPID,
	specs.NetworkNamespace: configs.NEWNET,
	specs.MountNamespace:   configs.NEWNS,
	specs.UserNamespace:    configs.NEWUSER,
	specs.IPCNamespace:     configs.NEWIPC,
	specs.UTSNamespace:     configs.NEWUTS,
	specs.CgroupNamespace:  configs.NEWCGROUP,
	specs.TimeNamespace:    configs.NEWTIME,
}

// namespacesFor returns the libcontainer namespaces of a generation of t
// whose spec has the namespaces ns: t's, with the paths ns gives. ns must
// have t's namespace types in t's order.
func (t *fastTemplate) namespacesFor(ns []specs.LinuxNamespace) (configs.Namespaces, error) {
	if len(ns) != len(t.namespaces) {
		return nil, errTemplateDiffers
	}
	out := t.cfg.Namespaces
	copied := false
	for i, n := range ns {
		old := t.namespaces[i]
		if n.Type != old.Type {
			return nil, errTemplateDiffers
		}
		if n.Path == old.Path {
			continue
		}
		typ, ok := namespaceTypes[n.Type]
		j := slices.IndexFunc(out, func(c configs.Namespace) bool { return c.Type == typ && c.Path == old.Path })
		if !ok || j < 0 {
			return nil, errTemplateDiffers
		}
		if !copied {
			out = slices.Clone(out)
			copied = true
		}
		out[j].Path = n.Path
	}
	return out, nil
}

// errTemplateDiffers says that a generation's spec differs from its
// template's in more than the fast spawner patches per generation.
var errTemplateDiffers = errors.New("spec differs from its template's")

// mountsFor returns the libcontainer mounts of a generation of t whose
// spec has the mounts ms: t's, with the sources ms gives. ms must have t's
// mounts in t's order, differing in sources only.
func (t *fastTemplate) mountsFor(ms []specs.Mount) ([]*configs.Mount, error) {
	if len(ms) != len(t.mounts) {
		return nil, errTemplateDiffers
	}
	out := t.cfg.Mounts
	copied := false
	for i, m := range ms {
		old := t.mounts[i]
		if m.Destination != old.Destination || m.Type != old.Type || !slices.Equal(m.Options, old.Options) ||
			m.UIDMappings != nil || m.GIDMappings != nil {
			return nil, errTemplateDiffers
		}
		if m.Source == old.Source {
			continue
		}
		// specconv keeps an absolute source and the destination as the
		// spec has them.
		j := slices.IndexFunc(out, func(c *configs.Mount) bool {
			return c.Destination == old.Destination && c.Source == old.Source
		})
		if j < 0 || !filepath.IsAbs(m.Source) {
			return nil, errTemplateDiffers
		}
		if !copied {
			out = slices.Clone(out)
			copied = true
		}
		c := *out[j]
		c.Source = m.Source
		out[j] = &c
	}
	return out, nil
}

// fast tells whether the fast spawner makes generations of t now.
func (t *fastTemplate) fast() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.why == "" && (t.cfg.Seccomp == nil || t.seccomp != nil)
}

// reason says why the fast spawner does not make generations of t now.
func (t *fastTemplate) reason() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.why == "" && t.cfg.Seccomp != nil && t.seccomp == nil {
		return "its seccomp program is taken from this generation"
	}
	return t.why
}

// wantsFilter tells whether t only waits for its seccomp program.
func (t *fastTemplate) wantsFilter() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.why == "" && t.cfg.Seccomp != nil && t.seccomp == nil
}

// harvestFilter takes t's seccomp program from g, a generation libcontainer
// made from t: the fast spawner loads exactly the program libcontainer built,
// ENOSYS stub and all. When it cannot be read, t stays with libcontainer.
func (t *fastTemplate) harvestFilter(e *Engine, g *Gen) {
	var f *seccompFilter
	server, err := e.forkServer()
	if err == nil {
		// The init's main thread is the one that execs: it has the filter.
		f, err = server.readFilter(g.Init.Pid())
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		t.why = "seccomp program unreadable: " + err.Error()
		return
	}
	t.seccomp = f
}

// Fast tells whether the fast spawner makes the generations of the
// template named key (see Config.Template); known is false until one of them
// has been made.
func (e *Engine) Fast(key string) (fast, known bool) {
	if e.spawner != SpawnerFast {
		return false, true
	}
	e.mu.Lock()
	t, ok := e.templates[key]
	e.mu.Unlock()
	if !ok {
		return false, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.why == "", true
}

// template returns the fast spawner's view of cfg's template, converting
// the spec the first time.
func (e *Engine) template(cfg Config) (*fastTemplate, error) {
	if cfg.Template != "" {
		e.mu.Lock()
		t, ok := e.templates[cfg.Template]
		e.mu.Unlock()
		if ok {
			return t, nil
		}
	}
	lcfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		CgroupName:       cfg.ID,
		UseSystemdCgroup: systemdCgroupsPath(cfg.Spec),
		Spec:             cfg.Spec,
	})
	if err != nil {
		return nil, fmt.Errorf("convert spec of %s: %w", cfg.ID, err)
	}
	t := &fastTemplate{cfg: lcfg, why: unsupported(lcfg, cfg.Spec.Process), mounts: slices.Clone(cfg.Spec.Mounts)}
	if cfg.Spec.Linux != nil {
		t.namespaces = slices.Clone(cfg.Spec.Linux.Namespaces)
	}
	if t.why == "" && cfg.Tty {
		t.why = "terminal"
	}
	if cfg.Template != "" {
		e.mu.Lock()
		if old, ok := e.templates[cfg.Template]; ok {
			t = old
		} else {
			// Templates change only with a pod's specs: a few per
			// container. Forget them all now and then.
			if len(e.templates) >= 256 {
				clear(e.templates)
			}
			e.templates[cfg.Template] = t
		}
		e.mu.Unlock()
	}
	return t, nil
}

// fastGen is what a generation made by the fast spawner holds beyond Gen.
type fastGen struct {
	engine  *Engine
	cfg     *configs.Config
	cgroups cgroups.Manager
	created time.Time
	// release is the write end of the init's release pipe.
	release *os.File
	// execed is closed once the init has exec'd the command (or died).
	execed chan struct{}
	// phases are the init's timestamps (CLOCK_MONOTONIC) at the end of
	// each set-up phase, and around it on the shim's side.
	phases Phases

	// adoptMu guards adopted.
	adoptMu sync.Mutex
	adopted bool
}

// Phases is how long the steps of a fast generation's creation took.
type Phases struct {
	// Steps in order: name and duration.
	Steps []PhaseTime
}

// PhaseTime is one step of Phases.
type PhaseTime struct {
	Name string
	D    time.Duration
}

// Phases returns the steps of the generation's creation, for a generation
// the fast spawner made; none otherwise.
func (g *Gen) Phases() Phases {
	if g.fast == nil {
		return Phases{}
	}
	return g.fast.phases
}

// monotonic is CLOCK_MONOTONIC, which the init's timestamps use.
func monotonic() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// cgroupManager returns the cgroup manager of a generation's cgroup c, the
// one libcontainer would use. Finding each hierarchy's mount point takes the
// library a read of the mount table per hierarchy; the engine learns them
// from its first generation and hands the library the paths after that.
func (e *Engine) cgroupManager(c *cgroups.Cgroup) (cgroups.Manager, error) {
	e.mu.Lock()
	roots := e.cgroupRoots
	e.mu.Unlock()
	if roots != nil {
		paths := make(map[string]string, len(roots))
		for sub, root := range roots {
			paths[sub] = root + c.Path
		}
		return manager.NewWithPaths(c, paths)
	}
	m, err := manager.New(c)
	if err != nil {
		return nil, err
	}
	roots = map[string]string{}
	for sub, p := range m.GetPaths() {
		root, ok := strings.CutSuffix(p, c.Path)
		if !ok {
			return m, nil
		}
		roots[sub] = root
	}
	e.mu.Lock()
	e.cgroupRoots = roots
	e.mu.Unlock()
	return m, nil
}

// devNull returns the engine's descriptor of /dev/null, the stdin of
// containers without one (as os/exec gives its children); -1 if it cannot be
// opened.
func (e *Engine) devNull() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.null == nil {
		f, err := os.Open(os.DevNull)
		if err != nil {
			return -1
		}
		e.null = f
	}
	return int(e.null.Fd())
}

// server returns the engine's fork server, starting it.
func (e *Engine) forkServer() (*forkServer, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.server != nil {
		select {
		case <-e.server.done:
			e.server = nil
		default:
			return e.server, nil
		}
	}
	s, err := startForkServer()
	if err != nil {
		return nil, err
	}
	e.server = s
	return s, nil
}

// createFast creates generation cfg of template t with the fork server.
func (e *Engine) createFast(cfg Config, t *fastTemplate) (_ *Gen, retErr error) {
	t0 := monotonic()
	var restore *unix.SchedAttr
	if cfg.Idle {
		// The shim's part runs idle; the init sets itself idle (its
		// server is not), and the clone itself runs at the caller's
		// priority, below.
		var done func()
		restore, done = IdleThread()
		defer done()
	}
	server, err := e.forkServer()
	if err != nil {
		return nil, err
	}
	lcfg := *t.cfg
	cg := *t.cfg.Cgroups
	cg.Path = cfg.Spec.Linux.CgroupsPath
	lcfg.Cgroups = &cg
	lcfg.Rootfs = cfg.Spec.Root.Path
	if lcfg.Mounts, err = t.mountsFor(cfg.Spec.Mounts); err != nil {
		return nil, err
	}
	if lcfg.Namespaces, err = t.namespacesFor(cfg.Spec.Linux.Namespaces); err != nil {
		return nil, err
	}
	t.mu.Lock()
	filter := t.seccomp
	t.mu.Unlock()

	cgm, err := e.cgroupManager(lcfg.Cgroups)
	if err != nil {
		return nil, fmt.Errorf("cgroup of %s: %w", cfg.ID, err)
	}
	if err := cgm.Apply(-1); err != nil {
		_ = cgm.Destroy()
		return nil, fmt.Errorf("create cgroup of %s: %w", cfg.ID, err)
	}
	defer func() {
		if retErr != nil {
			_ = cgm.Destroy()
		}
	}()
	if err := cgm.Set(lcfg.Cgroups.Resources); err != nil {
		return nil, fmt.Errorf("set cgroup limits of %s: %w", cfg.ID, err)
	}
	t1 := monotonic()

	paths := cgm.GetPaths()
	in := &planInput{id: cfg.ID, cfg: &lcfg, proc: cfg.Spec.Process, seccomp: filter, idle: cfg.Idle}
	req := &request{rootfs: lcfg.Rootfs, stdin: -1, stdout: -1, stderr: -1, status: -1, release: -1, cgroup: -1}
	unified := cgroups.IsCgroup2UnifiedMode()
	if unified {
		dir, err := os.OpenFile(paths[""], unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open cgroup of %s: %w", cfg.ID, err)
		}
		defer dir.Close()
		req.cgroup = int(dir.Fd())
	} else {
		for _, p := range paths {
			if p != "" && !slices.Contains(in.joins, p) {
				in.joins = append(in.joins, p)
			}
		}
		slices.Sort(in.joins)
		for _, m := range lcfg.Mounts {
			if m.Device == "cgroup" {
				if in.cgroupBinds, err = cgroupBindsFor(filepath.Clean(m.Destination), paths); err != nil {
					return nil, fmt.Errorf("cgroup mounts of %s: %w", cfg.ID, err)
				}
			}
		}
	}
	req.cloneFlags, req.pidNS, req.plan, err = buildPlan(in)
	if err != nil {
		return nil, fmt.Errorf("plan %s: %w", cfg.ID, err)
	}
	t2 := monotonic()

	// The init's ends of its pipes are plain descriptors, closed once the
	// server has them; the shim's ends are files (polled by the runtime,
	// where it reads them).
	var childFDs []int
	defer func() {
		for _, fd := range childFDs {
			_ = unix.Close(fd)
		}
	}()
	var stdio Stdio
	var statusR, releaseW *os.File
	defer func() {
		if retErr != nil {
			stdio.Close()
			if statusR != nil {
				statusR.Close()
			}
			if releaseW != nil {
				releaseW.Close()
			}
		}
	}()
	// pipe returns a pipe's ends: the shim's as a file, the init's as a
	// descriptor. forWrite says which end is the shim's.
	pipe := func(name string, shimWrites, poll bool) (*os.File, int, error) {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			return nil, -1, fmt.Errorf("create %s pipe: %w", name, err)
		}
		shim, child := p[0], p[1]
		if shimWrites {
			shim, child = p[1], p[0]
		}
		childFDs = append(childFDs, child)
		if poll {
			_ = unix.SetNonblock(shim, true)
		}
		return os.NewFile(uintptr(shim), name), child, nil
	}
	if cfg.Stdin {
		if stdio.Stdin, req.stdin, err = pipe("stdin", true, true); err != nil {
			return nil, err
		}
	} else {
		req.stdin = e.devNull()
		if req.stdin < 0 {
			return nil, fmt.Errorf("create container %s: open %s", cfg.ID, os.DevNull)
		}
	}
	if stdio.Stdout, req.stdout, err = pipe("stdout", false, true); err != nil {
		return nil, err
	}
	if stdio.Stderr, req.stderr, err = pipe("stderr", false, true); err != nil {
		return nil, err
	}
	if statusR, req.status, err = pipe("status", false, true); err != nil {
		return nil, err
	}
	if releaseW, req.release, err = pipe("release", true, false); err != nil {
		return nil, err
	}

	if restore != nil {
		// The server is shared: never hold it from an idle thread.
		_ = unix.SchedSetAttr(0, restore, 0)
	}
	pid, err := server.spawn(req)
	if restore != nil {
		idle := *restore
		idle.Policy, idle.Nice = unix.SCHED_IDLE, 0
		_ = unix.SchedSetAttr(0, &idle, 0)
	}
	for _, fd := range childFDs {
		_ = unix.Close(fd)
	}
	childFDs = nil
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", cfg.ID, err)
	}
	t3 := monotonic()
	proc, err := os.FindProcess(pid)
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", cfg.ID, err)
	}
	p := &Proc{lp: proc, pid: pid, IO: stdio, done: make(chan struct{})}
	go p.wait()
	fail := func(err error) (*Gen, error) {
		_ = proc.Signal(unix.SIGKILL)
		<-p.done
		return nil, fmt.Errorf("create container %s: %w", cfg.ID, err)
	}
	// 'R' and the init's phase timestamps, or 'E' and an error.
	msg := make([]byte, 4096)
	n, err := statusR.Read(msg)
	if err != nil && !errors.Is(err, io.EOF) {
		return fail(err)
	}
	msg = msg[:n]
	switch {
	case n > 0 && msg[0] == 'E':
		return fail(errors.New(string(msg[1:])))
	case n != 1+8*32 || msg[0] != 'R':
		return fail(fmt.Errorf("init died before it was ready (%d bytes of status)", n))
	}
	t4 := monotonic()
	fg := &fastGen{engine: e, cfg: &lcfg, cgroups: cgm, created: time.Now().UTC(), release: releaseW, execed: make(chan struct{})}
	fg.phases = phasesOf(t0, t1, t2, t3, t4, msg[1:])
	go func() {
		// The status pipe closes at the exec (close-on-exec) or death.
		_, _ = io.Copy(io.Discard, statusR)
		statusR.Close()
		close(fg.execed)
	}()
	g := &Gen{ID: cfg.ID, Init: p, fast: fg, ownPIDNS: lcfg.Namespaces.IsPrivate(configs.NEWPID)}
	g.mountNS, _ = os.Open(fmt.Sprintf("/proc/%d/ns/mnt", pid))
	if restore != nil && cfg.Spec.Process.Scheduler == nil {
		g.restore = restore
	}
	if dir, ok := paths["memory"]; ok {
		g.oomFile, g.oomKey = filepath.Join(dir, "memory.oom_control"), "oom_kill"
	} else if dir, ok := paths[""]; ok && unified {
		g.oomFile, g.oomKey = filepath.Join(dir, "memory.events"), "oom_kill"
	}
	return g, nil
}

// phasesOf turns the shim's and the init's timestamps into steps.
func phasesOf(t0, t1, t2, t3, t4 int64, initTimes []byte) Phases {
	var ph Phases
	add := func(name string, from, to int64) {
		if from > 0 && to >= from {
			ph.Steps = append(ph.Steps, PhaseTime{Name: name, D: time.Duration(to - from)})
		}
	}
	add("shim:cgroup-create", t0, t1)
	add("shim:plan", t1, t2)
	add("server:clone", t2, t3)
	init := make([]int64, numPhases)
	for i := range init {
		init[i] = int64(binary.NativeEndian.Uint64(initTimes[8*i:]))
	}
	add("init:fork-to-start", t3, init[phaseStart])
	prev := init[phaseStart]
	for i := phaseStart + 1; i < numPhases; i++ {
		add("init:"+phaseNames[i], prev, init[i])
		if init[i] > 0 {
			prev = init[i]
		}
	}
	add("shim:ready", prev, t4)
	return ph
}

func (g *Gen) releaseFast() error {
	if g.restore != nil {
		if err := unix.SchedSetAttr(g.Init.Pid(), g.restore, 0); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("release %s: restore scheduling policy: %w", g.ID, err)
		}
	}
	_, err := g.fast.release.Write([]byte{1})
	g.fast.release.Close()
	if err != nil {
		return fmt.Errorf("release %s: %w", g.ID, err)
	}
	return nil
}

// signalAll sends sig to every process of a cgroup, as libcontainer does
// for a container without a pid namespace of its own.
func signalAll(m cgroups.Manager, sig unix.Signal) error {
	if !m.Exists() {
		return nil
	}
	if sig == unix.SIGKILL {
		if p := m.Path(""); p != "" {
			err := cgroups.WriteFile(p, "cgroup.kill", "1")
			if err == nil || !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	_ = m.Freeze(cgroups.Frozen)
	pids, err := m.GetAllPids()
	if err == nil {
		for _, pid := range pids {
			_ = unix.Kill(pid, sig)
		}
	}
	_ = m.Freeze(cgroups.Thawed)
	return err
}

func (g *Gen) destroyFast() error {
	g.fast.release.Close()
	g.fast.adoptMu.Lock()
	adopted := g.fast.adopted
	g.fast.adoptMu.Unlock()
	if adopted {
		if err := g.lc.Destroy(); err != nil {
			return fmt.Errorf("destroy %s: %w", g.ID, err)
		}
		return nil
	}
	if err := g.fast.cgroups.Destroy(); err != nil {
		return fmt.Errorf("destroy %s: %w", g.ID, err)
	}
	return nil
}

// updateFast sets new limits on the cgroup of a fast generation that
// libcontainer has not adopted.
// Preconditions: g.fast.adoptMu held.
func (g *Gen) updateFast(res *specs.LinuxResources) error {
	cg, err := specconv.CreateCgroupConfig(&specconv.CreateOpts{
		CgroupName: g.ID,
		Spec:       &specs.Spec{Linux: &specs.Linux{CgroupsPath: g.fast.cfg.Cgroups.Path, Resources: res}},
	}, nil)
	if err != nil {
		return fmt.Errorf("update %s: convert resources: %w", g.ID, err)
	}
	old := g.fast.cfg.Cgroups.Resources
	cg.Devices = old.Devices
	cg.SkipDevices = old.SkipDevices
	if err := g.fast.cgroups.Set(cg.Resources); err != nil {
		return fmt.Errorf("update %s: %w", g.ID, err)
	}
	c := *g.fast.cfg.Cgroups
	c.Resources = cg.Resources
	g.fast.cfg.Cgroups = &c
	return nil
}

// libcontainer returns the libcontainer container of g. A fast generation
// is adopted the first time: libcontainer loads it from a state file
// written the way libcontainer writes its own, so that exec, which only
// libcontainer does, joins exactly this container.
func (g *Gen) libcontainer() (*libcontainer.Container, error) {
	if g.fast == nil {
		return g.lc, nil
	}
	g.fast.adoptMu.Lock()
	defer g.fast.adoptMu.Unlock()
	if g.fast.adopted {
		return g.lc, nil
	}
	pid := g.Init.Pid()
	start, err := startTime(pid)
	if err != nil {
		return nil, fmt.Errorf("adopt %s: %w", g.ID, err)
	}
	st := libcontainer.State{
		BaseState: libcontainer.BaseState{
			ID:                   g.ID,
			InitProcessPid:       pid,
			InitProcessStartTime: start,
			Created:              g.fast.created,
			Config:               *g.fast.cfg,
		},
		CgroupPaths:    g.fast.cgroups.GetPaths(),
		NamespacePaths: map[configs.NamespaceType]string{},
	}
	for _, ns := range g.fast.cfg.Namespaces {
		st.NamespacePaths[ns.Type] = ns.GetPath(pid)
	}
	for _, t := range configs.NamespaceTypes() {
		if _, ok := st.NamespacePaths[t]; !ok && configs.IsNamespaceSupported(t) {
			st.NamespacePaths[t] = (&configs.Namespace{Type: t}).GetPath(pid)
		}
	}
	data, err := json.Marshal(&st)
	if err != nil {
		return nil, fmt.Errorf("adopt %s: %w", g.ID, err)
	}
	dir := filepath.Join(g.fast.engine.root, g.ID)
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, fmt.Errorf("adopt %s: %w", g.ID, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "state.json"), data, 0o600); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("adopt %s: %w", g.ID, err)
	}
	lc, err := libcontainer.Load(g.fast.engine.root, g.ID)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("adopt %s: %w", g.ID, err)
	}
	g.lc = lc
	g.fast.adopted = true
	return lc, nil
}

// startTime reads a process's start time (clock ticks after boot), which
// libcontainer checks to tell a container's init from a reused pid.
func startTime(pid int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(string(data[i+1:]))
	// Field 22 of stat; f[0] is field 3.
	if len(f) < 20 {
		return 0, errors.New("malformed stat")
	}
	return strconv.ParseUint(f[19], 10, 64)
}
