package service

import (
	"sort"
	"sync"
	"time"

	shimv1 "github.com/warmpod/warmpod/api/shim/v1"
	"github.com/warmpod/warmpod/runtime/shim"
)

// stats are the shim's counters since it started, which the daemon reads
// (Stats) for its metrics. Recording takes a lock no other path holds for
// long; nothing here is logged.
type stats struct {
	mu     sync.Mutex
	resets map[string]*resetStats // by trigger
	// warm and cold count generations started, from a pre-created one or
	// created on the spot.
	warm, cold uint64
	precreate  shim.Histogram
	// The kubelet's sequence in progress: the names of the containers
	// StopContainer stopped that have not been started again, and when the
	// first of them was stopped.
	stopped      map[string]bool
	stoppedSince time.Time
}

type resetStats struct {
	duration shim.Histogram
	failures uint64
}

func newStats() *stats {
	return &stats{resets: map[string]*resetStats{}, stopped: map[string]bool{}}
}

// reset records a reset asked for by trigger, which took d if err is nil.
func (st *stats) reset(trigger string, d time.Duration, err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	r := st.resets[trigger]
	if r == nil {
		r = &resetStats{}
		st.resets[trigger] = r
	}
	if err != nil {
		r.failures++
		return
	}
	r.duration.Observe(d)
}

// created records a generation started, warm or cold.
func (st *stats) created(warm bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if warm {
		st.warm++
	} else {
		st.cold++
	}
}

// precreated records how long a pre-creation took.
func (st *stats) precreated(d time.Duration) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.precreate.Observe(d)
}

// stoppedByCall notes that StopContainer stopped the running container
// name: the start, or part, of the kubelet's restart sequence.
func (st *stats) stoppedByCall(name string, at time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.stopped) == 0 {
		st.stoppedSince = at
	}
	st.stopped[name] = true
}

// startedByCall notes that StartContainer started a container name; when
// that starts the last container the kubelet stopped, its sequence is one
// reset, from the first stop to this start.
func (st *stats) startedByCall(name string, at time.Time) {
	st.mu.Lock()
	if !st.stopped[name] {
		st.mu.Unlock()
		return
	}
	delete(st.stopped, name)
	done := len(st.stopped) == 0
	since := st.stoppedSince
	st.mu.Unlock()
	if done {
		st.reset(shim.TriggerKubelet, at.Sub(since), nil)
	}
}

func (st *stats) proto() *shimv1.StatsResponse {
	st.mu.Lock()
	defer st.mu.Unlock()
	resp := &shimv1.StatsResponse{
		WarmCreates:       st.warm,
		ColdCreates:       st.cold,
		PrecreateDuration: shim.HistogramToProto(st.precreate),
	}
	triggers := make([]string, 0, len(st.resets))
	for t := range st.resets {
		triggers = append(triggers, t)
	}
	sort.Strings(triggers)
	for _, t := range triggers {
		r := st.resets[t]
		resp.Resets = append(resp.Resets, &shimv1.ResetStats{Trigger: t, Duration: shim.HistogramToProto(r.duration), Failures: r.failures})
	}
	return resp
}

// Stats reports the shim's counters, and how many containers wait for a
// pre-created next generation.
func (s *Shim) Stats() *shimv1.StatsResponse {
	resp := s.stats.proto()
	s.mu.Lock()
	for _, sl := range s.order {
		if len(sl.next) == 0 && (sl.wanted || sl.preparing > 0) {
			resp.PrecreateBacklog++
		}
	}
	s.mu.Unlock()
	return resp
}
