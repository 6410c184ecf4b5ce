package integration

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	warmpodv1 "github.com/warmpod/warmpod/api/warmpod/v1"
)

// TestSoak's settings; "make soak" sets -soak.resets. Without it the test
// is skipped: it takes a quarter of an hour or more and is not part of CI.
var (
	soakResets = flag.Int("soak.resets", 0, "TestSoak: resets in all (0: skip the soak)")
	soakPods   = flag.Int("soak.pods", 4, "TestSoak: pods reset concurrently")
	soakPhase  = flag.Int("soak.phase", 1000, "TestSoak: resets per phase; phases alternate back to back and settled")
	soakSettle = flag.Duration("soak.settle", 200*time.Millisecond, "TestSoak: pause after each reset of a settled phase")
	soakOut    = flag.String("soak.out", "", "TestSoak: write the figures as JSON to this file too")
)

// soakWarmup is how many resets each pod has before the baseline.
const soakWarmup = 20

// soakCallDeadline bounds one reset: minutes, where a reset takes a
// fraction of a second, so only a reset that never ends reaches it.
const soakCallDeadline = 3 * time.Minute

// soakSample is the daemon's and the shims' footprint at one moment.
type soakSample struct {
	At time.Duration `json:"-"`
	// AtS is At in seconds, for the JSON figures.
	AtS       float64 `json:"at_s"`
	Resets    int64   `json:"resets"`
	DaemonRSS int64   `json:"daemon_rss"`
	DaemonFDs int     `json:"daemon_fds"`
	ShimRSS   []int64 `json:"shim_rss"`
	ShimFDs   []int   `json:"shim_fds"`
	Mounts    int     `json:"mounts"`
	Cgroups   int     `json:"cgroups"`
}

// soakReset is one reset as the client and the shim timed it.
type soakReset struct {
	Settled  bool          `json:"settled"`
	Client   time.Duration `json:"client_ns"`
	Shim     time.Duration `json:"shim_ns"`
	FromWarm bool          `json:"from_warm"` // every restarted container came from its pre-created generation
}

// TestSoak resets a few pods (init container, sidecar, main) many times
// over the API, in phases that alternate back to back and with a pause
// after each reset, sampling the daemon's and shims' RSS and fds and the
// run's mounts and cgroups meanwhile. It reports reset latency (client and
// shim side) for the first and last thousand resets of each kind and the
// footprint over time, and fails on a leak: more fds, mounts, cgroups,
// links or shim children once the pods have settled than before the
// first reset, or memory that grew by more than its slack.
func TestSoak(t *testing.T) {
	if *soakResets <= 0 {
		t.Skip("the soak runs with -soak.resets N (make soak)")
	}
	ctx := begin(t)
	total := int64(*soakResets)
	pods := make([]*resetPod, *soakPods)
	for i := range pods {
		pods[i] = newResetPod(t, fmt.Sprintf("soak-%d", i), nil)
	}
	// A few resets before the baseline, so that what the daemon and the
	// shims open on the first resets and keep (cached handles) is in it.
	for _, p := range pods {
		for range soakWarmup {
			if _, err := wp().ResetPod(ctx, &warmpodv1.ResetPodRequest{PodSandboxId: p.id}); err != nil {
				t.Fatalf("warm-up reset of pod %s: %v", short(p.id), err)
			}
		}
	}
	for _, p := range pods {
		p.waitWarm(t)
	}
	before := make([]resetSnapshot, len(pods))
	for i, p := range pods {
		before[i] = settledResetSnapshot(t, p.id)
	}
	shimPids := make([]int, len(pods))
	for i, p := range pods {
		st, err := wp().PodStatus(ctx, &warmpodv1.PodStatusRequest{PodSandboxId: p.id})
		if err != nil {
			t.Fatal(err)
		}
		shimPids[i] = int(st.ShimPid)
	}

	var (
		done    atomic.Int64
		mu      sync.Mutex
		results []soakReset
		samples []soakSample
		errs    []string
	)
	start := time.Now()
	sample := func() {
		at := time.Since(start)
		s := soakSample{At: at, AtS: at.Seconds(), Resets: done.Load(), DaemonRSS: procRSS(d.PID(), "VmRSS"), DaemonFDs: countFDs(d.PID())}
		for _, pid := range shimPids {
			s.ShimRSS = append(s.ShimRSS, procRSS(pid, "VmRSS"))
			s.ShimFDs = append(s.ShimFDs, countFDs(pid))
		}
		// Off the test goroutine: nothing here may call t.Fatal.
		s.Mounts, s.Cgroups = d.footprint()
		mu.Lock()
		samples = append(samples, s)
		mu.Unlock()
	}
	sample()
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(10 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
				sample()
			}
		}
	}()

	var next atomic.Int64
	var wg sync.WaitGroup
	for _, p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := next.Add(1) - 1
				if n >= total {
					return
				}
				settled := (n/int64(*soakPhase))%2 == 1
				// A context per reset: the test's own ends long before the soak.
				rctx, cancel := context.WithTimeout(context.Background(), soakCallDeadline)
				t0 := time.Now()
				resp, err := wp().ResetPod(rctx, &warmpodv1.ResetPodRequest{PodSandboxId: p.id})
				took := time.Since(t0)
				cancel()
				if err != nil {
					mu.Lock()
					errs = append(errs, fmt.Sprintf("reset %d of pod %s: %v", n, short(p.id), err))
					mu.Unlock()
					return
				}
				warm := true
				for _, c := range resp.Containers {
					if c.Name != "init" && !c.FromWarm {
						warm = false
					}
				}
				mu.Lock()
				results = append(results, soakReset{Settled: settled, Client: took, Shim: time.Duration(resp.DurationNs), FromWarm: warm})
				mu.Unlock()
				if c := done.Add(1); c%1000 == 0 {
					t.Logf("%d resets after %s", c, time.Since(start).Round(time.Second))
				}
				if settled {
					time.Sleep(*soakSettle)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stopSampling)
	<-sampled
	if len(errs) > 0 {
		t.Fatalf("resets failed:\n  %s", strings.Join(errs, "\n  "))
	}
	for _, p := range pods {
		p.waitWarm(t)
	}
	sample()

	// The figures first: a leak found below fails the test, and they
	// tell how far the run got.
	rep := soakReport(results, samples, elapsed)
	t.Log(rep.text)
	if *soakOut != "" {
		data, _ := json.MarshalIndent(map[string]any{"summary": rep.summary, "samples": samples}, "", "  ")
		if err := os.WriteFile(*soakOut, data, 0o644); err != nil {
			t.Error(err)
		}
	}
	var inits int
	for _, p := range pods {
		inits += p.initRuns(t) - 1
	}
	if want := int(total) + soakWarmup*len(pods); inits != want {
		t.Errorf("init containers ran %d times in all for %d resets", inits, want)
	}
	// Leaks: each pod's resources, once its background work is done, no
	// more than before the first reset.
	for i, p := range pods {
		var after resetSnapshot
		waitFor(t, "pod "+short(p.id)+"'s resources back to their level before the soak", func() (bool, string) {
			after = takeResetSnapshot(t, p.id)
			grown := before[i].grown(after)
			return grown == "", grown
		})
	}
	first, last := samples[0], samples[len(samples)-1]
	// Memory: a leak of a few hundred bytes per reset is megabytes here;
	// the heap's own breathing is a few.
	if grown := last.DaemonRSS - first.DaemonRSS; grown > 32<<20 {
		t.Errorf("daemon RSS grew by %d MiB over the soak", grown>>20)
	}
	for i := range shimPids {
		if grown := last.ShimRSS[i] - first.ShimRSS[i]; grown > 16<<20 {
			t.Errorf("shim %d RSS grew by %d MiB over the soak", i, grown>>20)
		}
	}
}

type soakResult struct {
	text    string
	summary map[string]any
}

// soakReport summarises the resets in completion order: every kind's
// first and last thousand, and the footprint over time.
func soakReport(results []soakReset, samples []soakSample, elapsed time.Duration) soakResult {
	var b strings.Builder
	summary := map[string]any{"resets": len(results), "elapsed_s": elapsed.Seconds()}
	fmt.Fprintf(&b, "%d resets in %s (%.1f/s)\n", len(results), elapsed.Round(time.Second), float64(len(results))/elapsed.Seconds())
	fmt.Fprintf(&b, "%-26s %6s %9s %9s %9s %9s %9s %6s\n", "resets", "n", "p50", "p90", "p99", "max", "shim p50", "warm")
	for _, kind := range []struct {
		name    string
		settled bool
	}{{"back to back", false}, {"settled", true}} {
		var rs []soakReset
		for _, r := range results {
			if r.Settled == kind.settled {
				rs = append(rs, r)
			}
		}
		n := min(1000, len(rs))
		for _, part := range []struct {
			name string
			rs   []soakReset
		}{{"first", rs[:n]}, {"last", rs[len(rs)-n:]}, {"all", rs}} {
			if len(part.rs) == 0 {
				continue
			}
			var client, shim []time.Duration
			warm := 0
			for _, r := range part.rs {
				client = append(client, r.Client)
				shim = append(shim, r.Shim)
				if r.FromWarm {
					warm++
				}
			}
			client, shim = sorted(client), sorted(shim)
			label := fmt.Sprintf("%s, %s %d", kind.name, part.name, len(part.rs))
			fmt.Fprintf(&b, "%-26s %6d %9s %9s %9s %9s %9s %5.0f%%\n", label, len(part.rs),
				pct(client, 50), pct(client, 90), pct(client, 99), client[len(client)-1].Round(time.Millisecond),
				pct(shim, 50), 100*float64(warm)/float64(len(part.rs)))
			summary[label] = map[string]any{
				"p50_ms": ms(pct(client, 50)), "p90_ms": ms(pct(client, 90)), "p99_ms": ms(pct(client, 99)),
				"max_ms": ms(client[len(client)-1]), "shim_p50_ms": ms(pct(shim, 50)), "shim_p99_ms": ms(pct(shim, 99)),
				"warm": float64(warm) / float64(len(part.rs)),
			}
		}
	}
	fmt.Fprintf(&b, "%8s %7s %11s %10s %16s %14s %7s %8s\n", "at", "resets", "daemon RSS", "daemon fds", "shim RSS (max)", "shim fds (max)", "mounts", "cgroups")
	step := max(1, len(samples)/12)
	for i, s := range samples {
		if i%step != 0 && i != len(samples)-1 {
			continue
		}
		var rss int64
		fds := 0
		for j := range s.ShimRSS {
			rss, fds = max(rss, s.ShimRSS[j]), max(fds, s.ShimFDs[j])
		}
		fmt.Fprintf(&b, "%8s %7d %7.1f MiB %10d %12.1f MiB %14d %7d %8d\n", s.At.Round(time.Second), s.Resets,
			mib(s.DaemonRSS), s.DaemonFDs, mib(rss), fds, s.Mounts, s.Cgroups)
	}
	first, last := samples[0], samples[len(samples)-1]
	summary["daemon_rss_mib"] = []float64{mib(first.DaemonRSS), mib(last.DaemonRSS)}
	summary["daemon_fds"] = []int{first.DaemonFDs, last.DaemonFDs}
	return soakResult{text: b.String(), summary: summary}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
func mib(n int64) float64        { return float64(n) / (1 << 20) }
