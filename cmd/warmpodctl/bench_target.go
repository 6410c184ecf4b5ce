package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	warmpodv1 "github.com/warmpod/warmpod/api/warmpod/v1"
)

// target is one CRI endpoint under test, over one gRPC connection.
type target struct {
	endpoint    string
	runtimeName string
	o           *benchOptions
	conn        *grpc.ClientConn
	rt          runtime.RuntimeServiceClient
	img         runtime.ImageServiceClient
	wp          warmpodv1.WarmpodClient

	// exits delivers container exits from GetContainerEvents when the
	// runtime streams them; nil means exits are polled.
	exitsMu sync.Mutex
	waiters map[string]chan struct{}
	events  bool
	cancel  context.CancelFunc
}

func newTarget(ctx context.Context, endpoint, flag string, o *benchOptions) (*target, error) {
	conn, err := dial(endpoint, flag)
	if err != nil {
		return nil, err
	}
	t := &target{
		endpoint: endpoint,
		o:        o,
		conn:     conn,
		rt:       runtime.NewRuntimeServiceClient(conn),
		img:      runtime.NewImageServiceClient(conn),
		waiters:  map[string]chan struct{}{},
	}
	v, err := t.rt.Version(ctx, &runtime.VersionRequest{})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("%s: %w", endpoint, err)
	}
	t.runtimeName = v.RuntimeName + " " + v.RuntimeVersion
	if v.RuntimeName == "warmpod" {
		t.wp = warmpodv1.NewWarmpodClient(conn)
	}
	if o.pull {
		o.progress.phase(fmt.Sprintf("pulling %s on %s", o.image, endpoint), 0)
		if _, err := t.img.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: o.image}}); err != nil {
			conn.Close()
			return nil, fmt.Errorf("pull %s on %s: %w", o.image, endpoint, err)
		}
	}
	if o.events {
		t.watchExits()
	}
	return t, nil
}

func (t *target) close() {
	if t.cancel != nil {
		t.cancel()
	}
	t.conn.Close()
}

func (t *target) native() bool { return t.wp != nil }

func (t *target) exitWatch() string {
	if t.events {
		return "container events"
	}
	return "status polling (1 ms)"
}

// watchExits subscribes to container events when the runtime has them.
func (t *target) watchExits() {
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := t.rt.GetContainerEvents(ctx, &runtime.GetEventsRequest{})
	if err != nil {
		cancel()
		return
	}
	// An unimplemented stream fails on the first Recv; probe it through a
	// goroutine that reports whether the stream stays open.
	first := make(chan error, 1)
	go func() {
		probed := false
		for {
			ev, err := stream.Recv()
			if !probed {
				probed = true
				if err != nil {
					first <- err
					return
				}
				first <- nil
			}
			if err != nil {
				return
			}
			t.event(ev)
		}
	}()
	// A runtime without events answers at once; one with them stays silent
	// until something happens, so do something: a status call is not enough,
	// but waiting a moment is.
	select {
	case err := <-first:
		if err != nil {
			cancel()
			return
		}
	case <-time.After(300 * time.Millisecond):
	}
	t.events = true
	t.cancel = cancel
}

func (t *target) event(ev *runtime.ContainerEventResponse) {
	if ev.ContainerEventType != runtime.ContainerEventType_CONTAINER_STOPPED_EVENT {
		return
	}
	t.exitsMu.Lock()
	ch, ok := t.waiters[ev.ContainerId]
	if ok {
		delete(t.waiters, ev.ContainerId)
	}
	t.exitsMu.Unlock()
	if ok {
		close(ch)
	}
}

// expectExit registers interest in container id's exit; call before the
// container can exit.
func (t *target) expectExit(id string) <-chan struct{} {
	ch := make(chan struct{})
	if !t.events {
		return ch
	}
	t.exitsMu.Lock()
	t.waiters[id] = ch
	t.exitsMu.Unlock()
	return ch
}

// waitExit waits for container id to exit and returns its exit code.
func (t *target) waitExit(ctx context.Context, id string, exited <-chan struct{}) (int32, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		st, err := t.rt.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: id})
		if err != nil {
			return 0, err
		}
		if st.Status.State == runtime.ContainerState_CONTAINER_EXITED {
			return st.Status.ExitCode, nil
		}
		if t.events {
			select {
			case <-exited:
			case <-time.After(time.Second):
			case <-ctx.Done():
				return 0, fmt.Errorf("container %s did not exit: %w", id, ctx.Err())
			}
			continue
		}
		select {
		case <-time.After(time.Millisecond):
		case <-ctx.Done():
			return 0, fmt.Errorf("container %s did not exit: %w", id, ctx.Err())
		}
	}
}

// benchPod is one pod of the benchmark's shape.
type benchPod struct {
	t       *target
	name    string
	id      string
	cfg     *runtime.PodSandboxConfig
	ctrs    []string // current container ids, in start order
	attempt uint32
	// shimTime is the last native reset's duration as the shim measured it.
	shimTime time.Duration
	// warm and restarted count, for the last reset, the containers that got
	// a pre-created generation and all restarted ones (warmpod only).
	warm, restarted int
	// colds counts the cold scenario's containers.
	colds int
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (t *target) newPod(ctx context.Context, name string) (*benchPod, error) {
	name = name + "-" + randomSuffix()
	p := &benchPod{t: t, name: name}
	p.cfg = &runtime.PodSandboxConfig{
		Metadata:     &runtime.PodSandboxMetadata{Name: name, Namespace: "warmpod-bench", Uid: name},
		Hostname:     name,
		LogDirectory: filepath.Join(t.o.logDir, name),
		Linux:        &runtime.LinuxPodSandboxConfig{},
		Labels:       map[string]string{"warmpod.io/bench": "true", benchRunLabel: t.o.runID},
	}
	if err := p.run(ctx); err != nil {
		p.destroy(ctx)
		return nil, err
	}
	return p, nil
}

// run creates the sandbox and starts the containers.
func (p *benchPod) run(ctx context.Context) error {
	resp, err := p.t.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: p.cfg, RuntimeHandler: p.t.o.handler})
	if err != nil {
		return fmt.Errorf("run pod: %w", err)
	}
	p.id = resp.PodSandboxId
	return p.startAll(ctx)
}

// startAll creates and starts the pod's containers in Kubernetes' order,
// each init container to completion.
func (p *benchPod) startAll(ctx context.Context) error {
	p.ctrs = p.ctrs[:0]
	for i, c := range p.t.o.shape {
		name := fmt.Sprintf("%s%d", c.role, i)
		cc := &runtime.ContainerConfig{
			Metadata: &runtime.ContainerMetadata{Name: name, Attempt: p.attempt},
			Image:    &runtime.ImageSpec{Image: p.t.o.image},
			Command:  c.cmd,
			LogPath:  fmt.Sprintf("%s/%d.log", name, p.attempt),
			Linux:    &runtime.LinuxContainerConfig{},
			Annotations: map[string]string{
				"io.kubernetes.container.restartCount": strconv.Itoa(int(p.attempt)),
			},
		}
		resp, err := p.t.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: p.id, Config: cc, SandboxConfig: p.cfg})
		if err != nil {
			return fmt.Errorf("create %s: %w", name, err)
		}
		id := resp.ContainerId
		p.ctrs = append(p.ctrs, id)
		var exited <-chan struct{}
		if c.role == "init" {
			exited = p.t.expectExit(id)
		}
		if _, err := p.t.rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: id}); err != nil {
			return fmt.Errorf("start %s: %w", name, err)
		}
		if c.role == "init" {
			code, err := p.t.waitExit(ctx, id, exited)
			if err != nil {
				return err
			}
			if code != 0 {
				return fmt.Errorf("init container %s exited with %d", name, code)
			}
		}
	}
	return nil
}

// reset performs one reset of scenario sc and returns how long it took,
// from the first call to the last main container running.
func (p *benchPod) reset(ctx context.Context, sc string) (time.Duration, error) {
	p.warm, p.restarted = 0, 0
	if sc == scenarioCold {
		return p.coldStart(ctx)
	}
	start := time.Now()
	var err error
	switch baseScenario(sc) {
	case scenarioKubelet:
		err = p.kubeletReset(ctx)
	case scenarioNative:
		var resp *warmpodv1.ResetPodResponse
		resp, err = p.t.wp.ResetPod(ctx, &warmpodv1.ResetPodRequest{PodSandboxId: p.id})
		if err == nil {
			p.shimTime = time.Duration(resp.DurationNs)
			p.countWarm(resp.Containers, nil)
		}
	case scenarioRecreate:
		err = p.recreate(ctx)
	default:
		err = fmt.Errorf("unknown scenario %q", sc)
	}
	d := time.Since(start)
	if err == nil && baseScenario(sc) == scenarioKubelet {
		p.countWarmNow(ctx, p.ctrs)
	}
	return d, err
}

// countWarm counts, among cs (those with ids in only, when given), the
// containers whose running generation was pre-created.
func (p *benchPod) countWarm(cs []*warmpodv1.ContainerStatus, only []string) {
	for _, c := range cs {
		if only != nil && !slices.Contains(only, c.Id) {
			continue
		}
		p.restarted++
		if c.FromWarm {
			p.warm++
		}
	}
}

// countWarmNow asks warmpod which of containers ids got a pre-created
// generation (outside the measured time).
func (p *benchPod) countWarmNow(ctx context.Context, ids []string) {
	if p.t.wp == nil {
		return
	}
	st, err := p.t.wp.PodStatus(ctx, &warmpodv1.PodStatusRequest{PodSandboxId: p.id})
	if err == nil {
		p.countWarm(st.Containers, ids)
	}
}

// coldStart measures CreateContainer and StartContainer of a container that
// no pre-created generation can serve: its name and command are new. It
// stops and removes the container afterwards, outside the measured time.
func (p *benchPod) coldStart(ctx context.Context) (time.Duration, error) {
	p.colds++
	name := fmt.Sprintf("cold%d", p.colds)
	cc := &runtime.ContainerConfig{
		Metadata: &runtime.ContainerMetadata{Name: name},
		Image:    &runtime.ImageSpec{Image: p.t.o.image},
		Command:  []string{"sleep", strconv.Itoa(100000 + p.colds)},
		LogPath:  name + ".log",
		Linux:    &runtime.LinuxContainerConfig{},
	}
	start := time.Now()
	resp, err := p.t.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: p.id, Config: cc, SandboxConfig: p.cfg})
	if err != nil {
		return 0, fmt.Errorf("create %s: %w", name, err)
	}
	if _, err := p.t.rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: resp.ContainerId}); err != nil {
		return 0, fmt.Errorf("start %s: %w", name, err)
	}
	d := time.Since(start)
	p.countWarmNow(ctx, []string{resp.ContainerId})
	if _, err := p.t.rt.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: resp.ContainerId}); err != nil {
		return d, fmt.Errorf("stop %s: %w", name, err)
	}
	if _, err := p.t.rt.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: resp.ContainerId}); err != nil {
		return d, fmt.Errorf("remove %s: %w", name, err)
	}
	return d, nil
}

// kubeletReset is the CRI call sequence of the kubelet's in-place
// RestartAllContainers: every container stopped without grace and removed
// (concurrently, as the kubelet kills them), then the start sequence again
// with the next attempt.
func (p *benchPod) kubeletReset(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, len(p.ctrs))
	for i, id := range p.ctrs {
		wg.Add(1)
		go func(i int, id string) {
			defer wg.Done()
			if _, err := p.t.rt.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: id, Timeout: 0}); err != nil {
				errs[i] = fmt.Errorf("stop: %w", err)
				return
			}
			if _, err := p.t.rt.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: id}); err != nil {
				errs[i] = fmt.Errorf("remove: %w", err)
			}
		}(i, id)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	p.attempt++
	return p.startAll(ctx)
}

func (p *benchPod) recreate(ctx context.Context) error {
	if _, err := p.t.rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: p.id}); err != nil {
		return fmt.Errorf("stop pod: %w", err)
	}
	if _, err := p.t.rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: p.id}); err != nil {
		return fmt.Errorf("remove pod: %w", err)
	}
	p.id = ""
	p.cfg.Metadata.Attempt++
	p.attempt = 0
	return p.run(ctx)
}

func (p *benchPod) destroy(ctx context.Context) {
	if p.id == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	// A pod whose container creation was cut short (an interrupt) may
	// still have a process on its way out when it is stopped; the removal
	// is retried for a while, as the kubelet retries it.
	var err error
	for wait, deadline := 50*time.Millisecond, time.Now().Add(10*time.Second); ; wait = min(2*wait, time.Second) {
		_, _ = p.t.rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: p.id})
		_, err = p.t.rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: p.id})
		if err == nil || status.Code(err) == codes.NotFound || time.Now().After(deadline) {
			break
		}
		time.Sleep(wait)
	}
	if err != nil && status.Code(err) != codes.NotFound {
		fmt.Fprintf(os.Stderr, "warmpodctl: remove benchmark pod %s: %v\n", p.id, err)
	}
	p.id = ""
}

// benchRunLabel marks the pods of one benchmark run.
const benchRunLabel = "warmpod.io/bench-run"

// removeRunPods removes every pod of this run, even after ctx was
// cancelled.
func (t *target) removeRunPods(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	resp, err := t.rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{Filter: &runtime.PodSandboxFilter{
		LabelSelector: map[string]string{benchRunLabel: t.o.runID},
	}})
	if err != nil {
		fmt.Fprintf(os.Stderr, "warmpodctl: list the benchmark's pods on %s: %v\n", t.endpoint, err)
		return
	}
	for _, sb := range resp.Items {
		(&benchPod{t: t, id: sb.Id}).destroy(ctx)
	}
}

// memory measures the pod's warmpod processes once its next generations
// are ready and pre-creation has settled: the shim, the pause process, the
// fork server, and the pre-created container processes still blocked
// before execve. Only on the same node.
func (p *benchPod) memory(ctx context.Context) *memory {
	var shimPid int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		st, err := p.t.wp.PodStatus(ctx, &warmpodv1.PodStatusRequest{PodSandboxId: p.id})
		if err != nil {
			return nil
		}
		shimPid = int(st.ShimPid)
		warm := true
		for _, c := range st.Containers {
			warm = warm && c.Warm && !c.Precreating
		}
		if warm {
			break
		}
	}
	if shimPid == 0 {
		return nil
	}
	pids := []int{shimPid}
	for _, child := range children(shimPid) {
		// libcontainer's blocked inits, the pause process, and the fork
		// server of the fast spawner with the inits it forked (which keep
		// its command line).
		if cmd := cmdline(child); strings.HasSuffix(cmd, " init") || strings.HasSuffix(cmd, " pause") || strings.HasSuffix(cmd, " spawner") {
			pids = append(pids, child)
		}
	}
	m := &memory{}
	for _, pid := range pids {
		rss, pss, anon, ok := rollup(pid)
		if ok {
			m.RSSKiB += rss
			m.PSSKiB += pss
			m.PSSAnonKiB += anon
			m.Processes++
		}
	}
	return m
}

func children(pid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child))
		if err != nil {
			continue
		}
		// Fields after the command (which may hold spaces) start after ')'.
		s := string(data)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}

func cmdline(pid int) string {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.TrimSpace(strings.ReplaceAll(string(data), "\x00", " "))
}

// rollup reads pid's memory totals (KiB): resident, proportional, and the
// proportional share of its anonymous memory.
func rollup(pid int) (rss, pss, pssAnon int64, ok bool) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, 0, 0, false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(fields[1], 10, 64)
		switch fields[0] {
		case "Rss:":
			rss = v
		case "Pss:":
			pss = v
		case "Pss_Anon:":
			pssAnon = v
		}
	}
	return rss, pss, pssAnon, true
}
