package service

import (
	"testing"
	"time"
)

func TestSlotDepthFollowsBursts(t *testing.T) {
	var sl slot
	t0 := time.Unix(1000, 0)
	if d := sl.depth(2, t0); d != 1 {
		t.Fatalf("depth before any take: %d, want 1", d)
	}
	if sl.noteTake(t0) {
		t.Error("the first take counted as back to back")
	}
	if d := sl.depth(2, t0); d != 1 {
		t.Errorf("depth after one take: %d, want 1", d)
	}
	// A task pool: the next take right after.
	t1 := t0.Add(burstGap / 2)
	if !sl.noteTake(t1) {
		t.Error("a take within burstGap not counted as back to back")
	}
	if d := sl.depth(2, t1); d != 2 {
		t.Errorf("depth during a burst: %d, want 2", d)
	}
	if d := sl.depth(1, t1); d != 1 {
		t.Errorf("depth with a pipeline of one: %d, want 1", d)
	}
	if d := sl.depth(2, t1.Add(burstHold)); d != 1 {
		t.Errorf("depth burstHold after the last quick take: %d, want 1", d)
	}
	// Takes further apart than burstGap do not extend the burst.
	t2 := t1.Add(burstGap)
	if sl.noteTake(t2) {
		t.Error("a take burstGap after the previous one counted as back to back")
	}
	if got := sl.deepUntil; !got.Equal(t1.Add(burstHold)) {
		t.Errorf("deepUntil moved to %v by a slow take", got)
	}
}

func TestSlotTrimKeepsTheOldest(t *testing.T) {
	a, b, c := &gen{key: "a"}, &gen{key: "b"}, &gen{key: "c"}
	sl := slot{next: []*gen{a, b, c}}
	extra := sl.trimTo(1)
	if len(sl.next) != 1 || sl.next[0] != a {
		t.Errorf("kept %v, want the oldest only", sl.next)
	}
	if len(extra) != 2 || extra[0] != b || extra[1] != c {
		t.Errorf("trimmed %v, want the two newest", extra)
	}
	// The trimmed slice may not share memory with what the slot keeps.
	sl.next = append(sl.next, &gen{key: "d"})
	if extra[0] != b {
		t.Error("appending to the slot overwrote a trimmed generation")
	}
	if extra := sl.trimTo(2); extra != nil {
		t.Errorf("trim to 2 of 2 took %v", extra)
	}
}
