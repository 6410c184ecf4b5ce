package service

import (
	"time"

	"github.com/warmpod/warmpod/runtime/shim"
)

// slot is one container name of the pod, across every container created
// under that name and every generation of them: the template of its latest
// container, that container, and the pre-created next generation.
//
// The slot keeps up to depth next generations ready: one, or, with the fast
// spawner and while resets come back to back, the pipeline's depth, so that
// resets coming faster than a generation is made still find one (see
// slot.depth). Each next generation is in one of three states, and changes
// only through the methods below:
//
//	           startPreparing                 finishPreparing (kept)
//	┌──────┐ ─────────────────▶ ┌───────────┐ ─────────────────────▶ ┌───────┐
//	│ none │  wanted, and the   │ preparing │  made with one of the  │ ready │
//	│      │  pod quiet         │           │  node's tokens, at     │       │
//	│      │                    │           │  idle CPU priority     │       │
//	└──────┘ ◀───────────────── └───────────┘                        └───────┘
//	   ▲      finishPreparing (failed, or the template changed           │
//	   │      meanwhile: the generation is discarded)                    │
//	   └──── takeNext (create, restart), dropNext (update, shutdown) ────┘
//	         trimTo (a burst is over), abandon (no container for a while)
//
// Beside the state, "wanted" is a standing request for a next generation:
// want sets it (a start, a reset, a restart by rule, an update), and
// startPreparing clears it, as does adopt: a new container of the name
// wants its next generation once it is started. With libcontainer, a create or
// a restart that finds the slot preparing waits for the generation in the
// making (tens of milliseconds) rather than making another beside it.
//
// Preconditions for every field and method: Shim.mu held.
type slot struct {
	name string
	// tmpl is the template of the latest container; next generations are
	// made from it.
	tmpl *template
	// latest is the container created last under this name; nil once it is
	// removed (the slot keeps its template and next generation: the kubelet
	// removes a container right before it creates its successor).
	latest *ctr
	// next holds the pre-created next generations (state ready), oldest
	// first.
	next []*gen
	// preparing counts the generations in state preparing: precreateLoop
	// is making them.
	preparing int
	// wanted asks for a next generation.
	wanted bool
	// init is set once the slot is known to be an init container: its
	// container completed successfully before a later container was
	// created, or the pod's config names it.
	init       bool
	classified bool
	// lastTake is when a next generation was last taken (a create, a
	// restart); deepUntil is until when the slot keeps the pipeline's full
	// depth, set when takes come back to back; trimTimer, while armed,
	// brings the ready generations back to one after deepUntil.
	lastTake  time.Time
	deepUntil time.Time
	trimTimer *time.Timer
	// lingerTimer, armed while the slot has no container, ends its next
	// generations when no successor comes (Shim.linger).
	lingerTimer *time.Timer
}

// defaultRemovedLinger is how long a container name whose container was
// removed keeps its next generations. The kubelet creates a container's
// successor right after it removes it (an in-place restart) or, for a
// container it restarts on its own, before it removes the old one; a name
// nobody creates again (a client's one-off containers) would otherwise hold
// a process and a mounted writable layer for the pod's whole life.
const defaultRemovedLinger = time.Minute

const (
	// burstGap: a take this soon after the previous one means resets come
	// back to back, faster than a generation may be made.
	burstGap = 500 * time.Millisecond
	// burstHold is how long the slot keeps more than one generation ready
	// after the last take that came back to back.
	burstHold = 5 * time.Second
)

// depth is how many next generations the slot keeps ready at now, with
// pipeline allowing up to max: max while resets come back to back, else
// one. Generations cost memory (a process and a mounted writable layer
// each) and CPU to make; a pod restarted now and then needs one, a task
// pool taking the next task at once needs more.
func (sl *slot) depth(max int, now time.Time) int {
	if max > 1 && now.Before(sl.deepUntil) {
		return max
	}
	return 1
}

// noteTake records a take at now and tells whether it came back to back
// (deepUntil moved).
func (sl *slot) noteTake(now time.Time) bool {
	burst := !sl.lastTake.IsZero() && now.Sub(sl.lastTake) < burstGap
	sl.lastTake = now
	if burst {
		sl.deepUntil = now.Add(burstHold)
	}
	return burst
}

// trimTo takes the ready generations beyond depth, the newest ones, for
// the caller to discard.
func (sl *slot) trimTo(depth int) []*gen {
	if len(sl.next) <= depth {
		return nil
	}
	extra := sl.next[depth:]
	sl.next = sl.next[:depth:depth]
	return extra
}

// adopt makes c, with template t, the slot's latest container.
func (sl *slot) adopt(c *ctr, t *template) {
	sl.tmpl = t
	sl.latest = c
	sl.wanted = false
}

// forget lets go of c when it is the slot's latest container, and tells
// whether the slot is left without one.
func (sl *slot) forget(c *ctr) bool {
	if sl.latest == c {
		sl.latest = nil
	}
	return sl.latest == nil
}

// abandon ends the slot's use of its template: it makes no more next
// generations until a container of its name is created again, and returns
// the ready ones for the caller to discard. Ones in the making are
// discarded when they are done (their template is no longer the slot's).
func (sl *slot) abandon() []*gen {
	sl.tmpl = nil
	sl.wanted = false
	return sl.dropNext()
}

// want asks for a next generation, made once the pod is quiet.
func (sl *slot) want() { sl.wanted = true }

// needsPreparing tells whether precreateLoop should make a next generation
// now, keeping depth of them ready. An ephemeral container's slot never
// gets one.
func (sl *slot) needsPreparing(depth int) bool {
	return sl.wanted && len(sl.next)+sl.preparing < depth && sl.tmpl != nil && !sl.tmpl.ephemeral()
}

// startPreparing moves one next generation from none to preparing and
// returns the template to make it from. The slot stays wanted until depth
// generations are ready or in the making.
func (sl *slot) startPreparing(depth int) *template {
	sl.preparing++
	if len(sl.next)+sl.preparing >= depth {
		sl.wanted = false
	}
	return sl.tmpl
}

// finishPreparing ends preparing with g, made from t (nil when it failed).
// The slot keeps g, and finishPreparing returns true, unless t is no longer
// the slot's template or the shim is closing (closed); the caller then
// discards g.
func (sl *slot) finishPreparing(g *gen, t *template, closed bool, depth int) bool {
	sl.preparing--
	if g == nil || closed || sl.tmpl != t || len(sl.next) >= depth {
		return false
	}
	sl.next = append(sl.next, g)
	return true
}

// takeNext moves the oldest ready generation made with key to none and
// returns it (nil when none is ready), with the ready generations made with
// another key, which are of no use any more: the caller discards them.
func (sl *slot) takeNext(key string) (g *gen, stale []*gen) {
	var keep []*gen
	for _, n := range sl.next {
		switch {
		case n.key != key:
			stale = append(stale, n)
		case g == nil:
			g = n
		default:
			keep = append(keep, n)
		}
	}
	sl.next = keep
	return g, stale
}

// dropNext takes every ready generation: they are of no use any more, and
// the caller discards them.
func (sl *slot) dropNext() []*gen {
	gs := sl.next
	sl.next = nil
	return gs
}

// retemplate gives c's later generations template t, when c is the slot's
// latest container, and returns the next generations made with the old one,
// for the caller to discard.
func (sl *slot) retemplate(c *ctr, t *template) []*gen {
	if sl.latest != c {
		return nil
	}
	sl.tmpl = t
	return sl.dropNext()
}

// warmFor tells whether c is the slot's latest container and a next
// generation is ready for it.
func (sl *slot) warmFor(c *ctr) bool { return sl.latest == c && len(sl.next) > 0 }

// classify decides, once, whether the slot ran as an init container: it did
// when its container had completed successfully by the time a later slot
// appeared; a container still running then is not one.
func (sl *slot) classify() {
	if sl.classified || sl.latest == nil {
		return
	}
	r := sl.latest.record()
	switch r.State {
	case shim.StateExited:
		sl.init = r.ExitCode == 0
		sl.classified = true
	case shim.StateRunning:
		sl.classified = true
	}
}

// markInit records that the pod's config names the slot an init container.
func (sl *slot) markInit() { sl.init, sl.classified = true, true }

// takeNextLocked takes sl's oldest next generation made with key (nil if
// none), and the ready ones made with another key (see slot.takeNext). With
// libcontainer it waits first for one in preparation: it finishes in tens of
// milliseconds, which is cheaper than creating another beside it. The fast
// spawner's generations are cheap, and the one in the making is kept for the
// reset after.
// Preconditions: s.mu held (released while waiting).
func (s *Shim) takeNextLocked(sl *slot, key string) (*gen, []*gen) {
	for s.pipeline.waitPreparing && sl.preparing > 0 && len(sl.next) == 0 {
		s.idle.Wait()
	}
	if sl.noteTake(time.Now()) && s.pipeline.depth > 1 {
		s.armTrimLocked(sl)
	}
	return sl.takeNext(key)
}

// lingerLocked arms sl's linger timer, which discards its next generations
// after s.removedLinger unless a container of its name is created by then;
// an armed timer starts again.
// Preconditions: s.mu held.
func (s *Shim) lingerLocked(sl *slot) {
	if sl.lingerTimer != nil {
		sl.lingerTimer.Stop()
	}
	sl.lingerTimer = time.AfterFunc(s.removedLinger, func() { s.endLinger(sl) })
}

// endLinger discards sl's next generations if it still has no container.
func (s *Shim) endLinger(sl *slot) {
	s.mu.Lock()
	sl.lingerTimer = nil
	if s.closed || sl.latest != nil {
		s.mu.Unlock()
		return
	}
	gens := sl.abandon()
	if len(gens) > 0 {
		s.log.WithField("container", sl.name).Debugf("no container of the name for %s: %d next generations discarded", s.removedLinger, len(gens))
	}
	s.discardUnlock(gens)
}

// armTrimLocked arms sl's trim timer unless it is armed.
// Preconditions: s.mu held.
func (s *Shim) armTrimLocked(sl *slot) {
	if sl.trimTimer == nil {
		sl.trimTimer = time.AfterFunc(time.Until(sl.deepUntil), func() { s.trim(sl) })
	}
}

// trim runs when sl's burst may be over: once it is, the slot keeps one
// ready generation and the others are discarded; while it goes on, the
// timer is armed again for its end.
func (s *Shim) trim(sl *slot) {
	s.mu.Lock()
	sl.trimTimer = nil
	if s.closed {
		// Shutdown discards every generation.
		s.mu.Unlock()
		return
	}
	if time.Now().Before(sl.deepUntil) {
		s.armTrimLocked(sl)
		s.mu.Unlock()
		return
	}
	s.discardUnlock(sl.trimTo(s.depthLocked(sl)))
}

// discardUnlock releases s.mu and discards gens, taken from a slot under
// it; s.bg is held until they are handed over, so that a Shutdown begun
// meanwhile waits for them.
// Preconditions: s.mu held, and the shim not closed; released on return.
func (s *Shim) discardUnlock(gens []*gen) {
	s.bg.Add(1)
	s.mu.Unlock()
	defer s.bg.Done()
	for _, g := range gens {
		s.discard(g)
	}
}

// isInit tells whether sl runs as an init container.
func (s *Shim) isInit(sl *slot) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sl.init
}
