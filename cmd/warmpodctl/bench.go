package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v3"
)

// Scenario names, as they appear in the report and its JSON.
const (
	scenarioKubelet  = "kubelet-sequence"
	scenarioNative   = "native"
	scenarioRecreate = "recreate"
	// The same resets, each right after the one before (no settle time):
	// the pod never gets to pre-create at leisure, as in a task pool
	// whose workers take the next task at once.
	scenarioKubeletB2B = "kubelet-sequence-back-to-back"
	scenarioNativeB2B  = "native-back-to-back"
	// scenarioCold is CreateContainer and StartContainer of a container
	// no pre-created generation can be: a new name and command each time.
	scenarioCold = "cold"
)

// allScenarios are the scenarios in report order, and the default ones.
var allScenarios = []string{scenarioKubelet, scenarioNative, scenarioKubeletB2B, scenarioNativeB2B, scenarioCold, scenarioRecreate}

// baseScenario is the reset a scenario measures.
func baseScenario(sc string) string {
	switch sc {
	case scenarioKubeletB2B:
		return scenarioKubelet
	case scenarioNativeB2B:
		return scenarioNative
	}
	return sc
}

// backToBack tells whether sc runs its resets without settle time.
func backToBack(sc string) bool { return sc == scenarioKubeletB2B || sc == scenarioNativeB2B }

type benchOptions struct {
	endpoint   string
	compare    string
	image      string
	handler    string
	iterations int
	warmup     int
	scenarios  []string
	shape      []containerShape
	pods       int
	duration   time.Duration
	rate       float64
	jsonOut    bool
	pull       bool
	logDir     string
	keep       bool
	settle     time.Duration
	events     bool
	// endpointFlag names how endpoint was chosen, for error messages.
	endpointFlag string
	// runID labels this run's pods, so that an interrupted run finds and
	// removes even a pod whose creation it did not see finish.
	runID string
	// progress reports what the benchmark is doing; nil: nothing.
	progress *progress
	// stop is closed by an interrupt: the benchmark stops before its next
	// call (nil: never).
	stop <-chan struct{}
}

// errInterrupted ends a benchmark that was interrupted.
var errInterrupted = errors.New("interrupted")

// stopped tells whether the benchmark was interrupted.
func (o *benchOptions) stopped() bool {
	select {
	case <-o.stop:
		return true
	default:
		return false
	}
}

// containerShape is one container of the benchmark pod.
type containerShape struct {
	role string // init, sidecar or main
	cmd  []string
}

const defaultShape = "init=true;sidecar=sleep 3600;main=sleep 3600"

func parseShape(s string) ([]containerShape, error) {
	var out []containerShape
	seenMain := false
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		role, cmd, ok := strings.Cut(part, "=")
		if !ok || strings.TrimSpace(cmd) == "" {
			return nil, fmt.Errorf("shape part %q: want ROLE=COMMAND", part)
		}
		role = strings.TrimSpace(role)
		switch role {
		case "init", "sidecar":
		case "main":
			seenMain = true
		default:
			return nil, fmt.Errorf("shape part %q: role must be init, sidecar or main", part)
		}
		out = append(out, containerShape{role: role, cmd: strings.Fields(cmd)})
	}
	if !seenMain {
		return nil, fmt.Errorf("shape %q has no main container", s)
	}
	// Kubernetes' start order: init containers, then sidecars, then mains.
	order := map[string]int{"init": 0, "sidecar": 1, "main": 2}
	sort.SliceStable(out, func(i, j int) bool { return order[out[i].role] < order[out[j].role] })
	return out, nil
}

func benchResetCommand() *cli.Command {
	return &cli.Command{
		Name:  "reset",
		Usage: "measure pod reset latency on any CRI runtime",
		Description: "Scenarios: kubelet-sequence (the CRI calls of the kubelet's RestartAllContainers), native\n" +
			"(warmpod's ResetPod) and recreate (stop, remove and run the pod again). Progress goes to stderr; the\n" +
			"report to stdout. An interrupt stops the benchmark once the call in flight is done, and removes its pods\n" +
			"(a second one quits at once).",
		OnUsageError: onUsageError,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "endpoint", Usage: "CRI endpoint to measure (unix socket path or unix:// URL)", DefaultText: "--socket"},
			&cli.StringFlag{Name: "compare", Usage: "second CRI endpoint, measured with the same scenarios interleaved"},
			&cli.StringFlag{Name: "image", Usage: "image of every container", Value: "docker.io/library/busybox:latest"},
			&cli.StringFlag{Name: "runtime-handler", Usage: "runtime handler of the pods"},
			&cli.IntFlag{Name: "n", Usage: "measured resets per scenario", Value: 50},
			&cli.IntFlag{Name: "warmup", Usage: "unmeasured resets before measuring", Value: 3},
			&cli.StringFlag{Name: "scenarios", Usage: "comma-separated scenarios (default: all the endpoint supports): " +
				strings.Join(allScenarios, ", ")},
			&cli.StringFlag{Name: "shape", Usage: "pod shape: ROLE=COMMAND;... with roles init, sidecar, main", Value: defaultShape},
			&cli.IntFlag{Name: "sustained-pods", Usage: "sustained mode: this many pods reset in a loop (0: off)"},
			&cli.DurationFlag{Name: "sustained-duration", Usage: "sustained mode: how long", Value: 10 * time.Second},
			&cli.Float64Flag{Name: "sustained-rate", Usage: "sustained mode: resets per second across all pods, spread evenly (0: every pod resets again as soon as it can)"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object"},
			&cli.BoolFlag{Name: "pull", Usage: "pull the image first (--pull=false: do not)", Value: true},
			&cli.StringFlag{Name: "log-dir", Usage: "pod log directory (default: a temp dir)"},
			&cli.BoolFlag{Name: "keep", Usage: "leave the benchmark pods in place"},
			&cli.BoolFlag{Name: "events", Usage: "detect container exits through GetContainerEvents when the runtime streams them, else poll (--events=false: always poll)", Value: true},
			&cli.DurationFlag{Name: "settle", Usage: "pause between measured resets, so each starts from a warm pod (the back-to-back scenarios have none)", Value: 200 * time.Millisecond},
			&cli.BoolFlag{Name: "progress", Usage: "show progress on stderr (--progress=false: do not)", Value: true},
		},
		Action: benchReset,
	}
}

// benchReset runs the benchmark. It sets its own duration: --timeout does
// not apply.
func benchReset(ctx context.Context, cmd *cli.Command) error {
	if cmd.Args().Len() > 0 {
		return usageError{fmt.Errorf("bench reset takes no arguments, got %v", cmd.Args().Slice())}
	}
	o := benchOptions{
		endpoint:   cmd.String("endpoint"),
		compare:    cmd.String("compare"),
		image:      cmd.String("image"),
		handler:    cmd.String("runtime-handler"),
		iterations: cmd.Int("n"),
		warmup:     cmd.Int("warmup"),
		pods:       cmd.Int("sustained-pods"),
		duration:   cmd.Duration("sustained-duration"),
		rate:       cmd.Float64("sustained-rate"),
		jsonOut:    cmd.Bool("json"),
		pull:       cmd.Bool("pull"),
		logDir:     cmd.String("log-dir"),
		keep:       cmd.Bool("keep"),
		events:     cmd.Bool("events"),
		settle:     cmd.Duration("settle"),
		runID:      randomSuffix(),
	}
	o.endpointFlag = "--endpoint"
	if o.endpoint == "" {
		o.endpoint = socketPath(cmd)
		o.endpointFlag = socketFlag
	}
	if cmd.Bool("progress") {
		o.progress = newProgress(cmd.Root().ErrWriter)
	}
	var err error
	if o.shape, err = parseShape(cmd.String("shape")); err != nil {
		return usageError{err}
	}
	if s := cmd.String("scenarios"); s != "" {
		o.scenarios = strings.Split(s, ",")
		for _, sc := range o.scenarios {
			if !slices.Contains(allScenarios, sc) {
				return usageError{fmt.Errorf("unknown scenario %q (want one of %s)", sc, strings.Join(allScenarios, ", "))}
			}
		}
	}
	if o.iterations < 1 {
		return usageError{fmt.Errorf("-n must be at least 1")}
	}
	if o.logDir == "" {
		dir, err := os.MkdirTemp("", "warmpod-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		o.logDir = dir
	}
	// An interrupt stops the benchmark between calls, never in one: a call
	// cut short can leave the runtime half-way (a container half created),
	// and the pods could then not all be removed.
	o.stop = ctx.Done()
	rep, err := runBench(context.WithoutCancel(ctx), &o)
	if o.stopped() {
		// Interrupted: what was measured is not a result.
		if o.keep {
			return fmt.Errorf("benchmark interrupted; its pods are left in place (--keep)")
		}
		return fmt.Errorf("benchmark interrupted; its pods are removed")
	}
	w := cmd.Root().Writer
	if rep != nil {
		if o.jsonOut {
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			_ = enc.Encode(rep)
		} else {
			rep.print(w)
		}
	}
	return err
}

// report is the benchmark's output; its JSON form is a stable interface.
type report struct {
	Endpoint  string           `json:"endpoint"`
	Runtime   string           `json:"runtime"`
	Shape     string           `json:"shape"`
	ExitWatch string           `json:"exit_detection"`
	Scenarios map[string]stats `json:"scenarios"`
	// NativeInShim is the native reset as the pod's shim timed it, without
	// the API round trips.
	NativeInShim *stats     `json:"native_in_shim,omitempty"`
	Sustained    *sustained `json:"sustained,omitempty"`
	Memory       *memory    `json:"memory,omitempty"`
	Compare      *report    `json:"compare,omitempty"`
	// Ratios are compare/endpoint p50 ratios per scenario.
	Ratios map[string]float64 `json:"ratios,omitempty"`
}

type stats struct {
	N     int     `json:"n"`
	Min   float64 `json:"min_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
	Error string  `json:"error,omitempty"`
	// WarmHitRatio is the share of restarted containers that got a
	// pre-created generation (warmpod only).
	WarmHitRatio *float64 `json:"warm_hit_ratio,omitempty"`
	// CPUPerReset is the CPU time, in ms per measured reset, of the pod's
	// shim and every process it started (fork server, containers, their
	// set-up); PodCPUPerReset the part spent in the pod's cgroup; and
	// MachineCPUPerReset all the node's, noise included (warmpod on this
	// node only).
	CPUPerReset        *float64 `json:"cpu_ms_per_reset,omitempty"`
	PodCPUPerReset     *float64 `json:"pod_cgroup_cpu_ms_per_reset,omitempty"`
	MachineCPUPerReset *float64 `json:"machine_cpu_ms_per_reset,omitempty"`
}

type sustained struct {
	Pods         int     `json:"pods"`
	TargetRate   float64 `json:"target_resets_per_s,omitempty"`
	Scenario     string  `json:"scenario"`
	DurationS    float64 `json:"duration_s"`
	Resets       int     `json:"resets"`
	ResetsPerSec float64 `json:"resets_per_s"`
	Latency      stats   `json:"latency"`
	Errors       int     `json:"errors"`
}

// extras are what a scenario measures beside latencies.
type extras struct {
	warm, restarted int
	cpu             *cpuSample
}

func (e *extras) apply(s *stats, n int) {
	if e.restarted > 0 {
		r := float64(e.warm) / float64(e.restarted)
		s.WarmHitRatio = &r
	}
	if c := e.cpu; c != nil && n > 0 {
		per := func(d time.Duration) *float64 { v := ms(d) / float64(n); return &v }
		s.CPUPerReset, s.MachineCPUPerReset = per(c.tree), per(c.machine)
		if c.pod > 0 {
			s.PodCPUPerReset = per(c.pod)
		}
	}
}

type memory struct {
	// Per idle warm pod: the shim, the pause process and the pre-created
	// generations (running containers excluded).
	RSSKiB int64 `json:"rss_kib"`
	PSSKiB int64 `json:"pss_kib"`
	// PSSAnonKiB is the anonymous part of PSSKiB: what the pod costs on
	// its own. The rest is its share of pages other processes map too,
	// above all the sealed copy of the warmpod binary that every shim runs
	// from, so it shrinks as pods are added.
	PSSAnonKiB int64 `json:"pss_anon_kib"`
	// Processes counted.
	Processes int `json:"processes"`
}

func summarize(ds []time.Duration) stats {
	if len(ds) == 0 {
		return stats{}
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	pct := func(p float64) float64 {
		i := int(p*float64(len(s))+0.999999) - 1
		if i < 0 {
			i = 0
		}
		if i >= len(s) {
			i = len(s) - 1
		}
		return ms(s[i])
	}
	return stats{N: len(s), Min: ms(s[0]), P50: pct(0.50), P90: pct(0.90), P99: pct(0.99), Max: ms(s[len(s)-1])}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (r *report) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "endpoint %s (%s), shape %s, exit detection: %s\n", r.Endpoint, r.Runtime, r.Shape, r.ExitWatch)
	fmt.Fprintln(tw, "scenario\tn\tmin ms\tp50 ms\tp90 ms\tp99 ms\tmax ms\twarm\tcpu ms\t")
	for _, name := range allScenarios {
		s, ok := r.Scenarios[name]
		if !ok {
			continue
		}
		if s.Error != "" {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t-\t-\t(%s)\n", name, s.Error)
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t%s\t\n", name, s.N, s.Min, s.P50, s.P90, s.P99, s.Max,
			optional(s.WarmHitRatio, "%.0f%%", 100), optional(s.CPUPerReset, "%.1f", 1))
	}
	if s := r.NativeInShim; s != nil {
		fmt.Fprintf(tw, "(native, in shim)\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t\n", s.N, s.Min, s.P50, s.P90, s.P99, s.Max)
	}
	tw.Flush()
	if m := r.Memory; m != nil {
		fmt.Fprintf(w, "idle warm pod: %d processes, RSS %.1f MiB, PSS %.1f MiB, %.1f MiB of it anonymous (the rest is the pod's share of the warmpod binary all shims run from)\n",
			m.Processes, float64(m.RSSKiB)/1024, float64(m.PSSKiB)/1024, float64(m.PSSAnonKiB)/1024)
	}
	if s := r.Sustained; s != nil {
		fmt.Fprintf(w, "sustained %s: %d pods for %.1fs: %d resets, %.1f resets/s, %d errors; latency p50 %.2f ms p99 %.2f ms max %.2f ms; warm %s, CPU %s ms per reset\n",
			s.Scenario, s.Pods, s.DurationS, s.Resets, s.ResetsPerSec, s.Errors, s.Latency.P50, s.Latency.P99, s.Latency.Max,
			optional(s.Latency.WarmHitRatio, "%.0f%%", 100), optional(s.Latency.CPUPerReset, "%.1f", 1))
	}
	fmt.Fprintln(w, "warm: share of restarted containers that got a pre-created generation; cpu: the pod's shim and all it started, per reset")
	if r.Compare != nil {
		fmt.Fprintln(w)
		r.Compare.print(w)
		fmt.Fprintln(w)
		for _, name := range allScenarios {
			if v, ok := r.Ratios[name]; ok {
				fmt.Fprintf(w, "%s: %s p50 is %.1fx %s's\n", name, r.Compare.Runtime, v, r.Runtime)
			}
		}
		for _, pair := range [][2]string{{scenarioNative, scenarioKubelet}, {scenarioNativeB2B, scenarioKubeletB2B}} {
			if v, ok := r.Ratios[pair[0]+"-vs-"+pair[1]]; ok {
				fmt.Fprintf(w, "in-place reset: %s's %s p50 is %.1fx %s's %s\n", r.Compare.Runtime, pair[1], v, r.Runtime, pair[0])
			}
		}
	}
}

// runBench measures every scenario on the endpoint, and on the comparison
// endpoint interleaved, iteration by iteration.
func runBench(ctx context.Context, o *benchOptions) (*report, error) {
	defer o.progress.end()
	a, err := newTarget(ctx, o.endpoint, o.endpointFlag, o)
	if err != nil {
		return nil, err
	}
	defer a.close()
	targets := []*target{a}
	if o.compare != "" {
		b, err := newTarget(ctx, o.compare, "--compare", o)
		if err != nil {
			return nil, err
		}
		defer b.close()
		targets = append(targets, b)
	}
	// An interrupted run removes every pod it may have made, even one
	// whose creation was cut short.
	defer func() {
		if o.stopped() && !o.keep {
			o.progress.phase("interrupted: removing the benchmark's pods", 0)
			for _, t := range targets {
				t.removeRunPods(ctx)
			}
		}
	}()
	scenarios := o.scenarios
	if len(scenarios) == 0 {
		scenarios = allScenarios
	}
	reports := make([]*report, len(targets))
	for i, t := range targets {
		reports[i] = &report{Endpoint: t.endpoint, Runtime: t.runtimeName, Shape: shapeString(o.shape),
			ExitWatch: t.exitWatch(), Scenarios: map[string]stats{}}
	}
	var firstErr error
	for _, sc := range scenarios {
		if o.stopped() {
			break
		}
		o.progress.phase(fmt.Sprintf("%s: starting %d pod%s", sc, len(targets), plural(len(targets))), 0)
		samples := make([][]time.Duration, len(targets))
		inShim := make([][]time.Duration, len(targets))
		pods := make([]*benchPod, len(targets))
		failed := make([]error, len(targets))
		ex := make([]extras, len(targets))
		for i, t := range targets {
			if baseScenario(sc) == scenarioNative && !t.native() {
				failed[i] = errors.New("not supported by this runtime")
				continue
			}
			p, err := t.newPod(ctx, "bench-"+sc)
			if err != nil {
				failed[i] = err
				continue
			}
			pods[i] = p
		}
		o.progress.phase(fmt.Sprintf("%s: resets", sc), (o.warmup+o.iterations)*len(targets))
		// step runs one reset of pod i, counting it when measured.
		step := func(i int, measured bool) {
			o.progress.step()
			p := pods[i]
			if p == nil || failed[i] != nil {
				return
			}
			d, err := p.reset(ctx, sc)
			if err != nil {
				failed[i] = err
				return
			}
			if measured {
				samples[i] = append(samples[i], d)
				if baseScenario(sc) == scenarioNative {
					inShim[i] = append(inShim[i], p.shimTime)
				}
				ex[i].warm += p.warm
				ex[i].restarted += p.restarted
			}
		}
		// CPU is counted from the first measured reset to the last; on
		// the recreate scenario the pod, and its shim, change each time.
		cpuFrom := make([]*cpuSample, len(targets))
		startCPU := func(i int) {
			if pods[i] != nil && baseScenario(sc) != scenarioRecreate {
				cpuFrom[i] = pods[i].cpu(ctx)
			}
		}
		endCPU := func(i int) {
			if cpuFrom[i] == nil || failed[i] != nil {
				return
			}
			if now := pods[i].cpu(ctx); now != nil {
				d := now.sub(*cpuFrom[i])
				if len(targets) > 1 {
					d.machine = 0 // both runtimes ran meanwhile
				}
				ex[i].cpu = &d
			}
		}
		if backToBack(sc) {
			// One runtime after the other: interleaved, each would rest
			// while the other resets.
			for i := range targets {
				for it := 0; it < o.warmup && !o.stopped(); it++ {
					step(i, false)
				}
				startCPU(i)
				for it := 0; it < o.iterations && !o.stopped(); it++ {
					step(i, true)
				}
				endCPU(i)
			}
		} else {
			for it := 0; it < o.warmup+o.iterations && !o.stopped(); it++ {
				if it == o.warmup {
					for i := range targets {
						startCPU(i)
					}
				}
				for i := range targets {
					if o.settle > 0 && pods[i] != nil && failed[i] == nil {
						time.Sleep(o.settle)
					}
					step(i, it >= o.warmup)
				}
			}
			for i := range targets {
				endCPU(i)
			}
		}
		for i, t := range targets {
			if sc == scenarioNative && pods[i] != nil && t.native() && reports[i].Memory == nil {
				reports[i].Memory = pods[i].memory(ctx)
			}
			if pods[i] != nil && !o.keep {
				pods[i].destroy(ctx)
			}
			if len(inShim[i]) > 0 && sc == scenarioNative {
				s := summarize(inShim[i])
				reports[i].NativeInShim = &s
			}
			st := summarize(samples[i])
			ex[i].apply(&st, len(samples[i]))
			if failed[i] != nil {
				st.Error = failed[i].Error()
				if (baseScenario(sc) != scenarioNative || t.native()) && firstErr == nil {
					firstErr = fmt.Errorf("%s on %s: %w", sc, t.endpoint, failed[i])
				}
			}
			reports[i].Scenarios[sc] = st
		}
	}
	if o.pods > 0 && !o.stopped() {
		for i, t := range targets {
			s, err := t.sustained(ctx, o)
			if err != nil && firstErr == nil {
				firstErr = err
			}
			reports[i].Sustained = s
		}
	}
	rep := reports[0]
	if len(reports) > 1 {
		rep.Compare = reports[1]
		rep.Ratios = map[string]float64{}
		for name, s := range rep.Scenarios {
			if c, ok := reports[1].Scenarios[name]; ok && s.P50 > 0 && c.P50 > 0 && s.Error == "" && c.Error == "" {
				rep.Ratios[name] = c.P50 / s.P50
			}
		}
		// The native reset is warmpod's answer to the other runtime's
		// kubelet-driven reset: compare those too.
		for _, pair := range [][2]string{{scenarioNative, scenarioKubelet}, {scenarioNativeB2B, scenarioKubeletB2B}} {
			if s, ok := rep.Scenarios[pair[0]]; ok && s.Error == "" && s.P50 > 0 {
				if c, ok := reports[1].Scenarios[pair[1]]; ok && c.Error == "" {
					rep.Ratios[pair[0]+"-vs-"+pair[1]] = c.P50 / s.P50
				}
			}
		}
	}
	return rep, firstErr
}

// optional formats *v scaled, or "-" when v is nil.
func optional(v *float64, format string, scale float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf(format, *v*scale)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func shapeString(shape []containerShape) string {
	var parts []string
	for _, c := range shape {
		parts = append(parts, c.role+"="+strings.Join(c.cmd, " "))
	}
	return strings.Join(parts, ";")
}

// sustained resets o.pods pods in a loop for o.duration and reports the
// rate and the latency under that load.
func (t *target) sustained(ctx context.Context, o *benchOptions) (*sustained, error) {
	sc := scenarioKubelet
	if t.native() {
		sc = scenarioNative
	}
	pods := make([]*benchPod, 0, o.pods)
	defer func() {
		if !o.keep {
			for _, p := range pods {
				p.destroy(ctx)
			}
		}
	}()
	o.progress.phase(fmt.Sprintf("sustained: starting %d pods", o.pods), o.pods)
	for i := 0; i < o.pods; i++ {
		p, err := t.newPod(ctx, fmt.Sprintf("bench-sustained-%d", i))
		if err != nil {
			return nil, err
		}
		pods = append(pods, p)
		o.progress.step()
	}
	// Let every pod's next generation be ready before the clock starts.
	select {
	case <-time.After(time.Second):
	case <-o.stop:
		return nil, errInterrupted
	}
	o.progress.phase(fmt.Sprintf("sustained: resets of %d pods for %s", o.pods, o.duration), 0)
	cpuFrom := make([]*cpuSample, len(pods))
	for i, p := range pods {
		cpuFrom[i] = p.cpu(ctx)
	}
	var (
		mu     sync.Mutex
		lat    []time.Duration
		errs   int
		ex     extras
		wg     sync.WaitGroup
		start  = time.Now()
		finish = start.Add(o.duration)
	)
	// With a target rate each pod resets every interval, the pods offset
	// evenly; a reset that overruns its interval delays the next one, it
	// does not make a burst.
	var interval time.Duration
	if o.rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(o.pods) / o.rate)
	}
	for i, p := range pods {
		wg.Add(1)
		go func(i int, p *benchPod) {
			defer wg.Done()
			next := start
			if interval > 0 {
				next = start.Add(interval * time.Duration(i) / time.Duration(len(pods)))
			}
			for time.Now().Before(finish) && !o.stopped() {
				if interval > 0 {
					select {
					case <-time.After(time.Until(next)):
					case <-o.stop:
						return
					}
					next = next.Add(interval)
					if now := time.Now(); next.Before(now) {
						next = now
					}
					if !time.Now().Before(finish) {
						break
					}
				}
				d, err := p.reset(ctx, sc)
				if o.stopped() {
					return
				}
				mu.Lock()
				if err != nil {
					errs++
				} else {
					lat = append(lat, d)
					ex.warm += p.warm
					ex.restarted += p.restarted
				}
				mu.Unlock()
				o.progress.step()
			}
		}(i, p)
	}
	wg.Wait()
	if o.stopped() {
		return nil, errInterrupted
	}
	elapsed := time.Since(start)
	var total cpuSample
	for i, p := range pods {
		now := p.cpu(ctx)
		if now == nil || cpuFrom[i] == nil {
			total.tree = -1
			break
		}
		d := now.sub(*cpuFrom[i])
		total.tree += d.tree
		total.pod += d.pod
		if i == 0 {
			total.machine = d.machine
		}
	}
	if total.tree >= 0 {
		ex.cpu = &total
	}
	latency := summarize(lat)
	ex.apply(&latency, len(lat))
	return &sustained{
		Pods:         o.pods,
		TargetRate:   o.rate,
		Scenario:     sc,
		DurationS:    elapsed.Seconds(),
		Resets:       len(lat),
		ResetsPerSec: float64(len(lat)) / elapsed.Seconds(),
		Latency:      latency,
		Errors:       errs,
	}, nil
}
