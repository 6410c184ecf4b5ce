package sandbox

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	shimv1 "github.com/warmpod/warmpod/api/shim/v1"
	"github.com/warmpod/warmpod/runtime/metrics"
	"github.com/warmpod/warmpod/runtime/shim"
)

// statsTimeout bounds how long a scrape waits for one shim.
const statsTimeout = 2 * time.Second

// shimTotals sums what shims report in their Stats.
type shimTotals struct {
	resets      map[string]*resetTotals
	warm, cold  uint64
	precreate   shim.Histogram
	backlog     uint64
	shims       int
	rss, pss    uint64
	unreachable int
}

type resetTotals struct {
	duration shim.Histogram
	failures uint64
}

func (t *shimTotals) add(r *shimv1.StatsResponse) {
	if t.resets == nil {
		t.resets = map[string]*resetTotals{}
	}
	for _, rs := range r.GetResets() {
		rt := t.resets[rs.Trigger]
		if rt == nil {
			rt = &resetTotals{}
			t.resets[rs.Trigger] = rt
		}
		rt.duration.Add(shim.HistogramFromProto(rs.GetDuration()))
		rt.failures += rs.GetFailures()
	}
	t.warm += r.GetWarmCreates()
	t.cold += r.GetColdCreates()
	t.precreate.Add(shim.HistogramFromProto(r.GetPrecreateDuration()))
	t.backlog += uint64(r.GetPrecreateBacklog())
}

// retireShim keeps the counters of a shim about to shut down, so that the
// node's totals do not go down with it.
func (m *Manager) retireShim(ctx context.Context, c shimConn) {
	ctx, cancel := context.WithTimeout(ctx, statsTimeout)
	defer cancel()
	resp, err := c.Stats(ctx, &shimv1.StatsRequest{})
	if err != nil {
		return
	}
	resp.PrecreateBacklog = 0
	m.retiredMu.Lock()
	m.retired.add(resp)
	m.retiredMu.Unlock()
}

// NodeStats asks every running shim for its counters and sums them with
// those of the shims already retired, and measures the shims' memory.
func (m *Manager) NodeStats() metrics.NodeStats {
	type live struct{ client shimConn }
	m.mu.RLock()
	pods := make([]*pod, 0, len(m.pods))
	for _, p := range m.pods {
		pods = append(pods, p)
	}
	m.mu.RUnlock()
	var shims []live
	for _, p := range pods {
		p.mu.Lock()
		if p.shim != nil {
			shims = append(shims, live{p.shim})
		}
		p.mu.Unlock()
	}

	m.retiredMu.Lock()
	var t shimTotals
	t.precreate.Add(m.retired.precreate)
	t.warm, t.cold = m.retired.warm, m.retired.cold
	t.resets = map[string]*resetTotals{}
	for k, v := range m.retired.resets {
		c := *v
		c.duration = shim.Histogram{}
		c.duration.Add(v.duration)
		t.resets[k] = &c
	}
	m.retiredMu.Unlock()

	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range shims {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
			defer cancel()
			resp, err := s.client.Stats(ctx, &shimv1.StatsRequest{})
			rss, pss, memOK := processMemory(s.client.Pid())
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.unreachable++
				return
			}
			t.add(resp)
			t.shims++
			if memOK {
				t.rss += rss
				t.pss += pss
			}
		}()
	}
	wg.Wait()
	if t.unreachable > 0 {
		m.log.WithField("shims", t.unreachable).Debug("metrics: shims that did not report their stats")
	}

	out := metrics.NodeStats{
		Shims:            t.shims,
		ShimRSSBytes:     t.rss,
		ShimPSSBytes:     t.pss,
		Resets:           map[string]metrics.ResetStats{},
		WarmCreates:      t.warm,
		ColdCreates:      t.cold,
		PrecreateBacklog: t.backlog,
		Precreate:        toMetricsHistogram(t.precreate),
	}
	for trigger, r := range t.resets {
		out.Resets[trigger] = metrics.ResetStats{Duration: toMetricsHistogram(r.duration), Failures: r.failures}
	}
	return out
}

func toMetricsHistogram(h shim.Histogram) metrics.Histogram {
	return metrics.Histogram{Count: h.Count, Sum: h.Sum, Buckets: h.Cumulative()}
}

// processMemory reads the resident and proportional set sizes of pid.
func processMemory(pid int) (rss, pss uint64, ok bool) {
	if pid <= 0 {
		return 0, 0, false
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || fields[2] != "kB" {
			continue
		}
		v, err := strconv.ParseUint(fields[1], 10, 64)
		if err != nil {
			continue
		}
		switch fields[0] {
		case "Rss:":
			rss = v << 10
		case "Pss:":
			pss = v << 10
		}
	}
	return rss, pss, true
}
