package service

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
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

// precreateLoop pre-creates next generations one at a time, only while no
// foreground work (a cold create, a reset) runs in this pod, and only when it
// holds one of the node's pre-creation tokens. The work runs under the idle
// CPU scheduling policy, so on a busy node it never takes CPU time from a
// reset or a workload, in this pod or any other.
func (s *Shim) precreateLoop() {
	defer close(s.precreateDone)
	for range s.wake {
		for {
			sl, t := s.nextToPrepare()
			if sl == nil {
				break
			}
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
			if sl.finishPreparing(g, t, s.closed) {
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
	}
}

// precreateQuiet is how long a pod must go without container operations
// before pre-creation starts. The kubelet's in-place restart is a burst of
// creates and starts a few milliseconds apart; pre-creating in the middle of
// it would take CPU from the burst itself.
const precreateQuiet = 20 * time.Millisecond

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
		if sl.needsPreparing() {
			return sl, sl.startPreparing()
		}
	}
	return nil, nil
}

// waitQuietLocked waits until no foreground work runs and the pod has had
// no container operation for precreateQuiet. It returns false if the shim
// closes meanwhile.
// Preconditions: s.mu held (released while waiting).
func (s *Shim) waitQuietLocked() bool {
	for !s.closed {
		if s.foreground > 0 {
			s.idle.Wait()
			continue
		}
		wait := precreateQuiet - time.Since(s.lastActivity)
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
