package integration

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	warmpodv1 "github.com/warmpod/warmpod/api/warmpod/v1"
	"github.com/warmpod/warmpod/integration/launch"
)

// TestLoad's shape. The clients run for -load.duration: 20 s in the
// integration suite, longer with make soak.
var (
	loadDuration = flag.Duration("load.duration", 20*time.Second, "how long TestLoad's clients run (make soak: 5m)")
	loadKeep     = flag.String("load.keep", "", "TestLoad: when it fails, copy the daemon's and shims' logs and the race reports here")
	// The clients pause between calls, a random time around
	// -load.think: 50 clients calling back to back keep a 2-core machine
	// saturated, and each call then waits behind the others (tens of
	// seconds) however well the daemon does.
	loadThink = flag.Duration("load.think", time.Second, "TestLoad: mean pause of a client between calls")
)

const (
	loadPods        = 20
	loadClients     = 50
	loadSubscribers = 4 // of the clients: GetContainerEvents subscribers
	// loadRulePods of the pods restart all their containers themselves
	// (warmpod's restart rules), concurrently with the clients' calls.
	loadRulePods = 5
	// loadMaxContainers bounds a pod's containers: creates turn into
	// removes above it.
	loadMaxContainers = 6
	// loadExtraNames are the names, beside its base containers', that the
	// clients create containers under in a pod.
	loadExtraNames = 2
	// loadCallDeadline bounds every call; loadStuckAfter is when the
	// watchdog takes a call in flight for a deadlock and dumps the
	// daemon's goroutines, before the client would give up. Both are
	// far above the slowest calls of a loaded 2-core machine (a reset
	// behind 50 clients and the race detector: p99 about 10 s): a call
	// still in flight after minutes waits for something that never
	// comes, on any machine.
	loadCallDeadline = 4 * time.Minute
	loadStuckAfter   = 3 * time.Minute
)

// TestLoad drives a daemon built with the race detector (its shims run the
// same binary) with 50 concurrent clients on 20 pods for a while: they
// create, start, stop, remove and recreate containers, exec into them,
// reset pods, replace whole pods, read statuses, lists and stats, and
// follow GetContainerEvents, each over a connection of its own, against
// pods some of which reset themselves through restart rules meanwhile. A
// call may lose a race (NotFound, FailedPrecondition, AlreadyExists); any
// other error, a call in flight past loadStuckAfter (the watchdog sends
// the daemon SIGQUIT for its goroutines) and any data race reported by the
// daemon or a shim fail the test. Once the clients stop, it checks that
// ListContainers, ContainerStatus, the shims' own records, the containers'
// processes and the last events agree; then it removes the pods and checks
// that no fd, mount, namespace, cgroup, veth or process is left and that
// the daemon's Go heap comes back near its baseline.
func TestLoad(t *testing.T) {
	begin(t)
	duration := *loadDuration
	lr := startLoadDaemon(t)
	lr.createPods(t)
	lr.run(t, duration)
	lr.report(t)
	if lr.watchdogFired.Load() {
		t.Fatalf("a call did not return: see the goroutine dump above")
	}
	lr.settle(t)
	lr.checkConsistent(t)
	lr.checkEvents(t)
	lr.checkShimFDs(t)
	lr.removePods(t)
	lr.checkLeaks(t)
	lr.checkRaces(t)
	lr.checkMemory(t)
}

// loadRun is one TestLoad run: its daemon, pods and what the clients saw.
type loadRun struct {
	d        *daemon
	dir      string // the run's files: race reports, pod volumes
	raceDir  string
	baseline snapshot
	// baseVeths are the host's warmpod veths before the run: a veth left
	// that has lost its bridge is not in the snapshot's links.
	baseVeths []string
	baseRSS   int64 // daemon RSS after the warm-up pod, bytes
	// metricsAddr serves the daemon's metrics; baseHeap is its Go heap in
	// use after the warm-up pod.
	metricsAddr string
	baseHeap    int64

	slots []*loadSlot

	// podIDs are every pod the run made, for the veth check.
	podMu  sync.Mutex
	podIDs []string

	// callsMu guards calls, stats and unexpected.
	callsMu  sync.Mutex
	calls    map[int64]*loadCall
	nextCall int64
	// attempts numbers the clients' extra containers.
	attempts   atomic.Uint32
	stats      map[string]*opStats
	unexpected []string

	watchdogFired atomic.Bool
	stopWatchdog  chan struct{}

	events     *eventLog
	subs       sync.WaitGroup
	subConns   []*grpc.ClientConn
	cancelSubs context.CancelFunc
	subsOnce   sync.Once
}

// stopSubscribers ends the event subscribers and closes their
// connections.
func (lr *loadRun) stopSubscribers() {
	lr.subsOnce.Do(func() {
		if lr.cancelSubs != nil {
			lr.cancelSubs()
		}
		lr.subs.Wait()
		for _, c := range lr.subConns {
			_ = c.Close()
		}
	})
}

// loadSlot is one of the run's pods; a client may replace the pod in it.
type loadSlot struct {
	n     int
	rules bool // the pod applies warmpod's restart rules
	vol   string
	pod   atomic.Pointer[loadPod]
	// churn is held while the slot's pod is replaced.
	churn sync.Mutex
}

type loadPod struct {
	id      string
	cfg     *runtimeapi.PodSandboxConfig
	shimPid int
	// shimFDs and shimChildren are counted after the pod's start, once
	// it is warm.
	shimFDs, shimChildren int
	// shimFDTargets counts what the shim's fds pointed at then.
	shimFDTargets map[string]int
	// replaced is set once a client began to replace the pod.
	replaced atomic.Bool
}

type loadCall struct {
	op, target string
	start      time.Time
}

type opStats struct {
	n         int
	codes     map[codes.Code]int
	latencies []time.Duration
}

// startLoadDaemon builds the race-detector daemon, starts it on places of
// its own, warms it up and records its baseline.
func startLoadDaemon(t *testing.T) *loadRun {
	t.Helper()
	dir := filepath.Join(d.base, "load")
	raceDir := filepath.Join(dir, "race")
	for _, p := range []string{dir, raceDir, filepath.Join(binDir, "race")} {
		if err := os.MkdirAll(p, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	bin, err := launch.GoBuild(filepath.Join(binDir, "race"), launch.Module+"/cmd/warmpod", "-race", "-tags", "seccomp")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := launch.Private(bin, dir, "ld")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Mirrors = map[string][]string{"docker.io": {"http://" + reg.Addr()}}
	cfg.Insecure = []string{reg.Addr()}
	metricsAddr, err := freeLoopbackAddr()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Args = append(cfg.Args, "--metrics-address", metricsAddr)
	ld := &daemon{Daemon: &launch.Daemon{Config: cfg}, base: dir}
	// Every race report of the daemon and its shims (they inherit the
	// environment) goes to a file of its own in raceDir; the processes go
	// on after one, so a single run finds them all. SIGQUIT dumps every
	// goroutine.
	t.Setenv("GORACE", "log_path="+filepath.Join(raceDir, "race")+" halt_on_error=0 exitcode=66")
	t.Setenv("GOTRACEBACK", "all")
	lr := &loadRun{
		d: ld, dir: dir, raceDir: raceDir, metricsAddr: metricsAddr,
		calls: map[int64]*loadCall{}, stats: map[string]*opStats{},
		stopWatchdog: make(chan struct{}),
		events:       newEventLog(),
	}
	t.Cleanup(func() { lr.tearDown(t) })
	if err := ld.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("load daemon (race detector): pid %d, dir %s, bridge %s, subnet %s", ld.PID(), dir, ld.Bridge, ld.Subnet)
	if lr.baseline, err = ld.takeSnapshot(); err != nil {
		t.Fatal(err)
	}
	if lr.baseVeths, err = hostVeths(); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	if _, err := ld.Image.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: images.busybox}}); err != nil {
		t.Fatalf("pull: %v", err)
	}
	// One pod through its whole life, so that what the daemon opens once
	// and keeps is in the fd baseline.
	warm := lr.newPod(t, &loadSlot{n: -1, vol: t.TempDir()})
	lr.removePod(ctx, warm)
	after, err := ld.takeSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	lr.baseline[kindFDs] = after[kindFDs]
	lr.baseRSS = procRSS(ld.PID(), "VmRSS")
	if lr.baseHeap, err = lr.heapInuse(); err != nil {
		t.Fatal(err)
	}
	return lr
}

// loadPodConfig is slot n's pod config.
func (lr *loadRun) podConfig(s *loadSlot) *runtimeapi.PodSandboxConfig {
	cfg := newPodConfig(fmt.Sprintf("load-%d", s.n))
	cfg.LogDirectory = filepath.Join(lr.dir, "logs", cfg.Metadata.Uid)
	if s.rules {
		// "crasher" ends with 42 every few seconds until the run asks it
		// to stop: the shim then resets the whole pod by itself.
		cfg.Annotations["warmpod.io/restart-policy-rules"] =
			`{"crasher":[{"action":"RestartAllContainers","exitCodes":{"operator":"In","values":[42]}}]}`
	}
	return cfg
}

// baseContainers are what every pod starts with; "recreate" restarts them
// the kubelet's way.
func baseContainers(s *loadSlot) []*runtimeapi.ContainerConfig {
	mount := []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: s.vol}}
	cs := []*runtimeapi.ContainerConfig{
		newContainerConfig("main", "sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"),
		newContainerConfig("sidecar", "sleep", "3600"),
	}
	if s.rules {
		cs = append(cs, newContainerConfig("crasher", "sh", "-c", "sleep 3; if [ -e /data/stop ]; then exec sleep 3600; fi; exit 42"))
	}
	for _, c := range cs {
		c.Mounts = mount
	}
	return cs
}

// extraContainer is the config of a container under extra name n of a
// pod: one that runs until stopped, or one that exits with 3 a moment
// after it starts (exits).
func extraContainer(s *loadSlot, n int, attempt uint32, exits bool) *runtimeapi.ContainerConfig {
	name := fmt.Sprintf("extra-%d", n)
	cfg := newContainerConfig(name, "sleep", "3600")
	if exits {
		cfg = newContainerConfig(name, "sh", "-c", "sleep 0.5; exit 3")
	}
	cfg.Metadata.Attempt = attempt
	cfg.LogPath = fmt.Sprintf("%s-%d.log", name, attempt)
	cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: s.vol}}
	return cfg
}

// newPod runs a pod with its base containers, for slot s, and creates,
// starts and removes a container under each extra name, so that the
// shim's pre-created generation for each name is part of its first
// shape.
func (lr *loadRun) newPod(t testing.TB, s *loadSlot) *loadPod {
	t.Helper()
	ctx := testCtx(t)
	cfg := lr.podConfig(s)
	resp, err := lr.d.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatalf("RunPodSandbox %s: %v", cfg.Metadata.Name, err)
	}
	p := &loadPod{id: resp.PodSandboxId, cfg: cfg}
	lr.podMu.Lock()
	lr.podIDs = append(lr.podIDs, p.id)
	lr.podMu.Unlock()
	var extras []*runtimeapi.ContainerConfig
	for n := range loadExtraNames {
		extras = append(extras, extraContainer(s, n, 0, false))
	}
	for i, c := range append(baseContainers(s), extras...) {
		cr, err := lr.d.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: c, SandboxConfig: cfg})
		if err != nil {
			t.Fatalf("CreateContainer %s in %s: %v", c.Metadata.Name, cfg.Metadata.Name, err)
		}
		if _, err := lr.d.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
			t.Fatalf("StartContainer %s in %s: %v", c.Metadata.Name, cfg.Metadata.Name, err)
		}
		if i < len(baseContainers(s)) {
			if i == 0 {
				// The shim's first exec opens what it keeps for its
				// life (libcontainer's handle on a private procfs):
				// part of its first shape, not a leak of the load's.
				if _, err := lr.d.Runtime.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: cr.ContainerId, Cmd: []string{"true"}, Timeout: 30}); err != nil {
					t.Fatalf("ExecSync in %s: %v", cfg.Metadata.Name, err)
				}
			}
			continue
		}
		if _, err := lr.d.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: cr.ContainerId}); err != nil {
			t.Fatalf("RemoveContainer %s in %s: %v", c.Metadata.Name, cfg.Metadata.Name, err)
		}
	}
	return p
}

func (lr *loadRun) removePod(ctx context.Context, p *loadPod) error {
	_, err := lr.d.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.id})
	if err == nil {
		_, err = lr.d.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.id})
	}
	_ = os.RemoveAll(p.cfg.LogDirectory)
	return err
}

// createPods fills the slots, a few pods at a time, and records each
// shim's fds once its pod is warm.
func (lr *loadRun) createPods(t *testing.T) {
	t.Helper()
	lr.slots = make([]*loadSlot, loadPods)
	for i := range lr.slots {
		vol := filepath.Join(lr.dir, "vol", fmt.Sprint(i))
		if err := os.MkdirAll(vol, 0o755); err != nil {
			t.Fatal(err)
		}
		lr.slots[i] = &loadSlot{n: i, rules: i < loadRulePods, vol: vol}
	}
	var wg sync.WaitGroup
	errs := make(chan string, loadPods)
	sem := make(chan struct{}, 4)
	for _, s := range lr.slots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			// t.Fatalf may not be called off the test goroutine.
			ft := &fatalCatcher{TB: t}
			func() {
				defer ft.recover()
				s.pod.Store(lr.newPod(ft, s))
			}()
			if ft.msg != "" {
				errs <- ft.msg
			}
		}()
	}
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Fatal(msg)
	}
	for _, s := range lr.slots {
		p := s.pod.Load()
		st, err := warmpodv1.NewWarmpodClient(lr.d.Conn()).PodStatus(testCtx(t), &warmpodv1.PodStatusRequest{PodSandboxId: p.id})
		if err != nil {
			t.Fatal(err)
		}
		p.shimPid = int(st.ShimPid)
		if !s.rules {
			lr.waitWarm(t, p.id)
			// Each base container and its next generation, and the next
			// generation of each extra name.
			want := 2*len(baseContainers(s)) + loadExtraNames
			waitFor(t, fmt.Sprintf("pod %s's shim with %d children", short(p.id), want), func() (bool, string) {
				n := len(childrenOf(p.shimPid))
				return n >= want, fmt.Sprintf("%d children", n)
			})
		}
		p.shimFDs, p.shimChildren = countFDs(p.shimPid), len(childrenOf(p.shimPid))
		p.shimFDTargets = fdTargets(p.shimPid)
	}
	t.Logf("%d pods running (%d with restart rules), %d containers", loadPods, loadRulePods, 2*loadPods+loadRulePods)
}

// awaitWarm waits, up to a minute, until every container of a pod has its
// next generations and pre-creation has settled, and says what is still
// cold when it gives up ("" when none is).
func (lr *loadRun) awaitWarm(podID string) string {
	wpc := warmpodv1.NewWarmpodClient(lr.d.Conn())
	why := ""
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := wpc.PodStatus(ctx, &warmpodv1.PodStatusRequest{PodSandboxId: podID})
		cancel()
		if err != nil {
			why = err.Error()
			continue
		}
		why = ""
		if st.Precreating {
			why = "pre-creation has not settled"
		}
		for _, c := range st.Containers {
			if !c.Warm || c.Precreating {
				why = c.Name + " is not warm"
				break
			}
		}
		if why == "" {
			return ""
		}
	}
	return why
}

// waitWarm waits until every container of a pod has its next generations
// and pre-creation has settled.
func (lr *loadRun) waitWarm(t testing.TB, podID string) {
	t.Helper()
	wpc := warmpodv1.NewWarmpodClient(lr.d.Conn())
	waitFor(t, "warm next generations of pod "+short(podID), func() (bool, string) {
		st, err := wpc.PodStatus(testCtx(t), &warmpodv1.PodStatusRequest{PodSandboxId: podID})
		if err != nil {
			return false, err.Error()
		}
		if st.Precreating {
			return false, "pre-creation has not settled"
		}
		for _, c := range st.Containers {
			if !c.Warm || c.Precreating {
				return false, c.Name + " is not warm"
			}
		}
		return true, ""
	})
}

// fatalCatcher turns Fatal on a goroutine other than the test's into a
// message for the test goroutine.
type fatalCatcher struct {
	testing.TB
	msg string
}

type fatalSignal struct{}

func (f *fatalCatcher) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(fatalSignal{})
}

func (f *fatalCatcher) Fatal(args ...any) {
	f.msg = fmt.Sprint(args...)
	panic(fatalSignal{})
}

func (f *fatalCatcher) recover() {
	if r := recover(); r != nil {
		if _, ok := r.(fatalSignal); !ok {
			panic(r)
		}
	}
}

// run lets the clients loose for duration, with the watchdog watching.
func (lr *loadRun) run(t *testing.T, duration time.Duration) {
	t.Helper()
	go lr.watchdog(t)
	defer close(lr.stopWatchdog)
	stop := make(chan struct{})
	var workers sync.WaitGroup
	subCtx, cancelSubs := context.WithCancel(context.Background())
	lr.cancelSubs = cancelSubs
	for i := range loadClients {
		conn, err := grpc.NewClient("unix://"+lr.d.SocketPath(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		if i < loadSubscribers {
			lr.subConns = append(lr.subConns, conn)
		} else {
			defer conn.Close()
		}
		c := &loadClient{lr: lr, id: i, rt: runtimeapi.NewRuntimeServiceClient(conn), wp: warmpodv1.NewWarmpodClient(conn),
			rnd: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(i)))}
		if i < loadSubscribers {
			lr.subs.Add(1)
			go func() {
				defer lr.subs.Done()
				c.subscribe(subCtx, i == 0)
			}()
			continue
		}
		workers.Add(1)
		go func() {
			defer workers.Done()
			for {
				c.step()
				select {
				case <-stop:
					return
				case <-time.After(time.Duration(c.rnd.ExpFloat64() * float64(*loadThink))):
				}
			}
		}()
	}
	start := time.Now()
	var peakRSS int64
	var peakMounts, peakCgroups int
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for time.Since(start) < duration && !lr.watchdogFired.Load() {
		<-tick.C
		peakRSS = max(peakRSS, procRSS(lr.d.PID(), "VmRSS"))
		m, c := lr.d.footprint()
		peakMounts, peakCgroups = max(peakMounts, m), max(peakCgroups, c)
	}
	hwm := procRSS(lr.d.PID(), "VmHWM")
	close(stop)
	workers.Wait()
	m, c := lr.d.footprint()
	t.Logf("clients ran %s; daemon RSS %d MiB at the baseline, %d MiB at most during the load (VmHWM %d MiB); "+
		"mounts %d at most, %d at the end; memory cgroups %d at most, %d at the end",
		time.Since(start).Round(time.Second), lr.baseRSS>>20, peakRSS>>20, hwm>>20, peakMounts, m, peakCgroups, c)
	// The persistent subscriber keeps following for the consistency
	// checks; the others stop now.
	lr.events.stopOthers()
}

// call runs one request of a client under the run's deadline, recording
// its latency and outcome; a code outside allowed (and OK) is unexpected.
func (lr *loadRun) call(op, target string, allowed []codes.Code, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), loadCallDeadline)
	defer cancel()
	lr.callsMu.Lock()
	lr.nextCall++
	id := lr.nextCall
	lr.calls[id] = &loadCall{op: op, target: target, start: time.Now()}
	lr.callsMu.Unlock()
	start := time.Now()
	err := fn(ctx)
	took := time.Since(start)
	code := status.Code(err)
	lr.callsMu.Lock()
	defer lr.callsMu.Unlock()
	delete(lr.calls, id)
	s := lr.stats[op]
	if s == nil {
		s = &opStats{codes: map[codes.Code]int{}}
		lr.stats[op] = s
	}
	s.n++
	s.codes[code]++
	s.latencies = append(s.latencies, took)
	if code != codes.OK && !slices.Contains(allowed, code) && !lr.watchdogFired.Load() {
		lr.unexpected = append(lr.unexpected, fmt.Sprintf("%s %s: %v (after %s)", op, target, err, took.Round(time.Millisecond)))
	}
	return err
}

// problem records something a client saw that must not happen.
func (lr *loadRun) problem(format string, args ...any) {
	lr.callsMu.Lock()
	defer lr.callsMu.Unlock()
	lr.unexpected = append(lr.unexpected, fmt.Sprintf(format, args...))
}

// watchdog sends the daemon SIGQUIT, once, when a call has been in flight
// for loadStuckAfter: its goroutines go to its log, which the test prints.
// The shim of the pod the call was about gets one too.
func (lr *loadRun) watchdog(t *testing.T) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-lr.stopWatchdog:
			return
		case <-tick.C:
		}
		var stuck *loadCall
		lr.callsMu.Lock()
		for _, c := range lr.calls {
			if time.Since(c.start) > loadStuckAfter && (stuck == nil || c.start.Before(stuck.start)) {
				stuck = c
			}
		}
		lr.callsMu.Unlock()
		if stuck == nil {
			continue
		}
		lr.watchdogFired.Store(true)
		mark := lr.d.LogSize()
		pid := lr.d.PID()
		t.Errorf("%s %s in flight for %s: sending the daemon (pid %d) SIGQUIT", stuck.op, stuck.target,
			time.Since(stuck.start).Round(time.Second), pid)
		for _, s := range lr.slots {
			if p := s.pod.Load(); p != nil && strings.Contains(stuck.target, short(p.id)) {
				t.Logf("processes of pod %s:\n%s", short(p.id), lr.d.describePodProcesses(p.id))
			}
			if p := s.pod.Load(); p != nil && strings.Contains(stuck.target, short(p.id)) && p.shimPid > 0 {
				shimMark := int64(len(lr.d.shimLog(p.id)))
				_ = syscall.Kill(p.shimPid, syscall.SIGQUIT)
				waitFileQuiet(filepath.Join(lr.d.State, "pods", p.id, "shim.log"))
				t.Logf("goroutines of the shim of pod %s:\n%s", short(p.id), lr.d.shimLog(p.id)[shimMark:])
			}
		}
		t.Logf("host processes in the kernel's mount code or uninterruptible sleep:\n%s", blockedProcesses())
		if pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGQUIT)
			waitGone(pid)
		}
		t.Logf("daemon goroutines:\n%s", lr.d.LogSince(mark))
		return
	}
}

// freeLoopbackAddr picks a free TCP port on 127.0.0.1.
func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// waitGone waits until process pid has exited (a daemon dumping its
// goroutines after SIGQUIT), at most 30 s.
func waitGone(pid int) {
	for range 300 {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitFileQuiet waits until a file stops growing (a process writing its
// goroutine dump), at most 10 s.
func waitFileQuiet(path string) {
	var last int64 = -1
	for range 50 {
		st, err := os.Stat(path)
		if err != nil || st.Size() == last {
			return
		}
		last = st.Size()
		time.Sleep(200 * time.Millisecond)
	}
}

// report prints every operation's count, outcomes and latency, and fails
// the test on unexpected outcomes.
func (lr *loadRun) report(t *testing.T) {
	t.Helper()
	lr.callsMu.Lock()
	defer lr.callsMu.Unlock()
	ops := make([]string, 0, len(lr.stats))
	total := 0
	for op, s := range lr.stats {
		ops = append(ops, op)
		total += s.n
	}
	sort.Strings(ops)
	var b strings.Builder
	fmt.Fprintf(&b, "%d calls:\n%-22s %7s %9s %9s %9s  outcomes\n", total, "call", "n", "p50", "p99", "max")
	for _, op := range ops {
		s := lr.stats[op]
		l := sorted(s.latencies)
		var outcomes []string
		for c, n := range s.codes {
			outcomes = append(outcomes, fmt.Sprintf("%s %d", c, n))
		}
		sort.Strings(outcomes)
		fmt.Fprintf(&b, "%-22s %7d %9s %9s %9s  %s\n", op, s.n, pct(l, 50), pct(l, 99), l[len(l)-1].Round(time.Millisecond),
			strings.Join(outcomes, ", "))
	}
	t.Log(b.String())
	if len(lr.unexpected) > 0 {
		n := len(lr.unexpected)
		show := lr.unexpected[:min(n, 40)]
		t.Errorf("%d unexpected outcomes under load (first %d):\n  %s", n, len(show), strings.Join(show, "\n  "))
	}
}

// pct is the p-th percentile of sorted latencies.
func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := min(len(sorted)*p/100, len(sorted)-1)
	d := sorted[i]
	if d > 10*time.Millisecond {
		return d.Round(time.Millisecond)
	}
	return d.Round(10 * time.Microsecond)
}

// tearDown removes everything the run made, even after a failure: pods,
// the daemon, its network, cgroups and files.
func (lr *loadRun) tearDown(t *testing.T) {
	lr.stopSubscribers()
	ld := lr.d
	if t.Failed() {
		t.Logf("load daemon log (last 30000 bytes):\n%s", ld.LogTail(30000))
		if *loadKeep != "" {
			lr.keepLogs(t, *loadKeep)
		}
	}
	var errs []error
	if ld.PID() == 0 {
		// Killed by the watchdog: start it again to remove the pods.
		if err := ld.Start(); err != nil {
			errs = append(errs, fmt.Errorf("restart the load daemon to clean up: %w", err))
		}
	}
	if ld.PID() > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		if pods, err := ld.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); err == nil {
			for _, p := range pods.Items {
				_, _ = ld.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.Id})
				if _, err := ld.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
					errs = append(errs, err)
				}
			}
		}
		cancel()
		// Exit status 66 is the race detector's (GORACE above): checkRaces
		// reports the races themselves.
		if err := ld.Stop(); err != nil && !strings.Contains(err.Error(), "exit status 66") {
			errs = append(errs, err)
		}
	}
	if err := ld.Remove(); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(lr.dir); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		t.Errorf("load run teardown: %v", err)
	}
}

// procRSS reads a size field (VmRSS, VmHWM) of /proc/<pid>/status in
// bytes; 0 when the process is gone.
func procRSS(pid int, field string) int64 {
	if pid <= 0 {
		return 0
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			var kb int64
			_, _ = fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
			return kb << 10
		}
	}
	return 0
}

func countFDs(pid int) int {
	entries, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(entries)
}

// fdTargets counts what pid's fds point at ("pipe:[…]" and the like
// without their inode numbers), to tell which kind of fd a leak is.
func fdTargets(pid int) map[string]int {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, _ := os.ReadDir(dir)
	out := map[string]int{}
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		if i := strings.Index(target, ":["); i > 0 {
			target = target[:i]
		}
		out[target]++
	}
	return out
}

// grownTargets lists the fd targets pid has more of than in before.
func grownTargets(pid int, before map[string]int) string {
	var grown []string
	for target, n := range fdTargets(pid) {
		if n > before[target] {
			grown = append(grown, fmt.Sprintf("%s %d→%d", target, before[target], n))
		}
	}
	sort.Strings(grown)
	return strings.Join(grown, ", ")
}

// keepLogs copies the daemon's log, every shim log still on disk and the
// race reports into dir, for a failed run.
func (lr *loadRun) keepLogs(t *testing.T, dir string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("keep logs: %v", err)
		return
	}
	copyFile := func(src, name string) {
		if data, err := os.ReadFile(src); err == nil {
			_ = os.WriteFile(filepath.Join(dir, name), data, 0o644)
		}
	}
	copyFile(lr.d.LogPath, "daemon.log")
	shims, _ := filepath.Glob(filepath.Join(lr.d.State, "pods", "*", "shim.log"))
	for _, s := range shims {
		copyFile(s, "shim-"+short(filepath.Base(filepath.Dir(s)))+".log")
	}
	races, _ := filepath.Glob(filepath.Join(lr.raceDir, "race.*"))
	for _, r := range races {
		copyFile(r, filepath.Base(r))
	}
	t.Logf("logs kept in %s", dir)
}

// describePodProcesses lists the processes in pod podID's cgroups with
// their state, kernel wait channel and stack, and the cgroups' freezer
// states: what a call stuck on the pod's processes waits for.
func (d *daemon) describePodProcesses(podID string) string {
	var b strings.Builder
	for _, h := range []string{"pids", "freezer"} {
		root := filepath.Join("/sys/fs/cgroup", h, d.CgroupParent)
		_ = filepath.WalkDir(root, func(p string, e os.DirEntry, err error) error {
			if err != nil || !e.IsDir() || !strings.Contains(p, podID) {
				return nil
			}
			if h == "freezer" {
				state, _ := os.ReadFile(filepath.Join(p, "freezer.state"))
				fmt.Fprintf(&b, "freezer %s: %s", strings.TrimPrefix(p, root), state)
				return nil
			}
			procs, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
			for _, pid := range strings.Fields(string(procs)) {
				stat, _ := os.ReadFile("/proc/" + pid + "/stat")
				wchan, _ := os.ReadFile("/proc/" + pid + "/wchan")
				stack, _ := os.ReadFile("/proc/" + pid + "/stack")
				comm, state, ppid := parseStat(string(stat))
				fmt.Fprintf(&b, "cgroup %s: pid %s ppid %d %s state %s wchan %s %s\n%s", strings.TrimPrefix(p, root), pid, ppid, comm, state, wchan, schedInfo(pid), stack)
			}
			return nil
		})
	}
	return b.String()
}

// blockedProcesses lists the host's processes that sleep uninterruptibly
// or run in the kernel's mount code, with their kernel stacks.
func blockedProcesses() string {
	var b strings.Builder
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		stat, _ := os.ReadFile("/proc/" + e.Name() + "/stat")
		stack, _ := os.ReadFile("/proc/" + e.Name() + "/stack")
		comm, state, ppid := parseStat(string(stat))
		if state == "D" || strings.HasPrefix(comm, "runc:") || strings.Contains(string(stack), "mount") || strings.Contains(string(stack), "namespace") {
			fmt.Fprintf(&b, "pid %s ppid %d %s state %s %s\n%s", e.Name(), ppid, comm, state, schedInfo(e.Name()), stack)
		}
	}
	return b.String()
}

// footprint counts the mounts below the daemon's directories and its
// memory cgroups: what generations not yet destroyed hold.
func (d *daemon) footprint() (mounts, cgroups int) {
	mountinfo, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mountinfo), "\n") {
		if strings.Contains(line, d.base) || strings.Contains(line, d.State) {
			mounts++
		}
	}
	_ = filepath.WalkDir(filepath.Join("/sys/fs/cgroup/memory", d.CgroupParent), func(_ string, e os.DirEntry, err error) error {
		if err == nil && e.IsDir() {
			cgroups++
		}
		return nil
	})
	return mounts, cgroups
}

// schedInfo is a process's scheduling policy (5 is SCHED_IDLE) and the CPU
// time it has had, from /proc/<pid>/sched.
func schedInfo(pid string) string {
	data, _ := os.ReadFile("/proc/" + pid + "/sched")
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if k = strings.TrimSpace(k); ok && (k == "policy" || k == "se.sum_exec_runtime" || k == "nr_switches") {
			out = append(out, k+"="+strings.TrimSpace(v))
		}
	}
	return strings.Join(out, " ")
}
