package shim

import (
	"slices"
	"time"

	shimv1 "github.com/warmpod/warmpod/api/shim/v1"
)

// Reset triggers, as the shim's Stats name them.
const (
	// TriggerResetPod is warmpod's ResetPod call.
	TriggerResetPod = "reset_pod"
	// TriggerRestartRule is a RestartAllContainers restart rule the shim
	// applied when a container exited.
	TriggerRestartRule = "restart_rule"
	// TriggerKubelet is the kubelet's sequence: StopContainer of running
	// containers, then CreateContainer and StartContainer of the same
	// names (its RestartAllContainers, or a probe restarting one).
	TriggerKubelet = "kubelet"
)

// DurationBounds are the upper bounds, in seconds, of the histograms the
// shim and the daemon keep of resets and pre-creations: 0.5 ms to about
// 65 s, doubling.
var DurationBounds = func() []float64 {
	out := make([]float64, 18)
	v := 0.0005
	for i := range out {
		out[i] = v
		v *= 2
	}
	return out
}()

// Histogram counts durations in the buckets of DurationBounds. Not safe for
// concurrent use.
type Histogram struct {
	// Counts[i] counts the observations in bucket i alone (not
	// cumulative); Counts[len(DurationBounds)] those above the last bound.
	Counts []uint64
	Count  uint64
	Sum    float64
}

// Observe adds one duration.
func (h *Histogram) Observe(d time.Duration) {
	if h.Counts == nil {
		h.Counts = make([]uint64, len(DurationBounds)+1)
	}
	s := d.Seconds()
	i, _ := slices.BinarySearch(DurationBounds, s)
	h.Counts[i]++
	h.Count++
	h.Sum += s
}

// Add adds the observations of o.
func (h *Histogram) Add(o Histogram) {
	if o.Count == 0 {
		return
	}
	if h.Counts == nil {
		h.Counts = make([]uint64, len(DurationBounds)+1)
	}
	for i := range min(len(h.Counts), len(o.Counts)) {
		h.Counts[i] += o.Counts[i]
	}
	h.Count += o.Count
	h.Sum += o.Sum
}

// Cumulative returns the counts of observations no greater than each bound,
// by bound, as Prometheus histograms take them.
func (h Histogram) Cumulative() map[float64]uint64 {
	out := make(map[float64]uint64, len(DurationBounds))
	var n uint64
	for i, b := range DurationBounds {
		if i < len(h.Counts) {
			n += h.Counts[i]
		}
		out[b] = n
	}
	return out
}

// HistogramToProto converts h for the wire.
func HistogramToProto(h Histogram) *shimv1.Histogram {
	cum := h.Cumulative()
	p := &shimv1.Histogram{Count: h.Count, Sum: h.Sum}
	for _, b := range DurationBounds {
		p.UpperBounds = append(p.UpperBounds, b)
		p.CumulativeCounts = append(p.CumulativeCounts, cum[b])
	}
	return p
}

// HistogramFromProto converts a histogram from the wire. Buckets with
// bounds other than DurationBounds' are folded into the next known bound.
func HistogramFromProto(p *shimv1.Histogram) Histogram {
	h := Histogram{Counts: make([]uint64, len(DurationBounds)+1), Count: p.GetCount(), Sum: p.GetSum()}
	var prev uint64
	for i, b := range p.GetUpperBounds() {
		if i >= len(p.GetCumulativeCounts()) {
			break
		}
		c := p.GetCumulativeCounts()[i]
		j, _ := slices.BinarySearch(DurationBounds, b)
		h.Counts[j] += c - min(c, prev)
		prev = c
	}
	h.Counts[len(DurationBounds)] += h.Count - min(h.Count, prev)
	return h
}
