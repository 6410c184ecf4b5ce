package container

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/cgroups/systemd"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	// Device cgroup rules are only applied when this package is linked in.
	_ "github.com/opencontainers/cgroups/devices"
)

// Engine creates containers whose libcontainer state lives under one
// directory (a pod's state dir, in the shim).
type Engine struct {
	root    string
	spawner string

	// mu guards the fields below.
	mu     sync.Mutex
	server *forkServer
	// null is /dev/null, opened once for the fast spawner.
	null *os.File
	// cgroupRoots are the cgroup hierarchies' roots (subsystem → dir) the
	// fast spawner's generations get their cgroups in.
	cgroupRoots map[string]string
	// templates caches, per Config.Template, what the fast spawner makes
	// of a template: its libcontainer config, whether it can make it and
	// its seccomp program.
	templates map[string]*fastTemplate
}

// Spawners: how generations are created.
const (
	// SpawnerLibcontainer creates every generation with libcontainer,
	// which re-executes the binary as each container's init.
	SpawnerLibcontainer = "libcontainer"
	// SpawnerFast forks each generation from a per-pod fork server and
	// sets it up from a plan prepared once per container template (see
	// spawner_linux.c); configurations it does not support go to
	// libcontainer.
	SpawnerFast = "fast"
)

// Options configure an Engine.
type Options struct {
	// Spawner is SpawnerLibcontainer (the default, also for "") or
	// SpawnerFast.
	Spawner string
}

// ValidSpawner tells whether name names a spawner.
func ValidSpawner(name string) bool {
	return name == "" || name == SpawnerLibcontainer || name == SpawnerFast
}

// NewEngine returns an engine keeping libcontainer state under root.
func NewEngine(root string, opts Options) (*Engine, error) {
	if !ValidSpawner(opts.Spawner) {
		return nil, fmt.Errorf("unknown spawner %q (want %s or %s)", opts.Spawner, SpawnerLibcontainer, SpawnerFast)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("create container state dir: %w", err)
	}
	if opts.Spawner == "" {
		opts.Spawner = SpawnerLibcontainer
	}
	return &Engine{root: root, spawner: opts.Spawner, templates: map[string]*fastTemplate{}}, nil
}

// Close stops the engine's fork server, if it started one. Generations
// already created are not affected.
func (e *Engine) Close() {
	e.mu.Lock()
	s := e.server
	e.server = nil
	if e.null != nil {
		e.null.Close()
		e.null = nil
	}
	e.mu.Unlock()
	if s != nil {
		s.close()
	}
}

// Config describes one container generation.
type Config struct {
	// ID names the libcontainer instance; unique per generation.
	ID string
	// Spec must be complete: Root.Path and Linux.CgroupsPath set.
	Spec  *specs.Spec
	Tty   bool
	Stdin bool
	// Idle creates the container with the idle CPU scheduling policy: the
	// work runs only on CPU time nothing else wants, and a created process
	// keeps that policy until Release restores the creator's.
	Idle bool
	// Template, when set, names the spec the generation is made from:
	// generations with the same Template have the same spec but for
	// Root.Path, Linux.CgroupsPath, mount sources (files of a generation's
	// own) and namespace paths (another container's namespace, joined
	// through a path of the moment), and the fast spawner prepares it once.
	// A generation whose mounts or namespaces differ in more than that is
	// left to libcontainer.
	Template string
}

// Gen is one created container: its init process exists, set up and blocked
// before execve, until Release.
//
//	Create ──▶ created ──Release──▶ running ──exit──▶ exited ──Destroy──▶ gone
//	              └───────────Kill──────────────────────▶┘
type Gen struct {
	ID   string
	Init *Proc
	lc   *libcontainer.Container
	// ownPIDNS tells whether the container has a pid namespace of its own,
	// where killing its init kills every process in it.
	ownPIDNS bool
	// mountNS keeps the container's mount namespace alive past its
	// processes: without it the last exit tears down every mount of the
	// container (rootfs, /proc, masked paths...) before the exit is
	// reported, which is most of a short-lived init container's run. The
	// teardown happens in Destroy instead, off the reset path.
	mountNS *os.File
	// execed is set once the released process was seen running the
	// container's command.
	execed atomic.Bool
	// swept is set once every process of a container without a pid
	// namespace of its own was killed.
	swept atomic.Bool
	// restore is the scheduling policy the init process gets back at
	// Release, when it was created idle.
	restore *unix.SchedAttr
	// oomFile and oomKey locate the kernel's OOM kill counter of the
	// container's memory cgroup, found once at create: asking libcontainer
	// for its state after an exit costs up to milliseconds, on the reset path.
	oomFile, oomKey string
	// fast is set for a generation the fast spawner made; lc is then nil
	// until an operation only libcontainer has (exec) adopts it.
	fast *fastGen
	// leftBecause says why an engine with the fast spawner left g to
	// libcontainer.
	leftBecause string
}

// Create creates a container and leaves its process blocked before execve.
// On error nothing is left behind.
func (e *Engine) Create(cfg Config) (*Gen, error) {
	if e.spawner != SpawnerFast {
		return e.createLibcontainer(cfg)
	}
	t, err := e.template(cfg)
	if err != nil {
		return nil, err
	}
	why := ""
	if t.fast() {
		g, err := e.createFast(cfg, t)
		if !errors.Is(err, errTemplateDiffers) {
			return g, err
		}
		why = err.Error()
	}
	g, err := e.createLibcontainer(cfg)
	if err != nil {
		return nil, err
	}
	g.leftBecause = t.reason()
	if why != "" {
		g.leftBecause = why
	}
	if t.wantsFilter() {
		t.harvestFilter(e, g)
	}
	return g, nil
}

// Spawner names the spawner that made g and, when the engine's spawner is
// the fast one and it left g to libcontainer, why.
func (g *Gen) Spawner() (name, why string) {
	if g.fast != nil {
		return SpawnerFast, ""
	}
	return SpawnerLibcontainer, g.leftBecause
}

// createLibcontainer creates a container with libcontainer.
func (e *Engine) createLibcontainer(cfg Config) (_ *Gen, retErr error) {
	var restore *unix.SchedAttr
	if cfg.Idle {
		// Processes inherit the policy of the thread that forks them, so
		// all of the creation, child included, runs idle.
		var done func()
		restore, done = IdleThread()
		defer done()
	}
	lcfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		CgroupName:       cfg.ID,
		UseSystemdCgroup: systemdCgroupsPath(cfg.Spec),
		Spec:             cfg.Spec,
	})
	if err != nil {
		return nil, fmt.Errorf("convert spec of %s: %w", cfg.ID, err)
	}
	lc, err := libcontainer.Create(e.root, cfg.ID, lcfg)
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", cfg.ID, err)
	}
	defer func() {
		if retErr != nil {
			_ = lc.Signal(unix.SIGKILL)
			_ = lc.Destroy()
		}
	}()
	lp, err := newProcess(cfg.Spec.Process)
	if err != nil {
		return nil, fmt.Errorf("process of %s: %w", cfg.ID, err)
	}
	lp.Init = true
	p, err := startProc(lp, cfg.Tty, cfg.Stdin, lc.Start)
	if err != nil {
		return nil, fmt.Errorf("start init of %s: %w", cfg.ID, err)
	}
	g := &Gen{ID: cfg.ID, Init: p, lc: lc, ownPIDNS: lcfg.Namespaces.IsPrivate(configs.NEWPID)}
	if lcfg.Namespaces.IsPrivate(configs.NEWNS) {
		// Best effort: without it exits are merely slower.
		g.mountNS, _ = os.Open(fmt.Sprintf("/proc/%d/ns/mnt", p.Pid()))
	}
	if restore != nil && cfg.Spec.Process.Scheduler == nil {
		g.restore = restore
	}
	if st, err := lc.State(); err == nil {
		if dir, ok := st.CgroupPaths["memory"]; ok {
			g.oomFile, g.oomKey = filepath.Join(dir, "memory.oom_control"), "oom_kill"
		} else if dir, ok := st.CgroupPaths[""]; ok {
			g.oomFile, g.oomKey = filepath.Join(dir, "memory.events"), "oom_kill"
		}
	}
	return g, nil
}

// startProc wires stdio, runs start and begins waiting for the process.
func startProc(lp *libcontainer.Process, tty, stdin bool, start func(*libcontainer.Process) error) (*Proc, error) {
	child, stdio, err := setupIO(lp, tty, stdin)
	if err != nil {
		return nil, err
	}
	if err := start(lp); err != nil {
		child.close()
		if child.console != nil {
			child.console.Close()
		}
		stdio.Close()
		return nil, err
	}
	child.close()
	// abandon ends a started process that cannot be handed out.
	abandon := func(err error) (*Proc, error) {
		_ = lp.Signal(unix.SIGKILL)
		_, _ = lp.Wait()
		stdio.Close()
		return nil, err
	}
	p := &Proc{lp: lp, done: make(chan struct{})}
	if child.console != nil {
		c, err := receiveConsole(child.console)
		if err != nil {
			return abandon(err)
		}
		stdio.Console = c
	}
	p.IO = stdio
	if p.pid, err = lp.Pid(); err != nil {
		return abandon(fmt.Errorf("pid: %w", err))
	}
	go p.wait()
	return p, nil
}

// IdleThread locks the calling goroutine to its thread and gives the thread
// the idle CPU scheduling policy: what it does from then on, processes it
// starts included, runs only on CPU time nothing else wants. restore gives
// the thread its policy back and unlocks it; old is that policy (nil when
// the policy could not be changed).
func IdleThread() (old *unix.SchedAttr, restore func()) {
	runtime.LockOSThread()
	attr, err := unix.SchedGetAttr(0, 0)
	if err != nil {
		return nil, runtime.UnlockOSThread
	}
	idle := *attr
	idle.Policy = unix.SCHED_IDLE
	idle.Nice = 0
	if unix.SchedSetAttr(0, &idle, 0) != nil {
		return nil, runtime.UnlockOSThread
	}
	return attr, func() {
		_ = unix.SchedSetAttr(0, attr, 0)
		runtime.UnlockOSThread()
	}
}

// Release lets the blocked init process exec the container's command.
func (g *Gen) Release() error {
	if g.fast != nil {
		return g.releaseFast()
	}
	if g.restore != nil {
		// The thread that will exec the command is the init's main thread
		// (tid == pid). The others end at execve, but the exec waits for
		// them to exit, which idle threads do slowly on a busy CPU: they
		// get the policy back too.
		if err := unix.SchedSetAttr(g.Init.Pid(), g.restore, 0); err != nil {
			return fmt.Errorf("release %s: restore scheduling policy: %w", g.ID, err)
		}
		if tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", g.Init.Pid())); err == nil {
			for _, t := range tasks {
				if tid, err := strconv.Atoi(t.Name()); err == nil && tid != g.Init.Pid() {
					_ = unix.SchedSetAttr(tid, g.restore, 0)
				}
			}
		}
	}
	if err := g.lc.Exec(); err != nil {
		return fmt.Errorf("release %s: %w", g.ID, err)
	}
	return nil
}

// Kill sends SIGKILL to the container; without a pid namespace of its own
// every process in its cgroup is killed, also after its init has exited:
// processes the init left behind end with it, as they would in a pid
// namespace of its own.
func (g *Gen) Kill() error {
	select {
	case <-g.Init.Done():
		if g.ownPIDNS || g.swept.Load() {
			return nil
		}
	default:
	}
	if g.ownPIDNS {
		// The kernel ends the whole namespace with its init. Signalling the
		// process directly (through its pidfd) skips libcontainer's state
		// and freezer checks, which cost ~0.1 ms on the reset path.
		return g.Init.Signal(unix.SIGKILL)
	}
	if g.fast != nil {
		if err := signalAll(g.fast.cgroups, unix.SIGKILL); err != nil {
			return fmt.Errorf("kill %s: %w", g.ID, err)
		}
	} else if err := g.lc.Signal(unix.SIGKILL); err != nil && !errors.Is(err, libcontainer.ErrNotRunning) {
		return fmt.Errorf("kill %s: %w", g.ID, err)
	}
	// The cgroup was frozen while its processes were killed: none is left
	// that could start another.
	g.swept.Store(true)
	return nil
}

// Signal sends sig to the container's init process. A signal other than
// SIGKILL waits until the released process has exec'd the container's
// command: libcontainer lets go of it a moment before the execve, and a
// signal in between would end the runtime's own init code instead of
// reaching the command's handler (a process that traps SIGTERM to shut down
// cleanly would just die).
//
// The init of a pid namespace of its own gets only the signals it handles:
// the kernel drops the others. A command that has not installed its handler
// yet (a shell that is about to exec the real program, a program still
// starting) would lose the signal for good; it is sent again the moment the
// process handles it.
func (g *Gen) Signal(sig syscall.Signal) error {
	if sig == unix.SIGKILL {
		return g.Kill()
	}
	g.awaitExec()
	pid := g.Init.Pid()
	handled := !g.ownPIDNS || handles(pid, sig)
	if err := g.Init.Signal(sig); err != nil {
		return err
	}
	if !handled {
		go g.resendWhenHandled(sig)
	}
	return nil
}

// resendWhenHandled sends sig again once the init process handles it,
// unless it exits first.
func (g *Gen) resendWhenHandled(sig syscall.Signal) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-g.Init.Done():
			return
		case <-tick.C:
		}
		if handles(g.Init.Pid(), sig) {
			_ = g.Init.Signal(sig)
			return
		}
	}
}

// handles tells whether process pid has a handler for sig (SigCgt in its
// status).
func handles(pid int, sig syscall.Signal) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "SigCgt:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && mask&(1<<(uint(sig)-1)) != 0
		}
	}
	return false
}

// initComm is the name libcontainer gives a container's init process
// until it execs the command.
const initComm = "runc:[2:INIT]"

// awaitExec waits, briefly, until the init process runs the container's
// command. Only called after Release; cheap once it has seen the exec.
func (g *Gen) awaitExec() {
	if g.execed.Load() {
		return
	}
	if g.fast != nil {
		select {
		case <-g.fast.execed:
		case <-g.Init.Done():
		case <-time.After(time.Second):
		}
		g.execed.Store(true)
		return
	}
	path := fmt.Sprintf("/proc/%d/comm", g.Init.Pid())
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Microsecond) {
		select {
		case <-g.Init.Done():
			return
		default:
		}
		comm, err := os.ReadFile(path)
		if err != nil || strings.TrimSpace(string(comm)) != initComm {
			g.execed.Store(true)
			return
		}
	}
}

// Exec starts another process in the running container.
func (g *Gen) Exec(p *specs.Process, tty, stdin bool) (*Proc, error) {
	lc, err := g.libcontainer()
	if err != nil {
		if g.initGone() {
			// A fast generation is adopted from its live init.
			return nil, fmt.Errorf("exec in %s: the container's process exited meanwhile: %w: %w", g.ID, err, errdefs.ErrFailedPrecondition)
		}
		return nil, fmt.Errorf("exec in %s: %w", g.ID, err)
	}
	lp, err := newProcess(p)
	if err != nil {
		return nil, err
	}
	proc, err := startProc(lp, tty, stdin, lc.Run)
	if err != nil {
		if g.initGone() {
			// The kernel kills a process that joins a pid namespace whose
			// init is exiting: the exec lost a race with the container's
			// end (a stop, a reset), which is the caller's precondition,
			// not a failure of the runtime.
			return nil, fmt.Errorf("exec in %s: the container's process exited meanwhile: %w: %w", g.ID, err, errdefs.ErrFailedPrecondition)
		}
		return nil, fmt.Errorf("exec in %s: %w", g.ID, err)
	}
	return proc, nil
}

// initGone tells whether the generation's init process has exited or is
// exiting.
func (g *Gen) initGone() bool {
	select {
	case <-g.Init.Done():
		return true
	default:
	}
	if g.lc != nil {
		// A fast generation that libcontainer has not adopted has none.
		if st, err := g.lc.Status(); err != nil || st == libcontainer.Stopped {
			return true
		}
	}
	return exiting(g.Init.Pid())
}

// pfExiting is the kernel's PF_EXITING task flag: set as a process starts
// to exit, before it is a zombie, and kept until it is reaped.
const pfExiting = 0x4

// exiting tells whether process pid is gone, exiting or a zombie, from the
// flags of /proc/<pid>/stat.
func exiting(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// The command name, in parentheses, may hold spaces; the flags are
	// the seventh field after it.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return false
	}
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 7 {
		return false
	}
	flags, err := strconv.ParseUint(fields[6], 10, 64)
	return err == nil && flags&pfExiting != 0
}

// CgroupPath returns the container's cgroup path relative to the cgroup
// root, the same on v1 and v2; under the systemd driver, where it is its
// scope in the pod's slice, the path systemd gives that scope.
func (g *Gen) CgroupPath() string {
	if g.fast != nil {
		return g.fast.cfg.Cgroups.Path
	}
	cfg := g.lc.Config()
	if cfg.Cgroups == nil {
		return ""
	}
	if c := cfg.Cgroups; c.Systemd {
		parent, err := systemd.ExpandSlice(c.Parent)
		if err != nil {
			return ""
		}
		return path.Join(parent, c.ScopePrefix+"-"+c.Name+".scope")
	}
	return cfg.Cgroups.Path
}

// systemdCgroupsPath tells whether spec places the container the way the
// systemd cgroup driver does, "slice:prefix:name", for runc's systemd
// cgroup manager, which has systemd create the container's scope.
func systemdCgroupsPath(spec *specs.Spec) bool {
	if spec == nil || spec.Linux == nil {
		return false
	}
	slice, _, ok := strings.Cut(spec.Linux.CgroupsPath, ":")
	return ok && strings.HasSuffix(slice, ".slice")
}

// OOMKilled reports whether the kernel's OOM killer killed a process of the
// container. Call it after exit and before Destroy.
func (g *Gen) OOMKilled() bool {
	return g.oomFile != "" && counter(g.oomFile, g.oomKey) > 0
}

func counter(file, key string) int64 {
	f, err := os.Open(file)
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		k, v, ok := strings.Cut(s.Text(), " ")
		if ok && k == key {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// Destroy kills what is left of the container and removes its cgroup and
// libcontainer state. It waits for the init process to be reaped. The
// caller owns Init.IO and closes it once it has drained the output.
func (g *Gen) Destroy() error {
	if err := g.Kill(); err != nil {
		return err
	}
	<-g.Init.Done()
	if g.mountNS != nil {
		g.mountNS.Close()
		g.mountNS = nil
	}
	if g.fast != nil {
		return g.destroyFast()
	}
	if err := g.lc.Destroy(); err != nil {
		return fmt.Errorf("destroy %s: %w", g.ID, err)
	}
	return nil
}
