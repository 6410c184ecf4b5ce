package shim

import (
	"testing"
	"time"
)

func TestHistogram(t *testing.T) {
	var h Histogram
	for _, d := range []time.Duration{300 * time.Microsecond, 3 * time.Millisecond, 3 * time.Millisecond, 2 * time.Minute} {
		h.Observe(d)
	}
	if h.Count != 4 {
		t.Fatalf("count %d", h.Count)
	}
	cum := h.Cumulative()
	for bound, want := range map[float64]uint64{0.0005: 1, 0.002: 1, 0.004: 3, DurationBounds[len(DurationBounds)-1]: 3} {
		if cum[bound] != want {
			t.Errorf("observations up to %gs: %d, want %d", bound, cum[bound], want)
		}
	}
	back := HistogramFromProto(HistogramToProto(h))
	if back.Count != h.Count || back.Sum != h.Sum {
		t.Fatalf("round trip: %+v, want %+v", back, h)
	}
	for i := range h.Counts {
		if back.Counts[i] != h.Counts[i] {
			t.Fatalf("round trip bucket %d: %d, want %d", i, back.Counts[i], h.Counts[i])
		}
	}
	var sum Histogram
	sum.Add(h)
	sum.Add(back)
	if sum.Count != 8 || sum.Cumulative()[0.004] != 6 {
		t.Errorf("sum of two: %+v", sum)
	}
}
