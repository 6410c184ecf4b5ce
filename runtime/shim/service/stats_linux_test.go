package service

import (
	"context"
	"testing"
	"time"

	shimv1 "github.com/warmpod/warmpod/api/shim/v1"
	"github.com/warmpod/warmpod/runtime/shim"
)

func resetsOf(resp *shimv1.StatsResponse, trigger string) *shimv1.ResetStats {
	for _, r := range resp.Resets {
		if r.Trigger == trigger {
			return r
		}
	}
	return &shimv1.ResetStats{Duration: &shimv1.Histogram{}}
}

func TestKubeletSequenceTracking(t *testing.T) {
	st := newStats()
	t0 := time.Unix(100, 0)
	st.stoppedByCall("a", t0)
	st.stoppedByCall("b", t0.Add(time.Millisecond))
	st.startedByCall("c", t0.Add(2*time.Millisecond)) // never stopped: not part of it
	st.startedByCall("a", t0.Add(3*time.Millisecond))
	if r := resetsOf(st.proto(), shim.TriggerKubelet); r.Duration.Count != 0 {
		t.Fatalf("a sequence with b still stopped counted: %+v", r)
	}
	st.startedByCall("b", t0.Add(5*time.Millisecond))
	r := resetsOf(st.proto(), shim.TriggerKubelet)
	if r.Duration.Count != 1 || r.Duration.Sum != 0.005 {
		t.Fatalf("kubelet resets %+v, want one of 5 ms", r.Duration)
	}
	// The next sequence starts afresh.
	st.stoppedByCall("a", t0.Add(time.Second))
	st.startedByCall("a", t0.Add(time.Second+time.Millisecond))
	if r := resetsOf(st.proto(), shim.TriggerKubelet); r.Duration.Count != 2 {
		t.Fatalf("kubelet resets %+v, want two", r.Duration)
	}
}

// TestStatsOfAShim drives a shim through a cold create, a ResetPod and the
// kubelet's sequence, and reads what its Stats report.
func TestStatsOfAShim(t *testing.T) {
	f := newFixture(t, nil)
	f.create("m1", "main", "sleep", "1000")
	f.start("m1")
	f.waitWarm("m1")
	if _, _, err := f.s.Reset(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.waitWarm("m1")
	if _, err := f.s.Stop(context.Background(), "m1", 0); err != nil {
		t.Fatal(err)
	}
	if err := f.s.Remove(context.Background(), "m1"); err != nil {
		t.Fatal(err)
	}
	if _, warm := f.create("m2", "main", "sleep", "1000"); !warm {
		t.Fatal("the kubelet's create did not take the pre-created generation")
	}
	f.start("m2")
	f.waitWarm("m2")

	resp := f.s.Stats()
	if resp.ColdCreates != 1 || resp.WarmCreates != 2 {
		t.Errorf("creates: %d cold, %d warm; want 1 and 2 (the first create; the reset and the kubelet's create)", resp.ColdCreates, resp.WarmCreates)
	}
	for _, trigger := range []string{shim.TriggerResetPod, shim.TriggerKubelet} {
		r := resetsOf(resp, trigger)
		if r.Duration.Count != 1 || r.Duration.Sum <= 0 || r.Failures != 0 {
			t.Errorf("%s resets: %+v, want one that took some time", trigger, r)
		}
		h := shim.HistogramFromProto(r.Duration)
		if h.Count != 1 {
			t.Errorf("%s: histogram from the wire %+v", trigger, h)
		}
	}
	if resp.PrecreateDuration.Count < 3 {
		t.Errorf("pre-creations counted: %d, want one after each start", resp.PrecreateDuration.Count)
	}
	if resp.PrecreateBacklog != 0 {
		t.Errorf("backlog %d with every container warm", resp.PrecreateBacklog)
	}
}
