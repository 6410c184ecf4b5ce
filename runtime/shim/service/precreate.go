package service

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/warmpod/warmpod/runtime/container"
)

// schedule asks for a pre-created next generation of sl.
func (s *Shim) schedule(sl *slot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	sl.want()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// scheduleAll asks for a next generation of every slot in use.
func (s *Shim) scheduleAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	for _, sl := range s.order {
		if sl.latest != nil {
			sl.want()
		}
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// precreateLoop pre-creates next generations, pipeline.parallel at a time,
// each only when it holds one of the node's pre-creation tokens and, with a
// pipeline that has a quiet period, only while no foreground work (a cold
// create, a reset) runs in this pod. The work runs under the idle CPU
// scheduling policy, so on a busy node it never takes CPU time from a reset
// or a workload, in this pod or any other.
func (s *Shim) precreateLoop() {
	defer close(s.precreateDone)
	var workers sync.WaitGroup
	defer workers.Wait()
	free := make(chan struct{}, max(1, s.pipeline.parallel))
	for range s.wake {
		for {
			free <- struct{}{}
			sl, t := s.nextToPrepare()
			if sl == nil {
				<-free
				break
			}
			workers.Add(1)
			go func() {
				defer workers.Done()
				s.prepare(sl, t)
				<-free
			}()
		}
	}
}

// prepare makes a next generation of sl from t, which nextToPrepare picked.
func (s *Shim) prepare(sl *slot, t *template) {
	start := time.Now()
	release := s.tokens.acquire()
	created := time.Now()
	g, err := s.newGen(t, true)
	release()
	if err == nil {
		s.stats.precreated(time.Since(created))
		s.log.WithField("container", sl.name).Debugf("pre-created next generation in %s (%s of it waiting for a token)", time.Since(start), created.Sub(start))
	}
	s.mu.Lock()
	if sl.finishPreparing(g, t, s.closed, s.depthLocked(sl)) {
		g = nil
	}
	s.idle.Broadcast()
	s.mu.Unlock()
	if g != nil {
		s.discard(g)
	}
	if err != nil {
		// Not retried until the slot is used again: a spec that
		// cannot be created now is reported by the next create.
		s.log.WithError(err).WithField("container", sl.name).Warn("pre-create next generation")
	}
}

// pipeline is how a shim pre-creates and tears down generations.
type pipeline struct {
	// depth is how many next generations a slot keeps ready at most: it
	// keeps one, and this many while resets come back to back.
	depth int
	// parallel is how many generations the pod makes at once.
	parallel int
	// quiet is how long a pod must go without container operations, and
	// without foreground work (a cold create, a reset), before
	// pre-creation or teardown starts; 0 lets them run beside it.
	quiet time.Duration
	// waitPreparing makes a create or a restart that finds no generation
	// ready but one in the making wait for it.
	waitPreparing bool
}

// depthLocked is how many next generations sl keeps ready now: up to the
// pipeline's depth while resets come back to back (slot.depth), and one for
// a template the fast spawner leaves to libcontainer.
// Preconditions: s.mu held.
func (s *Shim) depthLocked(sl *slot) int {
	if s.pipeline.depth > 1 && sl.tmpl != nil {
		if fast, known := s.engine.Fast(sl.tmpl.key); known && !fast {
			return 1
		}
	}
	return sl.depth(s.pipeline.depth, time.Now())
}

// pipelineFor returns the pipeline for generations made by spawner.
//
// A libcontainer generation costs tens of milliseconds and ~10 ms of CPU:
// one is kept per container, made only once the pod has been quiet for 20 ms
// (the kubelet's in-place restart is a burst of creates and starts a few
// milliseconds apart; pre-creating in the middle of it would take CPU from
// the burst itself), and a restart waits for one in the making.
//
// A fast generation costs a few milliseconds of wall time, much of it
// waiting on the kernel, and a few of CPU: one is kept per container, and
// two while resets come back to back, so that they still find one ready
// while the next ones are made beside them, two at a time and at idle CPU
// priority; and a restart that finds none ready makes its own rather than
// wait behind idle-priority work.
func pipelineFor(spawner string) pipeline {
	if spawner == container.SpawnerFast {
		return pipeline{depth: 2, parallel: 2}
	}
	return pipeline{depth: 1, parallel: 1, quiet: 20 * time.Millisecond, waitPreparing: true}
}

// nextToPrepare waits until the pod is idle and quiet and picks a slot
// wanting a next generation, marking it as being prepared. It returns nil
// when there is none or the shim is closing.
func (s *Shim) nextToPrepare() (*slot, *template) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.waitQuietLocked() {
		return nil, nil
	}
	for _, sl := range s.order {
		if d := s.depthLocked(sl); sl.needsPreparing(d) {
			return sl, sl.startPreparing(d)
		}
	}
	return nil, nil
}

// waitQuietLocked waits until no foreground work runs and the pod has had
// no container operation for the pipeline's quiet period; with none, it only
// checks that the shim is not closing. It returns false if the shim closes
// meanwhile.
// Preconditions: s.mu held (released while waiting).
func (s *Shim) waitQuietLocked() bool {
	if s.pipeline.quiet == 0 {
		return !s.closed
	}
	for !s.closed {
		if s.foreground > 0 {
			s.idle.Wait()
			continue
		}
		wait := s.pipeline.quiet - time.Since(s.lastActivity)
		if wait <= 0 {
			return true
		}
		s.mu.Unlock()
		time.Sleep(wait)
		s.mu.Lock()
	}
	return false
}

// tokens bounds how many generations the shims of a node pre-create at
// once, so that pre-creation in idle pods does not starve resets in busy
// ones. A token is an flock on one of n files in dir.
type tokens struct {
	dir string
	n   int
}

func newTokens(dir string, n int) *tokens {
	if n <= 0 {
		n = defaultMaxPrecreate()
	}
	return &tokens{dir: dir, n: n}
}

// acquire takes a token, waiting for one when all are taken, and returns
// its release. Without a token dir (or when the files cannot be used) it
// does not throttle.
func (t *tokens) acquire() func() {
	if t.dir == "" {
		return func() {}
	}
	if err := os.MkdirAll(t.dir, 0o700); err != nil {
		return func() {}
	}
	first := rand.IntN(t.n)
	for i := 0; i < t.n; i++ {
		if rel, ok := t.lock((first+i)%t.n, unix.LOCK_EX|unix.LOCK_NB); ok {
			return rel
		}
	}
	if rel, ok := t.lock(first, unix.LOCK_EX); ok {
		return rel
	}
	return func() {}
}

func (t *tokens) lock(i, how int) (func(), bool) {
	f, err := os.OpenFile(filepath.Join(t.dir, fmt.Sprintf("precreate.%d", i)), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, false
	}
	if err := unix.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, false
	}
	return func() { f.Close() }, true
}
